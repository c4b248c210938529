//! `alexnet features`: every image's last-hidden-layer activations (fc7's 4096 values in the
//! paper's net), with file names and labels, as safetensors.

use crate::common::{BadImages, Common, decode_folder};
use alexnet::Checkpoint;
use alexnet::data::augment::Normalizer;
use alexnet::features::last_hidden_features;
use alexnet::interop::plain::write_plain;
use alexnet::tensor::NamedTensor;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// An image folder ROOT/<class>/<image>.
    #[arg(long)]
    data: PathBuf,
    /// Where to write `features [N, D]` (safetensors; metadata `files`, `labels`, `classes`).
    #[arg(long)]
    out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    decoding: BadImages,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Written {
    out: String,
    images: usize,
    dims: usize,
}

pub fn exec(a: Args) -> Result<i32> {
    let ck = Checkpoint::load(&a.weights)?;
    let (n, d) = a.common.pool()?.install(|| -> Result<_> {
        let data = decode_folder(&a.data, ck.config.data.stored, &a.decoding)?;
        let mut net = ck.network()?;
        let norm = Normalizer::new(&ck.config.data, &ck.stats);
        let refs: Vec<&[u8]> = data.images.iter().map(Vec::as_slice).collect();
        let (f, d) = last_hidden_features(&mut net, &norm, &refs, a.batch);
        let files: Vec<String> = data.files.iter().map(|p| p.display().to_string()).collect();
        let meta = [
            ("files".to_string(), serde_json::to_string(&files)?),
            ("labels".to_string(), serde_json::to_string(&data.labels)?),
            ("classes".to_string(), serde_json::to_string(&data.classes)?),
        ];
        let t = NamedTensor::new("features", vec![files.len(), d], f);
        write_plain(&a.out, &[t], meta.into_iter().collect())
            .with_context(|| format!("writing {}", a.out.display()))?;
        Ok((files.len(), d))
    })?;
    let o = Written { out: a.out.display().to_string(), images: n, dims: d };
    a.common.emit(&o, |o| println!("wrote {} ({} images x {} activations)", o.out, o.images, o.dims))
}
