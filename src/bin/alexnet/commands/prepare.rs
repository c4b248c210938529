//! `alexnet prepare`: pack a folder once into the compact image cache: the
//! shared cache that `train`, `eval` and `bench` then find (default), or a file of its own
//! (`--out`), which `--data FILE` takes.

use crate::common::{BadImages, CacheDir, Common, progress_bar};
use alexnet::data::cache;
use alexnet::data::source::{self, Packing};
use alexnet::data::{CacheStore, DataStats, ImageFolder, PackedImages};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    data: PathBuf,
    /// Write the cache to this file instead of the shared cache directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stored image side (the paper: 256; the cifar model: 32).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Class names, `wnid<TAB>name` per line.
    #[arg(long)]
    classes: Option<PathBuf>,
    /// The labels of a flat --data folder (ILSVRC-2012's validation set as it ships):
    /// LOC_val_solution.csv, or `FILE WNID` lines.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// JPEG quality of images stored re-encoded (those larger than --size), 1-100 (default 90;
    /// with --out only: the shared cache always uses the default).
    #[arg(long, value_name = "Q", requires = "out")]
    jpeg_quality: Option<u8>,
    /// Re-encode every image at --size, even those at or below it (to measure what a quality
    /// costs on a set whose photos are all small); with --out only.
    #[arg(long, requires = "out")]
    reencode: bool,
    #[command(flatten)]
    bad: BadImages,
    #[command(flatten)]
    cache: CacheDir,
    #[command(flatten)]
    common: Common,
}

#[derive(serde::Serialize)]
struct Prepared {
    out: String,
    images: usize,
    classes: usize,
    size: usize,
    skipped: Vec<String>,
    /// False when the shared cache already held this folder, unchanged: nothing was decoded.
    packed: bool,
    seconds: f64,
    images_per_s: f64,
    stats: DataStats,
}

pub fn exec(a: Args) -> Result<i32> {
    let o = match &a.out {
        Some(out) => {
            if a.cache.cache_dir.is_some() {
                anyhow::bail!("--out names the file itself: --cache-dir would change nothing");
            }
            to_file(&a, out)?
        }
        None => to_store(&a)?,
    };
    a.common.emit(&o, |o| {
        let s = &o.stats;
        let skipped = if o.skipped.is_empty() { String::new() } else { format!(", skipped {}", o.skipped.len()) };
        if !o.packed {
            println!(
                "{} is up to date: {} images of {} classes at {size}x{size}",
                o.out,
                o.images,
                o.classes,
                size = o.size
            );
            return;
        }
        println!(
            "packed {} images of {} classes at {size}x{size} into {} in {:.1}s ({:.0} images/s){skipped}",
            o.images,
            o.classes,
            o.out,
            o.seconds,
            o.images_per_s,
            size = o.size
        );
        println!(
            "channel mean {:.1?}  std {:.1?}  RGB eigenvalues (0-1 scale) {:.4?}",
            s.channel_mean, s.channel_std, s.eigval
        );
    })
}

/// Packs the folder into `out`, always.
fn to_file(a: &Args, out: &Path) -> Result<Prepared> {
    let folder = ImageFolder::scan_labelled(&a.data, a.labels.as_deref(), a.classes.as_deref())?;
    let bar = progress_bar(folder.items.len(), "decoding", a.common.json);
    let src = std::fs::canonicalize(&a.data).unwrap_or(a.data.clone()).display().to_string();
    let how =
        cache::StoredAs { size: a.size, quality: a.jpeg_quality.unwrap_or(cache::JPEG_QUALITY), reencode: a.reencode };
    // A file stored otherwise than the shared cache stores folders carries no key, so it is
    // never taken for the folder's shared cache.
    let key = if how == cache::StoredAs::at(a.size) {
        alexnet::data::store::content_key(&a.data, &folder.items, &folder.classes, a.size)?
    } else {
        String::new()
    };
    let origin = cache::Origin { source: &src, key: &key };
    let report = a.common.pool()?.install(|| {
        cache::write_cache(out, &folder.items, folder.classes.clone(), how, origin, a.bad.policy(), &|d| {
            bar.set_position(d as u64)
        })
    })?;
    bar.finish_and_clear();
    let packed = PackedImages::open(out)?;
    Ok(Prepared {
        out: out.display().to_string(),
        images: report.images,
        classes: packed.classes.len(),
        size: a.size,
        skipped: report.skipped,
        packed: true,
        seconds: report.seconds,
        images_per_s: report.images_per_s,
        stats: packed.stats.clone(),
    })
}

/// Packs the folder into the shared cache unless it is there already, unchanged.
fn to_store(a: &Args) -> Result<Prepared> {
    if !a.data.is_dir() {
        anyhow::bail!("{}: prepare packs an image folder; this is not one", a.data.display());
    }
    let store = CacheStore::resolve(a.cache.cache_dir.as_deref(), &a.data);
    let how = Packing {
        size: a.size,
        class_names: a.classes.as_deref(),
        labels: a.labels.as_deref(),
        on_bad: a.bad.policy(),
        store: &store,
        legacy: None,
    };
    let bar = progress_bar(0, "decoding", a.common.json);
    let decoded = AtomicUsize::new(0);
    let t0 = Instant::now();
    let packed = a.common.pool()?.install(|| {
        source::open(&a.data, &how, &|d, t| {
            decoded.store(t, Ordering::Relaxed);
            bar.set_length(t as u64);
            bar.set_position(d as u64);
        })
    })?;
    bar.finish_and_clear();
    let (seconds, total) = (t0.elapsed().as_secs_f64(), decoded.into_inner());
    let file = source::cache_file(&a.data, &how).unwrap_or_else(|| a.data.clone());
    Ok(Prepared {
        out: file.display().to_string(),
        images: packed.count,
        classes: packed.classes.len(),
        size: a.size,
        skipped: packed.skipped.clone(),
        packed: total > 0,
        seconds,
        images_per_s: total as f64 / seconds.max(1e-9),
        stats: packed.stats.clone(),
    })
}
