//! The training loop in stages: [`Trainer::new`] sets the run up (data, statistics, network,
//! optimizer, position), [`Trainer::run_epoch`] runs the steps of one epoch, and
//! [`Trainer::end_epoch`] validates, logs, schedules and checkpoints. [`Trainer::run`] is the
//! whole loop in a dozen lines.
//!
//! Reproducibility: every random choice is a function of the seed and of a position — the
//! epoch's shuffle of `(seed, epoch)`, an image's crop, flip and colour noise of
//! `(seed, epoch, image)`, dropout masks of `(seed, step, layer)` — so a run resumed from a
//! checkpoint ends with the same weights as one never interrupted (same thread count: the
//! order of floating-point sums in the backward pass depends on it).

use super::config::TrainConfig;
use super::metrics::{EpochMetrics, append_metrics, read_metrics, write_metrics};
use super::recipe;
use super::report::{Reporter, progress_bar};
use super::schedule;
use super::state::TrainState;
use super::stop::StopHandle;
use super::tensorboard::EventWriter;
use crate::checkpoint::Checkpoint;
use crate::cluster::{self, Cluster, GradExchange, TowerNetwork};
use crate::data::cache::{OnBadImage, PackedImages};
use crate::data::{
    Augment, CacheStore, ClassInfo, DataError, DataStats, LoaderOptions, SplitError, SplitRecord, Splits, TrainInput,
    permutation,
    source::{self, Packing},
};
use crate::error::{Error, Result};
use crate::eval::{Classifier, EvalResult, evaluate};
use crate::model::{Mode, Network, StepResult};
use crate::optim::Sgd;
use crate::rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Steps timed before the time-budget schedule makes its first plan.
const CALIBRATION_STEPS: u64 = 10;

/// The run folder's latest checkpoint, and the one before it.
pub const LAST: &str = "last.safetensors";
pub const LAST_PREV: &str = "last.prev.safetensors";

/// How a call to [`super::train`] ended.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub epochs_done: usize,
    pub steps: u64,
    pub interrupted: bool,
    pub best_val_top1_error: Option<f64>,
    pub best_epoch: Option<usize>,
    pub last: Option<EpochMetrics>,
}

/// A run in progress.
pub struct Trainer<'a> {
    cfg: &'a TrainConfig,
    stop: StopHandle,
    /// The processes sharing each global batch (data-parallel); rank 0 writes the run folder.
    cluster: Cluster,
    data: Splits,
    classes: Vec<ClassInfo>,
    stats: DataStats,
    input: Arc<TrainInput>,
    pub net: Network,
    pub opt: Sgd,
    pub state: TrainState,
    batches_per_epoch: usize,
    /// `cfg.warmup_epochs` in steps (before the bound by a share of the run: [`Self::warmup_steps`]).
    warmup_epoch_steps: u64,
    history: Vec<EpochMetrics>,
    report: Reporter,
    run_start: Instant,
    epoch_start: Instant,
    /// Images and the loader's seconds making them, this epoch (this process's part of it).
    loader_images: u64,
    loader_seconds: f64,
    /// Seconds the step waited for the loader's next batch, and seconds of the training loop,
    /// this epoch (this process's part of it).
    data_wait_seconds: f64,
    loop_seconds: f64,
    /// Seconds the training thread waited in collectives this epoch (data-parallel runs; an
    /// all-reduce overlapped with the backward pass counts only for what was left to wait).
    comm_seconds: f64,
    /// The data-parallel gradient exchange.
    exchange: GradExchange,
    /// `--towers`: the tower this process computes.
    towers: Option<Towers>,
    /// Rank 0's TensorBoard event file (none if it could not be made: a warning said so).
    events: Option<EventWriter>,
}

/// The metrics log's epochs before `epoch`. Lines of epochs the checkpoint does not include
/// (logged before a failed save) will be run again: `root` rewrites the log without them, so it
/// keeps one line per epoch.
fn history_before(path: &Path, epoch: usize, root: bool) -> Result<Vec<EpochMetrics>> {
    let mut history = read_metrics(path).unwrap_or_default();
    let logged = history.len();
    history.retain(|m| m.epoch < epoch);
    if root && history.len() != logged {
        write_metrics(path, &history).map_err(|e| Error::io(path, e))?;
    }
    Ok(history)
}

