//! Dynamic batching: requests from many connections go into one queue, and one worker thread,
//! which owns the networks, runs whatever has gathered as a single forward pass (as Triton's
//! and TorchServe's batchers do).
//!
//! The policy: the worker takes the oldest request, then everything already queued, up to
//! `max_batch`; if the batch is not full and other requests are on their way (their bodies
//! read, their images being decoded: [`Arrivals`]), it waits for them until the oldest request
//! has waited `max_wait`. While a forward pass runs, new requests queue up, so under
//! load batches fill by themselves; a lone request never waits and gets batch-1 latency.

use super::metrics::ServeMetrics;
use crate::eval::Ensemble;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How requests are gathered into forward passes.
#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// The most images in one forward pass (1: no batching).
    pub max_batch: usize,
    /// How long the oldest request may wait for others to join it.
    pub max_wait: Duration,
    /// Requests admitted at once (being read, decoded, queued or computed); more are refused
    /// (503) rather than piling up. Also the queue's capacity.
    pub max_queue: usize,
    /// Average the paper's ten crops instead of the centre crop.
    pub ten_crop: bool,
}

/// One image's answer: its class probabilities, and the batch it was computed in.
#[derive(Debug)]
pub struct Answer {
    pub probabilities: Vec<f32>,
    /// Images in the forward pass that computed this one.
    pub batch: usize,
    /// Time in the queue before its forward pass began.
    pub queued: Duration,
    /// Time of the forward pass.
    pub forward: Duration,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Refusal {
    /// The queue is full.
    Busy,
    /// The server is shutting down, or the worker is gone.
    Closed,
    /// The forward pass failed (a bug: the worker caught a panic).
    Failed(String),
}

/// Requests whose bodies are read and whose images are not yet queued (being decoded): the ones
/// worth waiting for, soon there. (A body still arriving is not counted: a slow client would
/// make every batch wait.) Hold an [`Arrival`] while preparing a request.
#[derive(Default)]
pub struct Arrivals(AtomicUsize);

/// One request on its way to the queue; counted until dropped.
pub struct Arrival<'a>(&'a Arrivals);

