//! `alexnet serve`: classification over HTTP, with dynamic batching.
//!
//! ```text
//! POST /v1/predict[?top=K]  image bytes (image/jpeg, image/png, application/octet-stream) or a
//!                           multipart form with one file → {"top": [...], "server_ms": ...}
//! GET  /v1/model            name, classes, parameters, input pipeline, batching
//! GET  /v1/filters.png      conv1's kernels as a grid
//! GET  /healthz             {"status": "ok"}
//! GET  /metrics             Prometheus text format
//! GET  /                    a page: drop an image, see the top five
//! ```
//!
//! Connections are served by hyper on tokio through axum's router, at most `max_connections`
//! at once. A prediction is admitted only while fewer than `max_queue` are in progress (503
//! otherwise); its body is read with a size limit and a time limit, decoded on tokio's blocking
//! threads with the pixel limit, `decoders` at a time, and handed to the [`batcher`]: one
//! thread that owns the networks and runs whatever requests have gathered as one forward pass. Errors are JSON `{"error": ...}` with a 4xx status (5xx
//! only for the server's own faults); none takes the server down. The shutdown future (SIGTERM,
//! Ctrl-C) stops accepting, lets the requests in flight finish, then returns.

pub mod api;
pub mod batcher;
pub mod metrics;

use crate::data::ClassInfo;
use crate::error::{Error, Result};
use crate::eval::Ensemble;
use batcher::{BatchOptions, Batcher};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics::ServeMetrics;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` can be told; [`Default`] is the command's defaults.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub batch: BatchOptions,
    /// The largest request body accepted (413 above).
    pub max_body: usize,
    /// Time allowed to send a request's headers, and again its body (408 after, for the body);
    /// also the time a write to a client may block before the connection is dropped.
    pub read_timeout: Duration,
    /// On shutdown, how long requests in flight may take to finish.
    pub drain_timeout: Duration,
    /// Open connections at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Images decoded at once (a 40-megapixel image takes a few hundred MB while it decodes).
    pub decoders: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            batch: BatchOptions { max_batch: 32, max_wait: Duration::from_millis(2), max_queue: 64, ten_crop: false },
            max_body: 8 << 20,
            read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            max_connections: 512,
            decoders: 2,
        }
    }
}

/// What `GET /v1/model` says.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// The model's name (its variant, or the model file's name).
    pub name: String,
    /// Networks whose softmax is averaged (an ensemble when more than one).
    pub members: usize,
    pub parameters: usize,
    pub classes: Vec<ClassInfo>,
    pub input: InputInfo,
    pub max_batch: usize,
    pub max_wait_ms: f64,
    pub max_body_bytes: usize,
    /// The first member's layer table, as `alexnet summary --json` gives it.
    pub summary: crate::model::Summary,
}

/// The input pipeline a request's image goes through.
#[derive(Clone, Debug, Serialize)]
pub struct InputInfo {
    /// Shorter side resized to this, then the centre square kept.
    pub stored: usize,
    /// The network's input side (the centre crop, or the ten crops).
    pub crop: usize,
    pub ten_crop: bool,
    pub normalize: crate::data::Normalize,
    pub max_megapixels: f64,
}

/// What the handlers share.
pub struct AppState {
    pub info: ModelInfo,
    /// conv1's kernels as a PNG (empty when the first layer is not an RGB convolution).
    pub filters_png: Vec<u8>,
    pub batcher: Batcher,
    pub metrics: Arc<ServeMetrics>,
    pub config: ServeConfig,
    /// One permit per request admitted to /v1/predict (`max_queue`), taken before its body is
    /// read: what the server holds in memory for requests is bounded.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// One permit per image being decoded (`decoders`).
    pub decoding: Arc<tokio::sync::Semaphore>,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Binds `config.addr` and starts the batching thread, which runs `ensemble` on `pool`.
    /// Must be called inside a tokio runtime.
    pub fn bind(ensemble: Ensemble, pool: rayon::ThreadPool, config: ServeConfig) -> Result<Self> {
        let std_listener = std::net::TcpListener::bind(config.addr)
            .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", config.addr)))?;
        std_listener.set_nonblocking(true).map_err(|e| Error::Invalid(format!("{}: {e}", config.addr)))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", config.addr)))?;
        let info = model_info(&ensemble, &config);
        let filters_png = filters_png(&ensemble);
        let metrics = Arc::new(ServeMetrics::new(config.batch.max_batch));
        let batcher = Batcher::start(ensemble, pool, config.batch, metrics.clone())?;
        let admission = Arc::new(tokio::sync::Semaphore::new(config.batch.max_queue.max(1)));
        let decoding = Arc::new(tokio::sync::Semaphore::new(config.decoders.max(1)));
        let state = AppState { info, filters_png, batcher, metrics, config, admission, decoding };
        Ok(Self { listener, state: Arc::new(state) })
    }

    /// The address actually bound (the port, when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains: no new connections, the requests in
    /// flight answered (for at most `drain_timeout`), the batching thread stopped.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let app = api::router(self.state.clone());
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        // Slow or silent clients: the headers must arrive within the read timeout.
        http.timer(TokioTimer::new()).header_read_timeout(self.state.config.read_timeout);
        let connections = Arc::new(tokio::sync::Semaphore::new(self.state.config.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            // A free connection slot first: at the limit, new connections wait in the backlog.
            let slot = tokio::select! {
                slot = connections.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            tokio::select! {
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    // A client that stops reading its answers must not hold its slot forever:
                    // hyper has no write timeout of its own.
                    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
                    stream.set_write_timeout(Some(self.state.config.read_timeout));
                    let service = TowerToHyperService::new(app.clone());
                    let io = TokioIo::new(Box::pin(stream));
                    let conn = graceful.watch(http.serve_connection(io, service));
                    tokio::spawn(async move {
                        let _ = conn.await;
                        drop(slot);
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        let drained = tokio::time::timeout(self.state.config.drain_timeout, graceful.shutdown()).await.is_ok();
        if !drained {
            eprintln!("serve: requests still in flight after {:?}; closing them", self.state.config.drain_timeout);
        }
        let state = self.state.clone();
        // Joining the worker blocks; not on the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || state.batcher.close()).await;
        Ok(())
    }
}

fn model_info(ens: &Ensemble, config: &ServeConfig) -> ModelInfo {
    let net = &ens.members[0].net;
    ModelInfo {
        name: net.config.name.clone(),
        members: ens.members.len(),
        parameters: ens.members.iter().map(|m| m.net.param_count()).sum(),
        classes: ens.classes.clone(),
        input: InputInfo {
            stored: ens.stored,
            crop: net.config.input[1],
            ten_crop: config.batch.ten_crop,
            normalize: net.config.data.normalize,
            max_megapixels: crate::data::image::max_pixels() as f64 / 1e6,
        },
        max_batch: config.batch.max_batch,
        max_wait_ms: config.batch.max_wait.as_secs_f64() * 1e3,
        max_body_bytes: config.max_body,
        summary: net.summary.clone(),
    }
}

/// conv1's kernels of the first member as a PNG grid, as `alexnet filters` draws them.
fn filters_png(ens: &Ensemble) -> Vec<u8> {
    match crate::plot::conv1_filters_png(&ens.members[0].net) {
        Some(Ok((png, _, _))) => png,
        _ => Vec::new(),
    }
}
