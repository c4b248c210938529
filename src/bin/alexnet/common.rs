//! What every command shares: the `--threads` and `--json` flags, output, progress bars.

use alexnet::model::VARIANTS;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Flags every command takes.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Common {
    /// Worker threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where packed image folders are cached (the commands that pack folders: train, eval, bench,
/// prepare).
#[derive(clap::Args)]
pub struct CacheDir {
    /// Directory of the packed-image caches, shared between runs (default: `.alexnet-cache`
    /// beside the data folder if writable, else ~/.cache/alexnet). A folder is decoded once
    /// per stored size and found here again while its files are unchanged.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl Common {
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(alexnet::threads::default_threads)
    }

    pub fn pool(&self) -> Result<rayon::ThreadPool> {
        Ok(alexnet::threads::thread_pool(self.threads())?)
    }

    /// Prints `value` as one JSON object with `--json`, else runs `text`.
    pub fn emit<T: serde::Serialize>(&self, value: &T, text: impl FnOnce(&T)) -> Result<i32> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            text(value);
        }
        Ok(0)
    }
}

/// `--model`'s value parser: a built-in variant's name, or a model file that exists (read and
/// checked when the command runs, so its errors name the file, the layer and the field).
pub fn model_name(s: &str) -> Result<String, String> {
    if VARIANTS.contains(&s) || std::path::Path::new(s).is_file() {
        Ok(s.to_string())
    } else {
        Err(format!("neither one of the known models ({}) nor a model file (.toml or .json)", VARIANTS.join(", ")))
    }
}

/// The embedded dataset, found relative to the source tree this binary was built from.
pub fn embedded(split: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini").join(split)
}

/// A bar `what [=====] n/N per-s ETA`, hidden under `--json` so stdout stays one object.
pub fn progress_bar(len: usize, what: &str, hidden: bool) -> indicatif::ProgressBar {
    let bar = alexnet::train::report::progress_bar(hidden, what);
    bar.set_length(len as u64);
    bar
}

/// `--skip-bad` and `--max-megapixels`, for commands that decode images.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct BadImages {
    /// Skip images that cannot be decoded (with a warning) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Refuse images whose header claims more pixels than this, before decoding them
    /// (decompression bombs) [default: 100].
    #[arg(long)]
    pub max_megapixels: Option<f64>,
}

impl BadImages {
    /// Sets the decoder's pixel limit for this process.
    pub fn apply_limit(&self) {
        if let Some(mp) = self.max_megapixels {
            alexnet::data::image::set_max_pixels((mp * 1e6) as u64);
        }
    }

    /// The policy for bad images; sets the pixel limit first, since decoding follows.
    pub fn policy(&self) -> alexnet::data::cache::OnBadImage {
        self.apply_limit();
        use alexnet::data::cache::OnBadImage;
        if self.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail }
    }
}

/// `--weights`, for commands that run trained networks.
#[derive(clap::Args, Clone, Debug)]
pub struct Weights {
    /// Checkpoint(s); several are an ensemble (softmax averaged).
    #[arg(long, required = true)]
    pub weights: Vec<PathBuf>,
    /// How the convolutions compute: auto (FFT on wide 5x5 stride-1 layers from 8 images,
    /// below that Winograd F(2x2) in f32 evaluation and im2col otherwise; Winograd on the 3x3
    /// stride-1 layers where it pays; im2col elsewhere), Winograd or FFT everywhere it
    /// applies, or im2col everywhere.
    #[arg(long, value_enum, default_value = "auto")]
    pub conv: alexnet::kernels::conv::ConvChoice,
    /// The precision of the products: f32, or bf16 operands with f32 sums (CPUs with
    /// AVX512-BF16; bf16-emulated runs its numerics slowly anywhere).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: alexnet::matmul::PrecisionChoice,
    /// Names for the checkpoint's classes, `wnid<TAB>name` per line (e.g. a dataset's
    /// classes.tsv): for weights trained on folders named by id only.
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
}

impl Weights {
    /// The checkpoints, computing as `--conv` and `--precision` say.
    pub fn load(&self) -> Result<alexnet::eval::Ensemble> {
        let precision = self.precision.resolve()?;
        let mut ens = alexnet::eval::Ensemble::load(&self.weights)?;
        for m in &mut ens.members {
            m.net.set_conv(self.conv);
            m.net.set_precision(precision);
        }
        if let Some(file) = &self.classes {
            let names = alexnet::data::folder::read_class_names(file)?;
            for c in &mut ens.classes {
                if let Some(name) = names.get(&c.id) {
                    c.name.clone_from(name);
                }
            }
        }
        Ok(ens)
    }
}

/// A folder's images decoded at `stored × stored`, with their paths and labels, in the
/// folder's order; bad files stop the command or, with `--skip-bad`, are left out.
pub struct DecodedFolder {
    pub classes: Vec<alexnet::data::ClassInfo>,
    pub files: Vec<PathBuf>,
    pub labels: Vec<u32>,
    pub images: Vec<Vec<u8>>,
}

pub fn decode_folder(root: &Path, stored: usize, bad: &BadImages) -> Result<DecodedFolder> {
    let folder = alexnet::data::ImageFolder::scan(root, None)?;
    let (mut files, mut labels, mut images) = (Vec::new(), Vec::new(), Vec::new());
    decode_images(&folder.items, stored, bad, &mut |path, label, img| {
        files.push(path.to_path_buf());
        labels.push(label);
        images.push(img);
    })?;
    if images.is_empty() {
        anyhow::bail!("{}: no image could be decoded", root.display());
    }
    Ok(DecodedFolder { classes: folder.classes, files, labels, images })
}

/// Decodes `items` at `stored × stored` in order with the decoding flags (the pixel limit,
/// `--skip-bad`), handing each image with its path and label to `keep`.
pub fn decode_images(
    items: &[(PathBuf, u32)],
    stored: usize,
    bad: &BadImages,
    keep: &mut dyn FnMut(&Path, u32, Vec<u8>),
) -> Result<()> {
    alexnet::data::cache::decode_each(items, stored, bad.policy(), &|_| {}, &mut |path, label, img| {
        keep(path, label, img);
        Ok(())
    })?;
    Ok(())
}

/// A training run's images as `--held-out RUN_DIR` takes them: its configuration, its training
/// images and the images it held out.
pub struct HeldOut {
    pub cfg: alexnet::train::TrainConfig,
    pub train: std::sync::Arc<alexnet::data::PackedImages>,
    pub train_indices: Vec<u32>,
    pub val: alexnet::data::ValSet,
}

/// Opens the run in `run` for weights that take `stored`-pixel images; a run stored at another
/// size, or one that held nothing out, is an error naming it. `cache_dir`: where its folders'
/// caches are, when not where the run packed them.
pub fn open_held_out(run: &Path, stored: usize, cache_dir: Option<&Path>, quiet: bool) -> Result<HeldOut> {
    use alexnet::train::{SplitUse, TrainConfig, open_splits};
    let mut cfg = TrainConfig::of_run(run)?;
    cfg.cache_dir = cache_dir.map(Path::to_path_buf).or(cfg.cache_dir);
    if cfg.model.data.stored != stored {
        anyhow::bail!(
            "the run in {} stores its images at {}x{0}, these weights need {stored}x{stored}",
            run.display(),
            cfg.model.data.stored
        );
    }
    let splits = open_splits(&cfg, SplitUse::Evaluate, quiet)?;
    let Some(val) = splits.val else {
        anyhow::bail!("{}: the run held out no images (no --val, --val-split 0)", run.display());
    };
    Ok(HeldOut { cfg, train: splits.train, train_indices: splits.train_indices, val })
}
