//! Model files (`--model FILE`): every built-in variant round-trips through TOML and JSON to the
//! same parameters and logits, the shipped files and README's worked example are the built-ins,
//! bad files are refused with the file, the layer and the field named, and `train` without
//! `--model` picks the variant that fits the images.

use alexnet::model::{ModelConfig, ModelFormat, Network, VARIANTS, plan};
use alexnet::{Mode, train};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-model-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Parameter names and shapes, in order.
fn params(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    plan(cfg).unwrap().param_specs().map(|p| (p.name.clone(), p.shape.clone())).collect()
}

#[test]
fn every_builtin_round_trips_through_toml_and_json() {
    let dir = scratch("round-trip");
    for v in VARIANTS {
        let builtin = ModelConfig::variant(v).unwrap();
        let toml_path = dir.join(format!("{v}.toml"));
        std::fs::write(&toml_path, builtin.to_toml()).unwrap();
        let from_toml = ModelConfig::load(&toml_path).unwrap();
        assert_eq!(from_toml, builtin, "{v} through TOML");
        let json_path = dir.join(format!("{v}.json"));
        std::fs::write(&json_path, serde_json::to_string(&builtin).unwrap()).unwrap();
        assert_eq!(ModelConfig::load(&json_path).unwrap(), builtin, "{v} through JSON");
        assert_eq!(params(&from_toml), params(&builtin), "{v}: parameters");
    }
}

#[test]
fn a_model_file_gives_the_same_logits_as_its_builtin() {
    let dir = scratch("logits");
    for v in ["alexnet64", "cifar"] {
        let builtin = ModelConfig::variant(v).unwrap();
        let path = dir.join(format!("{v}.toml"));
        std::fs::write(&path, builtin.to_toml()).unwrap();
        let from_file = ModelConfig::named_or_file(path.to_str().unwrap()).unwrap();
        let [c, h, w] = builtin.input;
        let x: Vec<f32> = (0..2 * c * h * w).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
        let a = Network::new(builtin, 11).unwrap().forward(&x, 2, Mode::Eval).to_vec();
        let b = Network::new(from_file, 11).unwrap().forward(&x, 2, Mode::Eval).to_vec();
        assert_eq!(a, b, "{v}: logits from the file's net");
        assert!(a.iter().any(|&l| l != 0.0) && a.iter().all(|l| l.is_finite()));
    }
}

#[test]
fn the_shipped_model_files_are_the_builtins() {
    for v in ["paper", "alexnet64"] {
        let path = root().join("models").join(format!("{v}.toml"));
        assert_eq!(ModelConfig::load(&path).unwrap(), ModelConfig::variant(v).unwrap(), "{}", path.display());
    }
}

/// The README's worked example, parsed exactly as the README prints it.
#[test]
fn the_readme_worked_example_is_the_paper_net() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Model files").expect("README has a Model files section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let cfg = ModelConfig::parse(block, ModelFormat::Toml).unwrap();
    assert_eq!(cfg, ModelConfig::paper());
    assert_eq!(plan(&cfg).unwrap().params, 60_965_224);
}

/// A run's config.json holds the model beside the recipe: it is a model file as it stands.
#[test]
fn a_run_config_json_is_a_model_file() {
    let dir = scratch("config-json");
    let path = dir.join("config.json");
    let run = serde_json::json!({ "epochs": 3, "batch": 128, "model": ModelConfig::variant("cifar").unwrap() });
    std::fs::write(&path, serde_json::to_string_pretty(&run).unwrap()).unwrap();
    assert_eq!(ModelConfig::load(&path).unwrap(), ModelConfig::variant("cifar").unwrap());
}

/// A file without a name takes the file's stem (made plain), and the defaults of omitted fields.
#[test]
fn omitted_fields_take_their_defaults() {
    let dir = scratch("defaults");
    let path = dir.join("my net.toml");
    std::fs::write(
        &path,
        "input = [3, 32, 32]\ndata = { stored = 32, pad = 4 }\nlayers = [\n  { type = \"conv\", name = \"c1\", out = 8, kernel = 3, pad = 1 },\n  { type = \"relu\" },\n  { type = \"lrn\" },\n  { type = \"linear\", name = \"out\", out = 10 },\n]\n",
    )
    .unwrap();
    let cfg = ModelConfig::load(&path).unwrap();
    assert_eq!(cfg.name, "my-net");
    assert_eq!(cfg.init, alexnet::model::Init::Gaussian { std: 0.01 });
    let s = plan(&cfg).unwrap();
    assert_eq!(s.layers[0].stride, Some(1));
    assert_eq!(s.layers[0].groups, Some(1));
    assert_eq!(s.classes(), 10);
    assert_eq!(s.layers[2].kind, alexnet::model::LayerKind::Lrn(alexnet::kernels::lrn::LrnParams::paper()));
}

