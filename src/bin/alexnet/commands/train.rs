//! `alexnet train`: the flags, turned once into a [`TrainConfig`] (the library's recipe gives
//! the defaults; a flag given overrides one field), then the run.

use crate::common::{BadImages, CacheDir, Common, embedded, model_name};
use alexnet::Checkpoint;
use alexnet::cluster::{Cluster, ExchangeOptions};
use alexnet::data::{AugmentOptions, Normalize};
use alexnet::kernels::lrn::LrnConvention;
use alexnet::model::{Init, ModelChanges, ModelConfig};
use alexnet::optim::SgdForm;
use alexnet::train::{
    self, PcaSource, Recipe, RunOptions, Schedule, ScheduleKind, StopHandle, TrainConfig, TrainOutcome, schedule,
};
use anyhow::Result;
use std::path::PathBuf;

/// Every flag is optional: what is not given keeps the recipe's value, or, when resuming, the
/// run's own.
#[derive(clap::Args)]
pub struct Args {
    /// Where the defaults come from: `default` (the paper's with He init, standardised inputs,
    /// biases 0.1, a warm-up of one epoch (at most 10% of the run) and cosine decay: README, Recipes) or `paper` (section 5
    /// exactly; other model variants keep their own init and input normalisation).
    #[arg(long, value_enum)]
    recipe: Option<Recipe>,
    /// Epochs of linear lr warm-up from 0 (default recipe: 1; paper: 0).
    #[arg(long)]
    warmup_epochs: Option<f32>,
    /// The warm-up takes at most this share of the run's planned steps (default 0.1;
    /// 1: no bound).
    #[arg(long, value_name = "F")]
    warmup_max_fraction: Option<f32>,
    /// Threads reading, decoding and augmenting the images (default 1; the batches are the
    /// same whatever their number). The progress line's "data wait" says when more would help.
    #[arg(long, value_name = "N")]
    loader_threads: Option<usize>,
    /// Training images: an image folder ROOT/<class>/<image>, a file from `alexnet prepare`, or
    /// an IDX images file. Default: the embedded CIFAR-10 subset (data/cifar10-mini).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Validation images (same forms as --data). Default: hold out --val-split of --data.
    #[arg(long)]
    val: Option<PathBuf>,
    /// The labels of a flat --val folder (ILSVRC-2012's validation set as it ships):
    /// LOC_val_solution.csv, or `FILE WNID` lines.
    #[arg(long, value_name = "FILE", requires = "val")]
    val_labels: Option<PathBuf>,
    /// Fraction of --data held out for validation (default 0.1).
    #[arg(long)]
    val_split: Option<f32>,
    /// Class names, `wnid<TAB>name` per line (e.g. imagenet1k_classes.tsv).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// A built-in variant or a model file (.toml; .json as in a run's config.json). Default:
    /// the built-in variant whose input fits the images (a sample of their sizes):
    /// cifar below 45 px, alexnet64 below 128 px, paper above.
    #[arg(long, value_parser = model_name)]
    model: Option<String>,
    /// Default: 90 (the paper), or 30 for the embedded data.
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per step (the paper: 128).
    #[arg(long)]
    batch: Option<usize>,
    /// Initial learning rate (the paper: 0.01).
    #[arg(long)]
    lr: Option<f32>,
    /// The paper: 0.9.
    #[arg(long)]
    momentum: Option<f32>,
    /// The paper: 0.0005.
    #[arg(long)]
    weight_decay: Option<f32>,
    /// The update rule (default: the paper's).
    #[arg(long, value_enum)]
    sgd: Option<SgdForm>,
    /// Exempt biases from weight decay.
    #[arg(long)]
    no_bias_decay: bool,
    /// Learning-rate schedule (default recipe: cosine, or time-cosine with --time-limit; paper:
    /// plateau).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleKind>,
    /// Plateau: epochs without a better validation error before the lr drops (default 3).
    #[arg(long)]
    patience: Option<usize>,
    /// Plateau: at most this many drops (the paper: 3).
    #[arg(long)]
    lr_drops: Option<usize>,
    /// The factor of each drop, plateau and step (the paper: 0.1).
    #[arg(long)]
    lr_factor: Option<f32>,
    /// Step: drop every this many epochs (default 30).
    #[arg(long)]
    step_every: Option<usize>,
    /// Run folder: config.json, metrics.jsonl, curves.png, last/best.safetensors. Default: runs/<model>-N.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config.json is used).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Seed of the weights, the shuffle, the augmentation and dropout (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the --val-split hold-out, apart from --seed so that runs of several seeds hold
    /// out the same images (default 0).
    #[arg(long)]
    split_seed: Option<u64>,
    /// Centre crops instead of random ones.
    #[arg(long)]
    no_random_crop: bool,
    #[arg(long)]
    no_flip: bool,
    /// σ of the PCA colour noise coefficients (the paper: 0.1; 0 turns it off).
    #[arg(long)]
    pca_std: Option<f32>,
    /// Eigenvectors of the colour noise: the training data's (default), or the published ImageNet ones.
    #[arg(long, value_enum)]
    pca: Option<PcaSource>,
    /// Dropout probability of every dropout layer (default: the model's; the paper's nets 0.5,
    /// `cifar` and `cifar-half` 0). Above 0 on a model without dropout layers it is an error.
    #[arg(long)]
    dropout: Option<f32>,
    /// tanh instead of ReLU (the paper's Figure 1).
    #[arg(long)]
    tanh: bool,
    /// Weight init (default recipe: he; paper: the model's).
    #[arg(long, value_enum)]
    init: Option<Init>,
    /// Input normalisation (default recipe: per-channel; paper: the model's, for the paper
    /// model the mean image subtracted on the 0-255 scale).
    #[arg(long, value_enum)]
    normalize: Option<Normalize>,
    /// Leave out the local response normalisation layers (section 3.3's comparison).
    #[arg(long)]
    no_lrn: bool,
    /// Pool 2x2 with stride 2 instead of the overlapping 3x3 with stride 2 (section 3.4's
    /// comparison; padding 0, so the output sizes of `paper` and `cifar` stay the same).
    #[arg(long)]
    no_overlap_pool: bool,
    /// Which LRN formula the layers' α means (default: alpha-over-n).
    #[arg(long, value_enum)]
    lrn: Option<LrnConvention>,
    /// The LRN layers' α (default: the paper's 1e-4). LRN is not scale-invariant: on inputs
    /// standardised to std 1 rather than 0-255 pixels (std ~60) the window sum is ~60² times
    /// smaller, and 1e-4·60² ≈ 0.4 weighs it as on raw pixels (README, "LRN and the input scale").
    #[arg(long)]
    lrn_alpha: Option<f32>,
    /// Also checkpoint every this many steps (default: every epoch only).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Stop after the last whole epoch that fits in this many minutes.
    #[arg(long)]
    time_limit: Option<f64>,
    #[command(flatten)]
    bad: BadImages,
    #[command(flatten)]
    cache: CacheDir,
    /// Validate with the ten-crop average.
    #[arg(long)]
    val_ten_crop: bool,
    /// How the convolutions compute (default auto: FFT on wide 5x5 stride-1 layers from 8
    /// images, below that im2col, or Winograd F(2x2) in f32 validation; Winograd on the 3x3
    /// stride-1 layers where it pays; im2col elsewhere). A speed setting: a resumed run may
    /// change it.
    #[arg(long, value_enum)]
    conv: Option<alexnet::kernels::conv::ConvChoice>,
    /// The precision of the layers' products (default f32): bf16 rounds their operands and sums
    /// in f32, on CPUs with AVX512-BF16; weights and the optimizer stay f32. bf16-emulated runs
    /// its numerics slowly on any CPU. A resumed run may change it.
    #[arg(long, value_enum)]
    precision: Option<alexnet::matmul::PrecisionChoice>,
    /// Under mpirun: the gradients' type on the wire (default f32; bf16 halves the bytes, summed
    /// in f32 by a ring all-reduce). A resumed run may change it.
    #[arg(long, value_enum)]
    grad_dtype: Option<alexnet::cluster::GradDtype>,
    /// Under mpirun: all-reduce the gradients after the backward pass rather than bucket by
    /// bucket on a thread of their own while it goes on (a resumed run keeps it).
    #[arg(long)]
    no_grad_overlap: bool,
    /// Under mpirun: a process that waits this many seconds for the others in a collective (one
    /// hangs) ends the run with an error [default: 600].
    #[arg(long, value_name = "SECONDS")]
    hang_timeout: Option<f64>,
    /// Under mpirun -np T: the paper's two-GPU scheme with processes as the GPUs, one tower of
    /// the network each (section 3.2; the grouped model's result) [default: 1, the whole
    /// network in every process, data-parallel].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u16).range(1..))]
    towers: Option<u16>,
    /// No progress bar or messages.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    common: Common,
}