/// A global batch must split into equal shares, one a data-parallel process; `--towers T`
/// takes exactly T processes (one tower each, every one reading the whole batch).
fn check_shares(batch: usize, towers: usize, cluster: &Cluster) -> Result<()> {
    if towers > 1 && cluster.size() != towers {
        return Err(Error::Invalid(format!(
            "--towers {towers} runs one tower a process: start exactly {towers} processes (mpirun -np {towers}), not {} \
             (towers and data parallelism together are not built; a run may be resumed with --towers 1)",
            cluster.size()
        )));
    }
    if towers > 1 || batch.is_multiple_of(cluster.size()) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "a batch of {batch} does not split evenly over {} processes: choose a --batch that is a multiple of it",
        cluster.size()
    )))
}

/// `--towers`: this process's tower of the network and its optimizer, which the whole network
/// in [`Trainer::net`] and [`Trainer::opt`] follows when validating and saving.
struct Towers {
    net: TowerNetwork,
    opt: Sgd,
    /// Steps were taken since the whole network was last written.
    whole_is_stale: bool,
}

impl Towers {
    /// This process's tower of `whole` and its share of `opt`'s velocities.
    fn new(cfg: &TrainConfig, whole: &Network, opt: &Sgd, cluster: Cluster) -> Result<Self> {
        let mut net = TowerNetwork::from_full(whole, cluster)?;
        net.set_conv(cfg.conv);
        net.set_precision(cfg.precision.resolve()?);
        let opt = net.velocity_share(opt);
        Ok(Towers { net, opt, whole_is_stale: false })
    }
}

/// [`open_splits`], rank 0 first (packing the cache the first time), the others once it has:
/// N processes on one machine then pack it once, not N times at once. A rank 0 that fails ends
/// them all (the command aborts the run on any process's error).
fn open_splits_in_turn(cfg: &TrainConfig, split_use: SplitUse, quiet: bool, cluster: &Cluster) -> Result<Splits> {
    if !cluster.is_root() {
        cluster.any(false);
    }
    let data = open_splits(cfg, split_use, quiet)?;
    if cluster.is_root() {
        cluster.any(false);
    }
    Ok(data)
}

/// The network, optimizer and position to start from: fresh from `cfg.seed` on `model`, or
/// those of `resume`; computing as `cfg` says.
fn network_and_optimizer(
    cfg: &TrainConfig,
    model: crate::model::ModelConfig,
    resume: Option<&Checkpoint>,
) -> Result<(Network, Sgd, TrainState)> {
    let (mut net, opt, state) = match resume {
        Some(c) => {
            let net = c.network()?;
            let mut opt = Sgd::new(c.sgd.unwrap_or(cfg.sgd), net.params());
            if let Some(v) = &c.velocity {
                opt.velocity.clone_from(v);
            }
            (net, opt, c.train_state.clone().unwrap_or_default())
        }
        None => {
            let net = Network::new(model, cfg.seed)?;
            let opt = Sgd::new(cfg.sgd, net.params());
            (net, opt, TrainState::start(cfg.sgd.lr))
        }
    };
    net.set_conv(cfg.conv);
    net.set_precision(cfg.precision.resolve()?);
    Ok((net, opt, state))
}

/// Packs (or reuses the shared cache of) the images at `path`, with a progress bar. A run from
/// before the shared cache keeps reading its own `RUN_DIR/cache/NAME-SIZE.bin` while that matches.
fn open_images(cfg: &TrainConfig, path: &Path, name: &str, quiet: bool) -> Result<PackedImages> {
    let size = cfg.model.data.stored;
    let legacy = cfg.out.join("cache").join(format!("{name}-{size}.bin"));
    let store = CacheStore::resolve(cfg.cache_dir.as_deref(), path);
    let how = Packing {
        size,
        class_names: cfg.class_names.as_deref(),
        labels: if name == "val" { cfg.val_labels.as_deref() } else { None },
        on_bad: if cfg.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail },
        store: &store,
        legacy: legacy.is_file().then_some(legacy.as_path()),
    };
    let bar = progress_bar(quiet, &format!("packing {name} images"));
    let p = source::open(path, &how, &|d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    })?;
    bar.finish_and_clear();
    Ok(p)
}

