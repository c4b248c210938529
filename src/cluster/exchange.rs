//! The gradient exchange of a data-parallel step: each process's gradients, weighted by its
//! share of the global batch, summed over all processes, so that each takes the same update.
//!
//! As PyTorch DDP and Horovod do, the gradients go in buckets of about [`BUCKET_VALUES`] as
//! the backward pass completes them (the last layers first: for AlexNet fc8, fc7 and fc6,
//! 96% of the 244 MB, are ready after a fraction of the backward pass), and with `overlap` a
//! thread of its own all-reduces each bucket while the backward pass goes on through the
//! convolutions. (Open MPI does not progress a non-blocking all-reduce by itself, hence a
//! thread blocked in a plain one rather than `MPI_Iallreduce` and polling.) `--grad-dtype
//! bf16` halves the bytes on the wire with the ring of [`super::ring`].
//!
//! The buckets are the same whether or not they overlap the backward pass, so the overlap
//! changes when the sums happen, not what they are (tests/mpi.rs: equal weights bit for bit).
//! With more than two processes MPI may pick its reduction's algorithm, and so the order of an
//! element's sum, by the message's size: other buckets could round differently.

use super::{Cluster, ring};
use crate::model::Param;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A bucket is sent once it holds this many values (16 MB in f32; DDP's default is 25 MB).
/// Smaller buckets start sooner and pay more per-message latency.
pub const BUCKET_VALUES: usize = 4 << 20;

/// How gradients travel in the all-reduce (`--grad-dtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum GradDtype {
    /// MPI's all-reduce in f32: the sum one process would make, in another order.
    #[default]
    F32,
    /// Rounded to bf16 on the wire, summed in f32 ([`ring::sum_bf16`]): half the bytes.
    Bf16,
}

/// How a data-parallel run exchanges gradients and guards its collectives (`train` flags;
/// none of them matters to one process).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExchangeOptions {
    #[serde(default)]
    pub grad_dtype: GradDtype,
    /// All-reduce each bucket on a thread while the backward pass goes on (`false`: all of them
    /// after it, on the training thread).
    #[serde(default = "yes")]
    pub overlap: bool,
    /// A collective that waits this many seconds for the other processes ends the run
    /// (see [`Cluster::arm_watchdog`]).
    #[serde(default = "ten_minutes")]
    pub hang_timeout_s: f64,
}

fn yes() -> bool {
    true
}

fn ten_minutes() -> f64 {
    600.0
}

impl Default for ExchangeOptions {
    fn default() -> Self {
        ExchangeOptions { grad_dtype: GradDtype::F32, overlap: true, hang_timeout_s: ten_minutes() }
    }
}

/// A bucket: the values, and the `(parameter index, length)` runs they came from, in order.
struct Bucket {
    values: Vec<f32>,
    from: Vec<(usize, usize)>,
}

/// The exchange of one run's steps (see the module's doc). Per step: [`GradExchange::ready`]
/// from [`crate::model::Network::backward_with`]'s callback, then [`GradExchange::finish`].
pub struct GradExchange {
    cluster: Cluster,
    dtype: GradDtype,
    /// With overlap: the thread's inbox and outbox.
    worker: Option<(Sender<Bucket>, Receiver<Bucket>, JoinHandle<()>)>,
    filling: Bucket,
    /// Buckets sent, or held for `finish` without overlap.
    sent: Vec<Bucket>,
    share: f32,
}