impl Args {
    /// The model-level flags, applied by the library to a new run's model (already adapted by
    /// its recipe); a flag that would change nothing in that model is an error there.
    fn model_changes(&self) -> ModelChanges {
        ModelChanges {
            tanh: self.tanh,
            dropout: self.dropout,
            init: self.init,
            normalize: self.normalize,
            lrn: self.lrn,
            lrn_alpha: self.lrn_alpha,
            no_lrn: self.no_lrn,
            no_overlap_pool: self.no_overlap_pool,
        }
    }

    /// The configuration of a new run.
    fn new_config(&self) -> Result<TrainConfig> {
        let embedded_default = self.data.is_none();
        let (data, val) = match &self.data {
            Some(p) => (p.clone(), self.val.clone()),
            None => (embedded("train"), Some(self.val.clone().unwrap_or_else(|| embedded("val")))),
        };
        // config.json holds absolute paths, so that --resume and eval --held-out work from any
        // directory.
        let (data, val) = (absolute(data), val.map(absolute));
        let model_name = match &self.model {
            Some(m) => m.clone(),
            None => self.model_for_images(&data)?,
        };
        let recipe = self.recipe.unwrap_or_default();
        let model = ModelConfig::named_or_file(&model_name)?;
        let run_name = model.name.clone();
        let d = TrainConfig::for_recipe(recipe, data, model.clone(), self.time_limit.is_some());
        self.note_recipe_changes(&model_name, &model, &d.model);
        let mut sgd = d.sgd;
        sgd.lr = self.lr.unwrap_or(sgd.lr);
        sgd.momentum = self.momentum.unwrap_or(sgd.momentum);
        sgd.weight_decay = self.weight_decay.unwrap_or(sgd.weight_decay);
        sgd.form = self.sgd.unwrap_or(sgd.form);
        sgd.decay_biases &= !self.no_bias_decay;
        // A schedule's own flag given alone picks that schedule rather than being ignored.
        let kind = self.schedule.unwrap_or(if self.patience.is_some() || self.lr_drops.is_some() {
            ScheduleKind::Plateau
        } else if self.step_every.is_some() {
            ScheduleKind::Step
        } else if self.lr_factor.is_some() && !matches!(d.schedule.kind(), ScheduleKind::Step) {
            ScheduleKind::Plateau
        } else {
            d.schedule.kind()
        });
        let patience = self.patience.unwrap_or(schedule::PAPER_PATIENCE);
        let (factor, max_drops) =
            (self.lr_factor.unwrap_or(schedule::PAPER_FACTOR), self.lr_drops.unwrap_or(schedule::PAPER_MAX_DROPS));
        Ok(TrainConfig {
            model: self.model_changes().apply(d.model.clone())?,
            epochs: self.epochs.unwrap_or(if embedded_default { 30 } else { d.epochs }),
            batch: self.batch.unwrap_or(d.batch),
            schedule: Schedule::of_kind(
                kind,
                patience,
                factor,
                max_drops,
                self.step_every.unwrap_or(schedule::DEFAULT_STEP_EVERY),
                sgd.lr,
            ),
            sgd,
            val_split: self.val_split.unwrap_or(d.val_split),
            split_seed: self.split_seed.or(d.split_seed),
            class_names: self.classes.clone().map(absolute),
            seed: self.seed.unwrap_or(d.seed),
            threads: self.common.threads(),
            out: self.out.clone().unwrap_or_else(|| train::default_run_dir(&run_name)),
            augment: AugmentOptions {
                random_crop: d.augment.random_crop && !self.no_random_crop,
                flip: d.augment.flip && !self.no_flip,
                pca_std: self.pca_std.unwrap_or(d.augment.pca_std),
                pca: self.pca.unwrap_or(d.augment.pca),
            },
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            time_limit_minutes: self.time_limit,
            skip_bad: self.bad.skip_bad,
            val_ten_crop: self.val_ten_crop,
            warmup_epochs: self.warmup_epochs.unwrap_or(d.warmup_epochs),
            warmup_max_fraction: self.warmup_max_fraction.unwrap_or(d.warmup_max_fraction),
            loader_threads: self.loader_threads.unwrap_or(d.loader_threads),
            cache_dir: self.cache.cache_dir.as_deref().map(std::path::absolute).transpose()?,
            val_labels: self.val_labels.clone().map(absolute),
            conv: self.conv.unwrap_or_default(),
            precision: self.precision.unwrap_or_default(),
            exchange: self.exchange(d.exchange)?,
            towers: self.towers.map_or(1, usize::from),
            val,
            ..d
        })
    }

