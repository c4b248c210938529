//! The `alexnet` command line: parses, calls the library, prints text or one JSON object.

use alexnet::bench::{self, BenchConfig, BenchMode};
use alexnet::data::cache::{self, OnBadImage};
use alexnet::data::{ImageFolder, source};
use alexnet::eval::{Ensemble, Prediction, class_map, evaluate, top_k};
use alexnet::io::Checkpoint;
use alexnet::model::config::Init;
use alexnet::model::{ModelConfig, VARIANTS, plan};
use alexnet::optim::{SgdConfig, SgdForm};
use alexnet::train::{self, PcaSource, Schedule, TrainConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "alexnet", version, about = "AlexNet (Krizhevsky et al. 2012) on the CPU: train, evaluate, classify")]
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
    /// The data loader alone (decoded cache -> augmented batches), images/s; needs --data.
    Loader,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ScheduleArg {
    Plateau,
    Step,
    Cosine,
}

#[derive(Clone, Copy, ValueEnum)]
enum SgdArg {
    Paper,
    Pytorch,
}

#[derive(Clone, Copy, ValueEnum)]
enum InitArg {
    Paper,
    He,
}

#[derive(Clone, Copy, ValueEnum)]
enum LrnArg {
    /// k + α/n·Σa² (cuda-convnet, Caffe, PyTorch; the default).
    AlphaOverN,
    /// k + α·Σa², as the paper prints it.
    Paper,
}

