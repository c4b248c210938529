//! `alexnet eval`: top-1 and top-5 error of one network or an ensemble on a data set.

use crate::common::{BadImages, CacheDir, Common, HeldOut, Weights, open_held_out, progress_bar};
use alexnet::data::source::{self, Packing};
use alexnet::data::{CacheStore, ClassInfo, PackedImages, class_map};
use alexnet::eval::evaluate;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: Weights,
    /// An image folder, a prepared cache or an IDX file.
    #[arg(long, required_unless_present = "held_out", conflicts_with = "held_out")]
    data: Option<PathBuf>,
    /// Evaluate on the images the training run in this folder held out (its --val, or its
    /// --val-split of --data, the same images its validation used).
    #[arg(long, value_name = "RUN_DIR")]
    held_out: Option<PathBuf>,
    /// Average the paper's ten crops (corners, centre, and their mirror images).
    #[arg(long)]
    ten_crop: bool,
    /// Network inputs per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[command(flatten)]
    bad: BadImages,
    /// The labels of a flat --data folder (ILSVRC-2012's validation set as it ships):
    /// LOC_val_solution.csv, or `FILE WNID` lines.
    #[arg(long, value_name = "FILE", requires = "data")]
    labels: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheDir,
    #[command(flatten)]
    common: Common,
}

pub fn exec(a: Args) -> Result<i32> {
    let r = a.common.pool()?.install(|| -> Result<_> {
        let mut ens = a.weights.load()?;
        let (images, idx, map) = match (&a.held_out, &a.data) {
            (Some(run), _) => held_out(run, &ens.classes, ens.stored, a.cache.cache_dir.as_deref(), a.common.json)?,
            (None, Some(data)) => {
                let images = open_eval_data(data, a.labels.as_deref(), ens.stored, &a)?;
                let map = class_map(&images.classes, &ens.classes).with_context(|| data.display().to_string())?;
                let idx: Vec<u32> = (0..images.count as u32).collect();
                (Arc::new(images), idx, map)
            }
            (None, None) => bail!("give --data or --held-out"),
        };
        if idx.is_empty() {
            bail!("no images to evaluate");
        }
        let bar = progress_bar(idx.len(), "evaluating", a.common.json);
        let r = evaluate(&mut ens.classifiers(), &images, &idx, &map, a.ten_crop, a.batch, &|d| {
            bar.set_position(d as u64)
        })?;
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

/// The held-out images of the run in `run`: the packed images, their indices, and the map of
/// their classes onto the network's.
fn held_out(
    run: &Path,
    net_classes: &[ClassInfo],
    stored: usize,
    cache_dir: Option<&Path>,
    quiet: bool,
) -> Result<(Arc<PackedImages>, Vec<u32>, Vec<usize>)> {
    let HeldOut { train, val: v, .. } = open_held_out(run, stored, cache_dir, quiet)?;
    let to_net = class_map(&train.classes, net_classes)
        .with_context(|| format!("the run in {} has other classes than these weights", run.display()))?;
    let map = v.class_map.iter().map(|&c| to_net[c]).collect();
    Ok((v.images, v.indices, map))
}

/// Evaluation data: a folder is packed into (or found in) the shared cache, read an image at a
/// time, so a 50,000-image validation set does not have to fit in memory and a second
/// evaluation of the same folder packs nothing.
fn open_eval_data(data: &Path, labels: Option<&Path>, stored: usize, a: &Args) -> Result<PackedImages> {
    let store = CacheStore::resolve(a.cache.cache_dir.as_deref(), data);
    let how = Packing { size: stored, class_names: None, labels, on_bad: a.bad.policy(), store: &store, legacy: None };
    let bar = progress_bar(0, "decoding", a.common.json);
    let r = source::open(data, &how, &|d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    });
    bar.finish_and_clear();
    Ok(r?)
}
