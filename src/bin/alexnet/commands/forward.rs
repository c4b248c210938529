//! `alexnet forward`: the network on a raw input tensor, logits out (for comparisons with
//! other implementations).

use crate::common::Common;
use alexnet::interop::plain::{read_plain, write_plain};
use alexnet::tensor::NamedTensor;
use alexnet::{Checkpoint, Mode};
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    /// safetensors file holding the input tensor.
    #[arg(long)]
    input: PathBuf,
    /// Name of the input tensor in that file.
    #[arg(long, default_value = "input")]
    name: String,
    /// Where to write `logits [N, classes]` (safetensors).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Forwarded {
    out: String,
    logits: [usize; 2],
}

pub fn exec(a: Args) -> Result<i32> {
    let ck = Checkpoint::load(&a.weights)?;
    let x = read_plain(&a.input, &a.name)?;
    if x.shape.len() != 4 || x.shape[1..] != ck.config.input[..] {
        bail!(
            "{}: `{}` has shape {:?}, the model takes [N, {:?}]",
            a.input.display(),
            a.name,
            x.shape,
            ck.config.input
        );
    }
    let mut net = ck.network()?;
    let n = x.shape[0];
    let logits = a.common.pool()?.install(|| net.forward(&x.data, n, Mode::Eval).to_vec());
    write_plain(&a.out, &[NamedTensor::new("logits", vec![n, net.classes()], logits)], Default::default())?;
    let o = Forwarded { out: a.out.display().to_string(), logits: [n, net.classes()] };
    a.common.emit(&o, |o| println!("wrote {} (logits {:?})", o.out, o.logits))
}