#[derive(Clone, Copy, ValueEnum)]
enum NormalizeArg {
    /// Subtract the training set's mean image (the paper).
    PerPixelMean,
    /// Subtract the per-channel mean, divide by the per-channel std (unit-variance inputs, for He init).
    PerChannel,
    /// torchvision's ImageNet mean and std.
    Imagenet,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum PcaArg {
    Data,
    Imagenet,
}

#[derive(Args)]
struct TrainArgs {
    /// Training images: an image folder ROOT/<class>/<image>, a file from `alexnet prepare`, or
    /// an IDX images file. Default: the embedded CIFAR-10 subset (data/cifar10-mini).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Validation images (same forms as --data). Default: hold out --val-split of --data.
    #[arg(long)]
    val: Option<PathBuf>,
    #[arg(long, default_value_t = 0.1)]
    val_split: f32,
    /// Class names, `wnid<TAB>name` per line (e.g. imagenet1k_classes.tsv).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Model variant. Default: paper, or cifar for the embedded data.
    #[arg(long, value_parser = model_name)]
    model: Option<String>,
    /// Default: 90 (the paper), or 30 for the embedded data.
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    /// The update rule: the paper's `v = m·v - wd·lr·w - lr·g; w += v`, or PyTorch's.
    #[arg(long, value_enum, default_value = "paper")]
    sgd: SgdArg,
    /// Exempt biases from weight decay.
    #[arg(long)]
    no_bias_decay: bool,
    #[arg(long, value_enum, default_value = "plateau")]
    schedule: ScheduleArg,
    /// Plateau: epochs without a better validation error before the lr drops.
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Plateau: at most this many drops (the paper: 3).
    #[arg(long, default_value_t = 3)]
    lr_drops: usize,
    /// The factor of each drop (plateau and step).
    #[arg(long, default_value_t = 0.1)]
    lr_factor: f32,
    /// Step: drop every this many epochs.
    #[arg(long, default_value_t = 30)]
    step_every: usize,
    /// Run folder: config.json, metrics.jsonl, curves.png, last/best.safetensors. Default: runs/<model>-N.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config.json is used).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Centre crops instead of random ones.
    #[arg(long)]
    no_random_crop: bool,
    #[arg(long)]
    no_flip: bool,
    /// σ of the PCA colour noise coefficients (the paper: 0.1; 0 turns it off).
    #[arg(long, default_value_t = 0.1)]
    pca_std: f32,
    /// Eigenvectors of the colour noise: the training data's, or the published ImageNet ones.
    #[arg(long, value_enum, default_value = "data")]
    pca: PcaArg,
    /// Dropout probability (the paper: 0.5).
    #[arg(long)]
    dropout: Option<f32>,
    /// tanh instead of ReLU (the paper's Figure 1).
    #[arg(long)]
    tanh: bool,
    /// Weight init (default: the model's; paper = N(0, 0.01²)). He init expects unit-variance
    /// inputs: pair it with --normalize per-channel.
    #[arg(long, value_enum)]
    init: Option<InitArg>,
    /// Input normalisation (default: the model's; paper = mean image subtracted, 0-255 scale).
    #[arg(long, value_enum)]
    normalize: Option<NormalizeArg>,
    /// Which LRN formula the layers' α means (default: alpha-over-n).
    #[arg(long, value_enum)]
    lrn: Option<LrnArg>,
    /// Also checkpoint every this many steps (default: every epoch only).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Stop after the last whole epoch that fits in this many minutes.
    #[arg(long)]
    time_limit: Option<f64>,
    /// Skip images that cannot be decoded (with a warning) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Validate with the ten-crop average.
    #[arg(long)]
    val_ten_crop: bool,
    /// Stop as if interrupted after this many steps (for testing --resume).
    #[arg(long, hide = true)]
    stop_after_steps: Option<u64>,
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
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
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Data for `--mode loader` (a cache from `alexnet prepare`, or a folder).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Train a model on an image folder (the paper's recipe by default).
    Train(Box<TrainArgs>),
    /// Decode and resize a folder once into a memory-mapped cache of uint8 images.
    Prepare {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Stored image side (the paper: 256; the cifar model: 32).
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long)]
        classes: Option<PathBuf>,
        #[arg(long)]
        skip_bad: bool,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Top-1 and top-5 error on an image folder; several --weights average their softmax.
    Eval {
        #[arg(long, required = true)]
        weights: Vec<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        /// Average the paper's ten crops (corners, centre, and their mirror images).
        #[arg(long)]
        ten_crop: bool,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        skip_bad: bool,
        #[arg(long)]
        json: bool,
    },
    /// Classify images: class names and probabilities.
    Predict {
        #[arg(long, required = true)]
        weights: Vec<PathBuf>,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        ten_crop: bool,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Read AlexNet weights from PyTorch (.pth zip or legacy, or safetensors) into a checkpoint.
    Import {
        /// torchvision state dict (`torch.save`), or safetensors with torchvision or our key names.
        file: PathBuf,
        #[arg(long)]
        to: PathBuf,
        /// Topology (default: read from the tensors: grouped = paper, torchvision keys = torchvision).
        #[arg(long, value_parser = model_name)]
        model: Option<String>,
        /// Class names, `wnid<TAB>name` per line in output order (default: ImageNet's for 1000 outputs).
        #[arg(long)]
        classes: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write a checkpoint as ONNX (opset 17) and/or safetensors with torchvision's key names.
    Export {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long)]
        onnx: Option<PathBuf>,
        #[arg(long)]
        safetensors: Option<PathBuf>,
    },
    /// Run the network on a raw tensor: `input [N, C, H, W]` from a safetensors file, logits out.
    Forward {
        #[arg(long)]
        weights: PathBuf,
        /// safetensors file holding the input tensor.
        #[arg(long)]
        input: PathBuf,
        /// Name of the input tensor in that file.
        #[arg(long, default_value = "input")]
        name: String,
        /// Where to write `logits [N, classes]` (safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// The learned conv1 kernels as an image grid (the paper's Figure 3).
    Filters {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, default_value = "conv1.png")]
        out: PathBuf,
        /// Pixels per kernel pixel.
        #[arg(long, default_value_t = 3)]
        zoom: usize,
    },
}

fn model_name(s: &str) -> Result<String, String> {
    if VARIANTS.contains(&s) { Ok(s.to_string()) } else { Err(format!("known models: {}", VARIANTS.join(", "))) }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads.unwrap_or_else(cores)).build()?)
}