    /// The configuration of the run in `dir`: its own, with what a resumed run may change
    /// (epochs, time limit, threads, loader threads, conv, precision, cache folder, the gradient
    /// exchange) taken from the flags.
    fn resumed_config(&self, dir: &std::path::Path) -> Result<TrainConfig> {
        let fixed = self.fixed_by_the_run();
        if !fixed.is_empty() {
            anyhow::bail!(
                "{} cannot change a resumed run: {} holds its settings (only --epochs, --time-limit, \
                 --threads, --loader-threads, --conv, --precision, --cache-dir, --towers and the gradient exchange's flags can change; start a new run with --out to change the others)",
                fixed.join(", "),
                dir.join("config.json").display()
            );
        }
        let mut cfg = TrainConfig::of_run(dir)?;
        cfg.epochs = self.epochs.unwrap_or(cfg.epochs);
        cfg.time_limit_minutes = self.time_limit.or(cfg.time_limit_minutes);
        cfg.loader_threads = self.loader_threads.unwrap_or(cfg.loader_threads);
        cfg.conv = self.conv.unwrap_or(cfg.conv);
        cfg.precision = self.precision.unwrap_or(cfg.precision);
        cfg.exchange = self.exchange(cfg.exchange)?;
        cfg.towers = self.towers.map_or(cfg.towers, usize::from);
        cfg.cache_dir = self.cache.cache_dir.as_deref().map(std::path::absolute).transpose()?.or(cfg.cache_dir);
        if let Some(t) = self.common.threads
            && t != cfg.threads
        {
            if !self.quiet {
                eprintln!(
                    "warning: the run used {} threads; resuming with {t} changes the order of sums, so the weights \
                 will not match an uninterrupted run bit for bit",
                    cfg.threads
                );
            }
            cfg.threads = t;
        }
        Ok(cfg)
    }
}

