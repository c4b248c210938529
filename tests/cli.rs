//! The `alexnet` binary end to end: its JSON outputs and its errors.

use std::process::Command;

fn alexnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alexnet")).args(args).output().expect("run alexnet");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = alexnet(args);
    assert!(ok, "alexnet {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON object ({e}): {out}"))
}

#[test]
fn summary_json_counts_parameters_exactly() {
    for (model, params) in [("paper", 60_965_224u64), ("paper-1gpu", 62_378_344), ("torchvision", 61_100_840)] {
        let v = json(&["summary", "--model", model, "--json"]);
        assert_eq!(v["model"], model);
        assert_eq!(v["params"].as_u64(), Some(params), "{model}");
        let layers = v["layers"].as_array().unwrap();
        let sum: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
        assert_eq!(sum, params);
        let macs: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
        assert_eq!(v["macs"].as_u64(), Some(macs));
        assert!(layers.iter().all(|l| l["name"].is_string() && l["output"].as_array().unwrap().len() == 3));
    }
    let v = json(&["summary", "--json"]);
    let conv1 = v["layers"].as_array().unwrap().iter().find(|l| l["name"] == "conv1").unwrap();
    assert_eq!(conv1["output"], serde_json::json!([96, 55, 55]));
    assert_eq!(v["macs"].as_u64(), Some(724_406_816));
}

#[test]
fn summary_table_shows_totals() {
    let (ok, out, _) = alexnet(&["summary", "--model", "paper"]);
    assert!(ok);
    assert!(out.contains("60,965,224"), "{out}");
    assert!(out.contains("55x55x96"));
}

#[test]
fn bench_json_has_the_documented_fields() {
    // A smoke test of the command, not a measurement: no timing is asserted.
    for mode in ["infer", "train"] {
        let v = json(&[
            "bench",
            "--model",
            "cifar",
            "--mode",
            mode,
            "--batch",
            "4",
            "--iters",
            "1",
            "--threads",
            "1",
            "--json",
            "--profile",
        ]);
        for field in [
            "model",
            "mode",
            "batch",
            "threads",
            "conv",
            "cpu",
            "gemm_peak_gflops",
            "peak_fraction",
            "ms_per_iter",
            "img_per_s",
            "gflops",
        ] {
            assert!(!v[field].is_null(), "{mode}: missing {field} in {v}");
        }
        assert!(v["cpu"]["model"].is_string() && v["cpu"]["avx2"].is_boolean(), "{v}");
        assert_eq!(v["mode"], mode);
        assert_eq!(v["batch"], 4);
        let layers = v["layers"].as_array().unwrap();
        assert!(layers.iter().any(|l| l["name"] == "conv1" && l["algo"].is_string()), "{v}");
    }
}

#[test]
fn bench_memory_and_gemm_report_their_parts() {
    // A smoke test of the two machine measurements: the floor is the sum of its parts, and the
    // fully connected weights counted are the model's (its fc layers' parameters less biases).
    let summary = json(&["summary", "--model", "cifar", "--json"]);
    let fc: u64 = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"].as_str().unwrap().starts_with("fc"))
        .map(|l| l["params"].as_u64().unwrap() - l["output"][0].as_u64().unwrap())
        .sum();
    assert!(fc > 0, "{summary}");
    let v = json(&["bench", "--model", "cifar", "--mode", "memory", "--iters", "2", "--threads", "1", "--json"]);
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("missing {k} in {v}"));
    assert_eq!(v["fc_weight_bytes"].as_u64(), Some(4 * fc), "{v}");
    assert!(f("read_gbps") > 0.0 && f("conv_at_peak_ms") > 0.0, "{v}");
    assert!((f("floor_ms") - f("fc_read_ms") - f("conv_at_peak_ms")).abs() < 1e-9, "{v}");
    assert!(f("flops_at_peak_ms") > f("conv_at_peak_ms"), "{v}");
    let g = json(&["bench", "--mode", "gemm", "--size", "64", "--iters", "2", "--threads", "2", "--json"]);
    let peak = g["gflops"].as_f64().unwrap();
    assert_eq!(peak, g["split_gflops"].as_f64().unwrap().max(g["per_thread_gflops"].as_f64().unwrap()), "{g}");
}

