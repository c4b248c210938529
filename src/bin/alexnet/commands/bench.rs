//! `alexnet bench`: throughput of the network, the matrix multiply or the data loader.

use crate::common::{CacheDir, Common, model_name};
use alexnet::bench::{self, BenchConfig, BenchMode, BenchReport, FloorReport, GemmReport, LoaderReport};
use alexnet::kernels::conv::ConvChoice;
use alexnet::matmul::PrecisionChoice;
use alexnet::model::ModelConfig;
use anyhow::{Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "paper", value_parser = model_name)]
    model: String,
    #[arg(long, value_enum, default_value = "infer")]
    mode: BenchMode,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed iterations before timing.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Also report time, GFLOP/s and algorithm per layer.
    #[arg(long)]
    profile: bool,
    /// How the convolutions compute: auto (FFT on wide 5x5 stride-1 layers from 8 images,
    /// below that Winograd F(2x2) in f32 evaluation and im2col otherwise; Winograd on the 3x3
    /// stride-1 layers where it pays; im2col elsewhere), Winograd or FFT everywhere it
    /// applies, or im2col everywhere.
    #[arg(long, value_enum, default_value = "auto")]
    conv: ConvChoice,
    /// The precision of the products: f32, or bf16 operands with f32 sums (CPUs with
    /// AVX512-BF16; bf16-emulated runs its numerics slowly anywhere).
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionChoice,
    /// Matrix size for `--mode gemm`.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Data for `--mode loader` (a cache from `alexnet prepare`, or a folder).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Threads of the loader for `--mode loader` (training's `--loader-threads`).
    #[arg(long, default_value_t = 1, value_name = "N")]
    loader_threads: usize,
    #[command(flatten)]
    cache: CacheDir,
    #[command(flatten)]
    common: Common,
}

pub fn exec(a: Args) -> Result<i32> {
    let threads = a.common.threads();
    let model = ModelConfig::named_or_file(&a.model)?;
    if !matches!(a.mode, BenchMode::Loader) && (a.data.is_some() || a.cache.cache_dir.is_some()) {
        bail!("--data and --cache-dir are for --mode loader only");
    }
    match a.mode {
        BenchMode::Gemm => {
            a.common.emit(&bench::gemm_peak(a.size, a.iters, threads, a.precision)?, |r| print_gemm(r, a.iters))
        }
        BenchMode::Memory => {
            a.common.emit(&bench::one_image_floor(&model, a.iters, threads)?, |r| print_floor(r, a.iters))
        }
        BenchMode::Loader => {
            let Some(data) = &a.data else { bail!("--mode loader needs --data (a prepared cache or a folder)") };
            if a.profile {
                bail!("--profile times the network's layers: not in --mode loader");
            }
            let r = bench::loader_against_step(
                &model,
                data,
                a.cache.cache_dir.as_deref(),
                a.batch,
                (a.iters, a.warmup),
                (threads, a.loader_threads),
            )?;
            a.common.emit(&r, |r| print_loader(r, threads, a.batch))
        }
        BenchMode::Infer | BenchMode::Train => {
            let cfg = BenchConfig {
                mode: a.mode,
                batch: a.batch,
                iters: a.iters,
                warmup: a.warmup,
                threads,
                profile: a.profile,
                conv: a.conv,
                precision: a.precision,
            };
            a.common.emit(&bench::run(&model, &cfg)?, print_report)
        }
    }
}

fn print_gemm(r: &GemmReport, iters: usize) {
    println!(
        "gemm {n}x{n}x{n} {}, {} threads, best of {iters} iterations: peak {:.1} GFLOP/s \
         (one product split across the threads {:.1}, one product per thread {:.1})",
        r.precision,
        r.threads,
        r.gflops,
        r.split_gflops,
        r.per_thread_gflops,
        n = r.size
    )
}

fn print_floor(r: &FloorReport, iters: usize) {
    println!(
        "{}: fully connected weights {:.0} MB read at {:.1} GB/s ({} threads, best of {iters}): {:.1} ms; \
         convolutions {:.2} GFLOP at the {:.0} GFLOP/s matrix-multiply peak: {:.1} ms. By this run's rates, \
         one image in f32 takes at least the weights' reading, and by im2col at least {:.1} ms (all its \
         FLOPs at the peak: {:.1} ms)",
        r.model,
        r.fc_weight_bytes as f64 / 1e6,
        r.read_gbps,
        r.threads,
        r.fc_read_ms,
        2.0 * r.conv_macs as f64 / 1e9,
        r.gemm_peak_gflops,
        r.conv_at_peak_ms,
        r.floor_ms,
        r.flops_at_peak_ms
    )
}

fn print_loader(r: &LoaderReport, threads: usize, batch: usize) {
    println!(
        "loader ({} crops of {}px from {}px, paper augmentation, {} thread{}): {:.0} images/s over {} images \
         ({:.0} bytes an image stored)",
        r.model,
        r.crop,
        r.stored,
        r.loader_threads,
        if r.loader_threads == 1 { "" } else { "s" },
        r.images_per_s,
        r.images,
        r.stored_bytes_per_image
    );
    if let (Some(step), Some(ratio)) = (r.step_images_per_s, r.loader_over_step) {
        println!(
            "training step ({threads} threads, batch {batch}): {step:.1} images/s; loader / step = {ratio:.1}{}",
            if ratio < 2.0 { " (below 2: in training the loader may hold the step up)" } else { "" }
        );
    }
}

fn print_report(r: &BenchReport) {
    println!(
        "{} {:?} batch {} threads {}{}: {:.1} ms/iter, {:.1} img/s, {:.1} GFLOP/s ({:.2} of this run's \
         {:.0} GFLOP/s f32 matrix-multiply peak){}",
        r.model,
        r.mode,
        r.batch,
        r.threads,
        match r.precision {
            PrecisionChoice::F32 => "",
            PrecisionChoice::Bf16 => ", bf16 products",
            PrecisionChoice::Bf16Emulated => ", bf16 products (emulated)",
        },
        r.ms_per_iter,
        r.img_per_s,
        r.gflops,
        r.peak_fraction,
        r.gemm_peak_gflops,
        r.peak_rss_mib.map_or(String::new(), |m| format!(", peak RSS {m:.0} MiB"))
    );
    let c = &r.cpu;
    let ext = [("AVX2", c.avx2), ("AVX-512", c.avx512f), ("AVX512-BF16", c.avx512_bf16)];
    let ext: Vec<&str> = ext.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    println!(
        "cpu: {} (family {}, model {}), {}",
        c.model,
        c.family.map_or("?".into(), |f| f.to_string()),
        c.model_number.map_or("?".into(), |m| m.to_string()),
        if ext.is_empty() { "no AVX2".to_string() } else { ext.join(", ") }
    );
    if r.layers.is_empty() {
        return;
    }
    // "busy": cores busy on average over the layer's pass (CPU time / wall time).
    println!(
        "{:<9} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6}  algorithm",
        "layer", "fwd ms", "fwd GF/s", "busy", "bwd ms", "bwd GF/s", "busy"
    );
    let gf = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:.1}"));
    let busy = |b: Option<f64>| b.map_or("-".to_string(), |b| format!("{b:.2}"));
    for l in &r.layers {
        println!(
            "{:<9} {:>10.2} {:>10} {:>6} {:>10.2} {:>10} {:>6}  {}",
            l.name,
            l.forward_ms,
            gf(l.forward_gflops),
            busy(l.forward_cores_busy),
            l.backward_ms,
            gf(l.backward_gflops),
            busy(l.backward_cores_busy),
            l.algo.as_deref().unwrap_or("")
        );
    }
}