impl Args {
    /// Says so when the recipe changed a model file's settings (`given` -> `adapted`): the
    /// recipe's changes apply to every model, and a file's author should not be surprised.
    fn note_recipe_changes(&self, model_name: &str, given: &ModelConfig, adapted: &ModelConfig) {
        let from_file = !alexnet::model::VARIANTS.contains(&model_name);
        if from_file && adapted != given && !self.quiet {
            eprintln!(
                "note: the default recipe trains {model_name} with He init, per-channel standardisation and \
                 biases of at most {}; --recipe paper keeps the file's own",
                alexnet::train::recipe::DEFAULT_POSITIVE_BIAS
            );
        }
    }

    /// `was` with the gradient exchange's flags applied.
    fn exchange(&self, was: ExchangeOptions) -> Result<ExchangeOptions> {
        let hang_timeout_s = self.hang_timeout.unwrap_or(was.hang_timeout_s);
        if !(hang_timeout_s.is_finite() && hang_timeout_s >= 1.0) {
            anyhow::bail!("--hang-timeout {hang_timeout_s} must be at least 1 second");
        }
        Ok(ExchangeOptions {
            grad_dtype: self.grad_dtype.unwrap_or(was.grad_dtype),
            overlap: was.overlap && !self.no_grad_overlap,
            hang_timeout_s,
        })
    }

