//! The run's metrics log, `RUN_DIR/metrics.jsonl`: one JSON object per finished epoch, for
//! plotting (`curves.png` is drawn from it) and for people.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// One line of `metrics.jsonl`: an epoch's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: u64,
    pub lr: f32,
    pub train_loss: f64,
    pub train_top1_error: f64,
    pub val_loss: Option<f64>,
    pub val_top1_error: Option<f64>,
    pub val_top5_error: Option<f64>,
    /// Seconds this epoch took, and since the run started.
    pub epoch_seconds: f64,
    pub wall_seconds: f64,
    pub images_per_s: f64,
    /// Images per second the data loader made on its one thread this epoch: images over the
    /// seconds it spent making batches (its waits for the consumer excluded), while the step's
    /// threads shared the cores with it. Absent in runs from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader_images_per_s: Option<f64>,
    /// The part of the epoch (this process's share of it) the training step spent waiting for
    /// the loader's next batch: what data cost the run. Absent in runs from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_wait_fraction: Option<f64>,
    /// Data-parallel runs: the part of the training loop's time rank 0 spent waiting in the
    /// collectives (gradients averaged, loss summed, the stop decided), waits for slower
    /// processes included; an all-reduce overlapped with the backward pass counts only for the
    /// wait left after the backward pass. Absent with one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_fraction: Option<f64>,
}

/// Reads `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| std::io::Error::other(e.to_string())))
        .collect()
}

/// Replaces `metrics.jsonl` with `lines` (atomically: a temporary file renamed over it).
pub fn write_metrics(path: &Path, lines: &[EpochMetrics]) -> std::io::Result<()> {
    let mut text = String::new();
    for m in lines {
        text += &serde_json::to_string(m).map_err(|e| std::io::Error::other(e.to_string()))?;
        text.push('\n');
    }
    crate::files::write_atomic(path, text.as_bytes())
}

/// Appends one line to `metrics.jsonl`.
pub fn append_metrics(path: &Path, m: &EpochMetrics) -> std::io::Result<()> {
    let line = serde_json::to_string(m).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{line}")
}
