//! The worker threads: how many by default, and the pool every command runs in.

/// Every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A pool of `threads` workers (the `--threads` of every command).
pub fn thread_pool(threads: usize) -> crate::Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}