    /// The built-in variant that fits the images in `data`, said in one line.
    fn model_for_images(&self, data: &std::path::Path) -> Result<String> {
        let (name, why) = train::fitting_variant(data)?;
        if !self.quiet {
            eprintln!("model: {name} ({why}; --model chooses another)");
        }
        Ok(name.to_string())
    }

    /// The flags given that set what config.json fixes for a resumed run.
    fn fixed_by_the_run(&self) -> Vec<&'static str> {
        let given = [
            ("--data", self.data.is_some()),
            ("--val", self.val.is_some()),
            ("--val-labels", self.val_labels.is_some()),
            ("--val-split", self.val_split.is_some()),
            ("--split-seed", self.split_seed.is_some()),
            ("--classes", self.classes.is_some()),
            ("--recipe", self.recipe.is_some()),
            ("--model", self.model.is_some()),
            ("--batch", self.batch.is_some()),
            ("--lr", self.lr.is_some()),
            ("--momentum", self.momentum.is_some()),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--sgd", self.sgd.is_some()),
            ("--no-bias-decay", self.no_bias_decay),
            ("--schedule", self.schedule.is_some()),
            ("--patience", self.patience.is_some()),
            ("--lr-drops", self.lr_drops.is_some()),
            ("--lr-factor", self.lr_factor.is_some()),
            ("--step-every", self.step_every.is_some()),
            ("--warmup-epochs", self.warmup_epochs.is_some()),
            ("--warmup-max-fraction", self.warmup_max_fraction.is_some()),
            ("--out", self.out.is_some()),
            ("--seed", self.seed.is_some()),
            ("--no-random-crop", self.no_random_crop),
            ("--no-flip", self.no_flip),
            ("--pca-std", self.pca_std.is_some()),
            ("--pca", self.pca.is_some()),
            ("--dropout", self.dropout.is_some()),
            ("--tanh", self.tanh),
            ("--init", self.init.is_some()),
            ("--normalize", self.normalize.is_some()),
            ("--no-lrn", self.no_lrn),
            ("--no-overlap-pool", self.no_overlap_pool),
            ("--lrn", self.lrn.is_some()),
            ("--lrn-alpha", self.lrn_alpha.is_some()),
            ("--skip-bad", self.bad.skip_bad),
            ("--checkpoint-every", self.checkpoint_every.is_some()),
            ("--val-ten-crop", self.val_ten_crop),
        ];
        given.into_iter().filter(|&(_, g)| g).map(|(name, _)| name).collect()
    }
}

/// `p` made absolute (as given when it does not exist: the run then names it in its error).
fn absolute(p: PathBuf) -> PathBuf {
    std::fs::canonicalize(&p).unwrap_or(p)
}

/// The processes of this run: MPI's world under `mpirun` (with the `mpi` feature), else one.
fn cluster() -> Result<Cluster> {
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].iter().find_map(|v| std::env::var(v).ok());
    if launched.is_none() && std::env::var_os("PMIX_RANK").is_none() {
        return Ok(Cluster::default());
    }
    #[cfg(feature = "mpi")]
    {
        let cluster = Cluster::new(alexnet::cluster::mpi::MpiWorld::init()?);
        let asked = launched.and_then(|n| n.parse::<usize>().ok()).unwrap_or(1);
        if asked > 1 && cluster.size() == 1 {
            anyhow::bail!(
                "started as {asked} processes, but MPI sees only this one: the launcher is not the one of the \
                 MPI library alexnet was built with (Open MPI's mpirun), so each would train the whole run alone"
            );
        }
        Ok(cluster)
    }
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(
        "started by mpirun, but this alexnet was built without MPI, so each copy would train the whole run \
         on its own: build it with `cargo build --release --features mpi` (needs Open MPI)"
    )
}