impl Arrivals {
    pub fn arrive(&self) -> Arrival<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Arrival(self)
    }

    fn on_their_way(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Job {
    /// `stored × stored` HWC RGB bytes.
    image: Vec<u8>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Answer, Refusal>>,
}

/// The queue's sending end and the worker thread; dropping it (or [`Batcher::close`]) lets the
/// worker finish what is queued and stop.
pub struct Batcher {
    tx: Mutex<Option<SyncSender<Job>>>,
    metrics: Arc<ServeMetrics>,
    /// Requests being prepared; see the module's doc.
    pub arrivals: Arc<Arrivals>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Batcher {
    /// Starts the worker, which runs `ensemble` on `pool`'s threads, after one forward pass of
    /// a full batch of grey images: the networks' buffers then have their largest size from the
    /// start (memory stays flat from then on), and the first requests are not the slow ones.
    pub fn start(
        mut ensemble: Ensemble,
        pool: rayon::ThreadPool,
        opts: BatchOptions,
        metrics: Arc<ServeMetrics>,
    ) -> crate::Result<Self> {
        let grey = vec![128u8; ensemble.stored * ensemble.stored * 3];
        let batch: Vec<&[u8]> = vec![grey.as_slice(); opts.max_batch.max(1)];
        pool.install(|| one_pass(&mut ensemble, &batch, opts.ten_crop));
        let (tx, rx) = sync_channel(opts.max_queue.max(1));
        let (m, arrivals) = (metrics.clone(), Arc::new(Arrivals::default()));
        let a = arrivals.clone();
        let worker = std::thread::Builder::new()
            .name("alexnet-batcher".into())
            .spawn(move || pool.install(|| work(ensemble, rx, opts, &m, &a)))
            .map_err(|e| crate::Error::Invalid(format!("cannot start the batching thread: {e}")))?;
        Ok(Self { tx: Mutex::new(Some(tx)), metrics, arrivals, worker: Mutex::new(Some(worker)) })
    }

    /// Queues one image (`stored × stored` HWC RGB) and waits for its probabilities; `arrival`
    /// ends as the image is queued.
    pub async fn classify(&self, image: Vec<u8>, arrival: Arrival<'_>) -> Result<Answer, Refusal> {
        let (reply, answer) = oneshot::channel();
        let job = Job { image, enqueued: Instant::now(), reply };
        // Before the send: the worker must not wait for this request itself.
        drop(arrival);
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let Some(tx) = tx.as_ref() else { return Err(Refusal::Closed) };
            match tx.try_send(job) {
                Ok(()) => self.metrics.queued(),
                Err(TrySendError::Full(_)) => return Err(Refusal::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(Refusal::Closed),
            }
        }
        answer.await.unwrap_or(Err(Refusal::Closed))
    }

    /// Whether the worker thread is still there to answer (it stops only on [`Batcher::close`]
    /// or a panic outside a forward pass).
    pub fn is_running(&self) -> bool {
        self.worker.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|w| !w.is_finished())
    }

    /// Stops taking requests, lets the worker answer what is queued, and waits for it.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// The worker: gather, run, answer, until the queue's sender is gone.
fn work(mut ensemble: Ensemble, rx: Receiver<Job>, opts: BatchOptions, metrics: &ServeMetrics, arrivals: &Arrivals) {
    while let Some(batch) = gather(&rx, &opts, metrics, arrivals) {
        let started = Instant::now();
        let images: Vec<&[u8]> = batch.iter().map(|j| j.image.as_slice()).collect();
        // A panic in a kernel is a bug, but it must cost these requests, not the server.
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one_pass(&mut ensemble, &images, opts.ten_crop)));
        let forward = started.elapsed();
        let n = images.len();
        drop(images);
        metrics.batch_done(n, forward);
        let classes = ensemble.classes.len();
        match run {
            Ok(probs) => {
                for (job, p) in batch.into_iter().zip(probs.chunks(classes)) {
                    let answer =
                        Answer { probabilities: p.to_vec(), batch: n, queued: started - job.enqueued, forward };
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(panic) => {
                let why = panic_message(&panic);
                for job in batch {
                    let _ = job.reply.send(Err(Refusal::Failed(why.clone())));
                }
            }
        }
    }
}

/// The probabilities of `images` from one forward pass of them all (ten network inputs each
/// with `ten_crop`).
fn one_pass(ensemble: &mut Ensemble, images: &[&[u8]], ten_crop: bool) -> Vec<f32> {
    let crops = if ten_crop { 10 } else { 1 };
    ensemble.probabilities(images, ten_crop, images.len() * crops)
}

/// The next batch: the oldest request, what is already queued, and, while others are on their
/// way, what arrives before the oldest has waited `max_wait`; `None` once the queue is closed
/// and empty.
fn gather(rx: &Receiver<Job>, opts: &BatchOptions, metrics: &ServeMetrics, arrivals: &Arrivals) -> Option<Vec<Job>> {
    loop {
        let first = rx.recv().ok()?;
        // (`serve` bounds max_wait; a far-off deadline is "no deadline".)
        let deadline = first.enqueued.checked_add(opts.max_wait).unwrap_or(first.enqueued + Duration::from_secs(3600));
        let mut batch = vec![first];
        while batch.len() < opts.max_batch {
            if let Ok(job) = rx.try_recv() {
                batch.push(job);
                continue;
            }
            let now = Instant::now();
            if now >= deadline || arrivals.on_their_way() == 0 {
                break;
            }
            // Poll in short waits: the request on its way may fail to arrive (a bad image).
            let wait = (deadline - now).min(Duration::from_micros(250));
            match rx.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.dequeued(batch.len());
        // Requests whose client is gone are not worth a forward pass.
        batch.retain(|j| !j.reply.is_closed());
        if !batch.is_empty() {
            return Some(batch);
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the forward pass panicked".into())
}
