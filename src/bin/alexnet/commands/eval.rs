//! `alexnet eval`: top-1 and top-5 error of one network or an ensemble on a data set.

use crate::common::{BadImages, Common, Weights, progress_bar};
use alexnet::data::cache::OnBadImage;
use alexnet::data::{PackedImages, class_map, source};
use alexnet::eval::evaluate;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: Weights,
    /// An image folder, a prepared cache or an IDX file.
    #[arg(long)]
    data: PathBuf,
    /// Average the paper's ten crops (corners, centre, and their mirror images).
    #[arg(long)]
    ten_crop: bool,
    /// Network inputs per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    bad: BadImages,
    #[command(flatten)]
    common: Common,
}

pub fn exec(a: Args) -> Result<i32> {
    let r = a.common.pool()?.install(|| -> Result<_> {
        let mut ens = a.weights.load()?;
        let images = open_eval_data(&a.data, ens.stored, a.bad.policy(), a.common.json)?;
        let map = class_map(&images.classes, &ens.classes).with_context(|| a.data.display().to_string())?;
        if images.count == 0 {
            bail!("{}: no images to evaluate", a.data.display());
        }
        let idx: Vec<u32> = (0..images.count as u32).collect();
        let bar = progress_bar(idx.len(), "evaluating", a.common.json);
        let r =
            evaluate(&mut ens.classifiers(), &images, &idx, &map, a.ten_crop, a.batch, &|d| bar.set_position(d as u64));
        bar.finish_and_clear();
        Ok(r)
    })?;
    let n = a.weights.weights.len();
    a.common.emit(&r, |r| {
        println!(
            "{} images, {}{}: top-1 error {:.2}%, top-5 error {:.2}% (loss {:.4})",
            r.images,
            if a.ten_crop { "ten crops" } else { "centre crop" },
            if n > 1 { format!(", ensemble of {n}") } else { String::new() },
            100.0 * r.top1_error,
            100.0 * r.top5_error,
            r.loss
        )
    })
}

/// Evaluation data: a folder is packed into a memory-mapped file in a private temporary
/// directory, removed at once (the map stays valid), so a 50,000-image validation set does
/// not have to fit in memory.
fn open_eval_data(data: &Path, stored: usize, on_bad: OnBadImage, quiet: bool) -> Result<PackedImages> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let bar = progress_bar(0, "decoding", quiet);
    let r = source::open(data, stored, None, &tmp.path().join(format!("eval-{stored}.bin")), on_bad, &|d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    });
    bar.finish_and_clear();
    Ok(r?)
}
