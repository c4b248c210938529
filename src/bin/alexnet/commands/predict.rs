//! `alexnet predict`: the most probable classes of a few images.

use crate::common::{Common, Weights};
use alexnet::eval::{Prediction, top_k};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: Weights,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Classes to list per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Average the paper's ten crops.
    #[arg(long)]
    ten_crop: bool,
    /// Network inputs per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Predictions {
    predictions: Vec<Prediction>,
}

pub fn exec(a: Args) -> Result<i32> {
    let predictions = a.common.pool()?.install(|| -> Result<Vec<Prediction>> {
        let mut ens = a.weights.load()?;
        let decoded: Vec<Vec<u8>> =
            a.images.iter().map(|p| alexnet::data::image::load_square(p, ens.stored)).collect::<Result<_, _>>()?;
        let refs: Vec<&[u8]> = decoded.iter().map(|v| v.as_slice()).collect();
        let probs = ens.probabilities(&refs, a.ten_crop, a.batch);
        Ok(a.images
            .iter()
            .zip(top_k(&probs, &ens.classes, a.top))
            .map(|(p, top)| Prediction { image: p.display().to_string(), top })
            .collect())
    })?;
    a.common.emit(&Predictions { predictions }, |o| {
        for p in &o.predictions {
            println!("{}", p.image);
            for c in &p.top {
                println!("  {:6.2}%  {} ({})", 100.0 * c.probability, c.name, c.id);
            }
        }
    })
}
