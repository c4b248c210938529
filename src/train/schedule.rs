//! Learning-rate schedules, all in one place: the paper's drop on a plateau of the validation
//! error, a fixed step schedule, and cosine decay over the run.

use super::state::TrainState;
use serde::{Deserialize, Serialize};

/// How the learning rate changes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// The paper: divide by `1/factor` when the validation error has not improved for `patience`
    /// epochs, at most `max_drops` times.
    Plateau { patience: usize, factor: f32, max_drops: usize },
    /// Multiply by `factor` every `every` epochs.
    Step { every: usize, factor: f32 },
    /// Cosine from the initial lr down to `min_lr` over the run.
    Cosine { min_lr: f32 },
}

/// The paper's plateau schedule: divide by 10 ("when the validation error rate stopped improving",
/// here after 3 epochs without improvement; the paper gives no number), three times.
pub const PAPER_PATIENCE: usize = 3;
pub const PAPER_FACTOR: f32 = 0.1;
pub const PAPER_MAX_DROPS: usize = 3;
/// Epochs between drops of the step schedule.
pub const DEFAULT_STEP_EVERY: usize = 30;

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Plateau { patience: PAPER_PATIENCE, factor: PAPER_FACTOR, max_drops: PAPER_MAX_DROPS }
    }
}

/// The schedules by name, for the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ScheduleKind {
    Plateau,
    Step,
    Cosine,
}

impl Schedule {
    /// The schedule of `kind`, with the parameters the others ignore.
    pub fn of_kind(
        kind: ScheduleKind,
        patience: usize,
        factor: f32,
        max_drops: usize,
        step_every: usize,
        lr: f32,
    ) -> Self {
        match kind {
            ScheduleKind::Plateau => Schedule::Plateau { patience, factor, max_drops },
            ScheduleKind::Step => Schedule::Step { every: step_every, factor },
            ScheduleKind::Cosine => Schedule::Cosine { min_lr: lr * 1e-3 },
        }
    }

    /// The learning rate for `epoch` of `epochs`, starting from `base` (plateau: the state's).
    pub fn lr_at(&self, base: f32, state: &TrainState, epoch: usize, epochs: usize) -> f32 {
        match *self {
            Schedule::Plateau { .. } => state.lr,
            Schedule::Step { every, factor } => base * factor.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { min_lr } => {
                let t = epoch as f32 / epochs.max(1) as f32;
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }

    /// After an epoch's score is recorded: the plateau schedule drops the lr if it has waited
    /// long enough. Returns the new lr when it changed.
    pub fn after_epoch(&self, state: &mut TrainState) -> Option<f32> {
        let Schedule::Plateau { patience, factor, max_drops } = *self else { return None };
        if state.epochs_without_improvement < patience || state.lr_drops >= max_drops {
            return None;
        }
        state.lr *= factor;
        state.lr_drops += 1;
        state.epochs_without_improvement = 0;
        Some(state.lr)
    }
}
