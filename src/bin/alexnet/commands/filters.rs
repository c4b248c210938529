//! `alexnet filters`: conv1's kernels as a picture (the paper's Figure 3).

use crate::common::Common;
use alexnet::Checkpoint;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    weights: PathBuf,
    #[arg(long, default_value = "conv1.png")]
    out: PathBuf,
    /// Pixels per kernel pixel.
    #[arg(long, default_value_t = 3)]
    zoom: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Drawn {
    out: String,
    kernels: usize,
    size: [usize; 2],
    towers: usize,
    /// Per tower, the mean fraction of kernel energy off the grey axis (0 grey, 2/3 random).
    chromatic: Vec<f64>,
}

pub fn exec(a: Args) -> Result<i32> {
    let ck = Checkpoint::load(&a.weights)?;
    let w = ck.params.first().context("the checkpoint holds no parameters")?;
    if w.shape.len() != 4 || w.shape[1] != 3 {
        bail!("{} has shape {:?}; expected a first convolution over RGB [M, 3, K, K]", w.name, w.shape);
    }
    let towers = ck.config.towers();
    alexnet::files::check_writable(&a.out).with_context(|| a.out.display().to_string())?;
    alexnet::plot::filter_grid(&w.data, w.shape[0], w.shape[2], towers, a.zoom, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let chromatic = alexnet::plot::tower_chromatic(&w.data, w.shape[0], w.shape[2], towers);
    let o = Drawn {
        out: a.out.display().to_string(),
        kernels: w.shape[0],
        size: [w.shape[2], w.shape[3]],
        towers,
        chromatic,
    };
    a.common.emit(&o, |o| {
        println!("wrote {} ({} kernels {}x{}, {} row block(s))", o.out, o.kernels, o.size[0], o.size[1], o.towers);
        let c: Vec<String> = o.chromatic.iter().map(|c| format!("{c:.3}")).collect();
        println!(
            "colour (fraction of kernel energy off the grey axis; random weights ~0.667), per tower: {}",
            c.join(", ")
        )
    })
}
