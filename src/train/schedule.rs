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
    /// Cosine, step by step, from the initial lr down to `min_lr` at the run's last step
    /// (`epochs` × batches per epoch).
    Cosine { min_lr: f32 },
    /// Cosine, step by step, from the initial lr down to `min_lr` over the steps that the
    /// measured throughput lets the run take within `--time-limit` (re-planned after every
    /// epoch from its real time, validation included): the best model in a fixed time.
    TimeCosine { min_lr: f32 },
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
    /// Cosine over the time `--time-limit` allows (needs it).
    TimeCosine,
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
            ScheduleKind::TimeCosine => Schedule::TimeCosine { min_lr: lr * 1e-3 },
        }
    }

    /// The schedule's name.
    pub fn kind(&self) -> ScheduleKind {
        match self {
            Schedule::Plateau { .. } => ScheduleKind::Plateau,
            Schedule::Step { .. } => ScheduleKind::Step,
            Schedule::Cosine { .. } => ScheduleKind::Cosine,
            Schedule::TimeCosine { .. } => ScheduleKind::TimeCosine,
        }
    }

    /// The learning rate at the start of `epoch`, from `base` (plateau: the state's; the
    /// per-step schedules set theirs before each step).
    pub fn lr_at(&self, base: f32, state: &TrainState, epoch: usize) -> f32 {
        match *self {
            Schedule::Plateau { .. } => state.lr,
            Schedule::Step { every, factor } => base * factor.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { .. } | Schedule::TimeCosine { .. } => state.lr,
        }
    }

    /// Whether the lr changes every step (else at epoch starts).
    pub fn per_step(&self) -> bool {
        matches!(self, Schedule::Cosine { .. } | Schedule::TimeCosine { .. })
    }

    /// Whether the run's length is planned from the time limit.
    pub fn timed(&self) -> bool {
        matches!(self, Schedule::TimeCosine { .. })
    }

    /// The lr for the state's next step: cosine over the run's `total_steps`, or the
    /// time-budget cosine over `planned_steps` (the initial lr until a plan exists); other
    /// schedules keep the epoch's lr.
    pub fn lr_at_step(&self, base: f32, state: &TrainState, total_steps: u64) -> f32 {
        let t = |end: u64| (state.step as f32 / end.max(1) as f32).min(1.0);
        match (*self, state.planned_steps) {
            (Schedule::Cosine { min_lr }, _) => cosine(base, min_lr, t(total_steps)),
            (Schedule::TimeCosine { min_lr }, Some(planned)) => cosine(base, min_lr, t(planned)),
            (Schedule::TimeCosine { .. }, None) => base,
            _ => state.lr,
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

/// `min + (base - min)·(1 + cos πt)/2`, for `t` in [0, 1].
fn cosine(base: f32, min_lr: f32, t: f32) -> f32 {
    min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f32::consts::PI * t).cos())
}

/// Steps a time budget allows: those already taken, plus as many as fit into the remaining
/// seconds at `seconds_per_step`, at most `max_steps` in all, rounded down to whole epochs of
/// `steps_per_epoch` (the run stops after the last whole epoch that fits, and the decay must
/// end there) but never before the end of the epoch in progress.
pub fn plan_steps(done: u64, remaining_s: f64, seconds_per_step: f64, max_steps: u64, steps_per_epoch: u64) -> u64 {
    let more = if seconds_per_step > 0.0 { (remaining_s.max(0.0) / seconds_per_step) as u64 } else { max_steps };
    let per = steps_per_epoch.max(1);
    let this_epoch_end = (done / per + u64::from(!done.is_multiple_of(per))) * per;
    let whole = done.saturating_add(more).min(max_steps) / per * per;
    whole.max(this_epoch_end).max(done.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_plans_end_on_whole_epochs() {
        // 10 steps an epoch, 0.5 s a step: 37 more steps fit after 10, so the plan is 40.
        assert_eq!(plan_steps(10, 18.5, 0.5, 1000, 10), 40);
        // Mid-epoch with no time left: at least the end of this epoch.
        assert_eq!(plan_steps(13, 0.0, 0.5, 1000, 10), 20);
        // At most max_steps.
        assert_eq!(plan_steps(10, 1e9, 0.5, 50, 10), 50);
        // Cosine over steps: the planned end is the minimum.
        let s = Schedule::Cosine { min_lr: 1e-5 };
        assert!((cosine(0.01, 1e-5, 1.0) - 1e-5).abs() < 1e-9);
        let state = TrainState { step: 0, ..TrainState::start(0.01) };
        assert!((s.lr_at_step(0.01, &state, 100) - 0.01).abs() < 1e-9);
    }
}
