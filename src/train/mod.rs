//! Training: a run's configuration (from a [`Recipe`]: the paper's or the default one), the loop in stages
//! ([`Trainer`]), learning-rate schedules, the resumable state, the metrics log, progress
//! reporting and the stop handle.
//!
//! One step is [`Network::train_step`](crate::Network::train_step): forward, loss, backward,
//! update. The loop around it feeds batches from the data pipeline and, at each epoch's end,
//! validates, schedules, checkpoints and logs.

pub mod config;
pub mod metrics;
pub mod recipe;
pub mod report;
pub mod schedule;
pub mod state;
pub mod stop;
pub mod tensorboard;
pub mod trainer;

pub use crate::data::{AugmentOptions, PcaSource};
pub use config::TrainConfig;
pub use metrics::{EpochMetrics, read_metrics};
pub use recipe::Recipe;
pub use schedule::{Schedule, ScheduleKind};
pub use state::TrainState;
pub use stop::StopHandle;
pub use trainer::{SplitUse, TrainOutcome, Trainer, open_splits};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Options of one invocation that are not part of the run (not in `config.json`).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub stop: StopHandle,
    /// No progress bar, no messages.
    pub quiet: bool,
    /// The processes sharing the run (data-parallel); one by default.
    pub cluster: crate::cluster::Cluster,
}

/// Trains as `cfg` says; with `resume`, continues the run whose checkpoint that is. Checks the
/// model first (a bad layer is named before anything is written), then writes
/// `cfg.out/config.json` and runs on a pool of `cfg.threads` threads.
pub fn train(cfg: &TrainConfig, resume: Option<&Checkpoint>, opts: &RunOptions) -> Result<TrainOutcome> {
    crate::model::plan(&cfg.model)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    if resume.is_none() && cfg.out.join("last.safetensors").exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a run: continue it with --resume {0}, or choose another --out",
            cfg.out.display()
        )));
    }
    if opts.cluster.is_root() {
        let config_path = cfg.out.join("config.json");
        let json = serde_json::to_string_pretty(cfg).map_err(|e| Error::Invalid(format!("config: {e}")))?;
        // Whole or not at all: the other processes of a resumed run may be reading it.
        crate::files::write_atomic(&config_path, json.as_bytes()).map_err(|e| Error::io(&config_path, e))?;
    }
    let (stop, cluster) = (opts.stop.clone(), opts.cluster.clone());
    crate::threads::thread_pool(cfg.threads)?.install(|| Trainer::new(cfg, resume, stop, cluster, opts.quiet)?.run())
}

/// The built-in variant whose input fits the images of `data` (a folder, a cache or an IDX
/// file; up to 64 images' headers read), and why, in words: what `train` uses when no model is
/// named. See [`crate::model::variant_for_side`].
pub fn fitting_variant(data: &std::path::Path) -> Result<(&'static str, String)> {
    Ok(match crate::data::source::image_sides(data, 64)? {
        Some(s) => (
            crate::model::variant_for_side(s.median_short),
            format!("the images' median shorter side is {} px, of {} looked at", s.median_short, s.sampled),
        ),
        None => ("paper", "no image's size could be read".to_string()),
    })
}

/// The next free `runs/<model>-N`.
pub fn default_run_dir(model: &str) -> PathBuf {
    (1..).map(|i| PathBuf::from(format!("runs/{model}-{i}"))).find(|p| !p.exists()).unwrap_or_default()
}
