//! The training loop: batches from the loader, forward, loss, backward, SGD step; at each epoch
//! validation, the learning-rate schedule, metrics, curves and checkpoints.
//!
//! Reproducibility: every random choice is a function of the seed and of a position — the
//! epoch's shuffle of `(seed, epoch)`, an image's crop, flip and colour noise of
//! `(seed, epoch, image)`, dropout masks of `(seed, step, layer)` — so a run resumed from a
//! checkpoint ends with the same weights as one never interrupted (same thread count: the
//! order of floating-point sums in the backward pass depends on it).

use crate::data::augment::{Augment, Normalizer, train_sample};
use crate::data::cache::{OnBadImage, PackedImages};
use crate::data::loader::{Loader, MakeInput};
use crate::data::{ClassInfo, DataStats, source};
use crate::eval::{EvalResult, Member, evaluate, in_top_k};
use crate::io::plot::{self, EpochMetrics};
use crate::io::{Checkpoint, TrainState};
use crate::kernels::loss::softmax_cross_entropy;
use crate::model::config::{Init, LayerSpec};
use crate::model::{Mode, ModelConfig, Network};
use crate::optim::{Sgd, SgdConfig};
use crate::rng;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How the learning rate changes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// The paper: divide by `1/factor` when the validation error has not improved for `patience`
    /// epochs, at most `max_drops` times.
    Plateau { patience: usize, factor: f32, max_drops: usize },
    /// Multiply by `factor` every `every` epochs.
    Step { every: usize, factor: f32 },
    /// Cosine from the initial lr down to `min_lr` over the run.
    Cosine { min_lr: f32 },
}

/// Where PCA colour noise takes its eigenvectors from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcaSource {
    /// The training set's own RGB covariance (the paper).
    Data,
    /// The published ImageNet eigenvalues and eigenvectors.
    Imagenet,
}

/// The whole configuration of a run; written to RUN_DIR/config.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Training images: folder, cache file or IDX file.
    pub data: PathBuf,
    pub val: Option<PathBuf>,
    /// Fraction of `data` held out for validation when `val` is not given.
    pub val_split: f32,
    pub class_names: Option<PathBuf>,
    pub model: ModelConfig,
    pub epochs: usize,
    pub batch: usize,
    pub sgd: SgdConfig,
    pub schedule: Schedule,
    pub seed: u64,
    pub threads: usize,
    pub out: PathBuf,
    pub random_crop: bool,
    pub flip: bool,
    pub pca_std: f32,
    pub pca: PcaSource,
    /// Save RUN_DIR/last.safetensors every this many steps as well as every epoch (0: epochs only).
    pub checkpoint_every: u64,
    /// Stop after the last epoch that fits in this many minutes.
    pub time_limit_minutes: Option<f64>,
    pub skip_bad: bool,
    /// Validate with the ten-crop average instead of the centre crop.
    pub val_ten_crop: bool,
    /// Stop as if interrupted after this many steps (tests of resuming).
    #[serde(default)]
    pub stop_after_steps: Option<u64>,
    #[serde(default)]
    pub quiet: bool,
}

/// How a call to [`train`] ended.
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

/// Set by Ctrl-C: the loop saves a checkpoint at the next step and returns.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Applies model-level switches from the CLI.
pub fn customise_model(mut m: ModelConfig, tanh: bool, dropout: Option<f32>, init: Option<Init>) -> ModelConfig {
    m = m.with_activation(tanh);
    if let Some(p) = dropout {
        for l in &mut m.layers {
            if let LayerSpec::Dropout { p: q } = l {
                *q = p;
            }
        }
    }
    if let Some(i) = init {
        m.init = i;
    }
    m
}

/// The training data, the validation data and which images of each are used.
struct Splits {
    train: Arc<PackedImages>,
    train_idx: Vec<u32>,
    val: Option<(Arc<PackedImages>, Vec<u32>, Vec<usize>)>,
}

fn open_data(cfg: &TrainConfig, path: &Path, name: &str) -> Result<PackedImages> {
    let size = cfg.model.data.stored;
    let cache = cfg.out.join("cache").join(format!("{name}-{size}.bin"));
    let bar = if cfg.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}").expect("template"));
    bar.set_message(format!("packing {name} images"));
    let on_bad = if cfg.skip_bad { OnBadImage::Skip } else { OnBadImage::Fail };
    let p = source::open(path, size, cfg.class_names.as_deref(), &cache, on_bad, &|d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    })
    .with_context(|| format!("reading {name} data"))?;
    bar.finish_and_clear();
    Ok(p)
}

