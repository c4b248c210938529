//! `alexnet predict`: the most probable classes of a few images.

use crate::common::{BadImages, Common, Weights, decode_images};
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
        let items: Vec<(PathBuf, u32)> = a.images.iter().map(|p| (p.clone(), 0)).collect();
        let (mut decoded, mut names) = (Vec::new(), Vec::new());
        decode_images(&items, ens.stored, &a.decoding, &mut |path, _, img| {
            decoded.push(img);
            names.push(path.display().to_string());
        })?;
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
