//! `alexnet predict`: the most probable classes of a few images.

use crate::common::{BadImages, Common, Weights};
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
    decoding: BadImages,
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
        a.decoding.apply_limit();
        let mut decoded = Vec::new();
        let mut names = Vec::new();
        for p in &a.images {
            match alexnet::data::image::load_square(p, ens.stored) {
                Ok(img) => {
                    decoded.push(img);
                    names.push(p.display().to_string());
                }
                Err(e) if a.decoding.skip_bad => eprintln!("warning: skipping {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        let refs: Vec<&[u8]> = decoded.iter().map(|v| v.as_slice()).collect();
        let probs = ens.probabilities(&refs, a.ten_crop, a.batch);
        Ok(names
            .into_iter()
            .zip(top_k(&probs, &ens.classes, a.top))
            .map(|(image, top)| Prediction { image, top })
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
