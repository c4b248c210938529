//! `alexnet serve`: the HTTP inference server (the API and its behaviour are documented in
//! the library's `serve` module).

use crate::common::Weights;
use alexnet::serve::batcher::BatchOptions;
use alexnet::serve::{ServeConfig, Server};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: Weights,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The most images in one forward pass (1: no batching).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_batch: u16,
    /// How long the oldest waiting request may wait for others to join its forward pass.
    #[arg(long, default_value_t = 2.0)]
    max_wait_ms: f64,
    /// Predictions in progress at once (being read, decoded, queued or computed); more get 503
    /// with Retry-After. With --max-body, bounds the memory that requests take.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_queue: u32,
    /// Open connections at once; more wait in the kernel's backlog until one closes.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// The largest request body, in bytes (413 above).
    #[arg(long, default_value_t = 8 << 20)]
    max_body: usize,
    /// Refuse images whose header claims more pixels than this, before decoding them (413).
    #[arg(long, default_value_t = 40.0)]
    max_megapixels: f64,
    /// Seconds a client has to send its headers, and again its body (408 after); a write to a
    /// client that blocks this long drops the connection.
    #[arg(long, default_value_t = 10.0)]
    read_timeout: f64,
    /// Seconds the requests in flight get to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Average the paper's ten crops (10x the work per image).
    #[arg(long)]
    ten_crop: bool,
    /// Threads of the forward pass (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// `s` seconds, within `[min, max]`.
fn seconds(s: f64, min: f64, max: f64, flag: &str) -> Result<Duration> {
    if !(min..=max).contains(&s) {
        anyhow::bail!("{flag} {s}: must be between {min} and {max}");
    }
    Ok(Duration::from_secs_f64(s))
}

pub fn exec(a: Args) -> Result<i32> {
    if a.max_megapixels.is_nan() || a.max_megapixels <= 0.0 {
        anyhow::bail!("--max-megapixels {}: must be above 0", a.max_megapixels);
    }
    alexnet::data::image::set_max_pixels((a.max_megapixels * 1e6) as u64);
    let threads = a.threads.unwrap_or_else(alexnet::threads::default_threads).max(1);
    let config = ServeConfig {
        addr: a.addr,
        batch: BatchOptions {
            max_batch: a.max_batch as usize,
            max_wait: seconds(a.max_wait_ms / 1e3, 0.0, 60.0, "--max-wait-ms / 1000")?,
            max_queue: a.max_queue as usize,
            ten_crop: a.ten_crop,
        },
        max_body: a.max_body,
        read_timeout: seconds(a.read_timeout, 0.001, 3600.0, "--read-timeout")?,
        drain_timeout: seconds(a.drain_timeout, 0.0, 3600.0, "--drain-timeout")?,
        max_connections: a.max_connections as usize,
        decoders: threads,
    };
    let pool = alexnet::threads::thread_pool(threads)?;
    let ensemble = a.weights.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Decoding runs on the blocking threads, `decoders` at a time; a few more for the rest.
        .max_blocking_threads(threads + 4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // The handlers first, so a signal sent as soon as "listening" is printed is caught.
        let stop = stop_signal()?;
        let server = Server::bind(ensemble, pool, config.clone())?;
        println!(
            "listening on http://{}/ (max batch {}, max wait {} ms); SIGTERM or Ctrl-C drains and stops",
            server.local_addr(),
            config.batch.max_batch,
            a.max_wait_ms
        );
        server.run(stop).await?;
        eprintln!("serve: stopped");
        Ok(0)
    })
}

/// SIGTERM or Ctrl-C, with both handlers installed now (not when first polled).
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("serve: stopping; answering the requests in flight");
    })
}