fn splits(cfg: &TrainConfig) -> Result<Splits> {
    let train = Arc::new(open_data(cfg, &cfg.data, "train")?);
    let all: Vec<u32> = (0..train.count as u32).collect();
    if let Some(v) = &cfg.val {
        let val = Arc::new(open_data(cfg, v, "val")?);
        let map = crate::eval::class_map(&val.classes, &train.classes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", v.display()))?;
        let idx = (0..val.count as u32).collect();
        return Ok(Splits { train, train_idx: all, val: Some((val, idx, map)) });
    }
    let n_val = ((train.count as f64) * cfg.val_split as f64).round() as usize;
    if n_val == 0 {
        return Ok(Splits { train, train_idx: all, val: None });
    }
    if n_val >= train.count {
        bail!("--val-split {} leaves no training images", cfg.val_split);
    }
    let perm = permutation(train.count, rng::mix(&[cfg.seed, 0x5_911]));
    let (tr, va) = perm.split_at(train.count - n_val);
    let (mut tr, mut va) = (tr.to_vec(), va.to_vec());
    tr.sort_unstable();
    va.sort_unstable();
    let map = (0..train.classes.len()).collect();
    Ok(Splits { val: Some((train.clone(), va, map)), train, train_idx: tr })
}

/// A permutation of `0..n` (Fisher–Yates driven by the counter RNG).
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng::splitmix64(seed ^ rng::splitmix64(i as u64)) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// The next free `runs/<model>-N`.
pub fn default_run_dir(model: &str) -> PathBuf {
    (1..).map(|i| PathBuf::from(format!("runs/{model}-{i}"))).find(|p| !p.exists()).expect("some N is free")
}

fn lr_at(cfg: &TrainConfig, state: &TrainState, epoch: usize) -> f32 {
    match cfg.schedule {
        Schedule::Plateau { .. } => state.lr,
        Schedule::Step { every, factor } => cfg.sgd.lr * factor.powi((epoch / every.max(1)) as i32),
        Schedule::Cosine { min_lr } => {
            let t = epoch as f32 / cfg.epochs.max(1) as f32;
            min_lr + 0.5 * (cfg.sgd.lr - min_lr) * (1.0 + (std::f32::consts::PI * t).cos())
        }
    }
}

/// Trains as `cfg` says; with `resume`, continues the run whose checkpoint that is.
pub fn train(cfg: &TrainConfig, resume: Option<&Checkpoint>) -> Result<TrainOutcome> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    if resume.is_none() && cfg.out.join("last.safetensors").exists() {
        bail!("{} already holds a run: continue it with --resume {0}, or choose another --out", cfg.out.display());
    }
    std::fs::write(cfg.out.join("config.json"), serde_json::to_string_pretty(cfg)?)
        .with_context(|| format!("writing {}", cfg.out.join("config.json").display()))?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build()?;
    pool.install(|| run(cfg, resume))
}

fn say(cfg: &TrainConfig, bar: &ProgressBar, msg: &str) {
    if !cfg.quiet {
        bar.suspend(|| println!("{msg}"));
    }
}