/// The paper's file with `from` replaced by `to` (which must occur).
fn paper_with(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(root().join("models/paper.toml")).unwrap();
    assert!(text.contains(from), "paper.toml has no {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn bad_model_files_are_refused_naming_the_layer_and_the_field() {
    let dir = scratch("bad");
    let conv2 = r#"{ type = "conv", name = "conv2", out = 256, kernel = 5, pad = 2, groups = 2, bias_init = 1.0 }"#;
    let fc8 = r#"{ type = "linear", name = "fc8", out = 1000 },"#;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "groups-inputs",
            paper_with(
                r#"name = "conv4", out = 384, kernel = 3, pad = 1, groups = 2"#,
                r#"name = "conv4", out = 384, kernel = 3, pad = 1, groups = 5"#,
            ),
            "layer 11 (conv4): conv4.groups = 5 does not divide 384 input channels",
        ),
        (
            "groups-outputs",
            paper_with(conv2, &conv2.replace("groups = 2", "groups = 3")),
            "conv2.groups = 3 does not divide conv2.out = 256",
        ),
        ("zero-width", paper_with("out = 96", "out = 0"), "layer 1 (conv1): conv1.out = 0: must be positive"),
        ("zero-stride", paper_with("stride = 4", "stride = 0"), "conv1.stride = 0: must be positive"),
        (
            "huge-width",
            paper_with("out = 96", "out = 100000000000"),
            "layer 1 (conv1): conv1.out = 100000000000 is beyond the limit",
        ),
        (
            "huge-input",
            paper_with("input = [3, 227, 227]", "input = [3, 40000, 40000]"),
            "input = [3, 40000, 40000] is too large",
        ),
        (
            "activations-add-up",
            format!(
                "input = [3, 2048, 2048]\ndata = {{ stored = 2048 }}\nlayers = [\n{}  {{ type = \"linear\", name = \"fc\", out = 2 }},\n]\n",
                "  { type = \"relu\" },\n".repeat(40)
            ),
            "layer 11 (relu): the activations of one image reach 138412032 values here, beyond the limit",
        ),
        (
            "field-beside-a-bare-type",
            paper_with(r#"{ type = "relu" }"#, r#"{ type = "relu", kernel = 3 }"#),
            "layer 2: unknown field `kernel`",
        ),
        (
            "std-for-he",
            paper_with(r#"init = { type = "gaussian", std = 0.01 }"#, r#"init = { type = "he", std = 0.01 }"#),
            "unknown field `init.std`",
        ),
        (
            "mean-for-the-mean-image",
            paper_with(
                r#"normalize = { type = "per_pixel_mean" }"#,
                r#"normalize = { type = "per_pixel_mean", mean = [1, 2, 3] }"#,
            ),
            "unknown field `data.normalize.mean`",
        ),
        (
            "shrinks-to-nothing",
            paper_with("input = [3, 227, 227]", "input = [3, 64, 64]"),
            "kernel = 3 is larger than its 2x2 input padded by 0: the map shrinks to nothing",
        ),
        ("unknown-kind", paper_with(r#"{ type = "relu" }"#, r#"{ type = "gelu" }"#), "unknown variant `gelu`"),
        ("misspelt-field", paper_with("stride = 4", "stirde = 4"), "unknown field `stirde`"),
        ("no-classifier", paper_with(fc8, ""), "must end in a fully connected layer"),
        (
            "no-layers",
            "input = [3, 32, 32]\ndata = { stored = 32, pad = 0 }\nlayers = []\n".into(),
            "must end in a fully connected layer",
        ),
        ("dropout-p", paper_with("p = 0.5", "p = 1.5"), "probability 1.5 not in [0, 1)"),
        (
            "twice-named",
            paper_with(r#"name = "fc7""#, r#"name = "fc6""#),
            "layer 21 (fc6): name = \"fc6\" is layer 18's too",
        ),
        ("dotted-name", paper_with(r#"name = "conv3""#, r#"name = "conv.3""#), "layer 9 (name): name = \"conv.3\""),
        (
            "path-as-model-name",
            paper_with(r#"name = "paper""#, r#"name = "../../etc/passwd""#),
            "name = \"../../etc/passwd\"",
        ),
        ("lrn-k-zero", paper_with("k = 2.0", "k = 0.0"), "layer 3 (lrn): needs k > 0"),
        (
            "nan-bias",
            paper_with("bias_init = 1.0", "bias_init = nan"),
            "conv2.bias_init = NaN: must be a finite number",
        ),
        ("negative-std", paper_with("std = 0.01", "std = -1.0"), "init.std = -1: must be a positive number"),
        ("stored-zero", paper_with("stored = 256", "stored = 0"), "data.stored = 0"),
        ("not-square", paper_with("input = [3, 227, 227]", "input = [3, 227, 100]"), "square RGB crops"),
        ("negative-size", paper_with("out = 96", "out = -96"), "invalid value: integer `-96`"),
        ("syntax", paper_with("layers = [", "layers = [[["), "TOML parse error"),
    ];
    assert!(cases.len() >= 10);
    for (name, text, expected) in cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let err = ModelConfig::load(&path).expect_err(name).to_string();
        assert!(err.starts_with(&path.display().to_string()), "{name}: the error names the file: {err}");
        assert!(err.contains(expected), "{name}: expected {expected:?} in:\n{err}");
    }
    // Files that are not model files at all.
    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
    assert!(ModelConfig::load(&big).unwrap_err().to_string().contains("too large for a model file"));
    let binary = dir.join("weights.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0, 1]).unwrap();
    assert!(ModelConfig::load(&binary).unwrap_err().to_string().contains("not UTF-8"));
    let unknown = ModelConfig::named_or_file("no-such-model").unwrap_err().to_string();
    assert!(unknown.contains("neither a built-in variant") && unknown.contains("alexnet64"), "{unknown}");
}

/// A class folder of `n` images of `side`x`side` pixels (a gradient, PNG).
fn image_folder(root: &Path, side: u32) {
    for class in ["a", "b"] {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..3u32 {
            let img = image::RgbImage::from_fn(side, side + i, |x, y| image::Rgb([x as u8, y as u8, (i * 40) as u8]));
            img.save(d.join(format!("{i}.png"))).unwrap();
        }
    }
}

#[test]
fn train_without_a_model_picks_the_variant_that_fits_the_images() {
    let dir = scratch("fit");
    for (side, expected) in [(32, "cifar"), (64, "alexnet64"), (224, "paper"), (500, "paper")] {
        let folder = dir.join(format!("px{side}"));
        image_folder(&folder, side);
        let (name, why) = train::fitting_variant(&folder).unwrap();
        assert_eq!(name, expected, "{side} px: {why}");
        assert!(why.contains(&format!("{side} px")), "{why}");
    }
}

/// `import --model FILE`: the tensors must be exactly the file's network.
#[test]
fn import_into_a_model_file() {
    use alexnet::interop::{ImportAs, import};
    let pth = root().join("tests/fixtures/tiny_alexnet_zip.pth");
    let inferred = import(&pth, &ImportAs::Infer, None).unwrap();
    let dir = scratch("import");
    let file = dir.join("tiny.toml");
    std::fs::write(&file, inferred.config.to_toml()).unwrap();
    let cfg = ModelConfig::load(&file).unwrap();
    let ck = import(&pth, &ImportAs::Config(cfg.clone()), None).unwrap();
    assert_eq!(ck.params, inferred.params);
    // A file whose conv1 is wider than the tensors' is refused, naming the tensor.
    let mut wider = cfg;
    if let Some(alexnet::model::LayerSpec::Conv { out, .. }) = wider.layers.first_mut() {
        *out *= 2;
    }
    let e = import(&pth, &ImportAs::Config(wider), None).unwrap_err().to_string();
    assert!(e.contains("conv1"), "{e}");
}
