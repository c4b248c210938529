//! Pinned bits: one epoch of training on the embedded data with a fixed seed and thread count
//! must end in exactly the weights the code produced before the restructuring of issue 7
//! (commit 412437d). The hash depends on the matrix-multiply kernel the CPU dispatches to
//! (AVX-512 and AVX2 kernels sum in different orders), so each tier has its own pinned value.

use alexnet::Checkpoint;
use alexnet::data::cache::OnBadImage;
use alexnet::data::{Augment, LoaderOptions, Splits, TrainInput, permutation, source};
use alexnet::model::ModelConfig;
use alexnet::optim::Sgd;
use alexnet::tensor::NamedTensor;
use alexnet::threads::thread_pool;
use alexnet::train::{RunOptions, TrainConfig, train};
use alexnet::{Network, rng};
use std::path::PathBuf;
use std::sync::Arc;

/// FNV-1a over the little-endian bytes of every parameter, in parameter order.
fn weights_hash(params: &[NamedTensor]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in params {
        for v in &p.data {
            for b in v.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

#[test]
fn one_epoch_gives_the_pinned_weights() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini");
    let out = std::env::temp_dir().join(format!("alexnet-pinned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cfg = TrainConfig {
        // With the dropout it had when the hash was pinned (the variant has none since).
        model: alexnet::model::ModelChanges { dropout: Some(0.5), ..Default::default() }
            .apply(ModelConfig::variant("cifar").unwrap())
            .unwrap(),
        epochs: 1,
        batch: 32,
        seed: 11,
        // The split of the run's own seed, as when the hash was pinned.
        split_seed: None,
        // The arithmetic of the pinned code: im2col on every layer.
        conv: alexnet::kernels::conv::ConvChoice::Im2col,
        threads: 2,
        out: out.clone(),
        ..TrainConfig::paper(root.join("val"))
    };
    let done = train(&cfg, None, &RunOptions { quiet: true, ..RunOptions::default() }).unwrap();
    assert_eq!(done.steps, 28);
    let ck = Checkpoint::load(&out.join("last.safetensors")).unwrap();
    let h = weights_hash(&ck.params);
    let _ = std::fs::remove_dir_all(&out);
    // On every CPU: the trainer is exactly the named calls of the pipeline, made once each.
    let by_hand = hand_loop(&cfg);
    for (p, q) in ck.params.iter().zip(&by_hand) {
        assert!(p.data == q.data, "{}: the trainer and the hand-written loop differ", p.name);
    }
    let cpu = cpu_model();
    match PINNED.iter().find(|(model, _)| cpu == *model) {
        Some((model, want)) => assert_eq!(h, *want, "weights hash {h:#018x} on {model}; pinned {want:#018x}"),
        // The gemm crate's blocking depends on the CPU's vector width and cache sizes, so other
        // CPUs sum in another order: say what to pin rather than fail.
        None => eprintln!("no pinned weights hash for CPU `{cpu}`; this run gave {h:#018x}"),
    }
}

/// One epoch written out with the library's pipeline calls: open -> split -> statistics ->
/// per-image input -> loader -> `train_step`.
fn hand_loop(cfg: &TrainConfig) -> Vec<NamedTensor> {
    let tmp = std::env::temp_dir().join(format!("alexnet-pinned-hand-{}", std::process::id()));
    let store = alexnet::data::CacheStore { dir: tmp.clone() };
    let how = source::Packing {
        size: cfg.model.data.stored,
        class_names: None,
        labels: None,
        on_bad: OnBadImage::Fail,
        store: &store,
        legacy: None,
    };
    let opened = source::open(&cfg.data, &how, &|_, _| {});
    let _ = std::fs::remove_dir_all(&tmp);
    let splits = Splits::new(Arc::new(opened.unwrap()), None, cfg.val_split, cfg.seed).unwrap();
    let stats = splits.train_stats().unwrap();
    let model = cfg.model.clone().with_classes(splits.train.classes.len());
    let augment = Augment::new(&cfg.augment, &stats);
    let input = Arc::new(TrainInput::new(&model.data, &stats, augment, model.input[1], cfg.seed));
    thread_pool(cfg.threads).unwrap().install(|| {
        let mut net = Network::new(model, cfg.seed).unwrap();
        net.set_conv(cfg.conv);
        let mut opt = Sgd::new(cfg.sgd, net.params());
        let idx = &splits.train_indices;
        let order = permutation(idx.len(), rng::mix(&[cfg.seed, 0])).iter().map(|&i| idx[i as usize]).collect();
        for (step, b) in LoaderOptions::new(cfg.batch).spawn(splits.train.clone(), order, &input, 0).enumerate() {
            let b = b.unwrap();
            net.train_step(&b.x, &b.labels, cfg.seed, step as u64, &mut opt);
        }
        net.params().map(|p| NamedTensor::new(&p.name, p.shape.clone(), p.data.clone())).collect()
    })
}

/// (CPU model name as /proc/cpuinfo gives it, weights hash): recorded at commit 412437d on the
/// Sapphire Rapids guest; the AMD EPYC (Zen 4) guest gave the same bits on 2026-12-03, so the
/// AVX-512 kernels sum in the same order on both.
const PINNED: &[(&str, u64)] =
    &[("Intel(R) Xeon(R) Processor (avx512)", 0xf765_43a2_95fd_0312), ("AMD EPYC (avx512)", 0xf765_43a2_95fd_0312)];

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info.lines().find_map(|l| l.strip_prefix("model name")).unwrap_or("");
    let flags = if info.contains(" avx512f") { "avx512" } else { "avx2" };
    format!("{} ({flags})", name.trim_start_matches([' ', '\t', ':']))
}
