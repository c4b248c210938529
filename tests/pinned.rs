//! Pinned bits: one epoch of training on the embedded data with a fixed seed and thread count
//! must end in exactly the weights the code produced before the restructuring of issue 7
//! (commit 412437d). The hash depends on the matrix-multiply kernel the CPU dispatches to
//! (AVX-512 and AVX2 kernels sum in different orders), so each tier has its own pinned value.

use alexnet::Checkpoint;
use alexnet::model::ModelConfig;
use alexnet::optim::SgdConfig;
use alexnet::tensor::NamedTensor;
use alexnet::train::{PcaSource, RunOptions, Schedule, TrainConfig, train};
use std::path::PathBuf;

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
        data: root.join("val"),
        val: None,
        val_split: 0.1,
        class_names: None,
        model: ModelConfig::variant("cifar").unwrap(),
        epochs: 1,
        batch: 32,
        sgd: SgdConfig::default(),
        schedule: Schedule::Plateau { patience: 3, factor: 0.1, max_drops: 3 },
        seed: 11,
        threads: 2,
        out: out.clone(),
        random_crop: true,
        flip: true,
        pca_std: 0.1,
        pca: PcaSource::Data,
        checkpoint_every: 0,
        time_limit_minutes: None,
        skip_bad: false,
        val_ten_crop: false,
    };
    let done = train(&cfg, None, &RunOptions { quiet: true, ..RunOptions::default() }).unwrap();
    assert_eq!(done.steps, 28);
    let ck = Checkpoint::load(&out.join("last.safetensors")).unwrap();
    let h = weights_hash(&ck.params);
    let _ = std::fs::remove_dir_all(&out);
    let cpu = cpu_model();
    match PINNED.iter().find(|(model, _)| cpu.contains(model)) {
        Some((model, want)) => assert_eq!(h, *want, "weights hash {h:#018x} on {model}; pinned {want:#018x}"),
        // The gemm crate's blocking depends on the CPU's vector width and cache sizes, so other
        // CPUs sum in another order: say what to pin rather than fail.
        None => eprintln!("no pinned weights hash for CPU `{cpu}`; this run gave {h:#018x}"),
    }
}

/// (CPU model name as /proc/cpuinfo gives it, weights hash) recorded at commit 412437d.
const PINNED: &[(&str, u64)] = &[("Intel(R) Xeon(R) Processor", 0xf765_43a2_95fd_0312)];

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info.lines().find_map(|l| l.strip_prefix("model name")).unwrap_or("");
    let flags = if info.contains(" avx512f") { "avx512" } else { "avx2" };
    format!("{} ({flags})", name.trim_start_matches([' ', '\t', ':']))
}