impl GradExchange {
    pub fn new(cluster: Cluster, opts: &ExchangeOptions) -> Self {
        let worker = (opts.overlap && cluster.size() > 1).then(|| {
            let (to_worker, inbox) = channel::<Bucket>();
            let (outbox, from_worker) = channel::<Bucket>();
            let (c, dtype) = (cluster.clone(), opts.grad_dtype);
            let handle = std::thread::Builder::new()
                .name("grad-exchange".into())
                .spawn(move || {
                    for mut b in inbox {
                        all_reduce(&c, dtype, &mut b.values);
                        if outbox.send(b).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawning the gradient exchange thread");
            (to_worker, from_worker, handle)
        });
        GradExchange {
            cluster,
            dtype: opts.grad_dtype,
            worker,
            filling: Bucket { values: Vec::new(), from: Vec::new() },
            sent: Vec::new(),
            share: 1.0,
        }
    }

    /// Starts a step whose local gradients are of `share` of the global batch's images.
    pub fn begin(&mut self, share: f32) {
        self.share = share;
        self.sent.clear();
    }

    /// Takes a layer's finished gradients (parameters `first..` of the network's order).
    pub fn ready(&mut self, first: usize, params: &[Param]) {
        for (i, p) in params.iter().enumerate() {
            self.filling.values.extend(p.grad.iter().map(|g| g * self.share));
            self.filling.from.push((first + i, p.grad.len()));
        }
        if self.filling.values.len() >= BUCKET_VALUES {
            self.send();
        }
    }

    fn send(&mut self) {
        let b = std::mem::replace(&mut self.filling, Bucket { values: Vec::new(), from: Vec::new() });
        if b.values.is_empty() {
            return;
        }
        match &self.worker {
            Some((to_worker, ..)) => {
                self.sent.push(Bucket { values: Vec::new(), from: b.from.clone() });
                to_worker.send(b).expect("the gradient exchange thread ended");
            }
            None => self.sent.push(b),
        }
    }

    /// Ends the step: every bucket summed over the processes and written back into `params`
    /// (the network's parameters in order). Returns the time this thread waited for it.
    pub fn finish<'p>(&mut self, params: impl Iterator<Item = &'p mut Param>) -> Duration {
        self.send();
        let t = Instant::now();
        let mut done = Vec::with_capacity(self.sent.len());
        for b in std::mem::take(&mut self.sent) {
            done.push(match &self.worker {
                Some((_, from_worker, _)) => from_worker.recv().expect("the gradient exchange thread ended"),
                None => {
                    let mut b = b;
                    all_reduce(&self.cluster, self.dtype, &mut b.values);
                    b
                }
            });
        }
        let waited = t.elapsed();
        let mut params: Vec<&mut Param> = params.collect();
        for b in done {
            let mut at = 0;
            for (i, n) in b.from {
                params[i].grad.copy_from_slice(&b.values[at..at + n]);
                at += n;
            }
        }
        waited
    }
}

impl Drop for GradExchange {
    /// Ends the thread and waits for it: it holds the cluster, whose last holder finalises MPI,
    /// and a process that exits before that is an abnormal termination to `mpirun`.
    fn drop(&mut self) {
        if let Some((to_worker, from_worker, handle)) = self.worker.take() {
            drop((to_worker, from_worker));
            // Unwinding from a panic mid-step, the thread may wait in an all-reduce for ever;
            // the command aborts the run instead.
            if !std::thread::panicking() {
                let _ = handle.join();
            }
        }
    }
}

fn all_reduce(cluster: &Cluster, dtype: GradDtype, values: &mut [f32]) {
    match dtype {
        GradDtype::F32 => cluster.sum_f32(values),
        GradDtype::Bf16 => ring::sum_bf16(cluster, values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::threads;

    fn param(i: usize, n: usize, rank: usize) -> Param {
        let grad = (0..n).map(|j| ((i * 7 + j) % 1024) as f32 + rank as f32 * 0.5).collect();
        Param { name: format!("p{i}"), shape: vec![n], data: vec![0.0; n], grad, is_bias: false }
    }

    /// Buckets spanning several parameters, and parameters larger than a bucket, with and without
    /// the thread: every gradient
    /// is its share-weighted sum over the processes, written back where it came from.
    #[test]
    fn buckets_come_back_summed_in_place() {
        let sizes = [3, BUCKET_VALUES - 1, 5, BUCKET_VALUES + 2, 7];
        for overlap in [false, true] {
            let runs: Vec<_> = threads::members(2)
                .into_iter()
                .map(|m| {
                    std::thread::spawn(move || {
                        let rank = m.rank;
                        let opts = ExchangeOptions { overlap, ..Default::default() };
                        let mut ex = GradExchange::new(Cluster::new(m), &opts);
                        let mut params: Vec<Param> =
                            sizes.iter().enumerate().map(|(i, &n)| param(i, n, rank)).collect();
                        for _step in 0..2 {
                            ex.begin(0.5);
                            // The backward pass's order: last layers first, a layer's params together.
                            for first in [3, 2, 0] {
                                let end = if first == 3 {
                                    5
                                } else if first == 2 {
                                    3
                                } else {
                                    2
                                };
                                ex.ready(first, &params[first..end]);
                            }
                            ex.finish(params.iter_mut());
                            for (i, p) in params.iter().enumerate() {
                                for (j, &g) in p.grad.iter().enumerate().step_by(997) {
                                    assert_eq!(g, ((i * 7 + j) % 1024) as f32 + 0.25, "overlap {overlap}: p{i}[{j}]");
                                }
                            }
                            // The next step starts again from this rank's own gradients.
                            params = sizes.iter().enumerate().map(|(i, &n)| param(i, n, rank)).collect();
                        }
                    })
                })
                .collect();
            runs.into_iter().for_each(|h| h.join().unwrap());
        }
    }
}