pub fn exec(a: Args) -> Result<i32> {
    a.bad.apply_limit();
    let cluster = cluster()?;
    if cluster.size() == 1 {
        return run(a, cluster);
    }
    // A process that fails alone must take the others down: they would wait for it in their
    // next collective for ever (and MPI's finalisation waits for them).
    let (rank, size) = (cluster.rank(), cluster.size());
    let on_panic = cluster.clone();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("process {rank} of {size}: {info}");
        on_panic.abort(101)
    }));
    match run(a, cluster.clone()) {
        Err(e) => {
            eprintln!("error in process {rank} of {size}: {e:#}; stopping all {size}");
            cluster.abort(1)
        }
        ok => {
            // The hook holds the last other handle: with both gone MPI is finalised, as mpirun
            // expects of a process that ends well.
            drop(std::panic::take_hook());
            drop(cluster);
            ok
        }
    }
}

fn run(mut a: Args, cluster: Cluster) -> Result<i32> {
    // One voice: rank 0 says what the run is (the model picked, warnings), the others are quiet.
    a.quiet |= !cluster.is_root();
    if cluster.size() > 1 && a.out.is_none() && a.resume.is_none() {
        anyhow::bail!(
            "name the run folder with --out when training over {} processes (each must find the same one)",
            cluster.size()
        );
    }
    let stop = StopHandle::new();
    if cluster.size() > 1 {
        stop_on_sigusr1(stop.clone());
    }
    let handle = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if handle.stop() {
            // A second Ctrl-C: the user really wants out now.
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit at once)");
    });
    let (cfg, resume) = match &a.resume {
        Some(dir) => {
            let p = dir.join("last.safetensors");
            (a.resumed_config(dir)?, Some(Checkpoint::load(&p)?))
        }
        None => (a.new_config()?, None),
    };
    let root = cluster.is_root();
    let opts = RunOptions { stop: stop.clone(), quiet: a.quiet || a.common.json, cluster };
    let outcome = train::train(&cfg, resume.as_ref(), &opts)?;
    let code = if outcome.interrupted && stop.interrupted() { 130 } else { 0 };
    if root {
        a.common.emit(&outcome, |o| {
            if !o.interrupted {
                print_outcome(o)
            }
        })?;
    }
    Ok(code)
}

/// Set by SIGUSR1 (an atomic store is all a signal handler may do).
static SIGUSR1_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    SIGUSR1_SEEN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Data-parallel runs: `mpirun` ends its processes at once on Ctrl-C, but forwards SIGUSR1 to
/// them all (`kill -USR1 <pid of mpirun>`): each then asks its loop to stop, and the loops stop
/// together after the same step with a checkpoint, as Ctrl-C does for one process.
fn stop_on_sigusr1(stop: StopHandle) {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    std::thread::spawn(move || {
        while !SIGUSR1_SEEN.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("SIGUSR1: every process stops after this step, with a checkpoint");
        stop.stop();
    });
}

fn print_outcome(o: &TrainOutcome) {
    let pct = |e: f64| format!("{:.2}%", 100.0 * e);
    let result = match (o.best_val_top1_error, o.best_epoch) {
        (Some(e), Some(epoch)) => {
            format!("best validation top-1 error {} (epoch {epoch}); accuracy {}", pct(e), pct(1.0 - e))
        }
        _ => match &o.last {
            Some(m) => format!("no validation; last epoch's training top-1 error {}", pct(m.train_top1_error)),
            None => "no epoch finished".into(),
        },
    };
    println!("done: {} epochs, {} steps; {result}", o.epochs_done, o.steps);
    println!(
        "run folder {}: metrics.jsonl, curves.png, best.safetensors, last.safetensors, config.json",
        o.run_dir.display()
    );
}
