//! `alexnet compare`: the epoch each run reaches a threshold (Figure 1's measure), the plot, and
//! errors on bad input.

use alexnet::train::EpochMetrics;
use std::path::{Path, PathBuf};
use std::process::Command;

fn alexnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet")).args(args).output().expect("run alexnet");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A run folder whose metrics.jsonl has these training errors, one epoch each.
fn run(root: &Path, name: &str, train_errors: &[f64]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let lines: String = train_errors
        .iter()
        .enumerate()
        .map(|(epoch, &e)| {
            let m = EpochMetrics {
                epoch,
                step: 10 * (epoch as u64 + 1),
                lr: 0.01,
                train_loss: 2.0 * e,
                train_top1_error: e,
                val_loss: None,
                val_top1_error: None,
                val_top5_error: None,
                epoch_seconds: 1.0,
                wall_seconds: epoch as f64 + 1.0,
                images_per_s: 100.0,
                loader_images_per_s: None,
                data_wait_fraction: None,
                comm_fraction: None,
            };
            serde_json::to_string(&m).unwrap() + "\n"
        })
        .collect();
    std::fs::write(dir.join("metrics.jsonl"), lines).unwrap();
    dir
}

#[test]
fn compare_finds_the_first_epoch_at_the_threshold_and_plots() {
    let root = std::env::temp_dir().join(format!("alexnet-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let fast = run(&root, "relu", &[0.6, 0.4, 0.3, 0.24, 0.2]);
    let slow = run(&root, "tanh", &[0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.27, 0.25, 0.22]);
    let never = run(&root, "stuck", &[0.9, 0.9]);
    let png = root.join("cmp.png");
    let (ok, stdout, err) = alexnet(&[
        "compare",
        "--run",
        fast.to_str().unwrap(),
        slow.to_str().unwrap(),
        never.to_str().unwrap(),
        "--metric",
        "train-top1-error",
        "--threshold",
        "0.25",
        "--out",
        png.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let first: Vec<_> = runs.iter().map(|r| r["first_epoch_at_threshold"].as_u64()).collect();
    // At or below 0.25: epoch 4 (0.24) and epoch 9 (exactly 0.25); never for the third.
    assert_eq!(first, [Some(4), Some(9), None]);
    assert_eq!(runs[0]["label"], "relu");
    assert_eq!((runs[1]["best"].as_f64(), runs[1]["epochs"].as_u64()), (Some(0.22), Some(10)));
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (800, 520));
    // Text output says the same.
    let (ok, text, _) = alexnet(&[
        "compare",
        "--run",
        fast.to_str().unwrap(),
        never.to_str().unwrap(),
        "--metric",
        "train-top1-error",
        "--threshold",
        "0.25",
        "--label",
        "ReLU",
        "stuck",
    ]);
    assert!(ok && text.contains("ReLU: 5 epochs") && text.contains("from epoch 4"), "{text}");
    assert!(text.contains("stuck: 2 epochs") && text.contains("not at 0.25 within 2 epochs"), "{text}");
}

#[test]
fn bad_compare_requests_are_errors() {
    let root = std::env::temp_dir().join(format!("alexnet-compare-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let a = run(&root, "a", &[0.5]);
    let a_s = a.to_str().unwrap();
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let garbage = root.join("garbage");
    std::fs::create_dir_all(&garbage).unwrap();
    std::fs::write(garbage.join("metrics.jsonl"), "not json\n").unwrap();
    for (args, want) in [
        (vec!["--run", a_s, "--label", "x", "y"], "2 --label for 1 --run"),
        (vec!["--run", empty.to_str().unwrap()], "empty/metrics.jsonl"),
        (vec!["--run", garbage.to_str().unwrap()], "garbage/metrics.jsonl"),
        // The default metric is the validation error, which these runs do not have.
        (vec!["--run", a_s], "no validation top-1 error"),
    ] {
        let (ok, _, err) = alexnet(&[&["compare"][..], &args].concat());
        assert!(!ok && err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
    }
}
