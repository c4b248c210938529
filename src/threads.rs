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

/// A pool of `threads` workers (the `--threads` of every command).
pub fn thread_pool(threads: usize) -> crate::Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}
