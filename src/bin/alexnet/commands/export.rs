//! `alexnet export`: a checkpoint as ONNX and/or safetensors with torchvision's key names.

use crate::common::Common;
use alexnet::Checkpoint;
use alexnet::interop::{onnx, plain, torchvision_named};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// Write ONNX (opset 17) here.
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Write safetensors with torchvision's key names here (our config as metadata).
    #[arg(long)]
    safetensors: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Exported {
    onnx: Option<String>,
    safetensors: Option<String>,
    model: String,
    input: [usize; 3],
}

pub fn exec(a: Args) -> Result<i32> {
    if a.onnx.is_none() && a.safetensors.is_none() {
        bail!("nothing to do: give --onnx FILE and/or --safetensors FILE");
    }
    let ck = Checkpoint::load(&a.weights)?;
    if let Some(path) = &a.onnx {
        let bytes = onnx::export(&ck).context("ONNX export")?;
        alexnet::files::check_writable(path).with_context(|| path.display().to_string())?;
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.safetensors {
        let named = torchvision_named(&ck)?;
        let meta = [
            ("alexnet.config".to_string(), serde_json::to_string(&ck.config)?),
            ("alexnet.classes".to_string(), serde_json::to_string(&ck.classes)?),
        ];
        plain::write_plain(path, &named, meta.into_iter().collect())?;
    }
    let shown = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let o = Exported {
        onnx: shown(&a.onnx),
        safetensors: shown(&a.safetensors),
        model: ck.config.name.clone(),
        input: ck.config.input,
    };
    a.common.emit(&o, |o| {
        if let Some(p) = &o.onnx {
            println!("wrote {p} (ONNX opset 17, input [N, {}, {}, {}])", o.input[0], o.input[1], o.input[2]);
        }
        if let Some(p) = &o.safetensors {
            println!("wrote {p} (torchvision key names)");
        }
    })
}