/// The run's training and held-out images, as its training sees them (packed into, or reused
/// from, `RUN_DIR/cache`): also how `alexnet eval --held-out RUN_DIR` finds them.
///
/// A fresh run ([`SplitUse::Fresh`]) records its split in `RUN_DIR/split.json`; a resumed run and the
/// commands that evaluate a run's held-out images must then match that record, so a data
/// folder that changed since (images added or removed, which moves every image's side of the
/// split) is an error, never training or evaluating on other images than the run's. Runs from
/// before the record are recorded by whichever command opens them next.
pub fn open_splits(cfg: &TrainConfig, split_use: SplitUse, quiet: bool) -> Result<Splits> {
    let train = Arc::new(open_images(cfg, &cfg.data, "train", quiet)?);
    let val = cfg.val.as_deref().map(|v| open_images(cfg, v, "val", quiet).map(Arc::new)).transpose()?;
    let splits = Splits::new(train, val, cfg.val_split, cfg.split_seed.unwrap_or(cfg.seed)).map_err(|e| {
        let path = match e {
            SplitError::UnknownClasses(_) => cfg.val.clone().unwrap_or_default(),
            SplitError::NoTrainingImages(_) => cfg.data.clone(),
        };
        Error::Data(DataError::layout(path, e.to_string()))
    })?;
    check_split(cfg, &splits.record(), split_use)?;
    Ok(splits)
}

/// The run folder's record of its split.
pub const SPLIT: &str = "split.json";

/// Who opens a run's split (see [`open_splits`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitUse {
    /// A new run: its split is recorded (a record left by a first attempt that failed before
    /// its first step is not this run's).
    Fresh,
    /// Resuming a run whose checkpoint's statistics were taken over `trained_on` images: for a
    /// run from before split.json, the check that is left.
    Resume { trained_on: usize },
    /// Evaluating a run's held-out images.
    Evaluate,
    /// A data-parallel process other than rank 0: rank 0 checks and records the split, the
    /// others only open the data (so that one file has one writer).
    Follower,
}

