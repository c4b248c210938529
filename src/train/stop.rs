//! Stopping a run from outside: Ctrl-C in the CLI, a test that wants to interrupt at a given
//! step. The loop checks the handle after every step, saves a checkpoint and returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared between the loop and whoever may stop it; clones see the same flag.
#[derive(Clone, Debug, Default)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    /// Also stop once this many optimizer steps are done (tests of resuming).
    at_step: Option<u64>,
}

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle that also stops the run once `step` steps are done.
    pub fn at_step(step: u64) -> Self {
        Self { at_step: Some(step), ..Self::default() }
    }

    /// Asks the loop to stop after its current step. Returns whether it had been asked already.
    pub fn stop(&self) -> bool {
        self.flag.swap(true, Ordering::SeqCst)
    }

    /// Whether the loop should stop now, `steps` steps into the run.
    pub fn should_stop(&self, steps: u64) -> bool {
        self.flag.load(Ordering::SeqCst) || self.at_step.is_some_and(|s| steps >= s)
    }

    /// Whether a stop was asked for from outside (not only the step limit).
    pub fn interrupted(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}