fn run(cfg: &TrainConfig, resume: Option<&Checkpoint>) -> Result<TrainOutcome> {
    let data = splits(cfg)?;
    let classes: Vec<ClassInfo> = data.train.classes.clone();
    let model = cfg.model.clone().with_classes(classes.len());
    let crop = model.input[1];
    let spec = model.data;
    if spec.stored + 2 * spec.pad < crop {
        bail!("model input {crop} is larger than the stored images ({}) plus padding", spec.stored);
    }
    // Statistics of exactly the training images (a resumed run keeps the ones it started with).
    let stats: DataStats = match resume {
        Some(c) => c.stats.clone(),
        None if data.train_idx.len() == data.train.count => data.train.stats.clone(),
        None => data.train.stats_of(&data.train_idx),
    };
    let norm = Arc::new(Normalizer::new(&spec, &stats));
    let mut aug =
        Augment { random_crop: cfg.random_crop, flip: cfg.flip, pca_std: cfg.pca_std, ..Augment::paper(&stats) };
    if cfg.pca == PcaSource::Imagenet {
        (aug.eigval, aug.eigvec) = DataStats::imagenet_pca();
    }
    let aug = Arc::new(aug);

    let (mut net, mut opt, mut state) = match resume {
        Some(c) => {
            let net = c.network();
            let mut opt = Sgd::new(c.sgd.unwrap_or(cfg.sgd), &net.params);
            if let Some(v) = &c.velocity {
                opt.velocity.clone_from(v);
            }
            (net, opt, c.train_state.clone().unwrap_or_default())
        }
        None => {
            let net = Network::new(model.clone(), cfg.seed)?;
            let opt = Sgd::new(cfg.sgd, &net.params);
            (net, opt, TrainState { lr: cfg.sgd.lr, ..Default::default() })
        }
    };
    let classes_n = net.classes();
    let input_len = net.input_len();
    let batches_per_epoch = data.train_idx.len() / cfg.batch;
    if batches_per_epoch == 0 {
        bail!("{} training images do not fill one batch of {}", data.train_idx.len(), cfg.batch);
    }
    let metrics_path = cfg.out.join("metrics.jsonl");
    let mut history = plot::read_metrics(&metrics_path).unwrap_or_default();
    history.retain(|m| m.epoch < state.epoch);
    let run_start = Instant::now() - std::time::Duration::from_secs_f64(state.elapsed_seconds);
    let mut last_metrics = history.last().cloned();
    let ln_classes = (classes_n as f64).ln();

    let bar = if cfg.quiet { ProgressBar::hidden() } else { ProgressBar::new(batches_per_epoch as u64) };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches {msg} ETA {eta}")
            .expect("template"),
    );
    say(
        cfg,
        &bar,
        &format!(
            "training {} ({} parameters) on {} images of {} classes, validating on {}; batch {}, {} batches/epoch, {} threads",
            model.name,
            crate::model::summary::thousands(net.param_count()),
            data.train_idx.len(),
            classes_n,
            data.val.as_ref().map_or(0, |v| v.1.len()),
            cfg.batch,
            batches_per_epoch,
            cfg.threads
        ),
    );

    let save = |net: &Network, opt: &Sgd, state: &TrainState, name: &str| -> Result<()> {
        let path = cfg.out.join(name);
        Checkpoint::capture(net, &classes, &stats, Some(opt), Some(state))
            .save(&path)
            .with_context(|| format!("saving {}", path.display()))
    };

    let mut dlogits = vec![0.0f32; cfg.batch * classes_n];
    let mut interrupted = false;
    while state.epoch < cfg.epochs {
        let epoch = state.epoch;
        if state.batch_in_epoch == 0 {
            state.lr = lr_at(cfg, &state, epoch);
        }
        opt.config.lr = state.lr;
        let order: Vec<u32> = permutation(data.train_idx.len(), rng::mix(&[cfg.seed, epoch as u64]))
            .into_iter()
            .map(|i| data.train_idx[i as usize])
            .collect();
        let (n2, a2, seed, pad) = (norm.clone(), aug.clone(), cfg.seed, spec.pad);
        let make: Arc<MakeInput> = Arc::new(move |img: &[u8], i: usize, out: &mut [f32]| {
            train_sample(img, &n2, &a2, crop, pad, rng::mix(&[seed, epoch as u64, i as u64, 0xa06]), out)
        });
        let loader =
            Loader::spawn(data.train.clone(), order, cfg.batch, state.batch_in_epoch, false, input_len, make, 3);
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        bar.reset();
        bar.set_position(state.batch_in_epoch as u64);
        let t_epoch = Instant::now() - std::time::Duration::from_secs_f64(state.epoch_seconds);
        let mut window = (Instant::now(), 0usize);
        for b in loader {
            let logits = net.forward(&b.x, b.labels.len(), Mode::Train { seed: cfg.seed, step: state.step });
            let correct = logits.chunks(classes_n).zip(&b.labels).filter(|(p, y)| in_top_k(p, **y, 1)).count();
            let loss = softmax_cross_entropy(logits, &b.labels, classes_n, &mut dlogits);
            if !loss.is_finite() {
                bar.abandon();
                bail!(
                    "the loss became {loss} at epoch {} step {}: training diverged. Lower the learning rate \
                     (now {}; try --lr {}), or check the input normalisation. The last good checkpoint is {}",
                    epoch + 1,
                    state.step,
                    state.lr,
                    state.lr / 10.0,
                    cfg.out.join("last.safetensors").display()
                );
            }
            net.backward(&dlogits, false);
            opt.step(&mut net.params);
            state.step += 1;
            state.batch_in_epoch = b.index + 1;
            state.epoch_loss_sum += loss as f64 * b.labels.len() as f64;
            state.epoch_correct += correct as u64;
            state.epoch_images += b.labels.len() as u64;
            window.1 += b.labels.len();
            let secs = window.0.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.3}  {:.0} img/s",
                state.epoch_loss_sum / state.epoch_images as f64,
                window.1 as f64 / secs.max(1e-9)
            ));
            bar.inc(1);
            if secs > 10.0 {
                window = (Instant::now(), 0);
            }
            let stop = INTERRUPTED.load(Ordering::SeqCst) || cfg.stop_after_steps.is_some_and(|s| state.step >= s);
            let periodic = cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
            if stop || periodic {
                state.epoch_seconds = t_epoch.elapsed().as_secs_f64();
                state.elapsed_seconds = run_start.elapsed().as_secs_f64();
                save(&net, &opt, &state, "last.safetensors")?;
            }
            if stop {
                interrupted = true;
                break;
            }
        }
        if interrupted {
            bar.abandon();
            say(
                cfg,
                &bar,
                &format!(
                    "stopped at epoch {} batch {} (step {}); saved {}. Continue with: alexnet train --resume {}",
                    epoch + 1,
                    state.batch_in_epoch,
                    state.step,
                    cfg.out.join("last.safetensors").display(),
                    cfg.out.display()
                ),
            );
            break;
        }
        let epoch_seconds = t_epoch.elapsed().as_secs_f64();
        let train_loss = state.epoch_loss_sum / state.epoch_images.max(1) as f64;
        let train_top1 = 1.0 - state.epoch_correct as f64 / state.epoch_images.max(1) as f64;
        let val: Option<EvalResult> = match data.val.as_ref() {
            Some((imgs, idx, map)) => {
                let mut members = [Member { net, norm: (*norm).clone(), crop }];
                let r = evaluate(&mut members, imgs, idx, map, cfg.val_ten_crop, cfg.batch, &|_| {});
                let [m] = members;
                net = m.net;
                Some(r)
            }
            None => None,
        };
        let m = EpochMetrics {
            epoch,
            step: state.step,
            lr: state.lr,
            train_loss,
            train_top1_error: train_top1,
            val_loss: val.as_ref().map(|v| v.loss),
            val_top1_error: val.as_ref().map(|v| v.top1_error),
            val_top5_error: val.as_ref().map(|v| v.top5_error),
            epoch_seconds,
            wall_seconds: run_start.elapsed().as_secs_f64(),
            images_per_s: state.epoch_images as f64 / epoch_seconds.max(1e-9),
        };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path)?;
        writeln!(f, "{}", serde_json::to_string(&m)?)?;
        history.push(m.clone());
        if let Err(e) = plot::training_curves(
            &history,
            &format!("{} on {}", model.name, cfg.data.display()),
            &cfg.out.join("curves.png"),
        ) {
            say(cfg, &bar, &format!("warning: could not draw curves.png: {e}"));
        }
        say(
            cfg,
            &bar,
            &format!(
                "epoch {:>3}/{}  train loss {:.4} top-1 err {:5.1}%  {}  lr {:.2e}  {:.0} img/s  {:.1}s",
                epoch + 1,
                cfg.epochs,
                train_loss,
                100.0 * train_top1,
                val.as_ref().map_or("no validation".to_string(), |v| format!(
                    "val loss {:.4} top-1 err {:5.1}% top-5 err {:5.1}%",
                    v.loss,
                    100.0 * v.top1_error,
                    100.0 * v.top5_error
                )),
                state.lr,
                m.images_per_s,
                epoch_seconds
            ),
        );
        if epoch >= 2 && (train_loss - ln_classes).abs() < 0.02 * ln_classes {
            say(
                cfg,
                &bar,
                &format!(
                    "warning: the training loss ({train_loss:.3}) is still at ln({classes_n}) = {ln_classes:.3}: the network \
                     predicts every class alike. If the first epochs' loss was far above that, the lr overshot and the \
                     ReLUs died: try a lower --lr (0.001 worked for the paper model on 10-class Imagenette); with \
                     the paper's N(0, 0.01) init a slow start can also last several epochs."
                ),
            );
        }
        // Schedule and best model: on validation top-1 error (train loss without validation).
        let score = val.as_ref().map_or(train_loss, |v| v.top1_error);
        let improved = state.best_val_top1.is_none_or(|b| score < b - 1e-12);
        if improved {
            state.best_val_top1 = Some(score);
            state.best_epoch = Some(epoch);
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        if let Schedule::Plateau { patience, factor, max_drops } = cfg.schedule
            && state.epochs_without_improvement >= patience
            && state.lr_drops < max_drops
        {
            state.lr *= factor;
            state.lr_drops += 1;
            state.epochs_without_improvement = 0;
            say(cfg, &bar, &format!("validation error stopped improving: learning rate now {:.2e}", state.lr));
        }
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_correct = 0;
        state.epoch_images = 0;
        state.epoch_seconds = 0.0;
        state.elapsed_seconds = run_start.elapsed().as_secs_f64();
        save(&net, &opt, &state, "last.safetensors")?;
        if improved {
            save(&net, &opt, &state, "best.safetensors")?;
        }
        last_metrics = Some(m);
        if let Some(limit) = cfg.time_limit_minutes
            && state.elapsed_seconds + epoch_seconds > limit * 60.0
            && state.epoch < cfg.epochs
        {
            say(cfg, &bar, &format!("time limit of {limit} minutes reached after {} epochs", state.epoch));
            break;
        }
    }
    bar.finish_and_clear();
    Ok(TrainOutcome {
        run_dir: cfg.out.clone(),
        epochs_done: state.epoch,
        steps: state.step,
        interrupted,
        best_val_top1_error: state.best_val_top1,
        best_epoch: state.best_epoch.map(|e| e + 1),
        last: last_metrics,
    })
}
