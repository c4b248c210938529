//! Weights in and out: torch.save files (zip and legacy), safetensors with torchvision names,
//! round trips, clear errors, and ONNX cases for scripts/check_onnx.py (run by .ci/run).

mod common;
use alexnet::Checkpoint;
use alexnet::Mode;
use alexnet::interop::plain::write_plain;
use alexnet::interop::{import, torchvision_named};
use alexnet::model::{ModelConfig, Network};
use alexnet::tensor::NamedTensor;
use common::{Fixture, assert_close};
use std::path::{Path, PathBuf};

fn reference(name: &str) -> PathBuf {
    common::fixture_path(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-io-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn torch_save_files_reproduce_the_reference_logits() {
    let fx = Fixture::load("tiny_alexnet.safetensors");
    for file in ["tiny_alexnet_zip.pth", "tiny_alexnet_legacy.pth"] {
        let ck = import(&reference(file), &Default::default(), None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ck.config.input, [3, 99, 99], "{file}: input size read from the shapes");
        assert_eq!(ck.param_count(), 56_554);
        for p in &ck.params {
            assert_eq!(p.data, fx.f32(&format!("param.{}", p.name)), "{file}: {}", p.name);
        }
        // Saved and loaded as our checkpoint, then run: the reference logits.
        let path = tmp(&format!("{file}.safetensors"));
        ck.save(&path).unwrap();
        let mut net = Checkpoint::load(&path).unwrap().network().unwrap();
        let logits = net.forward(&fx.f32("input"), 4, Mode::Eval).to_vec();
        assert_close(&format!("{file} logits"), &logits, &fx.f32("logits"), 1e-4);
    }
}

#[test]
fn import_export_import_is_the_identity() {
    let a = import(&reference("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap();
    let tv = tmp("roundtrip_tv.safetensors");
    let meta = [("alexnet.config".to_string(), serde_json::to_string(&a.config).unwrap())];
    write_plain(&tv, &torchvision_named(&a).unwrap(), meta.into_iter().collect()).unwrap();
    let b = import(&tv, &Default::default(), None).unwrap();
    assert_eq!(a.config, b.config);
    assert_eq!(a.classes, b.classes);
    assert_eq!(a.params, b.params);
    // Without our metadata the topology is inferred from shapes alone: the same network.
    let bare = tmp("roundtrip_bare.safetensors");
    write_plain(&bare, &torchvision_named(&a).unwrap(), Default::default()).unwrap();
    let c = import(&bare, &Default::default(), None).unwrap();
    assert_eq!(a.config, c.config);
    assert_eq!(a.params, c.params);
    // Through the CLI: import -> export --safetensors -> import.
    let bin = env!("CARGO_BIN_EXE_alexnet");
    let (x, y, z) = (tmp("cli_a.safetensors"), tmp("cli_tv.safetensors"), tmp("cli_b.safetensors"));
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["import".as_ref(), reference("tiny_alexnet_legacy.pth").as_os_str(), "--to".as_ref(), x.as_os_str()]);
    run(&["export".as_ref(), "--weights".as_ref(), x.as_os_str(), "--safetensors".as_ref(), y.as_os_str()]);
    run(&["import".as_ref(), y.as_os_str(), "--to".as_ref(), z.as_os_str()]);
    let (ca, cb) = (Checkpoint::load(&x).unwrap(), Checkpoint::load(&z).unwrap());
    assert_eq!(ca.params, cb.params);
    assert_eq!(ca.config, cb.config);
}

fn write_with(path: &Path, edit: impl Fn(&mut Vec<NamedTensor>)) {
    let a = import(&reference("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap();
    let mut named = torchvision_named(&a).unwrap();
    edit(&mut named);
    write_plain(path, &named, Default::default()).unwrap();
}

#[test]
fn unknown_missing_and_misshapen_keys_are_named() {
    let p = tmp("bad_unknown.safetensors");
    write_with(&p, |n| n.push(NamedTensor::new("features.99.weight", vec![2], vec![0.0, 0.0])));
    let e = import(&p, &Default::default(), None).unwrap_err().to_string();
    assert!(e.contains("features.99.weight") && e.contains("unknown"), "{e}");

    let p = tmp("bad_missing.safetensors");
    write_with(&p, |n| n.retain(|t| t.name != "classifier.4.bias"));
    let e = import(&p, &Default::default(), None).unwrap_err().to_string();
    assert!(e.contains("fc7.bias") && e.contains("missing"), "{e}");

    let p = tmp("bad_shape.safetensors");
    write_with(&p, |n| {
        let t = n.iter_mut().find(|t| t.name == "classifier.4.weight").unwrap();
        t.shape = vec![32, 128];
        t.data.truncate(32 * 128);
    });
    let e = import(&p, &Default::default(), None).unwrap_err().to_string();
    // fc7's width is read from this shape (32), so its input must be fc6's 64.
    assert!(e.contains("fc7.weight") && e.contains("[32, 128]") && e.contains("[32, 64]"), "{e}");

    let p = tmp("not_weights.bin");
    std::fs::write(&p, b"hello world").unwrap();
    assert!(import(&p, &Default::default(), None).unwrap_err().to_string().contains("not a PyTorch"));
}

/// The full-size torchvision network with the reference formula weights, written under
/// torchvision's key names without metadata, imported, and run on the formula input.
#[test]
fn torchvision_weights_import_as_torchvision_and_match_pytorch() {
    let mut net = Network::new(ModelConfig::variant("torchvision").unwrap(), 0).unwrap();
    net.init_formula();
    let ours = Checkpoint::capture(
        &net,
        &alexnet::data::imagenet::classes(),
        &alexnet::data::imagenet::stats(256),
        None,
        None,
    );
    let p = tmp("torchvision_formula.safetensors");
    write_plain(&p, &torchvision_named(&ours).unwrap(), Default::default()).unwrap();
    let ck = import(&p, &Default::default(), None).unwrap();
    assert_eq!(ck.config.name, "torchvision");
    assert_eq!(ck.config.input, [3, 224, 224]);
    assert_eq!(ck.classes.len(), 1000);
    assert_eq!(ck.classes[0].name, "tench");
    let mut net = ck.network().unwrap();
    let x: Vec<f32> = (0..2 * 3 * 224 * 224).map(|j| 2.0 * alexnet::rng::u24(1000, j as u64) - 1.0).collect();
    let logits = net.forward(&x, 2, Mode::Eval).to_vec();
    assert_close(
        "torchvision logits",
        &logits,
        &Fixture::load("torchvision_formula_logits.safetensors").f32("logits"),
        1e-4,
    );
}

/// Writes `<dir>/<name>/model.onnx` and `io.safetensors` (input, our logits) for the Python check.
fn onnx_case(dir: &Path, name: &str, ck: &Checkpoint, batch: usize) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("model.onnx"), alexnet::interop::onnx::export(ck).unwrap()).unwrap();
    let mut net = ck.network().unwrap();
    let n = batch * net.input_len();
    let x: Vec<f32> = (0..n).map(|j| 2.0 * alexnet::rng::u24(77, j as u64) - 1.0).collect();
    let logits = net.forward(&x, batch, Mode::Eval).to_vec();
    let mut shape = vec![batch];
    shape.extend(ck.config.input);
    let t = vec![NamedTensor::new("input", shape, x), NamedTensor::new("logits", vec![batch, net.classes()], logits)];
    write_plain(&d.join("io.safetensors"), &t, Default::default()).unwrap();
}

#[test]
fn onnx_cases_for_onnxruntime() {
    let dir = std::env::var_os("ALEXNET_ONNX_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx-cases"));
    let _ = std::fs::remove_dir_all(&dir);
    let tiny = import(&reference("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap();
    onnx_case(&dir, "tiny-paper-topology", &tiny, 3);
    // The printed formula's convention must export as alpha·n.
    let mut paper_lrn = Checkpoint {
        config: tiny.config.clone(),
        ..import(&reference("tiny_alexnet_zip.pth"), &Default::default(), None).unwrap()
    };
    for l in &mut paper_lrn.config.layers {
        if let alexnet::model::LayerSpec::Lrn(p) = l {
            p.convention = alexnet::kernels::lrn::LrnConvention::Paper;
            p.alpha = 0.01;
        }
    }
    onnx_case(&dir, "tiny-paper-lrn-convention", &paper_lrn, 2);
    let stats = alexnet::data::imagenet::stats(32);
    let classes: Vec<_> =
        (0..10).map(|i| alexnet::data::ClassInfo { id: i.to_string(), name: i.to_string() }).collect();
    // With the paper's dropout (the variant has none by default), so the export has its Mul.
    let cifar_dropout = alexnet::model::ModelChanges { dropout: Some(0.5), ..Default::default() }
        .apply(ModelConfig::variant("cifar").unwrap())
        .unwrap();
    let cifar = Network::new(cifar_dropout, 3).unwrap();
    onnx_case(&dir, "cifar-paper-dropout", &Checkpoint::capture(&cifar, &classes, &stats, None, None), 4);
    let tv =
        Network::new(alexnet::model::config::torchvision_topology([8, 16, 24, 16, 16], [32, 32], 10, 224), 5).unwrap();
    onnx_case(&dir, "torchvision-topology", &Checkpoint::capture(&tv, &classes, &stats, None, None), 2);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
    eprintln!("ONNX cases in {}", dir.display());
}
