//! `alexnet prepare`: decode and resize a folder once into a memory-mapped uint8 cache.

use crate::common::{BadImages, Common, progress_bar};
use alexnet::data::cache;
use alexnet::data::{DataStats, ImageFolder, PackedImages};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Stored image side (the paper: 256; the cifar model: 32).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Class names, `wnid<TAB>name` per line.
    #[arg(long)]
    classes: Option<PathBuf>,
    #[command(flatten)]
    bad: BadImages,
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
    seconds: f64,
    images_per_s: f64,
    stats: DataStats,
}

pub fn exec(a: Args) -> Result<i32> {
    let folder = ImageFolder::scan(&a.data, a.classes.as_deref())?;
    let bar = progress_bar(folder.items.len(), "decoding", a.common.json);
    let on_bad = a.bad.policy();
    let src = std::fs::canonicalize(&a.data).unwrap_or(a.data.clone()).display().to_string();
    let report = a.common.pool()?.install(|| {
        cache::write_cache(&a.out, &folder.items, folder.classes.clone(), a.size, &src, on_bad, &|d| {
            bar.set_position(d as u64)
        })
    })?;
    bar.finish_and_clear();
    let packed = PackedImages::open(&a.out)?;
    let o = Prepared {
        out: a.out.display().to_string(),
        images: report.images,
        classes: packed.classes.len(),
        size: a.size,
        skipped: report.skipped,
        seconds: report.seconds,
        images_per_s: report.images_per_s,
        stats: packed.stats.clone(),
    };
    a.common.emit(&o, |o| {
        let s = &o.stats;
        let skipped = if o.skipped.is_empty() { String::new() } else { format!(", skipped {}", o.skipped.len()) };
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