/// The embedded dataset, found relative to the source tree this binary was built from.
fn embedded(split: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini").join(split)
}

fn main() {
    match run(Cli::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Summary { model, json } => {
            let s = plan(&ModelConfig::variant(&model)?)?;
            if json { print_json(&s)? } else { print!("{}", s.table()) }
        }
        Command::Bench { model, mode, batch, iters, warmup, threads, profile, size, data, json } => {
            let threads = threads.unwrap_or_else(cores);
            let mode = match mode {
                ModeArg::Gemm => {
                    let r = bench::gemm_peak(size, iters, threads)?;
                    if json {
                        print_json(&r)?;
                    } else {
                        println!(
                            "gemm {n}x{n}x{n} f32, {t} threads: {:.2} ms, {:.1} GFLOP/s",
                            r.ms_per_iter,
                            r.gflops,
                            n = r.size,
                            t = r.threads
                        );
                    }
                    return Ok(0);
                }
                ModeArg::Loader => {
                    let Some(data) = data else { bail!("--mode loader needs --data (a prepared cache or a folder)") };
                    let cfg = ModelConfig::variant(&model)?;
                    let r = bench::loader_throughput(&cfg, &data, batch, iters.max(1) * 10)?;
                    if json {
                        print_json(&r)?;
                    } else {
                        println!(
                            "loader ({} crops of {}px from {}px, paper augmentation): {:.0} images/s over {} images",
                            r.model, r.crop, r.stored, r.images_per_s, r.images
                        );
                    }
                    return Ok(0);
                }
                ModeArg::Infer => BenchMode::Infer,
                ModeArg::Train => BenchMode::Train,
            };
            let cfg = BenchConfig { mode, batch, iters, warmup, threads, profile };
            let r = bench::run(&ModelConfig::variant(&model)?, &cfg)?;
            if json {
                print_json(&r)?;
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
        Command::Train(a) => return train_command(*a),
        Command::Prepare { data, out, size, classes, skip_bad, threads, json } => {
            let folder = ImageFolder::scan(&data, classes.as_deref())?;
            let total = folder.items.len();
            let bar = progress_bar(total, "decoding");
            let on_bad = if skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
            let src = std::fs::canonicalize(&data).unwrap_or(data.clone()).display().to_string();
            let report = pool(threads)?.install(|| {
                cache::write_cache(&out, &folder.items, folder.classes.clone(), size, &src, on_bad, &|d| {
                    bar.set_position(d as u64)
                })
            })?;
            bar.finish_and_clear();
            let packed = alexnet::data::PackedImages::open(&out)?;
            #[derive(serde::Serialize)]
            struct PrepareOut<'a> {
                out: String,
                images: usize,
                classes: usize,
                size: usize,
                skipped: &'a [String],
                seconds: f64,
                images_per_s: f64,
                stats: &'a alexnet::data::DataStats,
            }
            let o = PrepareOut {
                out: out.display().to_string(),
                images: report.images,
                classes: packed.classes.len(),
                size,
                skipped: &report.skipped,
                seconds: report.seconds,
                images_per_s: report.images_per_s,
                stats: &packed.stats,
            };
            if json {
                print_json(&o)?;
            } else {
                let s = &packed.stats;
                println!(
                    "packed {} images of {} classes at {size}x{size} into {} in {:.1}s ({:.0} images/s){}",
                    o.images,
                    o.classes,
                    o.out,
                    o.seconds,
                    o.images_per_s,
                    if o.skipped.is_empty() { String::new() } else { format!(", skipped {}", o.skipped.len()) }
                );
                println!(
                    "channel mean {:.1?}  std {:.1?}  RGB eigenvalues (0-1 scale) {:.4?}",
                    s.channel_mean, s.channel_std, s.eigval
                );
            }
        }
        Command::Eval { weights, data, ten_crop, batch, threads, skip_bad, json } => {
            let pool = pool(threads)?;
            let r = pool.install(|| -> Result<_> {
                let mut ens = Ensemble::load(&weights)?;
                let images = open_eval_data(&data, ens.stored, skip_bad)?;
                let map =
                    class_map(&images.classes, &ens.classes).map_err(|e| anyhow::anyhow!("{}: {e}", data.display()))?;
                let idx: Vec<u32> = (0..images.count as u32).collect();
                let bar = progress_bar(idx.len(), "evaluating");
                let r =
                    evaluate(&mut ens.members, &images, &idx, &map, ten_crop, batch, &|d| bar.set_position(d as u64));
                bar.finish_and_clear();
                Ok(r)
            })?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "{} images, {}{}: top-1 error {:.2}%, top-5 error {:.2}% (loss {:.4})",
                    r.images,
                    if ten_crop { "ten crops" } else { "centre crop" },
                    if weights.len() > 1 { format!(", ensemble of {}", weights.len()) } else { String::new() },
                    100.0 * r.top1_error,
                    100.0 * r.top5_error,
                    r.loss
                );
            }
        }
        Command::Predict { weights, images, top, ten_crop, threads, json } => {
            let preds = pool(threads)?.install(|| -> Result<Vec<Prediction>> {
                let mut ens = Ensemble::load(&weights)?;
                let decoded: Vec<Vec<u8>> = images
                    .iter()
                    .map(|p| alexnet::data::image::load_square(p, ens.stored))
                    .collect::<Result<_, _>>()?;
                let refs: Vec<&[u8]> = decoded.iter().map(|v| v.as_slice()).collect();
                let probs = ens.probabilities(&refs, ten_crop, 64);
                Ok(images
                    .iter()
                    .zip(top_k(&probs, &ens.classes, top))
                    .map(|(p, top)| Prediction { image: p.display().to_string(), top })
                    .collect())
            })?;
            if json {
                print_json(&serde_json::json!({ "predictions": preds }))?;
            } else {
                for p in &preds {
                    println!("{}", p.image);
                    for c in &p.top {
                        println!("  {:6.2}%  {} ({})", 100.0 * c.probability, c.name, c.id);
                    }
                }
            }
        }
        Command::Import { file, to, model, classes, json } => {
            let names = classes.as_deref().map(alexnet::data::folder::read_class_list).transpose()?;
            let ck = alexnet::io::import::import(&file, model.as_deref(), names)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            ck.save(&to)?;
            let params: usize = ck.params.iter().map(|p| p.2.len()).sum();
            if json {
                print_json(&serde_json::json!({
                    "out": to.display().to_string(), "model": ck.config.name, "params": params,
                    "classes": ck.classes.len(), "input": ck.config.input,
                }))?;
            } else {
                println!(
                    "imported {} ({} parameters, {} classes, input {}x{}) into {}",
                    ck.config.name,
                    alexnet::model::summary::thousands(params),
                    ck.classes.len(),
                    ck.config.input[1],
                    ck.config.input[2],
                    to.display()
                );
            }
        }
        Command::Export { weights, onnx, safetensors } => {
            if onnx.is_none() && safetensors.is_none() {
                bail!("nothing to do: give --onnx FILE and/or --safetensors FILE");
            }
            let ck = Checkpoint::load(&weights)?;
            if let Some(path) = onnx {
                let bytes = alexnet::io::onnx::export(&ck).map_err(|e| anyhow::anyhow!("ONNX export: {e}"))?;
                std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
                println!(
                    "wrote {} (ONNX opset 17, input [N, {}, {}, {}])",
                    path.display(),
                    ck.config.input[0],
                    ck.config.input[1],
                    ck.config.input[2]
                );
            }
            if let Some(path) = safetensors {
                let named = alexnet::io::import::torchvision_named(&ck).map_err(|e| anyhow::anyhow!(e))?;
                let meta = [
                    ("alexnet.config".to_string(), serde_json::to_string(&ck.config)?),
                    ("alexnet.classes".to_string(), serde_json::to_string(&ck.classes)?),
                ];
                alexnet::io::checkpoint::write_plain(&path, &named, meta.into_iter().collect())?;
                println!("wrote {} (torchvision key names)", path.display());
            }
        }
        Command::Forward { weights, input, name, out } => {
            let ck = Checkpoint::load(&weights)?;
            let (shape, x) = alexnet::io::checkpoint::read_plain(&input, &name)?;
            let mut net = ck.network();
            let per: usize = net.input_len();
            if shape.len() != 4 || shape[1..] != ck.config.input[..] {
                bail!("{}: `{name}` has shape {shape:?}, the model takes [N, {:?}]", input.display(), ck.config.input);
            }
            let logits = net.forward(&x, x.len() / per, alexnet::Mode::Eval).to_vec();
            let named = vec![("logits".to_string(), vec![shape[0], net.classes()], logits)];
            alexnet::io::checkpoint::write_plain(&out, &named, Default::default())?;
        }
        Command::Filters { weights, out, zoom } => {
            let ck = Checkpoint::load(&weights)?;
            let first = ck.params.first().context("the checkpoint holds no parameters")?;
            let (name, shape, w) = first;
            if shape.len() != 4 || shape[1] != 3 {
                bail!("{name} has shape {shape:?}; expected a first convolution over RGB [M, 3, K, K]");
            }
            // The paper's figure: one block per GPU, i.e. per group of the next convolution.
            let towers = ck
                .config
                .layers
                .iter()
                .filter_map(|l| match l {
                    alexnet::model::LayerSpec::Conv { groups, .. } => Some(*groups),
                    _ => None,
                })
                .nth(1)
                .unwrap_or(1);
            alexnet::io::plot::filter_grid(w, shape[0], shape[2], towers, zoom, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} kernels {}x{}, {} row block(s))",
                out.display(),
                shape[0],
                shape[2],
                shape[3],
                towers
            );
        }
    }
    Ok(0)
}

fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}}"
        ))
        .expect("template"),
    );
    bar
}

/// Evaluation data: a folder is packed into a temporary memory-mapped file (removed at once;
/// the map stays valid), so a 50,000-image validation set does not have to fit in memory.
fn open_eval_data(data: &Path, stored: usize, skip_bad: bool) -> Result<alexnet::data::PackedImages> {
    let on_bad = if skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
    let tmp = std::env::temp_dir().join(format!("alexnet-eval-{}-{stored}.bin", std::process::id()));
    let bar = progress_bar(0, "decoding");
    let r = source::open(data, stored, None, &tmp, on_bad, &|d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(tmp.with_extension("skipped.txt"));
    Ok(r?)
}

fn train_command(a: TrainArgs) -> Result<i32> {
    let _ = ctrlc::set_handler(|| {
        if train::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // A second Ctrl-C: the user really wants out now.
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit at once)");
    });
    let cfg = if let Some(dir) = &a.resume {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut cfg: TrainConfig =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(e) = a.epochs {
            cfg.epochs = e;
        }
        if a.time_limit.is_some() {
            cfg.time_limit_minutes = a.time_limit;
        }
        cfg.stop_after_steps = a.stop_after_steps;
        cfg.quiet = a.quiet;
        cfg.out = dir.clone();
        if let Some(t) = a.threads
            && t != cfg.threads
        {
            eprintln!(
                "warning: the run used {} threads; resuming with {t} changes the order of sums, so the weights \
                 will not match an uninterrupted run bit for bit",
                cfg.threads
            );
            cfg.threads = t;
        }
        cfg
    } else {
        let embedded_default = a.data.is_none();
        let (data, val) = match &a.data {
            Some(d) => (d.clone(), a.val.clone()),
            None => (embedded("train"), Some(a.val.clone().unwrap_or_else(|| embedded("val")))),
        };
        let model_name = a.model.clone().unwrap_or_else(|| if embedded_default { "cifar" } else { "paper" }.into());
        let init = a.init.map(|i| match i {
            InitArg::Paper => Init::Gaussian { std: 0.01 },
            InitArg::He => Init::He,
        });
        let mut model = train::customise_model(ModelConfig::variant(&model_name)?, a.tanh, a.dropout, init);
        if let Some(c) = a.lrn {
            for l in &mut model.layers {
                if let alexnet::model::LayerSpec::Lrn(p) = l {
                    p.convention = match c {
                        LrnArg::AlphaOverN => alexnet::kernels::lrn::LrnConvention::AlphaOverN,
                        LrnArg::Paper => alexnet::kernels::lrn::LrnConvention::Paper,
                    };
                }
            }
        }
        if let Some(n) = a.normalize {
            model.data.normalize = match n {
                NormalizeArg::PerPixelMean => alexnet::data::Normalize::PerPixelMean,
                NormalizeArg::PerChannel => alexnet::data::Normalize::PerChannel,
                NormalizeArg::Imagenet => alexnet::data::Normalize::imagenet(),
            };
        }
        let schedule = match a.schedule {
            ScheduleArg::Plateau => {
                Schedule::Plateau { patience: a.patience, factor: a.lr_factor, max_drops: a.lr_drops }
            }
            ScheduleArg::Step => Schedule::Step { every: a.step_every, factor: a.lr_factor },
            ScheduleArg::Cosine => Schedule::Cosine { min_lr: a.lr * 1e-3 },
        };
        TrainConfig {
            data,
            val,
            val_split: a.val_split,
            class_names: a.classes.clone(),
            model,
            epochs: a.epochs.unwrap_or(if embedded_default { 30 } else { 90 }),
            batch: a.batch,
            sgd: SgdConfig {
                lr: a.lr,
                momentum: a.momentum,
                weight_decay: a.weight_decay,
                form: match a.sgd {
                    SgdArg::Paper => SgdForm::Paper,
                    SgdArg::Pytorch => SgdForm::Pytorch,
                },
                decay_biases: !a.no_bias_decay,
            },
            schedule,
            seed: a.seed,
            threads: a.threads.unwrap_or_else(cores),
            out: a.out.clone().unwrap_or_else(|| train::default_run_dir(&model_name)),
            random_crop: !a.no_random_crop,
            flip: !a.no_flip,
            pca_std: a.pca_std,
            pca: if a.pca == PcaArg::Imagenet { PcaSource::Imagenet } else { PcaSource::Data },
            checkpoint_every: a.checkpoint_every,
            time_limit_minutes: a.time_limit,
            skip_bad: a.skip_bad,
            val_ten_crop: a.val_ten_crop,
            stop_after_steps: a.stop_after_steps,
            quiet: a.quiet,
        }
    };
    let resume = match &a.resume {
        Some(dir) => {
            let p = dir.join("last.safetensors");
            Some(Checkpoint::load(&p).with_context(|| format!("loading {}", p.display()))?)
        }
        None => None,
    };
    let outcome = train::train(&cfg, resume.as_ref())?;
    if a.json {
        print_json(&outcome)?;
    } else if !outcome.interrupted {
        let best = outcome.best_val_top1_error.map_or("-".into(), |e| format!("{:.2}%", 100.0 * e));
        println!(
            "done: {} epochs, {} steps; best validation top-1 error {} (epoch {}); accuracy {}",
            outcome.epochs_done,
            outcome.steps,
            best,
            outcome.best_epoch.map_or("-".into(), |e| e.to_string()),
            outcome.best_val_top1_error.map_or("-".into(), |e| format!("{:.2}%", 100.0 * (1.0 - e)))
        );
        println!(
            "run folder {}: metrics.jsonl, curves.png, best.safetensors, last.safetensors, config.json",
            outcome.run_dir.display()
        );
    }
    Ok(if outcome.interrupted && cfg.stop_after_steps.is_none() { 130 } else { 0 })
}
