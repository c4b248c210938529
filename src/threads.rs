//! The worker threads: how many by default, and the pool every command runs in.

/// Every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f` with this thread's value of `key`, taken out for the call and put back after: a
/// buffer kept per thread is allocated (and its pages touched) once, not at every call; a nested
/// call on the same thread (a rayon task run while this one waits) finds the default and
/// allocates its own.
pub fn with_taken<T: Default, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    let mut value = key.with(|c| c.take());
    let r = f(&mut value);
    key.with(|c| c.replace(value));
    r
}

/// CPU seconds this process has used so far, all its threads together (`None` where the clock
/// is unavailable): over an interval, this divided by the wall time is how many cores were busy
/// (a profile's measure of how well a layer shares its work). Rayon's workers spin briefly
/// before they sleep, and that counts as busy.
pub fn process_cpu_seconds() -> Option<f64> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec that the call only writes.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

/// A pool of `threads` workers (the `--threads` of every command).
pub fn thread_pool(threads: usize) -> crate::Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}
