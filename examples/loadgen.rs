//! A load generator for `alexnet serve`, bounded in count and time and refusing any host but
//! this machine's loopback: C clients, each on one kept-alive connection, POST images in turn
//! and time each answer.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080 --concurrency 8 \
//!     --requests 400 --seconds 60 IMAGE...
//! ```
//!
//! Prints one JSON object: requests answered 200, errors (other statuses and failed
//! connections, by kind), requests/s, latency percentiles, mean batch size reported by the server.

use clap::Parser;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The server, on 127.0.0.1, ::1 or localhost only.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Clients sending at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests in all (the run stops at this count or after --seconds).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// The most seconds to run.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Images to send, in turn.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct Report {
    concurrency: usize,
    ok: usize,
    errors: std::collections::BTreeMap<String, usize>,
    seconds: f64,
    requests_per_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_batch: f64,
}

fn main() -> Result<(), String> {
    let a = Args::parse();
    let host = a.url.strip_prefix("http://").and_then(|r| r.split('/').next()).unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if !matches!(name, "127.0.0.1" | "[::1]" | "localhost") {
        return Err(format!("{}: the load generator only talks to this machine (127.0.0.1, [::1], localhost)", a.url));
    }
    let bodies: Vec<(Vec<u8>, &str)> = a
        .images
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let png = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
            Ok((bytes, if png { "image/png" } else { "image/jpeg" }))
        })
        .collect::<Result<_, String>>()?;
    let url = format!("{}/v1/predict", a.url.trim_end_matches('/'));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(f64, Result<usize, String>)>> = Mutex::new(Vec::new());
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(a.seconds);
    std::thread::scope(|s| {
        for _ in 0..a.concurrency.max(1) {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= a.requests || Instant::now() >= stop {
                        break;
                    }
                    let (body, ct) = &bodies[i % bodies.len()];
                    let t = Instant::now();
                    let outcome = send(&agent, &url, ct, body);
                    mine.push((t.elapsed().as_secs_f64() * 1e3, outcome));
                }
                results.lock().unwrap().extend(mine);
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let results = results.into_inner().unwrap();
    let mut latencies: Vec<f64> = results.iter().filter(|r| r.1.is_ok()).map(|r| r.0).collect();
    latencies.sort_by(f64::total_cmp);
    let batches: Vec<usize> = results.iter().filter_map(|r| r.1.as_ref().ok().copied()).collect();
    let mut errors = std::collections::BTreeMap::new();
    for (_, r) in &results {
        if let Err(e) = r {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
    }
    let pct = |q: f64| {
        if latencies.is_empty() { f64::NAN } else { latencies[((latencies.len() - 1) as f64 * q).round() as usize] }
    };
    let report = Report {
        concurrency: a.concurrency,
        ok: latencies.len(),
        errors,
        seconds,
        requests_per_s: latencies.len() as f64 / seconds,
        p50_ms: pct(0.5),
        p90_ms: pct(0.9),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        mean_batch: batches.iter().sum::<usize>() as f64 / batches.len().max(1) as f64,
    };
    println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    Ok(())
}

/// One request: the batch size the server reports, or what went wrong.
fn send(agent: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Result<usize, String> {
    let mut r =
        agent.post(url).header("Content-Type", content_type).send(body).map_err(|e| format!("transport: {e}"))?;
    let status = r.status().as_u16();
    let v: serde_json::Value = r.body_mut().read_json().map_err(|e| format!("{status}: unreadable body: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {}", v["error"].as_str().unwrap_or("")));
    }
    Ok(v["batch"].as_u64().unwrap_or(0) as usize)
}