/// Compares `now` with the run's recorded split, or records it if there is none yet or the run
/// is fresh.
fn check_split(cfg: &TrainConfig, now: &SplitRecord, split_use: SplitUse) -> Result<()> {
    let path = cfg.out.join(SPLIT);
    let recorded = match split_use {
        SplitUse::Follower => return Ok(()),
        SplitUse::Fresh => Err(std::io::ErrorKind::NotFound.into()),
        _ => crate::files::read_regular(&path, 1 << 20),
    };
    let changed = |was: &str| {
        Error::Data(DataError::layout(
            &cfg.out,
            format!(
                "the data changed since this run split it ({}): {was}, the data now gives {} and {} \
                 (or other images at the same counts); restore the data, or start a new run with another --out",
                cfg.val.as_deref().map_or(cfg.data.display().to_string(), |v| format!(
                    "{} or {}",
                    cfg.data.display(),
                    v.display()
                )),
                now.training,
                now.held_out
            ),
        ))
    };
    match recorded {
        Ok(bytes) => {
            let was: SplitRecord = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("{}: not a split record: {e}", path.display())))?;
            if &was != now {
                let recorded = format!(
                    "{} records {} training and {} held-out images",
                    path.display(),
                    was.training,
                    was.held_out
                );
                return Err(changed(&recorded));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let SplitUse::Resume { trained_on } = split_use
                && trained_on != now.training
            {
                return Err(changed(&format!("its checkpoint's statistics are of {trained_on} training images")));
            }
            // Best effort: evaluating a run in a read-only folder must not fail for want of it
            // (training writes config.json there first, so a new run always gets its record).
            let text = serde_json::to_string_pretty(now).expect("a split record serialises");
            let _ = crate::files::write_atomic(&path, text.as_bytes());
            Ok(())
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Options that cannot work together, refused before any step.
fn check_options(cfg: &TrainConfig, crop: usize, spec: &crate::data::DataSpec) -> Result<()> {
    if spec.stored + 2 * spec.pad < crop {
        return Err(Error::Invalid(format!(
            "model input {crop} is larger than the stored images ({}) plus padding",
            spec.stored
        )));
    }
    if cfg.loader_threads == 0 || cfg.loader_threads > 256 {
        return Err(Error::Invalid(format!("--loader-threads {} must be 1 to 256", cfg.loader_threads)));
    }
    if !(cfg.warmup_max_fraction > 0.0 && cfg.warmup_max_fraction <= 1.0) {
        return Err(Error::Invalid(format!(
            "--warmup-max-fraction {} must be above 0 and at most 1 (1: no bound)",
            cfg.warmup_max_fraction
        )));
    }
    if cfg.schedule.timed() && cfg.time_limit_minutes.is_none() {
        return Err(Error::Invalid("--schedule time-cosine plans over the time available: give --time-limit".into()));
    }
    Ok(())
}

impl<'a> Trainer<'a> {
    /// Opens and splits the data, takes the statistics of the training images, and builds the
    /// network, optimizer and position: fresh from `cfg.seed`, or those of `resume`.
    pub fn new(
        cfg: &'a TrainConfig,
        resume: Option<&Checkpoint>,
        stop: StopHandle,
        cluster: Cluster,
        quiet: bool,
    ) -> Result<Self> {
        check_shares(cfg.batch, cfg.towers, &cluster)?;
        let split_use = resume.map_or(SplitUse::Fresh, |c| SplitUse::Resume { trained_on: c.stats.count });
        let (split_use, quiet) = if cluster.is_root() { (split_use, quiet) } else { (SplitUse::Follower, true) };
        let data = open_splits_in_turn(cfg, split_use, quiet, &cluster)?;
        let classes = data.train.classes.clone();
        let model = cfg.model.clone().with_classes(classes.len());
        let (crop, spec) = (model.input[1], model.data);
        check_options(cfg, crop, &spec)?;
        // Statistics of exactly the training images (a resumed run keeps the ones it started with).
        let stats = match resume {
            Some(c) => c.stats.clone(),
            None => data.train_stats()?,
        };
        let augment = Augment::new(&cfg.augment, &stats);
        let input = Arc::new(TrainInput::new(&spec, &stats, augment, crop, cfg.seed));
        let (net, opt, state) = network_and_optimizer(cfg, model, resume)?;
        let batches_per_epoch = data.train_indices.len() / cfg.batch.max(1);
        if batches_per_epoch == 0 {
            return Err(Error::Invalid(format!(
                "{} training images do not fill one batch of {}",
                data.train_indices.len(),
                cfg.batch
            )));
        }
        let history = history_before(&cfg.out.join("metrics.jsonl"), state.epoch, cluster.is_root())?;
        let run_start = Instant::now() - Duration::from_secs_f64(state.elapsed_seconds);
        let report = Reporter::new(quiet || !cluster.is_root(), batches_per_epoch);
        cluster.arm_watchdog(Duration::from_secs_f64(cfg.exchange.hang_timeout_s));
        let mut t = Self {
            cfg,
            stop,
            cluster: cluster.clone(),
            data,
            classes,
            stats,
            input,
            net,
            opt,
            state,
            batches_per_epoch,
            warmup_epoch_steps: (cfg.warmup_epochs.max(0.0) * batches_per_epoch as f32).round() as u64,
            history,
            report,
            run_start,
            epoch_start: run_start,
            loader_images: 0,
            loader_seconds: 0.0,
            data_wait_seconds: 0.0,
            loop_seconds: 0.0,
            comm_seconds: 0.0,
            exchange: GradExchange::new(cluster.clone(), &cfg.exchange),
            towers: None,
            events: None,
        };
        if t.cluster.is_root() {
            t.events = t.open_events();
        }
        if cfg.towers > 1 {
            t.towers = Some(Towers::new(cfg, &t.net, &t.opt, cluster)?);
        }
        t.say_start();
        Ok(t)
    }

    fn say_start(&self) {
        self.report.say(&format!(
            "training {} ({} parameters) on {} images of {} classes, validating on {}; batch {}, {} batches/epoch, {} threads{}",
            self.net.config.name,
            crate::model::plan::thousands(self.net.param_count()),
            self.data.train_indices.len(),
            self.net.classes(),
            self.data.val.as_ref().map_or(0, |v| v.indices.len()),
            self.cfg.batch,
            self.batches_per_epoch,
            self.cfg.threads,
            match (self.cluster.size(), self.cfg.towers) {
                (1, _) => String::new(),
                (n, t) if t > 1 => format!(" in each of {n} processes, one tower each (the whole batch each)"),
                (n, _) => format!(" in each of {n} processes ({} images each a batch)", self.cfg.batch / n),
            }
        ));
    }

    /// The whole run: epochs until the last, a stop, or the time limit.
    pub fn run(mut self) -> Result<TrainOutcome> {
        let mut last = self.history.last().cloned();
        let mut interrupted = false;
        while self.state.epoch < self.cfg.epochs {
            if !self.run_epoch()? {
                interrupted = true;
                break;
            }
            let (m, out_of_time) = self.end_epoch()?;
            last = Some(m);
            if out_of_time {
                break;
            }
        }
        self.report.finish();
        let s = &self.state;
        Ok(TrainOutcome {
            run_dir: self.cfg.out.clone(),
            epochs_done: s.epoch,
            steps: s.step,
            interrupted,
            // Without validation the state's best is of the training loss: not an error rate.
            best_val_top1_error: s.best_val_top1.filter(|_| self.data.val.is_some()),
            best_epoch: s.best_epoch.filter(|_| self.data.val.is_some()).map(|e| e + 1),
            last,
        })
    }

    /// The epoch's shuffle of the training images.
    fn epoch_order(&self, epoch: usize) -> Vec<u32> {
        let idx = &self.data.train_indices;
        permutation(idx.len(), rng::mix(&[self.cfg.seed, epoch as u64])).into_iter().map(|i| idx[i as usize]).collect()
    }

    /// The steps of the current epoch, from where the state stands. Returns false when stopped
    /// (a checkpoint is saved first).
    pub fn run_epoch(&mut self) -> Result<bool> {
        let (cfg, epoch) = (self.cfg, self.state.epoch);
        if self.state.batch_in_epoch == 0 {
            self.state.lr = cfg.schedule.lr_at(cfg.sgd.lr, &self.state, epoch);
        }
        let opts = LoaderOptions {
            start_batch: self.state.batch_in_epoch,
            workers: cfg.loader_threads,
            ..LoaderOptions::new(cfg.batch / self.data_parallel().1)
        };
        let (rank, size) = self.data_parallel();
        let order = cluster::shard(&self.epoch_order(epoch), cfg.batch, rank, size);
        let mut loader = opts.spawn(self.data.train.clone(), order, &self.input, epoch);
        self.report.start_epoch(epoch, cfg.epochs, self.state.batch_in_epoch);
        self.epoch_start = Instant::now() - Duration::from_secs_f64(self.state.epoch_seconds);
        let (steps_before, t_steps) = (self.state.step, Instant::now());
        (self.loader_images, self.loader_seconds, self.data_wait_seconds, self.comm_seconds) = (0, 0.0, 0.0, 0.0);
        let t_epoch = Instant::now();
        loop {
            // The time spent here is the time data held training up.
            let t_wait = Instant::now();
            let Some(b) = loader.next() else { break };
            let b = b?;
            let waited = t_wait.elapsed().as_secs_f64();
            self.data_wait_seconds += waited;
            self.loader_images += b.labels.len() as u64;
            self.loader_seconds += b.make_seconds;
            if cfg.schedule.per_step() {
                if cfg.schedule.timed()
                    && self.state.planned_steps.is_none()
                    && self.state.step >= steps_before + CALIBRATION_STEPS
                {
                    let per_step = t_steps.elapsed().as_secs_f64() / (self.state.step - steps_before) as f64;
                    // The slowest process's pace, so that every process plans the same steps.
                    self.plan_budget(self.cluster.max(per_step));
                }
                let total = (cfg.epochs * self.batches_per_epoch) as u64;
                self.state.lr = cfg.schedule.lr_at_step(cfg.sgd.lr, &self.state, total);
            }
            // The schedule's lr (the plateau schedule's memory stays in the state), ramped up
            // during the warm-up.
            self.opt.config.lr = self.state.lr * recipe::warmup_factor(self.state.step, self.warmup_steps());
            let (r, images) = self.step(&b.x, &b.labels);
            if !r.loss.is_finite() {
                self.report.abandon();
                let last = cfg.out.join("last.safetensors");
                let s = &self.state;
                let lr = self.opt.config.lr;
                return Err(Error::Diverged { loss: r.loss, epoch: epoch + 1, step: s.step, lr, last });
            }
            self.state.record_step(b.index, images, r.loss, r.correct);
            self.report.step(&self.state, images, waited);
            // Every process stops at the same step when any is told to.
            let t_comm = Instant::now();
            let stop = self.cluster.any(self.stop.should_stop(self.state.step));
            self.comm_seconds += t_comm.elapsed().as_secs_f64();
            if stop || (cfg.checkpoint_every > 0 && self.state.step.is_multiple_of(cfg.checkpoint_every)) {
                self.state.epoch_seconds = self.epoch_start.elapsed().as_secs_f64();
                self.state.elapsed_seconds = self.run_start.elapsed().as_secs_f64();
                self.save(LAST)?;
            }
            if stop {
                self.report.abandon();
                self.report.say(&format!(
                    "stopped at epoch {} batch {} (step {}); saved {}. Continue with: alexnet train --resume {}",
                    epoch + 1,
                    self.state.batch_in_epoch,
                    self.state.step,
                    cfg.out.join("last.safetensors").display(),
                    cfg.out.display()
                ));
                return Ok(false);
            }
        }
        self.loop_seconds = t_epoch.elapsed().as_secs_f64();
        Ok(true)
    }

    /// One step on this process's images of the global batch: with one process,
    /// [`Network::train_step`]; with several, each computes the gradients of its share, the
    /// gradients and the loss are averaged over all of them, and each takes the same update.
    /// Returns the step's result over the global batch and that batch's size.
    fn step(&mut self, x: &[f32], labels: &[usize]) -> (StepResult, usize) {
        let (seed, step, n) = (self.cfg.seed, self.state.step, labels.len());
        if let Some(t) = &mut self.towers {
            let r = t.net.loss_and_gradients(x, labels, Mode::Train { seed, step, first_image: 0 });
            self.comm_seconds += t.net.take_comm_seconds();
            if r.loss.is_finite() {
                t.opt.config = self.opt.config;
                t.opt.step(t.net.params_mut());
                t.whole_is_stale = true;
            }
            return (r, n);
        }
        if self.cluster.size() == 1 {
            return (self.net.train_step(x, labels, seed, step, &mut self.opt), n);
        }
        let first_image = self.cluster.rank() * n;
        let r = self.net.forward_loss(x, labels, Mode::Train { seed, step, first_image });
        // The global loss first: every process then takes the step, or none does.
        let t_comm = Instant::now();
        let mut totals = [f64::from(r.loss) * n as f64, r.correct as f64, n as f64];
        self.cluster.sum_f64(&mut totals);
        let loss = (totals[0] / totals[2]) as f32;
        self.comm_seconds += t_comm.elapsed().as_secs_f64();
        if loss.is_finite() {
            // Each process's gradients are of its share's mean loss: weighted by its share.
            let ex = &mut self.exchange;
            ex.begin((n as f64 / totals[2]) as f32);
            self.net.backward_loss(&mut |first, params| ex.ready(first, params));
            self.comm_seconds += ex.finish(self.net.params_mut()).as_secs_f64();
            self.opt.step(self.net.params_mut());
        }
        (StepResult { loss, correct: totals[1] as usize }, totals[2] as usize)
    }

    /// Steps of warm-up: the warm-up epochs, at most `cfg.warmup_max_fraction` of the planned
    /// steps. A time-limited run plans after its first [`CALIBRATION_STEPS`]; until then its
    /// epochs stand for the plan, so a ramp that the plan shortens steepens from there on.
    fn warmup_steps(&self) -> u64 {
        let epochs = (self.cfg.epochs * self.batches_per_epoch) as u64;
        let planned = self.state.planned_steps.unwrap_or(epochs);
        recipe::warmup_steps(self.warmup_epoch_steps, self.cfg.warmup_max_fraction, planned)
    }

    /// The time-budget schedule's plan: the steps that fit in what is left of `--time-limit` at
    /// `seconds_per_step` (everything included), at most the run's epochs.
    fn plan_budget(&mut self, seconds_per_step: f64) {
        let limit = self.cfg.time_limit_minutes.unwrap_or_default() * 60.0;
        let remaining = limit - self.run_start.elapsed().as_secs_f64();
        let max_steps = (self.cfg.epochs * self.batches_per_epoch) as u64;
        let per = self.batches_per_epoch as u64;
        self.state.planned_steps =
            Some(schedule::plan_steps(self.state.step, remaining, seconds_per_step, max_steps, per));
    }

    /// Validation on the held-out images, if there are any.
    fn validate(&mut self) -> Result<Option<EvalResult>> {
        let Some(v) = self.data.val.as_ref() else { return Ok(None) };
        let (rank, size) = (self.cluster.rank(), self.cluster.size());
        // Data-parallel: each process scores every size-th held-out image from its rank on, and
        // the sums are added, so that all hold the same figures (and the schedule decides alike).
        let share: Vec<u32> = v.indices.iter().skip(rank).step_by(size).copied().collect();
        let mut member = [Classifier::new(&mut self.net, &self.input.norm)];
        let (ten, batch) = (self.cfg.val_ten_crop, self.cfg.batch);
        let r = match share.is_empty() {
            true => EvalResult { images: 0, top1_error: 0.0, top5_error: 0.0, loss: 0.0 },
            false => evaluate(&mut member, &v.images, &share, &v.class_map, ten, batch, &|_| {})?,
        };
        if size == 1 {
            return Ok(Some(r));
        }
        let n = r.images as f64;
        let mut t = [n, n * r.top1_error, n * r.top5_error, n * r.loss];
        self.cluster.sum_f64(&mut t);
        let all = t[0].max(1.0);
        Ok(Some(EvalResult { images: t[0] as usize, top1_error: t[1] / all, top5_error: t[2] / all, loss: t[3] / all }))
    }

    /// After the last step of an epoch: validation, the schedule, checkpoints, the metrics line
    /// and curves. Returns the epoch's metrics and whether the time limit is reached.
    pub fn end_epoch(&mut self) -> Result<(EpochMetrics, bool)> {
        let cfg = self.cfg;
        let epoch_seconds = self.epoch_start.elapsed().as_secs_f64();
        self.gather_towers();
        let val = self.validate()?;
        if cfg.schedule.timed() {
            // Re-plan from the whole epoch's time, validation included, so the decay ends with
            // the last epoch that fits.
            let spent = self.cluster.max(self.epoch_start.elapsed().as_secs_f64());
            self.plan_budget(spent / self.batches_per_epoch.max(1) as f64);
        }
        let s = &self.state;
        let m = EpochMetrics {
            epoch: s.epoch,
            step: s.step,
            lr: s.lr,
            train_loss: s.epoch_loss(),
            train_top1_error: s.epoch_top1_error(),
            val_loss: val.as_ref().map(|v| v.loss),
            val_top1_error: val.as_ref().map(|v| v.top1_error),
            val_top5_error: val.as_ref().map(|v| v.top5_error),
            epoch_seconds,
            wall_seconds: self.run_start.elapsed().as_secs_f64(),
            images_per_s: s.epoch_images as f64 / epoch_seconds.max(1e-9),
            loader_images_per_s: (self.loader_seconds > 0.0).then(|| self.loader_images as f64 / self.loader_seconds),
            data_wait_fraction: (self.loop_seconds > 0.0).then(|| self.data_wait_seconds / self.loop_seconds),
            comm_fraction: (self.cluster.size() > 1 && self.loop_seconds > 0.0)
                .then(|| self.comm_seconds / self.loop_seconds),
        };
        self.report.epoch_done(&m, cfg.epochs);
        let ln_classes = (self.net.classes() as f64).ln();
        if m.epoch >= 2 && (m.train_loss - ln_classes).abs() < 0.02 * ln_classes {
            self.report.warn_stuck(m.train_loss, self.net.classes());
        }
        // Schedule and best model: on validation top-1 error (train loss without validation).
        let improved = self.state.record_score(m.val_top1_error.unwrap_or(m.train_loss));
        if let Some(lr) = cfg.schedule.after_epoch(&mut self.state) {
            self.report.say(&format!("validation error stopped improving: learning rate now {lr:.2e}"));
        }
        self.state.next_epoch();
        // The slowest process's clock, so that every process decides the time limit alike.
        self.state.elapsed_seconds = self.cluster.max(self.run_start.elapsed().as_secs_f64());
        let epoch_seconds = self.cluster.max(epoch_seconds);
        self.save(LAST)?;
        // The metrics line only once its checkpoint is on disk: a failed save is redone on
        // resume without a duplicate line.
        self.log_metrics(&m)?;
        if improved {
            self.save("best.safetensors")?;
        }
        let out_of_time = cfg.time_limit_minutes.is_some_and(|limit| {
            self.state.elapsed_seconds + epoch_seconds > limit * 60.0 && self.state.epoch < cfg.epochs
        });
        if out_of_time {
            let limit = cfg.time_limit_minutes.unwrap_or_default();
            self.report.say(&format!("time limit of {limit} minutes reached after {} epochs", self.state.epoch));
        }
        Ok((m, out_of_time))
    }

    fn log_metrics(&mut self, m: &EpochMetrics) -> Result<()> {
        if !self.cluster.is_root() {
            return Ok(());
        }
        let path = self.cfg.out.join("metrics.jsonl");
        append_metrics(&path, m).map_err(|e| Error::io(&path, e))?;
        if let Err(e) = self.log_events(m) {
            self.report.say(&format!("warning: could not write TensorBoard's events: {e}; metrics.jsonl has them"));
            self.events = None;
        }
        self.history.push(m.clone());
        let title = format!("{} on {}", self.net.config.name, self.cfg.data.display());
        if let Err(e) = crate::plot::training_curves(&self.history, &title, &self.cfg.out.join("curves.png")) {
            self.report.say(&format!("warning: could not draw curves.png: {e}"));
        }
        Ok(())
    }

    /// A TensorBoard event file in the run folder (a resumed run starts another beside it).
    fn open_events(&self) -> Option<EventWriter> {
        EventWriter::create(&self.cfg.out)
            .map_err(|e| {
                self.report.say(&format!("warning: no TensorBoard events ({e}); metrics.jsonl has the figures"))
            })
            .ok()
    }

    /// The epoch's figures as TensorBoard scalars at its last step, and conv1's filters.
    fn log_events(&mut self, m: &EpochMetrics) -> std::io::Result<()> {
        let Some(ev) = &mut self.events else { return Ok(()) };
        let step = m.step as i64;
        let scalars = [
            ("train/loss", Some(m.train_loss)),
            ("train/top1_error", Some(m.train_top1_error)),
            ("val/loss", m.val_loss),
            ("val/top1_error", m.val_top1_error),
            ("val/top5_error", m.val_top5_error),
            ("lr", Some(f64::from(m.lr))),
            ("images_per_s", Some(m.images_per_s)),
        ];
        for (tag, v) in scalars {
            if let Some(v) = v {
                ev.scalar(tag, step, v as f32)?;
            }
        }
        let Some(png) = crate::plot::conv1_filters_png(&self.net) else { return Ok(()) };
        let (png, width, height) = png.map_err(std::io::Error::other)?;
        ev.image_png("conv1/filters", step, &png, width, height)
    }

    /// This process's place among the data-parallel processes and their number: with towers,
    /// every process reads the whole batch.
    fn data_parallel(&self) -> (usize, usize) {
        match self.cfg.towers {
            1 => (self.cluster.rank(), self.cluster.size()),
            _ => (0, 1),
        }
    }

    /// With towers: the whole network and optimizer brought up to date from every tower's
    /// (every process calls this at the same points).
    fn gather_towers(&mut self) {
        if let Some(t) = &mut self.towers
            && t.whole_is_stale
        {
            t.net.write_full(&mut self.net);
            t.net.write_full_velocity(&t.opt, &mut self.opt);
            t.whole_is_stale = false;
        }
    }

    /// Writes a checkpoint of the run as it stands into the run folder (rank 0; every process
    /// calls this at the same points); `last` keeps the one before as `last.prev.safetensors`.
    fn save(&mut self, name: &str) -> Result<()> {
        self.gather_towers();
        let saved = if self.cluster.is_root() { self.write_checkpoint(name) } else { Ok(()) };
        // The others wait for rank 0's write here, off the watchdog's clock: a checkpoint of
        // half a gigabyte on a slow disk is not a hung process.
        self.cluster.barrier_unwatched();
        saved
    }

    fn write_checkpoint(&self, name: &str) -> Result<()> {
        let path = self.cfg.out.join(name);
        let ck = Checkpoint::capture(&self.net, &self.classes, &self.stats, Some(&self.opt), Some(&self.state));
        if name == LAST {
            ck.save_keeping_previous(&path, &self.cfg.out.join(LAST_PREV))?;
        } else {
            ck.save(&path)?;
        }
        Ok(())
    }
}
