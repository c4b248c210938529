//! The whole configuration of a run, with the paper's recipe as its defaults (written to
//! `RUN_DIR/config.json`, read back by `--resume`).

use super::schedule::Schedule;
use crate::data::AugmentOptions;
use crate::model::ModelConfig;
use crate::model::config::{Init, LayerSpec};
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
}

impl Default for TrainConfig {
    /// The paper's recipe (section 5) on the `paper` model: batch 128, SGD with momentum 0.9 and
    /// weight decay 0.0005 at lr 0.01, divided by 10 on a plateau of the validation error (three
    /// times), 90 epochs, random crops, flips and PCA colour noise of σ 0.1; 10% of the data
    /// held out. `data` is empty: set it.
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            val: None,
            val_split: 0.1,
            class_names: None,
            model: ModelConfig::paper(),
            epochs: 90,
            batch: 128,
            sgd: SgdConfig::default(),
            schedule: Schedule::default(),
            seed: 0,
            threads: crate::threads::default_threads(),
            out: PathBuf::from("runs/paper"),
            augment: AugmentOptions::default(),
            checkpoint_every: 0,
            time_limit_minutes: None,
            skip_bad: false,
            val_ten_crop: false,
        }
    }
}

impl TrainConfig {
    /// The paper's recipe on `data`.
    pub fn paper(data: impl Into<PathBuf>) -> Self {
        Self { data: data.into(), ..Self::default() }
    }
}

/// Model-level switches of a run: tanh for ReLU, another dropout probability, another init.
pub fn customise_model(mut m: ModelConfig, tanh: bool, dropout: Option<f32>, init: Option<Init>) -> ModelConfig {
    m = m.with_activation(tanh);
    if let Some(p) = dropout {
        for l in &mut m.layers {
            if let LayerSpec::Dropout { p: q } = l {
                *q = p;
            }
        }
    }
    if let Some(i) = init {
        m.init = i;
    }
    m
}
