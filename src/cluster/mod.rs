//! The processes one training run is spread over: data-parallel training (each process takes
//! its share of every global batch, the gradients are averaged across processes before the
//! update, so every process holds the same weights) needs only the few collectives of
//! [`Collective`]. One process is [`Single`]; `mpirun -np N alexnet train ...` (built with the
//! `mpi` feature) is [`mpi::MpiWorld`], on Open MPI through the `mpi` crate.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub mod exchange;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod ring;
pub mod threads;
pub mod towers;
mod watchdog;

pub use exchange::{ExchangeOptions, GradDtype, GradExchange};
pub use towers::TowerNetwork;
use watchdog::Watch;

/// The collectives of data-parallel training. Every process calls each one in the same order;
/// each returns the same result on every process.
pub trait Collective: Send + Sync {
    /// This process's number, `0..size`.
    fn rank(&self) -> usize;
    /// Processes in the run.
    fn size(&self) -> usize;
    /// Element-wise sum over all processes, in place.
    fn sum_f32(&self, buf: &mut [f32]);
    /// Element-wise sum over all processes, in place.
    fn sum_f64(&self, buf: &mut [f64]);
    /// Element-wise maximum over all processes, in place.
    fn max_f64(&self, buf: &mut [f64]);
    /// Every process's `send` (all of one length), concatenated in rank order into `recv`.
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]);
    /// Sends `send` to process `to` while receiving `recv` (as many values) from process `from`:
    /// the step of a ring all-reduce ([`ring`]).
    fn send_recv_u16(&self, send: &[u16], to: usize, recv: &mut [u16], from: usize);
    /// Ends every process of the run with `code`: what a process that fails alone must do,
    /// since the others would wait for it in their next collective for ever.
    fn abort(&self, code: i32) -> !;
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn max_f64(&self, _: &mut [f64]) {}
    fn send_recv_u16(&self, send: &[u16], _: usize, recv: &mut [u16], _: usize) {
        recv.copy_from_slice(send)
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) {
        recv.copy_from_slice(send)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The run's processes, shared by whatever needs them (one process unless told otherwise),
/// with the watchdog that ends a run whose collectives stop answering.
#[derive(Clone)]
pub struct Cluster(Arc<dyn Collective>, Arc<Watch>);

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new(Single)
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cluster(rank {} of {})", self.rank(), self.size())
    }
}

impl Cluster {
    pub fn new(c: impl Collective + 'static) -> Self {
        Cluster(Arc::new(c), Arc::new(Watch::default()))
    }
    /// From now on, a collective that waits longer than `timeout` for the other processes (one
    /// hangs, or died without its launcher noticing) ends this process with an error, and with
    /// it the run (`mpirun` stops the others when one exits with an error). Off until armed:
    /// rank 0 may pack a data cache for an hour while the others wait.
    pub fn arm_watchdog(&self, timeout: Duration) {
        if self.size() > 1 {
            watchdog::arm(&self.1, timeout, self.rank(), self.size());
        }
    }
    pub fn rank(&self) -> usize {
        self.0.rank()
    }
    pub fn size(&self) -> usize {
        self.0.size()
    }
    /// Rank 0: the process that writes the run folder and reports.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }
    pub fn sum_f32(&self, buf: &mut [f32]) {
        if self.size() > 1 {
            let _w = self.1.enter("an all-reduce of gradients");
            self.0.sum_f32(buf)
        }
    }
    pub fn sum_f64(&self, buf: &mut [f64]) {
        if self.size() > 1 {
            let _w = self.1.enter("an all-reduce");
            self.0.sum_f64(buf)
        }
    }
    /// The largest of every process's `x`.
    pub fn max(&self, x: f64) -> f64 {
        let mut v = [x];
        if self.size() > 1 {
            let _w = self.1.enter("an all-reduce");
            self.0.max_f64(&mut v);
        }
        v[0]
    }
    /// See [`Collective::all_gather_f32`]; `recv` holds `size` times `send`.
    pub fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(recv.len(), send.len() * self.size(), "all-gather: the receiving buffer's size");
        let _w = self.1.enter("an all-gather");
        self.0.all_gather_f32(send, recv)
    }
    /// See [`Collective::send_recv_u16`].
    pub fn send_recv_u16(&self, send: &[u16], to: usize, recv: &mut [u16], from: usize) {
        let _w = self.1.enter("a ring exchange of gradients");
        self.0.send_recv_u16(send, to, recv, from)
    }
    /// Ends every process of the run (see [`Collective::abort`]).
    pub fn abort(&self, code: i32) -> ! {
        self.0.abort(code)
    }
    /// Waits until every process is here, off the watchdog's clock (a wait for rank 0's
    /// writing, which can take long on a slow disk).
    pub fn barrier_unwatched(&self) {
        if self.size() > 1 {
            self.0.max_f64(&mut [0.0]);
        }
    }
    /// Whether any process says yes.
    pub fn any(&self, yes: bool) -> bool {
        self.max(if yes { 1.0 } else { 0.0 }) > 0.0
    }
}

/// This process's share of an epoch's `order` for global batches of `batch` images over `size`
/// processes: image `rank·batch/size ..` of every whole batch, in order (a partial last batch is
/// left out, as one process leaves it out). `batch` must be a multiple of `size`.
pub fn shard(order: &[u32], batch: usize, rank: usize, size: usize) -> Vec<u32> {
    let per = batch / size;
    order.chunks_exact(batch).flat_map(|b| b[rank * per..(rank + 1) * per].iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_whole_batches() {
        let order: Vec<u32> = (0..10).rev().collect();
        assert_eq!(shard(&order, 4, 0, 2), [9, 8, 5, 4]);
        assert_eq!(shard(&order, 4, 1, 2), [7, 6, 3, 2]);
        assert_eq!(shard(&order, 4, 0, 1), [9, 8, 7, 6, 5, 4, 3, 2]);
    }
}
