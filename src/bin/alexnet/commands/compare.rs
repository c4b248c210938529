//! `alexnet compare`: one value of several runs against epochs, as a PNG and/or JSON, with the
//! first epoch at which each run reached `--threshold`: how the paper's Figure 1 measures "six
//! times faster" (epochs to 25% training error, ReLU against tanh).

use crate::common::Common;
use alexnet::train::{EpochMetrics, read_metrics};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Run folders, each with its metrics.jsonl.
    #[arg(long = "run", required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Legend names of the runs, in their order (default: the folders' names).
    #[arg(long = "label", num_args = 1..)]
    labels: Vec<String>,
    /// The value compared.
    #[arg(long, value_enum, default_value_t = Metric::ValTop1Error)]
    metric: Metric,
    /// Report the first epoch at which each run's value is at or below this (e.g. 0.25).
    #[arg(long)]
    threshold: Option<f64>,
    /// The plot (PNG).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    title: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Metric {
    TrainLoss,
    TrainTop1Error,
    ValLoss,
    ValTop1Error,
    ValTop5Error,
}

impl Metric {
    fn of(self, m: &EpochMetrics) -> Option<f64> {
        match self {
            Metric::TrainLoss => Some(m.train_loss),
            Metric::TrainTop1Error => Some(m.train_top1_error),
            Metric::ValLoss => m.val_loss,
            Metric::ValTop1Error => m.val_top1_error,
            Metric::ValTop5Error => m.val_top5_error,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Metric::TrainLoss => "training loss",
            Metric::TrainTop1Error => "training top-1 error",
            Metric::ValLoss => "validation loss",
            Metric::ValTop1Error => "validation top-1 error",
            Metric::ValTop5Error => "validation top-5 error",
        }
    }
}

#[derive(serde::Serialize)]
struct Run {
    run: String,
    label: String,
    epochs: usize,
    last: Option<f64>,
    best: Option<f64>,
    /// First epoch (1-based) whose value is at or below the threshold.
    first_epoch_at_threshold: Option<usize>,
}

#[derive(serde::Serialize)]
struct Compared {
    metric: Metric,
    threshold: Option<f64>,
    runs: Vec<Run>,
    plot: Option<String>,
}

pub fn exec(a: Args) -> Result<i32> {
    if !a.labels.is_empty() && a.labels.len() != a.runs.len() {
        bail!("{} --label for {} --run: give one per run or none", a.labels.len(), a.runs.len());
    }
    let mut runs = Vec::new();
    let mut lines = Vec::new();
    for (i, dir) in a.runs.iter().enumerate() {
        let path = dir.join("metrics.jsonl");
        let metrics = read_metrics(&path).with_context(|| format!("{}: not a run's metrics", path.display()))?;
        let pts: Vec<(f64, f64)> = metrics
            .iter()
            .filter_map(|m| a.metric.of(m).filter(|v| v.is_finite()).map(|v| ((m.epoch + 1) as f64, v)))
            .collect();
        if pts.is_empty() {
            bail!("{}: no {} in any epoch", path.display(), a.metric.label());
        }
        let label = a.labels.get(i).cloned().unwrap_or_else(|| {
            dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
        });
        runs.push(Run {
            run: dir.display().to_string(),
            label: label.clone(),
            epochs: metrics.len(),
            last: pts.last().map(|p| p.1),
            best: pts.iter().map(|p| p.1).reduce(f64::min),
            first_epoch_at_threshold: a.threshold.and_then(|t| pts.iter().find(|p| p.1 <= t).map(|p| p.0 as usize)),
        });
        lines.push((label, pts));
    }
    if let Some(p) = &a.out {
        alexnet::files::check_writable(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let title = a.title.clone().unwrap_or_else(|| a.metric.label().to_string());
        alexnet::plot::compare_curves(&lines, a.metric.label(), &title, a.threshold, p)
            .with_context(|| p.display().to_string())?;
    }
    let out = Compared {
        metric: a.metric,
        threshold: a.threshold,
        runs,
        plot: a.out.as_ref().map(|p| p.display().to_string()),
    };
    a.common.emit(&out, |c| {
        for r in &c.runs {
            let reached = match (c.threshold, r.first_epoch_at_threshold) {
                (Some(t), Some(e)) => format!("; at or below {t} from epoch {e}"),
                (Some(t), None) => format!("; not at {t} within {} epochs", r.epochs),
                _ => String::new(),
            };
            let v = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.4}"));
            println!("{}: {} epochs, last {}, best {}{reached}", r.label, r.epochs, v(r.last), v(r.best));
        }
        if let Some(p) = &c.plot {
            println!("wrote {p}");
        }
    })
}
