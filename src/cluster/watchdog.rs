//! The watchdog of a data-parallel run. A process that dies is noticed by its launcher (`mpirun`
//! stops the job), but one that hangs (stopped, swapping, stuck in a driver) leaves the others
//! waiting in their next collective for ever. Each process therefore times its own collectives:
//! one that waits longer than the armed timeout ends this process with an error naming the
//! wait, and the launcher then ends the rest. The last checkpoint stays good: checkpoints are
//! written whole under a temporary name and renamed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Exit code of a process the watchdog ends.
pub const EXIT_HUNG: i32 = 3;

/// When this process entered the collective it is in, if any. One slot: at most one thread
/// is in a collective at a time (the gradient exchange's thread works between the backward
/// pass's start and `GradExchange::finish`, when the training thread calls none).
pub struct Watch {
    origin: Instant,
    /// Milliseconds after `origin` + 1 at which the current collective began; 0: in none.
    entered_ms: AtomicU64,
    /// What the current collective is, for the message.
    what: std::sync::Mutex<&'static str>,
    /// 0 until armed.
    timeout_ms: AtomicU64,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            origin: Instant::now(),
            entered_ms: AtomicU64::new(0),
            what: std::sync::Mutex::new(""),
            timeout_ms: AtomicU64::new(0),
        }
    }
}

/// Marks the collective as done when dropped.
pub struct InCollective<'a> {
    watch: &'a Watch,
    before: u64,
}

impl Drop for InCollective<'_> {
    fn drop(&mut self) {
        self.watch.entered_ms.store(self.before, Ordering::SeqCst);
    }
}

impl Watch {
    /// Marks the start of a collective described by `what` (a nested one keeps the outer start).
    pub fn enter(&self, what: &'static str) -> InCollective<'_> {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        let before = self.entered_ms.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst).err().unwrap_or(0);
        if before == 0 {
            *self.what.lock().unwrap_or_else(|e| e.into_inner()) = what;
        }
        InCollective { watch: self, before }
    }

    /// How long the current collective has waited, if one is under way.
    fn waited(&self) -> Option<Duration> {
        let entered = self.entered_ms.load(Ordering::SeqCst);
        (entered != 0).then(|| {
            let now = self.origin.elapsed().as_millis() as u64 + 1;
            Duration::from_millis(now.saturating_sub(entered))
        })
    }
}

/// Arms `watch` with `timeout` (re-arming changes the timeout), starting its thread the first
/// time. The thread ends with the watch.
pub fn arm(watch: &Arc<Watch>, timeout: Duration, rank: usize, size: usize) {
    let ms = timeout.as_millis().clamp(1, u64::MAX as u128) as u64;
    if watch.timeout_ms.swap(ms, Ordering::SeqCst) != 0 {
        return;
    }
    let weak: Weak<Watch> = Arc::downgrade(watch);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            loop {
                let Some(w) = weak.upgrade() else { return };
                let timeout = Duration::from_millis(w.timeout_ms.load(Ordering::SeqCst));
                if let Some(waited) = w.waited()
                    && waited > timeout
                {
                    let what = *w.what.lock().unwrap_or_else(|e| e.into_inner());
                    eprintln!(
                        "error in process {rank} of {size}: waited {:.0} s in {what} for the other processes \
                         (--hang-timeout {:.0}); one of them hangs or died. Ending the run; the last checkpoint \
                         is good, continue with --resume",
                        waited.as_secs_f64(),
                        timeout.as_secs_f64()
                    );
                    // Not MPI_Abort: another thread of this process is inside MPI, which a
                    // Serialized library must not be entered twice; and `_exit`, not `exit`,
                    // which would run the library's exit handlers beside that thread. The
                    // launcher sees the exit and ends the others.
                    // SAFETY: `_exit` ends the process at once; nothing is used after it.
                    unsafe { libc::_exit(EXIT_HUNG) };
                }
                drop(w);
                std::thread::sleep((timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)));
            }
        })
        .expect("spawning the watchdog thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_only_the_outer_collective() {
        let w = Watch::default();
        assert!(w.waited().is_none());
        {
            let _a = w.enter("outer");
            std::thread::sleep(Duration::from_millis(20));
            {
                let _b = w.enter("inner");
                assert!(w.waited().unwrap() >= Duration::from_millis(20));
                assert_eq!(*w.what.lock().unwrap(), "outer");
            }
            assert!(w.waited().is_some());
        }
        assert!(w.waited().is_none());
    }
}