#[test]
fn unknown_model_is_a_clear_error() {
    let (ok, _, err) = alexnet(&["summary", "--model", "resnet"]);
    assert!(!ok);
    assert!(err.contains("known models"), "{err}");
}

#[test]
fn import_export_filters_and_forward_speak_json() {
    let fixture = |f: &str| format!("{}/tests/fixtures/{f}", env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("alexnet-cli-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let v = json(&["import", &fixture("tiny_alexnet_zip.pth"), "--to", &p("tiny.safetensors"), "--json"]);
    assert_eq!((v["params"].as_u64(), v["classes"].as_u64()), (Some(56_554), Some(10)), "{v}");
    assert_eq!(v["input"], serde_json::json!([3, 99, 99]));
    let v = json(&["export", "--weights", &p("tiny.safetensors"), "--onnx", &p("tiny.onnx"), "--json"]);
    assert_eq!(v["onnx"], p("tiny.onnx").as_str());
    assert!(v["safetensors"].is_null() && dir.join("tiny.onnx").exists());
    let v = json(&["filters", "--weights", &p("tiny.safetensors"), "--out", &p("conv1.png"), "--json"]);
    assert!(v["kernels"].as_u64().unwrap() > 0 && dir.join("conv1.png").exists(), "{v}");
    // The tiny paper net has two towers: one colour figure each.
    assert_eq!(v["chromatic"].as_array().map(Vec::len), v["towers"].as_u64().map(|t| t as usize), "{v}");
    let v = json(&[
        "forward",
        "--weights",
        &p("tiny.safetensors"),
        "--input",
        &fixture("tiny_alexnet.safetensors"),
        "--out",
        &p("logits.safetensors"),
        "--json",
    ]);
    assert_eq!(v["logits"], serde_json::json!([4, 10]), "{v}");
    let v = json(&["bench", "--mode", "gemm", "--size", "64", "--iters", "1", "--json"]);
    assert!(v["gflops"].as_f64().unwrap() > 0.0);
    // The loader against the training step it feeds: both rates, and their ratio.
    let val = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cifar10-mini/val");
    let v = json(&[
        "bench",
        "--mode",
        "loader",
        "--model",
        "cifar-4layer",
        "--data",
        val,
        "--batch",
        "8",
        "--iters",
        "1",
        "--threads",
        "1",
        "--cache-dir",
        &p("cache"),
        "--json",
    ]);
    let (loader, step) = (v["images_per_s"].as_f64().unwrap(), v["step_images_per_s"].as_f64().unwrap());
    assert!(loader > 0.0 && step > 0.0, "{v}");
    assert!((v["loader_over_step"].as_f64().unwrap() - loader / step).abs() < 1e-9 * loader / step, "{v}");
    let (ok, _, err) = alexnet(&["bench", "--mode", "gemm", "--data", val]);
    assert!(!ok && err.contains("--mode loader only"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `import --model NAME` for a built-in whose widths the tensors' shapes cannot say (`cifar`,
/// `alexnet64`, ...): the tensors are taken as that network, with the classes they have. A file
/// that says which network it holds refuses a `--model` that names another.
#[test]
fn import_into_any_built_in_variant() {
    use alexnet::model::{ModelConfig, plan};
    use alexnet::tensor::NamedTensor;
    let dir = std::env::temp_dir().join(format!("alexnet-cli-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let cfg = ModelConfig::variant("cifar").unwrap().with_classes(7);
    let summary = plan(&cfg).unwrap();
    let tensors: Vec<NamedTensor> =
        summary.param_specs().map(|s| NamedTensor::new(&s.name, s.shape.clone(), vec![0.01; s.len()])).collect();
    alexnet::interop::plain::write_plain(&dir.join("cifar.safetensors"), &tensors, Default::default()).unwrap();
    let v = json(&["import", &p("cifar.safetensors"), "--model", "cifar", "--to", &p("ours.safetensors"), "--json"]);
    assert_eq!(v["model"], "cifar", "{v}");
    assert_eq!((v["params"].as_u64(), v["classes"].as_u64()), (Some(summary.params as u64), Some(7)), "{v}");
    let (ok, _, err) =
        alexnet(&["import", &p("ours.safetensors"), "--model", "alexnet64", "--to", &p("x.safetensors")]);
    assert!(!ok && err.contains("holds the `cifar` network") && err.contains("alexnet64"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
