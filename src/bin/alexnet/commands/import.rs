//! `alexnet import`: PyTorch weights (`.pth` zip or legacy, or safetensors) into a checkpoint.

use crate::common::{Common, model_name};
use alexnet::interop::ImportAs;
use alexnet::model::ModelConfig;
use alexnet::model::plan::thousands;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// torchvision state dict (`torch.save`), or safetensors with torchvision or our key names.
    file: PathBuf,
    #[arg(long)]
    to: PathBuf,
    /// Topology: paper, paper-1gpu, caffenet or torchvision with the widths the tensors' shapes
    /// say (default: grouped = paper, torchvision keys = torchvision), or a model file the
    /// tensors must match exactly.
    #[arg(long, value_parser = model_name)]
    model: Option<String>,
    /// Class names, `wnid<TAB>name` per line in output order (default: ImageNet's for 1000 outputs).
    #[arg(long)]
    classes: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Imported {
    out: String,
    model: String,
    params: usize,
    classes: usize,
    input: [usize; 3],
}

pub fn exec(a: Args) -> Result<i32> {
    let names = a.classes.as_deref().map(alexnet::data::folder::read_class_list).transpose()?;
    let model = match a.model.as_deref() {
        None => ImportAs::Infer,
        // Topologies whose widths the tensors' shapes give; any other built-in is taken as it is.
        Some(m @ ("paper" | "paper-1gpu" | "caffenet" | "torchvision")) => ImportAs::Topology(m.into()),
        Some(file) => ImportAs::Config(ModelConfig::named_or_file(file)?),
    };
    let ck = alexnet::interop::import(&a.file, &model, names).map_err(|e| e.in_file(&a.file))?;
    ck.save(&a.to)?;
    let o = Imported {
        out: a.to.display().to_string(),
        model: ck.config.name.clone(),
        params: ck.param_count(),
        classes: ck.classes.len(),
        input: ck.config.input,
    };
    a.common.emit(&o, |o| {
        println!(
            "imported {} ({} parameters, {} classes, input {}x{}) into {}",
            o.model,
            thousands(o.params),
            o.classes,
            o.input[1],
            o.input[2],
            o.out
        )
    })
}
