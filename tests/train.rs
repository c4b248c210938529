//! Training on the embedded real data: learning happens, resuming is exact, checkpoints work as
//! weights, and failures say what went wrong.

use alexnet::Checkpoint;
use alexnet::data::DataStats;
use alexnet::model::ModelConfig;
use alexnet::train::{RunOptions, StopHandle, TrainConfig, train};
use std::path::PathBuf;
use std::process::Command;

mod common;

fn embedded(split: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini").join(split)
}

fn out_dir(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(common::sweep_dead_scratch);
    // One level below a folder of this process's own, so that the shared cache of a data folder
    // made here goes beside it (not into ~/.cache: /tmp is open to everyone).
    let d = std::env::temp_dir().join(format!("alexnet-train-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn quiet() -> RunOptions {
    RunOptions { quiet: true, ..RunOptions::default() }
}

/// Stops the run as an interruption would, once `steps` steps are done.
fn stop_at(steps: u64) -> RunOptions {
    RunOptions { stop: StopHandle::at_step(steps), quiet: true, ..RunOptions::default() }
}

/// A folder `cat/`, `dog/` of `per_class` embedded validation images each.
fn two_class_folder(name: &str, per_class: usize) -> PathBuf {
    let root = out_dir(name);
    for c in ["cat", "dog"] {
        std::fs::create_dir_all(root.join(c)).unwrap();
        for f in std::fs::read_dir(embedded("val").join(c)).unwrap().take(per_class) {
            let f = f.unwrap().path();
            std::fs::copy(&f, root.join(c).join(f.file_name().unwrap())).unwrap();
        }
    }
    root
}

fn config(name: &str, epochs: usize) -> TrainConfig {
    // The paper's recipe on the cifar model with the paper's dropout (so resume must give the
    // same masks back), small batches, two threads.
    TrainConfig {
        val: Some(embedded("val")),
        val_split: 0.0,
        model: alexnet::model::ModelChanges { dropout: Some(0.5), ..Default::default() }
            .apply(ModelConfig::variant("cifar").unwrap())
            .unwrap(),
        epochs,
        batch: 64,
        seed: 7,
        threads: 2,
        out: out_dir(name),
        ..TrainConfig::paper(embedded("train"))
    }
}

#[test]
fn a_few_epochs_learn_real_images() {
    let cfg = config("learn", 4);
    let out = train(&cfg, None, &quiet()).unwrap();
    assert_eq!(out.epochs_done, 4);
    let m = alexnet::train::read_metrics(&cfg.out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 4);
    assert!(m[3].train_loss < m[0].train_loss - 0.1, "train loss {} -> {}", m[0].train_loss, m[3].train_loss);
    let err = m[3].val_top1_error.unwrap();
    // Chance is 90% error on 10 classes.
    assert!(err < 0.72, "validation top-1 error {err} after 4 epochs");
    assert!(cfg.out.join("curves.png").exists() && cfg.out.join("config.json").exists());

    // best.safetensors works as --weights and reproduces the validation figures.
    let bin = env!("CARGO_BIN_EXE_alexnet");
    let best = cfg.out.join("best.safetensors");
    let o = Command::new(bin)
        .args(["eval", "--json", "--weights"])
        .arg(&best)
        .arg("--data")
        .arg(embedded("val"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let best_err = out.best_val_top1_error.unwrap();
    assert!((v["top1_error"].as_f64().unwrap() - best_err).abs() < 1e-9, "{v} vs {best_err}");
    assert_eq!(v["images"], 1000);
    let o = Command::new(bin)
        .args(["predict", "--json", "--top", "3", "--weights"])
        .arg(&best)
        .arg(embedded("val").join("ship/4950.jpg"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let top = p["predictions"][0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0]["probability"].as_f64().unwrap() >= top[1]["probability"].as_f64().unwrap());
    let png = cfg.out.join("conv1.png");
    let o = Command::new(bin).args(["filters", "--weights"]).arg(&best).arg("--out").arg(&png).output().unwrap();
    assert!(o.status.success() && png.exists());
}

#[test]
fn resume_equals_uninterrupted() {
    let mut whole = config("whole", 2);
    whole.data = embedded("val"); // 900 training images: 14 batches of 64 an epoch
    whole.val = None;
    whole.val_split = 0.1;
    // The default recipe's per-step parts: a warm-up over the first epoch, then cosine.
    whole.warmup_epochs = 1.0;
    whole.schedule = alexnet::train::Schedule::Cosine { min_lr: 1e-5 };
    let done = train(&whole, None, &quiet()).unwrap();
    assert_eq!(done.steps, 28);

    let mut part = whole.clone();
    part.out = out_dir("part");
    let stopped = train(&part, None, &stop_at(9)).unwrap(); // mid-epoch 1
    assert!(stopped.interrupted && stopped.steps == 9);
    let ck = Checkpoint::load(&part.out.join("last.safetensors")).unwrap();
    assert_eq!(ck.train_state.as_ref().unwrap().batch_in_epoch, 9);
    let stopped = train(&part, Some(&ck), &stop_at(20)).unwrap(); // again, in epoch 2
    assert!(stopped.interrupted && stopped.steps == 20);
    let ck = Checkpoint::load(&part.out.join("last.safetensors")).unwrap();
    let resumed = train(&part, Some(&ck), &quiet()).unwrap();
    assert_eq!(resumed.steps, 28);

    let a = Checkpoint::load(&whole.out.join("last.safetensors")).unwrap();
    let b = Checkpoint::load(&part.out.join("last.safetensors")).unwrap();
    for (pa, pb) in a.params.iter().zip(&b.params) {
        assert!(pa.data == pb.data, "{} differs after resuming", pa.name);
    }
    assert_eq!(a.velocity, b.velocity);
    let (ma, mb) = (
        alexnet::train::read_metrics(&whole.out.join("metrics.jsonl")).unwrap(),
        alexnet::train::read_metrics(&part.out.join("metrics.jsonl")).unwrap(),
    );
    assert_eq!(ma.len(), 2);
    assert_eq!(mb.len(), 2);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!((x.train_loss, x.val_top1_error, x.lr), (y.train_loss, y.val_top1_error, y.lr));
    }
}

#[test]
fn warmup_ramps_the_lr_linearly_over_its_steps() {
    let mut cfg = config("warmup", 1);
    cfg.data = embedded("val"); // 900 training images: 14 batches of 64
    cfg.val = None;
    cfg.val_split = 0.1;
    cfg.warmup_epochs = 1.0;
    // Unbounded, the ramp takes the epoch; bounded by 10% of the run (one epoch of 14 steps
    // here), it takes 2 steps.
    for (fraction, steps, stops) in [(1.0, 14.0, [1u64, 5, 14]), (0.1, 2.0, [1, 2, 5])] {
        cfg.warmup_max_fraction = fraction;
        for stop in stops {
            cfg.out = out_dir(&format!("warmup-{fraction}-{stop}"));
            train(&cfg, None, &stop_at(stop)).unwrap();
            let ck = Checkpoint::load(&cfg.out.join("last.safetensors")).unwrap();
            let (used, schedule) = (ck.sgd.unwrap().lr, ck.train_state.unwrap().lr);
            assert_eq!(schedule, 0.01);
            let want = 0.01 * (stop as f32 / steps).min(1.0);
            assert!((used - want).abs() < 1e-7, "bound {fraction}, step {stop}: lr {used}, want {want}");
        }
    }
    cfg.warmup_max_fraction = 0.0;
    cfg.out = out_dir("warmup-bad");
    let e = train(&cfg, None, &stop_at(1)).err().unwrap().to_string();
    assert!(e.contains("--warmup-max-fraction"), "{e}");
}

#[test]
fn cli_recipes_default_and_paper() {
    let root = two_class_folder("recipe-data", 24);
    let bin = env!("CARGO_BIN_EXE_alexnet");
    let config_of = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out = out_dir(name);
        let o = Command::new(bin)
            .args(["train", "--epochs", "1", "--batch", "16", "--quiet", "--data"])
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap()
    };
    let biases = |c: &serde_json::Value| -> Vec<f32> {
        c["model"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["bias_init"].as_f64())
            .map(|b| b as f32)
            .collect()
    };
    // The paper model, whose settings the recipes differ in.
    let d = config_of("recipe-default", &["--model", "paper"]);
    assert_eq!(d["recipe"], "default");
    assert_eq!(d["warmup_epochs"], 1.0);
    assert_eq!(d["schedule"]["type"], "cosine");
    assert_eq!(d["model"]["init"]["type"], "he");
    assert_eq!(d["model"]["data"]["normalize"]["type"], "per_channel");
    assert_eq!(biases(&d), [0.0, 0.1, 0.0, 0.1, 0.1, 0.1, 0.1, 0.0]);
    let p = config_of("recipe-paper", &["--model", "paper", "--recipe", "paper"]);
    assert_eq!(p["recipe"], "paper");
    assert_eq!(p["warmup_epochs"], 0.0);
    assert_eq!(p["schedule"]["type"], "plateau");
    assert_eq!(p["sgd"]["lr"].as_f64().unwrap() as f32, 0.01);
    assert_eq!(serde_json::from_value::<ModelConfig>(p["model"].clone()).unwrap(), ModelConfig::paper());

    // The small model for the rest. A time limit picks the time-budget cosine.
    let t = config_of("recipe-default-timed", &["--model", "cifar", "--time-limit", "5"]);
    assert_eq!(t["schedule"]["type"], "time_cosine");
    let t_dir = PathBuf::from(t["out"].as_str().unwrap());
    // A resumed run keeps its settings: a flag that would change them is refused, by name.
    let resume =
        |extra: &[&str]| Command::new(bin).arg("train").arg("--resume").arg(&t_dir).args(extra).output().unwrap();
    let o = resume(&["--lr", "0.1", "--no-flip", "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--lr, --no-flip cannot change a resumed run"), "{err}");
    let o = resume(&["--epochs", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = alexnet::train::read_metrics(&t_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 2);
    // eval --held-out: the same images, so the same error as the run's validation of them.
    let o = Command::new(bin)
        .args(["eval", "--json", "--held-out"])
        .arg(&t_dir)
        .arg("--weights")
        .arg(t_dir.join("last.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["images"], 5, "10% of 48 held out");
    assert!((v["top1_error"].as_f64().unwrap() - m[1].val_top1_error.unwrap()).abs() < 1e-9, "{v}");
    // A flag still overrides the recipe.
    let q = config_of(
        "recipe-default-flags",
        &["--model", "cifar", "--init", "paper", "--warmup-epochs", "0.5", "--val-split", "0", "--patience", "2"],
    );
    assert_eq!((q["model"]["init"]["type"].clone(), q["warmup_epochs"].clone()), ("gaussian".into(), 0.5.into()));
    // A plateau flag alone picks the plateau schedule.
    assert_eq!((q["schedule"]["type"].clone(), q["schedule"]["patience"].clone()), ("plateau".into(), 2.into()));
    let o = Command::new(bin)
        .args(["eval", "--held-out", q["out"].as_str().unwrap(), "--weights"])
        .arg(PathBuf::from(q["out"].as_str().unwrap()).join("last.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("held out no images"), "{err}");
    // Section 3.3's and 3.4's comparison nets train too: no LRN, pooling 2x2 stride 2.
    let n = config_of("recipe-no-lrn-pool2", &["--model", "cifar", "--no-lrn", "--no-overlap-pool"]);
    let layers = n["model"]["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["type"] != "lrn"));
    let pools: Vec<_> = layers.iter().filter(|l| l["type"] == "max_pool").map(|l| l["kernel"].clone()).collect();
    assert_eq!(pools, [2, 2, 2]);
    // --lrn-alpha sets every LRN layer's α; on a model without LRN it is an error, not a no-op.
    let a = config_of("recipe-lrn-alpha", &["--model", "cifar", "--lrn-alpha", "0.4"]);
    let alphas: Vec<_> = a["model"]["layers"].as_array().unwrap().iter().filter(|l| l["type"] == "lrn").collect();
    assert_eq!(alphas.len(), 2);
    assert!(alphas.iter().all(|l| (l["alpha"].as_f64().unwrap() - 0.4).abs() < 1e-6), "{alphas:?}");
    let refused = |name: &str, model: &str, extra: &[&str]| -> (String, PathBuf) {
        let dir = out_dir(name);
        let o = Command::new(bin)
            .args(["train", "--quiet", "--epochs", "1", "--batch", "16", "--model", model, "--data"])
            .arg(&root)
            .arg("--out")
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{name} was accepted");
        (String::from_utf8_lossy(&o.stderr).into_owned(), dir)
    };
    for (name, model, extra, want) in [
        (
            "lrn-alpha-4layer",
            "cifar-4layer",
            &["--lrn-alpha", "0.4"][..],
            "--lrn-alpha: the model `cifar-4layer` has no LRN",
        ),
        ("lrn-paper-4layer", "cifar-4layer", &["--lrn", "paper"], "--lrn: the model `cifar-4layer` has no LRN"),
        ("no-lrn-4layer", "cifar-4layer", &["--no-lrn"], "--no-lrn: the model `cifar-4layer` has no LRN"),
        ("lrn-alpha-no-lrn", "cifar", &["--lrn-alpha", "0.4", "--no-lrn"], "--no-lrn removes the LRN layers"),
        ("lrn-alpha-negative", "cifar", &["--lrn-alpha=-1"], "--lrn-alpha -1: must be a finite number >= 0"),
        ("lrn-alpha-nan", "cifar", &["--lrn-alpha", "NaN"], "--lrn-alpha NaN: must be a finite number >= 0"),
    ] {
        let (err, dir) = refused(name, model, extra);
        assert!(err.contains(want), "{name}: {err}");
        assert!(!dir.join("config.json").exists(), "{name}: a refused run wrote its config");
    }
}

#[test]
fn the_held_out_images_depend_on_the_split_seed_only() {
    let mut cfg = config("split", 1);
    cfg.data = embedded("val");
    cfg.val = None;
    cfg.val_split = 0.1;
    // Each its own run folder: a folder keeps the split it was first opened with.
    let held_out = |cfg: &TrainConfig| {
        let cfg = TrainConfig { out: out_dir(&format!("split-{}-{:?}", cfg.seed, cfg.split_seed)), ..cfg.clone() };
        alexnet::train::open_splits(&cfg, alexnet::train::SplitUse::Fresh, true).unwrap().val.unwrap().indices
    };
    let (a, b) = (held_out(&cfg), held_out(&TrainConfig { seed: 99, ..cfg.clone() }));
    assert_eq!(a.len(), 100);
    assert_eq!(a, b, "another --seed, the same --split-seed: the same images");
    let c = held_out(&TrainConfig { split_seed: Some(1), ..cfg.clone() });
    assert_ne!(a, c);
    // Runs from before split_seed: the split of their own seed.
    let old = TrainConfig { split_seed: None, seed: 1, ..cfg.clone() };
    assert_eq!(held_out(&old), c);
}

#[test]
fn divergence_is_reported() {
    let mut cfg = config("diverge", 1);
    cfg.data = embedded("val");
    cfg.val = None;
    cfg.val_split = 0.1;
    cfg.sgd.lr = 1e4;
    let e = format!("{:#}", train(&cfg, None, &quiet()).unwrap_err());
    assert!(e.contains("diverged") && e.contains("--lr"), "{e}");
}

#[test]
fn cli_names_a_bad_file_and_can_skip_it() {
    let root = two_class_folder("badfile-data", 40);
    std::fs::write(root.join("dog/broken.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let bin = env!("CARGO_BIN_EXE_alexnet");
    let run = |extra: &[&str]| {
        let out = out_dir(&format!("badfile-run{}", extra.len()));
        Command::new(bin)
            .args(["train", "--model", "cifar", "--epochs", "1", "--batch", "16", "--quiet", "--data"])
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("broken.jpg") && err.contains("cannot decode"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let o = run(&["--skip-bad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: skipping") && err.contains("broken.jpg"), "{err}");
}

#[test]
fn stats_are_of_the_training_split_only() {
    // With --val-split the normalisation must not see the held-out images.
    let mut cfg = config("split-stats", 1);
    cfg.data = embedded("val");
    cfg.val = None;
    cfg.val_split = 0.5;
    train(&cfg, None, &stop_at(1)).unwrap();
    let ck = Checkpoint::load(&cfg.out.join("last.safetensors")).unwrap();
    let store = alexnet::data::CacheStore::resolve(cfg.cache_dir.as_deref(), &cfg.data);
    let all = alexnet::data::PackedImages::open(&store.file_for(&cfg.data, 32)).unwrap();
    let s: &DataStats = &ck.stats;
    assert_eq!(s.count, 500);
    assert_ne!(s.channel_mean, all.stats.channel_mean);
}

#[test]
fn metrics_keep_one_line_per_epoch_and_last_keeps_its_predecessor() {
    let mut cfg = config("metrics-dedupe", 1);
    cfg.data = embedded("val");
    cfg.val = None;
    cfg.val_split = 0.1;
    train(&cfg, None, &quiet()).unwrap();
    let path = cfg.out.join("metrics.jsonl");
    // A line for an epoch whose checkpoint never made it to disk (a failed save).
    let mut m = alexnet::train::read_metrics(&path).unwrap();
    let mut ghost = m[0].clone();
    (ghost.epoch, ghost.train_loss) = (1, 123.0);
    m.push(ghost);
    alexnet::train::metrics::write_metrics(&path, &m).unwrap();
    let ck = Checkpoint::load(&cfg.out.join("last.safetensors")).unwrap();
    cfg.epochs = 2;
    train(&cfg, Some(&ck), &quiet()).unwrap();
    let m = alexnet::train::read_metrics(&path).unwrap();
    assert_eq!(m.iter().map(|l| l.epoch).collect::<Vec<_>>(), [0, 1]);
    assert!(m[1].train_loss != 123.0);
    // Every epoch says what the loader made and how long the step waited for it.
    for l in &m {
        let r = l.loader_images_per_s.expect("loader rate");
        assert!(r.is_finite() && r > 0.0 && r != l.images_per_s, "{l:?}");
        let w = l.data_wait_fraction.expect("data wait");
        assert!((0.0..1.0).contains(&w), "{l:?}");
    }
    // The previous `last` is kept: the whole checkpoint the second run started from.
    let prev = Checkpoint::load(&cfg.out.join("last.prev.safetensors")).unwrap();
    assert_eq!(prev.train_state, ck.train_state);
    assert_eq!(prev.params, ck.params);
}

#[test]
fn time_cosine_decays_over_the_time_limit() {
    // A small net on 90 images: many epochs fit in the limit even on a loaded machine, so what
    // is checked is the schedule, not the machine's speed.
    let mut cfg = config("time-cosine", 100_000);
    cfg.data = two_class_folder("time-cosine-data", 50);
    cfg.model = ModelConfig::variant("cifar-4layer").unwrap();
    cfg.val = None;
    cfg.val_split = 0.1;
    cfg.schedule = alexnet::train::Schedule::TimeCosine { min_lr: 1e-5 };
    let e = train(&cfg, None, &quiet()).unwrap_err().to_string();
    assert!(e.contains("--time-limit"), "{e}");
    cfg.time_limit_minutes = Some(0.4);
    let t0 = std::time::Instant::now();
    let out = train(&cfg, None, &quiet()).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert!(out.epochs_done >= 2 && out.epochs_done < cfg.epochs, "{} epochs", out.epochs_done);
    // It stops near the limit: not long before it (the decay had room), nor long after.
    assert!(secs < 0.4 * 60.0 * 1.5, "{secs:.1}s");
    let m = alexnet::train::read_metrics(&cfg.out.join("metrics.jsonl")).unwrap();
    let (first, last) = (m[0].lr, m[m.len() - 1].lr);
    assert!(last < first && last < 0.5 * cfg.sgd.lr, "lr {first} -> {last}");
    let ck = Checkpoint::load(&cfg.out.join("last.safetensors")).unwrap();
    let planned = ck.train_state.unwrap().planned_steps.unwrap();
    // 90 images at batch 64: 2 steps an epoch.
    assert!(planned >= out.steps / 2 && planned <= cfg.epochs as u64 * 2, "planned {planned}, took {}", out.steps);
}

#[test]
fn config_json_of_runs_before_the_restructuring_still_resumes() {
    // Written by commit 412437d: flat augmentation fields, and the since-removed test hook.
    let text = include_str!("../docs/results/cifar-30min-config.json");
    let cfg: TrainConfig = serde_json::from_str(text).unwrap();
    assert!(text.contains("\"random_crop\": true") && text.contains("\"stop_after_steps\""));
    assert!(cfg.augment.random_crop && cfg.augment.flip);
    assert_eq!((cfg.augment.pca_std, cfg.augment.pca), (0.1, alexnet::train::PcaSource::Data));
    assert_eq!(cfg.model.name, "cifar");
    // Before recipes: the paper's, without warm-up.
    assert_eq!((cfg.recipe, cfg.warmup_epochs), (alexnet::train::Recipe::Paper, 0.0));
}

#[test]
fn a_changed_data_folder_is_not_taken_for_the_runs_held_out_images() {
    let root = two_class_folder("changed-data", 20);
    let out = out_dir("changed-run");
    let bin = env!("CARGO_BIN_EXE_alexnet");
    let alexnet = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let (root_s, out_s) = (root.to_str().unwrap(), out.to_str().unwrap());
    let o = alexnet(&[
        "train", "--model", "cifar", "--epochs", "1", "--batch", "16", "--quiet", "--data", root_s, "--out", out_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("split.json").is_file());
    let w = out.join("last.safetensors");
    let eval = || alexnet(&["eval", "--weights", w.to_str().unwrap(), "--held-out", out_s, "--json"]);
    assert!(eval().status.success());
    // One more image: every image's side of the split moves.
    let extra = std::fs::read_dir(embedded("val").join("cat")).unwrap().nth(30).unwrap().unwrap().path();
    std::fs::copy(&extra, root.join("cat").join("extra.jpg")).unwrap();
    for o in [eval(), alexnet(&["train", "--resume", out_s, "--epochs", "2"])] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "ran on changed data");
        assert!(
            err.contains("the data changed since this run split it") && err.contains("36 training and 4 held-out"),
            "{err}"
        );
        assert!(err.contains("split.json") && !err.contains("panicked"), "{err}");
    }
    // A run from before split.json: resuming it on changed data is refused by its statistics'
    // image count; on its own data it resumes and gets its record.
    std::fs::remove_file(out.join("split.json")).unwrap();
    let o = alexnet(&["train", "--resume", out_s, "--epochs", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("statistics are of 36 training images, the data now gives 37"),
        "{err}"
    );
    std::fs::remove_file(root.join("cat").join("extra.jpg")).unwrap();
    let o = alexnet(&["train", "--resume", out_s, "--epochs", "2", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("split.json").is_file());
    // A fresh run into a folder where a failed first attempt left only its record replaces
    // the record instead of being refused by it.
    let again = out_dir("changed-again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::write(again.join("split.json"), r#"{"training": 1, "held_out": 1, "digest": "x"}"#).unwrap();
    let o = alexnet(&[
        "train",
        "--model",
        "cifar",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--quiet",
        "--data",
        root_s,
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(again.join("split.json")).unwrap()).unwrap();
    assert_eq!((rec["training"].as_u64(), rec["held_out"].as_u64()), (Some(36), Some(4)));
}

/// Largest relative difference between two checkpoints' parameters, over all of them.
fn weights_differ(a: &std::path::Path, b: &std::path::Path) -> f64 {
    let (a, b) = (Checkpoint::load(a).unwrap().network().unwrap(), Checkpoint::load(b).unwrap().network().unwrap());
    a.params().zip(b.params()).map(|(p, q)| alexnet::tensor::rel_err(&p.data, &q.data)).fold(0.0, f64::max)
}

/// Data-parallel training (here with threads as its processes) takes the steps one process
/// takes on the same global batches: each member reads its share of every batch with the crops
/// and dropout masks one process would draw for those images, the gradients are averaged, and
/// the weights match one process's to float tolerance. Only rank 0 writes the run folder.
#[test]
fn data_parallel_steps_equal_one_process() {
    let mut cfg = config("dp-one", 2);
    cfg.data = two_class_folder("dp-data", 48);
    cfg.val = None;
    cfg.val_split = 0.25;
    cfg.batch = 8;
    // im2col computes each image's forward pass alone, the same whichever images share its
    // process; Winograd multiplies the tiles of several images in one product, whose rounding
    // depends on how many (~1e-7), and a ReLU or max-pool decision that rounding flips moves
    // the run off by more (measured: 2.5e-3 relative on conv3's bias after 2 steps, 4 threads
    // against 2 in one process). The equality is of the data-parallel arithmetic, so im2col.
    cfg.conv = alexnet::kernels::conv::ConvChoice::Im2col;
    let shared_run = |cfg: &TrainConfig, size: usize, stop: Option<u64>| {
        let runs: Vec<_> = alexnet::cluster::threads::members(size)
            .into_iter()
            .map(|m| {
                let cfg = cfg.clone();
                let stop = stop.map_or_else(StopHandle::new, StopHandle::at_step);
                let opts = RunOptions { quiet: true, stop, cluster: alexnet::cluster::Cluster::new(m) };
                std::thread::spawn(move || train(&cfg, None, &opts))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap().unwrap()).collect::<Vec<_>>()
    };
    let last = |c: &TrainConfig| c.out.join("last.safetensors");
    // Four steps. The gradients' sums go in another order (per process, then across processes),
    // so the weights agree to rounding, which later steps compound: after two epochs (18 steps)
    // ReLU decisions that rounding flipped have moved them by ~3e-2, one process on 1 thread
    // against 2 as much. A wrong share or dropout mask moves them by ~1 in four steps.
    let steps = 4;
    train(&cfg, None, &stop_at(steps)).unwrap();
    for size in [2, 4] {
        let mut shared = cfg.clone();
        shared.out = out_dir(&format!("dp-{size}"));
        shared.threads = 1;
        for out in shared_run(&shared, size, Some(steps)) {
            assert!(out.interrupted && out.steps == steps, "{size} processes");
        }
        let d = weights_differ(&last(&cfg), &last(&shared));
        assert!(d < 1e-5, "{size} processes: weights differ by {d:e}");
    }
    // Stopped (as Ctrl-C on any process stops them all at the same step) on 4 processes and
    // resumed on 2: the same four steps.
    let mut split = cfg.clone();
    split.out = out_dir("dp-resumed");
    split.threads = 1;
    for out in shared_run(&split, 4, Some(2)) {
        assert!(out.interrupted && out.steps == 2);
    }
    let runs: Vec<_> = alexnet::cluster::threads::members(2)
        .into_iter()
        .map(|m| {
            let (cfg, ck) = (split.clone(), Checkpoint::load(&last(&split)).unwrap());
            let opts = RunOptions {
                quiet: true,
                stop: StopHandle::at_step(steps),
                cluster: alexnet::cluster::Cluster::new(m),
            };
            std::thread::spawn(move || train(&cfg, Some(&ck), &opts))
        })
        .collect();
    for r in runs {
        assert_eq!(r.join().unwrap().unwrap().steps, steps);
    }
    let d = weights_differ(&last(&cfg), &last(&split));
    assert!(d < 1e-5, "stopped on 4, resumed on 2: weights differ by {d:e}");
    // Whole epochs: one metrics line an epoch, written by rank 0 alone, and the same epochs.
    let mut whole = cfg.clone();
    whole.out = out_dir("dp-whole");
    whole.threads = 1;
    for out in shared_run(&whole, 2, None) {
        assert_eq!((out.epochs_done, out.steps, out.interrupted), (2, 18, false));
    }
    let m = alexnet::train::read_metrics(&whole.out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|m| (m.epoch, m.step)).collect::<Vec<_>>(), [(0, 9), (1, 18)]);
    // Each process scored half the 24 held-out images: together the figures of one process
    // (whose weights differ from these by rounding after 9 steps: within one image).
    let mut alone = whole.clone();
    alone.out = out_dir("dp-whole-alone");
    train(&alone, None, &quiet()).unwrap();
    let a = alexnet::train::read_metrics(&alone.out.join("metrics.jsonl")).unwrap();
    let (e1, e2) = (a[0].val_top1_error.unwrap(), m[0].val_top1_error.unwrap());
    assert!((e1 - e2).abs() <= 1.0 / 24.0 + 1e-9, "held-out error {e1} alone, {e2} shared");
    assert!((a[0].val_loss.unwrap() - m[0].val_loss.unwrap()).abs() < 0.02);
    assert!(whole.out.join("best.safetensors").exists() && whole.out.join("curves.png").exists());
    // A global batch must split evenly.
    let mut odd = cfg.clone();
    odd.out = out_dir("dp-odd");
    odd.batch = 6;
    let m = alexnet::cluster::threads::members(4).into_iter().next().unwrap();
    let opts = RunOptions { quiet: true, cluster: alexnet::cluster::Cluster::new(m), ..RunOptions::default() };
    let e = train(&odd, None, &opts).err().unwrap().to_string();
    assert!(e.contains("does not split evenly over 4 processes"), "{e}");
}

/// A run writes TensorBoard events beside metrics.jsonl: one file, framed records, the
/// version record first. CI then reads the run with the `tensorboard` package's own reader
/// (scripts/check_tensorboard.py: every scalar equal to metrics.jsonl's, conv1's filters an
/// image per epoch); with `ALEXNET_TB_RUN` set the run goes there for it.
#[test]
fn training_writes_tensorboard_events() {
    let mut cfg = config("tensorboard", 2);
    if let Some(dir) = std::env::var_os("ALEXNET_TB_RUN") {
        cfg.out = PathBuf::from(dir);
        let _ = std::fs::remove_dir_all(&cfg.out);
    }
    train(&cfg, None, &quiet()).unwrap();
    let events: Vec<PathBuf> = std::fs::read_dir(&cfg.out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let bytes = std::fs::read(&events[0]).unwrap();
    let (mut at, mut records) = (0, 0);
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        assert!(at + 16 + len <= bytes.len(), "a record runs past the file's end");
        if records == 0 {
            assert!(bytes[at + 12..at + 12 + len].windows(13).any(|w| w == b"brain.Event:2"));
        }
        at += 16 + len;
        records += 1;
    }
    // The version, then per epoch 7 scalars (train and validation) and the filters.
    assert_eq!(records, 1 + 2 * 8);
}
