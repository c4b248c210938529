//! `/metrics` in Prometheus' text format: requests by route and status, request latency,
//! batch sizes, forward-pass time, images classified and their recent rate, queue depth,
//! predictions in progress.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// `images_per_second` is the images classified in this trailing window, divided by it.
const RATE_WINDOW: Duration = Duration::from_secs(10);

type Labels = Vec<(&'static str, String)>;

/// The server's counters; cheap to update from any thread.
pub struct ServeMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    batch_size: Histogram,
    forward: Histogram,
    images: Counter,
    rate: Gauge<f64, AtomicU64>,
    queue: Gauge,
    in_progress: Gauge,
    /// (when, images) of the forward passes in the last [`RATE_WINDOW`].
    recent: Mutex<VecDeque<(Instant, usize)>>,
    started: Instant,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl ServeMetrics {
    pub fn new(max_batch: usize) -> Self {
        let mut registry = Registry::with_prefix("alexnet");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let doublings = (max_batch.max(1) as f64).log2().ceil() as u16 + 1;
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, doublings));
        let forward = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let images = Counter::default();
        let rate = Gauge::<f64, AtomicU64>::default();
        let queue = Gauge::default();
        let in_progress = Gauge::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "Time from request to response, by route", latency.clone());
        registry.register("batch_size", "Images in each forward pass", batch_size.clone());
        registry.register("forward_seconds", "Time of each forward pass", forward.clone());
        registry.register("images", "Images classified", images.clone());
        registry.register("images_per_second", "Images classified per second over the last 10 s", rate.clone());
        registry.register("queue_depth", "Requests waiting for a forward pass", queue.clone());
        registry.register(
            "predictions_in_progress",
            "Predictions admitted and not yet answered (at most --max-queue)",
            in_progress.clone(),
        );
        let (recent, started) = (Mutex::new(VecDeque::new()), Instant::now());
        Self { registry, requests, latency, batch_size, forward, images, rate, queue, in_progress, recent, started }
    }

    /// One answered request on `route` (a route pattern, never a raw path: bounded labels).
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        self.requests.get_or_create(&vec![("route", route.to_string()), ("code", status.to_string())]).inc();
        self.latency.get_or_create(&vec![("route", route.to_string())]).observe(took.as_secs_f64());
    }

    /// One prediction admitted: counted in progress until the guard is dropped.
    pub fn admitted(&self) -> InProgress {
        self.in_progress.inc();
        InProgress(self.in_progress.clone())
    }

    pub fn queued(&self) {
        self.queue.inc();
    }

    pub fn dequeued(&self, n: usize) {
        self.queue.dec_by(n as i64);
    }

    /// A forward pass of `n` images that took `took`.
    pub fn batch_done(&self, n: usize, took: Duration) {
        self.batch_size.observe(n as f64);
        self.forward.observe(took.as_secs_f64());
        self.images.inc_by(n as u64);
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back((now, n));
        trim(&mut recent, now);
    }

    /// The text exposition, with the rate brought up to date.
    pub fn render(&self) -> String {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            trim(&mut recent, now);
            let window = RATE_WINDOW.min(now.duration_since(self.started)).as_secs_f64().max(1e-3);
            self.rate.set(recent.iter().map(|(_, n)| *n).sum::<usize>() as f64 / window);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A prediction counted in `predictions_in_progress`; dropping it (answered, refused or the
/// client gone) takes it off.
pub struct InProgress(Gauge);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Drops the forward passes older than [`RATE_WINDOW`] (on every pass, so the list stays short
/// whether or not anyone reads /metrics).
fn trim(recent: &mut VecDeque<(Instant, usize)>, now: Instant) {
    while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
        recent.pop_front();
    }
}
