//! The `alexnet` command line: parses, calls the library, prints text or one JSON object.

use alexnet::bench::{self, BenchConfig, BenchMode};
use alexnet::model::{ModelConfig, VARIANTS, plan};
use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "alexnet", version, about = "AlexNet (Krizhevsky et al. 2012) on the CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Infer,
    Train,
    /// The machine's matrix-multiply peak (square f32 products), not a network.
    Gemm,
}

#[derive(Subcommand)]
enum Command {
    /// The layer table: kernel, stride, pad, groups, output size, parameters, multiply-adds.
    Summary {
        #[arg(long, default_value = "paper", value_parser = model_name)]
        model: String,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Time inference or a training step on synthetic input (median over iterations).
    Bench {
        #[arg(long, default_value = "paper", value_parser = model_name)]
        model: String,
        #[arg(long, value_enum, default_value = "infer")]
        mode: ModeArg,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Untimed iterations before timing.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Also report time and GFLOP/s per layer.
        #[arg(long)]
        profile: bool,
        /// Matrix size for `--mode gemm`.
        #[arg(long, default_value_t = 2048)]
        size: usize,
        #[arg(long)]
        json: bool,
    },
}

fn model_name(s: &str) -> Result<String, String> {
    if VARIANTS.contains(&s) { Ok(s.to_string()) } else { Err(format!("known models: {}", VARIANTS.join(", "))) }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Summary { model, json } => {
            let s = plan(&ModelConfig::variant(&model)?)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print!("{}", s.table());
            }
        }
        Command::Bench { model, mode, batch, iters, warmup, threads, profile, size, json } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let mode = match mode {
                ModeArg::Gemm => {
                    let r = bench::gemm_peak(size, iters, threads)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        println!(
                            "gemm {n}x{n}x{n} f32, {t} threads: {:.2} ms, {:.1} GFLOP/s",
                            r.ms_per_iter,
                            r.gflops,
                            n = r.size,
                            t = r.threads
                        );
                    }
                    return Ok(());
                }
                ModeArg::Infer => BenchMode::Infer,
                ModeArg::Train => BenchMode::Train,
            };
            let cfg = BenchConfig { mode, batch, iters, warmup, threads, profile };
            let r = bench::run(&ModelConfig::variant(&model)?, &cfg)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} {:?} batch {} threads {}: {:.1} ms/iter, {:.1} img/s, {:.1} GFLOP/s{}",
                    r.model,
                    r.mode,
                    r.batch,
                    r.threads,
                    r.ms_per_iter,
                    r.img_per_s,
                    r.gflops,
                    r.peak_rss_mib.map_or(String::new(), |m| format!(", peak RSS {m:.0} MiB"))
                );
                if !r.layers.is_empty() {
                    println!("{:<9} {:>10} {:>10} {:>10} {:>10}", "layer", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s");
                    let gf = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:.1}"));
                    for l in &r.layers {
                        println!(
                            "{:<9} {:>10.2} {:>10} {:>10.2} {:>10}",
                            l.name,
                            l.forward_ms,
                            gf(l.forward_gflops),
                            l.backward_ms,
                            gf(l.backward_gflops)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
