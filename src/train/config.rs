//! The whole configuration of a run, built from a [`Recipe`] (written to `RUN_DIR/config.json`,
//! read back by `--resume`).

use super::recipe::Recipe;
use super::schedule::Schedule;
use crate::data::AugmentOptions;
use crate::model::ModelConfig;
use crate::optim::SgdConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Training images: folder, cache file or IDX file.
    pub data: PathBuf,
    pub val: Option<PathBuf>,
    /// Fraction of `data` held out for validation when `val` is not given.
    pub val_split: f32,
    /// Seed of the held-out split, apart from `seed` so that runs of several seeds (an
    /// ensemble, a spread) hold out the same images. `None` (runs from before it existed):
    /// `seed`.
    #[serde(default)]
    pub split_seed: Option<u64>,
    pub class_names: Option<PathBuf>,
    pub model: ModelConfig,
    pub epochs: usize,
    pub batch: usize,
    pub sgd: SgdConfig,
    pub schedule: Schedule,
    pub seed: u64,
    pub threads: usize,
    pub out: PathBuf,
    /// Random crops, flips, PCA colour noise (flat in `config.json`).
    #[serde(flatten)]
    pub augment: AugmentOptions,
    /// Save RUN_DIR/last.safetensors every this many steps as well as every epoch (0: epochs only).
    pub checkpoint_every: u64,
    /// Stop after the last epoch that fits in this many minutes.
    pub time_limit_minutes: Option<f64>,
    pub skip_bad: bool,
    /// Validate with the ten-crop average instead of the centre crop.
    pub val_ten_crop: bool,
    /// The recipe the run started from (runs from before recipes existed: the paper's).
    #[serde(default = "recipe_of_old_runs")]
    pub recipe: Recipe,
    /// Epochs over which the learning rate ramps linearly up from 0 (0: none).
    #[serde(default)]
    pub warmup_epochs: f32,
    /// The warm-up is at most this share of the run's planned steps (the epochs', or with
    /// `--time-limit` those the measured throughput allows). Runs from before the bound: 1.
    #[serde(default = "no_warmup_bound")]
    pub warmup_max_fraction: f32,
    /// Threads of the data loader (`--loader-threads`). Not part of what the run computes: the
    /// batches are the same whatever their number, and a resume may change it.
    #[serde(default = "one")]
    pub loader_threads: usize,
    /// Where packed image folders are cached, shared between runs (`--cache-dir`; default:
    /// [`crate::data::CacheStore::resolve`]). Not part of what the run computes: a resume may
    /// name another.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The labels of a flat `val` folder (ILSVRC-2012's validation set as it ships:
    /// `LOC_val_solution.csv` or `FILE WNID` lines; [`crate::data::ilsvrc`]).
    #[serde(default)]
    pub val_labels: Option<PathBuf>,
    /// How the convolutions compute (`--conv`). Runs from before it computed by im2col and
    /// resume so, bit for bit.
    #[serde(default = "conv_of_old_runs")]
    pub conv: crate::kernels::conv::ConvChoice,
    /// The precision of the layers' matrix products (`--precision`); a resumed run may change it.
    #[serde(default)]
    pub precision: crate::matmul::PrecisionChoice,
    /// How a data-parallel run exchanges its gradients (`--grad-dtype`, `--no-grad-overlap`,
    /// `--hang-timeout`); a resumed run may change them.
    #[serde(default, flatten)]
    pub exchange: crate::cluster::ExchangeOptions,
    /// `--towers T`: the paper's split of the network over T processes, one tower each
    /// ([`crate::cluster::towers`]); 1: every process holds the whole network. A resumed run
    /// may change it (the towers compute the grouped network).
    #[serde(default = "one")]
    pub towers: usize,
}

fn conv_of_old_runs() -> crate::kernels::conv::ConvChoice {
    crate::kernels::conv::ConvChoice::Im2col
}

fn recipe_of_old_runs() -> Recipe {
    Recipe::Paper
}

fn no_warmup_bound() -> f32 {
    1.0
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    /// The default recipe on the `paper` model, `data` empty: set it.
    fn default() -> Self {
        Self::for_recipe(Recipe::Default, PathBuf::new(), ModelConfig::paper(), false)
    }
}

impl TrainConfig {
    /// The paper's recipe (section 5) on the `paper` model and `data`: batch 128, SGD with
    /// momentum 0.9 and weight decay 0.0005 at lr 0.01, divided by 10 on a plateau of the
    /// validation error (three times), 90 epochs, random crops, flips and PCA colour noise of
    /// σ 0.1; 10% of the data held out.
    pub fn paper(data: impl Into<PathBuf>) -> Self {
        Self::for_recipe(Recipe::Paper, data.into(), ModelConfig::paper(), false)
    }

    /// The configuration of the run in `dir` (its `config.json`), with `out` set to `dir`.
    pub fn of_run(dir: &std::path::Path) -> crate::Result<Self> {
        let path = dir.join("config.json");
        // config.json is small; a huge one is not ours.
        let bytes = crate::files::read_regular(&path, 16 << 20).map_err(|e| crate::Error::io(&path, e))?;
        let mut cfg: Self = serde_json::from_slice(&bytes)
            .map_err(|e| crate::Error::Invalid(format!("{}: not a run's config.json: {e}", path.display())))?;
        cfg.out = dir.to_path_buf();
        Ok(cfg)
    }

    /// `recipe` on `model` (adapted by the recipe) and `data`; `time_limited` picks the
    /// default recipe's time-budget schedule.
    pub fn for_recipe(recipe: Recipe, data: PathBuf, model: ModelConfig, time_limited: bool) -> Self {
        let sgd = SgdConfig::default();
        Self {
            data,
            val: None,
            val_split: 0.1,
            split_seed: Some(0),
            class_names: None,
            model: recipe.adapt_model(model),
            epochs: 90,
            batch: 128,
            schedule: recipe.schedule(sgd.lr, time_limited),
            sgd,
            seed: 0,
            threads: crate::threads::default_threads(),
            out: PathBuf::from("runs/paper"),
            augment: AugmentOptions::default(),
            checkpoint_every: 0,
            time_limit_minutes: None,
            skip_bad: false,
            val_ten_crop: false,
            recipe,
            warmup_epochs: recipe.warmup_epochs(),
            warmup_max_fraction: recipe.warmup_max_fraction(),
            loader_threads: 1,
            cache_dir: None,
            val_labels: None,
            conv: Default::default(),
            precision: Default::default(),
            exchange: Default::default(),
            towers: 1,
        }
    }
}
