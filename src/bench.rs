//! Throughput measurement on synthetic input: warm-up, then the median of timed iterations.
//!
//! FLOPs are counted as 2 per multiply-add of the convolutions and fully connected layers
//! (what the layer table lists); a training step counts 3× the forward pass (forward, input
//! gradient, weight gradient), the usual convention.

use crate::data::{Augment, LoaderOptions, TrainInput, permutation};
use crate::error::{Error, Result};
use crate::kernels::conv::{ConvAlgo, ConvChoice, F5_MIN_IMAGES_A_THREAD};
use crate::matmul::{Operand, PrecisionChoice, Threads, matmul_in};
use crate::model::{LayerKind, Mode, ModelConfig, Network};
use crate::optim::{Sgd, SgdConfig};
use crate::threads::thread_pool;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum BenchMode {
    /// Forward passes in evaluation mode.
    Infer,
    /// [`Network::train_step`]: forward, loss, backward, SGD update.
    Train,
    /// The machine's matrix-multiply peak (square f32 products), not a network: [`gemm_peak`].
    Gemm,
    /// The data loader alone (decoded cache -> augmented batches): [`loader_throughput`].
    Loader,
    /// The memory's read bandwidth and the least time one image can take: [`one_image_floor`].
    Memory,
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub mode: BenchMode,
    pub batch: usize,
    pub iters: usize,
    pub warmup: usize,
    pub threads: usize,
    pub profile: bool,
    /// How the convolutions compute (`--conv`).
    pub conv: ConvChoice,
    /// The precision of the products (`--precision`).
    pub precision: PrecisionChoice,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerProfile {
    pub name: String,
    /// A convolution's algorithm: `im2col`, or `winograd` with its tile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algo: Option<String>,
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// Achieved GFLOP/s of the forward (backward: 2× the forward's FLOPs), for conv and fc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backward_gflops: Option<f64>,
    /// Cores busy on average during the forward and the backward pass (the process's CPU time
    /// over wall time, out of the run's threads; absent where the CPU clock is unavailable,
    /// and the backward's in inference): below the thread count, a layer leaves cores idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_cores_busy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backward_cores_busy: Option<f64>,
}

/// The processor a figure was measured on: its name and the vector extensions the kernels
/// dispatch on at run time.
#[derive(Clone, Debug, Serialize)]
pub struct CpuInfo {
    /// `model name` of /proc/cpuinfo (e.g. "AMD EPYC"), or "unknown".
    pub model: String,
    /// `cpu family` and `model` numbers (/proc/cpuinfo): they tell Zen generations apart when
    /// the name does not (Zen 3: family 25 model 0-1; Zen 4: 25 model 17+; Zen 5: 26).
    pub family: Option<u32>,
    pub model_number: Option<u32>,
    pub avx2: bool,
    pub avx512f: bool,
    pub avx512_bf16: bool,
}

/// This machine's [`CpuInfo`].
pub fn cpu_info() -> CpuInfo {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    #[cfg(target_arch = "x86_64")]
    let (avx2, avx512f, avx512_bf16) = (
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("avx512f"),
        std::arch::is_x86_feature_detected!("avx512bf16"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (avx2, avx512f, avx512_bf16) = (false, false, false);
    CpuInfo {
        model: field("model name").unwrap_or_else(|| "unknown".into()),
        family: field("cpu family").and_then(|v| v.parse().ok()),
        model_number: field("model").and_then(|v| v.parse().ok()),
        avx2,
        avx512f,
        avx512_bf16,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub mode: BenchMode,
    pub batch: usize,
    pub threads: usize,
    pub conv: ConvChoice,
    pub precision: PrecisionChoice,
    pub cpu: CpuInfo,
    /// This run's matrix-multiply peak on the same threads ([`gemm_peak`] of 1024³ f32 products,
    /// measured before and after the network, the higher taken), GFLOP/s.
    pub gemm_peak_gflops: f64,
    /// `gflops / gemm_peak_gflops`, FLOPs counted as direct convolution does them: in f32, above
    /// 1 is faster than any f32 im2col implementation could be on this machine (bf16 runs are
    /// measured against the f32 peak too, so that the two compare).
    pub peak_fraction: f64,
    pub ms_per_iter: f64,
    pub img_per_s: f64,
    pub gflops: f64,
    /// Every timed iteration, in ms, in order.
    pub iter_ms: Vec<f64>,
    /// Peak resident memory of the process so far (Linux VmHWM), MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerProfile>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() { f64::NAN } else { s[s.len() / 2] }
}

/// Peak resident set size from /proc/self/status, in MiB (None off Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Times the network named by `model` in `cfg.mode`.
pub fn run(model: &ModelConfig, cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.batch == 0 || cfg.iters == 0 {
        return Err(Error::Invalid("batch and iters must be positive".into()));
    }
    if !matches!(cfg.mode, BenchMode::Infer | BenchMode::Train) {
        return Err(Error::Invalid(format!(
            "{:?} is not a network benchmark: see gemm_peak, loader_throughput",
            cfg.mode
        )));
    }
    let before = gemm_peak(1024, 5, cfg.threads, PrecisionChoice::F32)?.gflops;
    let mut report = thread_pool(cfg.threads)?.install(|| -> Result<BenchReport> {
        let mut net = Network::new(model.clone(), 0)?;
        net.set_conv(cfg.conv);
        let precision = cfg.precision.resolve()?;
        net.set_precision(precision);
        let classes = net.classes();
        let x = crate::rng::uniform_vec(cfg.batch * net.input_len(), 1);
        let labels: Vec<usize> = (0..cfg.batch).map(|i| i % classes).collect();
        let mut opt = Sgd::new(SgdConfig::default(), net.params());
        let mut times = Vec::with_capacity(cfg.iters);
        for it in 0..cfg.warmup + cfg.iters {
            if it == cfg.warmup && cfg.profile {
                net.profile = Some(Vec::new());
            }
            let t0 = Instant::now();
            if cfg.mode == BenchMode::Train {
                net.train_step(&x, &labels, 0, it as u64, &mut opt);
            } else {
                net.forward(&x, cfg.batch, Mode::Eval);
            }
            if it >= cfg.warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let ms = median(&times);
        let passes = if cfg.mode == BenchMode::Train { 3.0 } else { 1.0 };
        let flops = 2.0 * net.summary.macs as f64 * cfg.batch as f64 * passes;
        let layers = layer_profiles(&net, cfg);
        Ok(BenchReport {
            model: model.name.clone(),
            mode: cfg.mode,
            batch: cfg.batch,
            threads: cfg.threads,
            conv: cfg.conv,
            precision: cfg.precision,
            cpu: cpu_info(),
            // Both set below, once the peak has been measured again after the run.
            gemm_peak_gflops: 0.0,
            peak_fraction: 0.0,
            ms_per_iter: ms,
            img_per_s: cfg.batch as f64 / (ms / 1e3),
            gflops: flops / (ms / 1e3) / 1e9,
            iter_ms: times,
            peak_rss_mib: peak_rss_mib(),
            layers,
        })
    })?;
    // Measured again after: a host that was busy before the run does not lower the peak.
    let peak = before.max(gemm_peak(1024, 5, cfg.threads, PrecisionChoice::F32)?.gflops);
    report.peak_fraction = report.gflops / peak;
    report.gemm_peak_gflops = peak;
    Ok(report)
}

/// Time, GFLOP/s and algorithm of each layer, from the network's profile (empty without one).
fn layer_profiles(net: &Network, cfg: &BenchConfig) -> Vec<LayerProfile> {
    let Some(prof) = &net.profile else { return Vec::new() };
    // What each layer's algorithm does at this batch: [`ConvAlgo::for_batch`] in training,
    // [`ConvAlgo::for_eval`] in evaluation.
    let train = cfg.mode == BenchMode::Train;
    let mode = if train { Mode::Train { seed: 0, step: 0, first_image: 0 } } else { Mode::Eval };
    let algos = net.conv_algos(cfg.batch, mode);
    let when = if train { "in training" } else { "in bf16 evaluation" };
    let label = |a: ConvAlgo, at: ConvAlgo| match (a, at) {
        (ConvAlgo::Winograd(_) | ConvAlgo::Polyphase(_), ConvAlgo::Im2col) => {
            format!("im2col (winograd from {} images {when})", crate::kernels::conv::WINOGRAD_MIN_BATCH)
        }
        // The tile used at this batch, and the resolved one when they differ (F(5x5) computes by
        // F(4x4) below 8 images a thread).
        (ConvAlgo::Winograd(r) | ConvAlgo::Polyphase(r), at) => {
            let t = match at {
                ConvAlgo::Winograd(t) | ConvAlgo::Polyphase(t) => t,
                _ => r,
            };
            let phases = if matches!(a, ConvAlgo::Polyphase(_)) { " over phases" } else { "" };
            let from = F5_MIN_IMAGES_A_THREAD;
            let below =
                if r == t { String::new() } else { format!(" ({}x{} from {from} images a thread)", r.m(), r.m()) };
            format!("winograd {}x{}{phases}{below}", t.m(), t.m())
        }
        (ConvAlgo::Fft { min_batch }, ConvAlgo::Winograd(t)) => {
            format!("winograd {}x{} (fft from {min_batch} images)", t.m(), t.m())
        }
        (ConvAlgo::Fft { min_batch }, _) if at != a => format!("im2col (fft from {min_batch} images)"),
        (ConvAlgo::Fft { .. }, _) => "fft".to_string(),
        (ConvAlgo::Im2col, _) => "im2col".to_string(),
    };
    // Every algorithm's products but FFT's are in the run's precision.
    let label = |a: ConvAlgo, at: ConvAlgo| match label(a, at) {
        l if cfg.precision != PrecisionChoice::F32 && l != "fft" => format!("{l} bf16"),
        l => l,
    };
    net.layers()
        .iter()
        .zip(prof)
        .map(|(l, t)| {
            let calls = t.calls.max(1) as f64;
            let (f, b) = (t.forward_s / calls, t.backward_s / calls);
            let fl = 2.0 * l.macs as f64 * cfg.batch as f64;
            let busy = |cpu: f64, wall: f64| (wall > 0.0 && cpu.is_finite()).then(|| cpu / wall);
            let rate = |secs: f64, mult: f64| (l.macs > 0 && secs > 0.0).then(|| mult * fl / secs / 1e9);
            LayerProfile {
                name: l.name.clone(),
                algo: algos.iter().find(|(n, _, _)| *n == l.name).map(|(_, a, at)| label(*a, *at)),
                forward_ms: f * 1e3,
                backward_ms: b * 1e3,
                forward_gflops: rate(f, 1.0),
                backward_gflops: if cfg.mode == BenchMode::Train { rate(b, 2.0) } else { None },
                forward_cores_busy: busy(t.forward_cpu_s, t.forward_s),
                backward_cores_busy: busy(t.backward_cpu_s, t.backward_s),
            }
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct GemmReport {
    pub size: usize,
    pub threads: usize,
    /// `f32`, `bf16` or `bf16-emulated` (operands rounded to bf16, sums in f32: `--precision`).
    pub precision: &'static str,
    /// Time of the fastest iteration of the faster way, for `threads` products' worth of work
    /// when that way is one product per thread.
    pub ms_per_iter: f64,
    /// The peak: the larger of the two rates below.
    pub gflops: f64,
    /// Best rate of one `n×n·n×n` product split across the pool (the `gemm` crate's threading,
    /// as fully connected layers and one-image convolutions run).
    pub split_gflops: f64,
    /// Best rate of one product per thread at once, each single-threaded (as batches of
    /// convolutions run: each thread its own images).
    pub per_thread_gflops: f64,
}

/// The machine's matrix-multiply peak in `precision` (f32: as the `gemm` crate reaches it; bf16:
/// our `vdpbf16ps` GEMM, packing included) on `threads` threads:
/// `n×n·n×n` products, the best of `iters` timed iterations (after two warm-ups) of each of
/// the two ways of using the cores ([`GemmReport`]), the faster way taken. The best iteration,
/// not the median: noise on a shared host only slows a run, so the fastest is the closest to
/// what the machine can do, and fractions of it are not flattered by a slow measurement (on the
/// noisy 2-core Zen 3, the median of five 1024³ products read 105-117 GFLOP/s in runs whose
/// best read 169-181).
pub fn gemm_peak(n: usize, iters: usize, threads: usize, precision: PrecisionChoice) -> Result<GemmReport> {
    let p = precision.resolve()?;
    if n == 0 || iters == 0 || n > 16384 {
        return Err(Error::Invalid(format!("gemm size must be in 1..=16384 and iters positive (got {n}, {iters})")));
    }
    thread_pool(threads)?.install(|| {
        let a = crate::rng::uniform_vec(n * n, 1);
        let b = crate::rng::uniform_vec(n * n, 2);
        let workers = rayon::current_num_threads();
        // One product's output per thread: bounded, as threads times the inputs' size.
        if (n * n * 4).saturating_mul(workers + 2) > 16 << 30 {
            return Err(Error::Invalid(format!("gemm size {n} on {workers} threads would need over 16 GiB")));
        }
        let mut c = vec![0.0f32; n * n * workers];
        let product =
            |c: &mut [f32], t: Threads| matmul_in(p, n, n, n, Operand::plain(&a), Operand::plain(&b), c, false, t);
        let split = best_seconds(2, iters, &mut || product(&mut c[..n * n], Threads::Pool));
        let each = best_seconds(2, iters, &mut || c.par_chunks_mut(n * n).for_each(|c| product(c, Threads::One)));
        let flop = 2.0 * (n as f64).powi(3);
        let (split_gflops, per_thread_gflops) = (flop / split / 1e9, workers as f64 * flop / each / 1e9);
        let ms_per_iter = (if per_thread_gflops > split_gflops { each } else { split }) * 1e3;
        Ok(GemmReport {
            size: n,
            threads,
            precision: match precision {
                PrecisionChoice::F32 => "f32",
                PrecisionChoice::Bf16 => "bf16",
                PrecisionChoice::Bf16Emulated => "bf16-emulated",
            },
            ms_per_iter,
            gflops: split_gflops.max(per_thread_gflops),
            split_gflops,
            per_thread_gflops,
        })
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct FloorReport {
    pub model: String,
    pub threads: usize,
    /// Bytes of the fully connected layers' weights (f32): what one image must read.
    pub fc_weight_bytes: usize,
    /// Best rate of reading them once, all threads summing their share, GB/s.
    pub read_gbps: f64,
    /// `fc_weight_bytes / read_gbps`: their reading's time, ms.
    pub fc_read_ms: f64,
    /// Multiply-adds of the convolutions for one image.
    pub conv_macs: usize,
    /// This run's matrix-multiply peak ([`gemm_peak`], 1024³), GFLOP/s.
    pub gemm_peak_gflops: f64,
    /// The convolutions' direct FLOPs at that peak, ms.
    pub conv_at_peak_ms: f64,
    /// All the network's FLOPs at that peak (the yardstick), ms.
    pub flops_at_peak_ms: f64,
    /// `fc_read_ms + conv_at_peak_ms`: an estimate, from this run's best rates on this machine,
    /// of the least time one f32 image by im2col can take (Winograd can take less by its
    /// convolutions' share; the weights' reading bounds any f32 implementation). Rates measured
    /// on a shared host, not hard bounds.
    pub floor_ms: f64,
}

/// An estimate of the least time one image of `model` can take here in f32: its fully connected
/// weights read once at the memory's measured rate (at batch 1 those layers do two FLOPs per 4-byte weight,
/// so they are bound by memory, not arithmetic), plus its convolutions' FLOPs at the measured
/// matrix-multiply peak. The weights are the network's own, initialised (untouched pages would
/// all map the one zero page and read from the cache); `iters` timed reads after one warm-up.
pub fn one_image_floor(model: &ModelConfig, iters: usize, threads: usize) -> Result<FloorReport> {
    if iters == 0 {
        return Err(Error::Invalid("iters must be positive".into()));
    }
    let peak = gemm_peak(1024, 5, threads, PrecisionChoice::F32)?.gflops;
    let net = Network::new(model.clone(), 0)?;
    let weights: Vec<&[f32]> = net
        .layers()
        .iter()
        .filter_map(|l| match &l.kind {
            LayerKind::Linear { params: [w, _], .. } => net.param(&w.name).map(|p| p.data.as_slice()),
            _ => None,
        })
        .collect();
    let bytes: usize = weights.iter().map(|w| w.len() * 4).sum();
    let conv_macs: usize =
        net.layers().iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. })).map(|l| l.macs).sum();
    let secs = thread_pool(threads)?.install(|| {
        let read =
            || weights.iter().map(|w| w.par_chunks(1 << 16).map(crate::tensor::sum_f32).sum::<f32>()).sum::<f32>();
        best_seconds(1, iters, &mut || {
            std::hint::black_box(read());
        })
    });
    // A network without fully connected layers reads nothing.
    let (read_gbps, fc_read_ms) = if bytes == 0 { (0.0, 0.0) } else { (bytes as f64 / secs / 1e9, secs * 1e3) };
    let conv_at_peak_ms = 2.0 * conv_macs as f64 / peak / 1e6;
    Ok(FloorReport {
        model: model.name.clone(),
        threads,
        fc_weight_bytes: bytes,
        read_gbps,
        fc_read_ms,
        conv_macs,
        gemm_peak_gflops: peak,
        conv_at_peak_ms,
        flops_at_peak_ms: 2.0 * net.summary.macs as f64 / peak / 1e6,
        floor_ms: fc_read_ms + conv_at_peak_ms,
    })
}

/// Seconds of the fastest of `iters` timed runs of `run`, after `warmup` untimed ones.
fn best_seconds(warmup: usize, iters: usize, run: &mut dyn FnMut()) -> f64 {
    (0..warmup + iters)
        .map(|_| {
            let t0 = Instant::now();
            run();
            t0.elapsed().as_secs_f64()
        })
        .skip(warmup)
        .fold(f64::INFINITY, f64::min)
}

#[derive(Clone, Debug, Serialize)]
pub struct LoaderReport {
    pub model: String,
    pub stored: usize,
    pub crop: usize,
    pub images: usize,
    /// Threads of the loader.
    pub loader_threads: usize,
    /// Mean bytes an image takes in the packed set (its record, as stored).
    pub stored_bytes_per_image: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// The model's training step (forward, backward, SGD) on batches of the same size with the
    /// given threads, images/s, when measured ([`loader_against_step`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_images_per_s: Option<f64>,
    /// `images_per_s / step_images_per_s`: at least 2 and the loader never holds training up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loader_over_step: Option<f64>,
}

/// [`loader_throughput`], then the training step's rate for the same model and batch on
/// `threads` threads (median of `iters` steps after `warmup`), and their ratio: the issue's
/// criterion that one loader thread make at least twice what the step consumes. Each is
/// measured alone; in training the loader's thread shares the cores with the step's, which
/// `metrics.jsonl`'s `data_wait_fraction` shows.
pub fn loader_against_step(
    model: &ModelConfig,
    data: &std::path::Path,
    cache_dir: Option<&std::path::Path>,
    batch: usize,
    (iters, warmup): (usize, usize),
    (threads, loader_threads): (usize, usize),
) -> Result<LoaderReport> {
    let mut r = loader_throughput(model, data, cache_dir, batch, iters.max(1) * 10, loader_threads)?;
    let cfg = BenchConfig {
        mode: BenchMode::Train,
        batch,
        iters: iters.max(1),
        warmup,
        threads,
        profile: false,
        conv: ConvChoice::default(),
        precision: PrecisionChoice::F32,
    };
    let step = run(model, &cfg)?.img_per_s;
    r.step_images_per_s = Some(step);
    r.loader_over_step = Some(r.images_per_s / step);
    Ok(r)
}

/// The loader alone: augmented batches from a packed set as fast as it can make them (one
/// background thread, as in training), for at most `batches` batches. A folder is packed into
/// (or found in) the shared cache, `cache_dir` or its default ([`crate::data::CacheStore`]).
pub fn loader_throughput(
    model: &ModelConfig,
    data: &std::path::Path,
    cache_dir: Option<&std::path::Path>,
    batch: usize,
    batches: usize,
    loader_threads: usize,
) -> Result<LoaderReport> {
    if batch == 0 {
        return Err(Error::Invalid("--batch must be at least 1".into()));
    }
    if loader_threads == 0 {
        return Err(Error::Invalid("--loader-threads must be at least 1".into()));
    }
    let stored = model.data.stored;
    let store = crate::data::CacheStore::resolve(cache_dir, data);
    let how = crate::data::source::Packing {
        size: stored,
        class_names: None,
        labels: None,
        on_bad: crate::data::cache::OnBadImage::Fail,
        store: &store,
        legacy: None,
    };
    let images = std::sync::Arc::new(crate::data::source::open(data, &how, &|_, _| {})?);
    let crop = model.input[1];
    let input =
        std::sync::Arc::new(TrainInput::new(&model.data, &images.stats, Augment::paper(&images.stats), crop, 1));
    let n = (batch * batches).min(images.count - images.count % batch);
    if n == 0 {
        return Err(Error::Invalid(format!(
            "{}: {} images, fewer than one batch of {batch}",
            data.display(),
            images.count
        )));
    }
    let order: Vec<u32> = permutation(images.count, 1).into_iter().take(n).collect();
    let t0 = Instant::now();
    let mut count = 0;
    let opts = LoaderOptions { workers: loader_threads, ..LoaderOptions::new(batch) };
    let stored_bytes_per_image = images.stored_bytes() as f64 / images.count as f64;
    for b in opts.spawn(images, order, &input, 0) {
        count += b?.labels.len();
    }
    let s = t0.elapsed().as_secs_f64();
    Ok(LoaderReport {
        model: model.name.clone(),
        stored,
        crop,
        images: count,
        loader_threads,
        stored_bytes_per_image,
        seconds: s,
        images_per_s: count as f64 / s,
        step_images_per_s: None,
        loader_over_step: None,
    })
}
