//! `alexnet import`: AlexNet weights from PyTorch (torchvision's state dicts, `.pth` zip or
//! legacy, or safetensors with torchvision or our key names) into our checkpoint format.
//!
//! The topology is read from the tensors: widths and class count from the shapes, groups from
//! `in_channels / weight.shape[1]`. Grouped convolutions mean the paper's topology (LRN, pool
//! after norm); ungrouped ones with torchvision key names mean torchvision's. `--model` overrides
//! the choice. PyTorch-trained weights expect inverted dropout, so imports use it (identical
//! at test time to no dropout), and torchvision's preprocessing: resize 256, centre crop 224 (or
//! the input the shapes imply), ImageNet mean/std.

use super::torch::{self, Named};
use super::{InteropError, Result};
use crate::checkpoint::Checkpoint;
use crate::data::{ClassInfo, DataSpec, Normalize, imagenet};
use crate::kernels::dropout::DropoutMode;
use crate::model::config::{AlexNetWidths, paper_topology, torchvision_topology};
use crate::model::{LayerKind, ModelConfig, plan};
use crate::tensor::NamedTensor;
use std::collections::HashMap;
use std::path::Path;

/// torchvision's module indices for conv1..conv5 and fc6..fc8.
pub const TORCHVISION_KEYS: [(&str, &str); 8] = [
    ("features.0", "conv1"),
    ("features.3", "conv2"),
    ("features.6", "conv3"),
    ("features.8", "conv4"),
    ("features.10", "conv5"),
    ("classifier.1", "fc6"),
    ("classifier.4", "fc7"),
    ("classifier.6", "fc8"),
];

const LAYERS: [&str; 8] = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"];

/// Our name (`conv1.weight`) for a file key, or None if the key is not an AlexNet parameter.
fn our_name(key: &str) -> Option<(String, bool)> {
    let key = key.strip_prefix("module.").unwrap_or(key);
    let (layer, kind) = key.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    if let Some((_, ours)) = TORCHVISION_KEYS.iter().find(|(tv, _)| *tv == layer) {
        return Some((format!("{ours}.{kind}"), true));
    }
    LAYERS.contains(&layer).then(|| (format!("{layer}.{kind}"), false))
}

/// The smallest paper-topology input side whose conv1 stride fits exactly and whose pool5
/// output is `side × side` (227 for 6, 99 for 2).
fn paper_input_for(pool5: usize, w: &AlexNetWidths) -> Option<usize> {
    (67..=1024).step_by(4).find(|&h| {
        let cfg = paper_topology("probe", &AlexNetWidths { input: h, ..w.clone() });
        plan(&cfg).ok().and_then(|s| {
            s.layers
                .iter()
                .rev()
                .find(|l| matches!(l.kind, LayerKind::MaxPool(_)))
                .and_then(|l| l.output.get(1).copied())
        }) == Some(pool5)
    })
}

/// What the tensors' shapes say: widths, groups, the class count and pool5's side.
struct Shapes {
    conv: [usize; 5],
    groups: [usize; 5],
    fc: [usize; 2],
    classes: usize,
    side: usize,
}

/// Reads [`Shapes`] from conv1..conv5 and fc6..fc8, checking ranks, zeros and divisibility.
fn shapes_of(t: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Result<Shapes> {
    let shape = |n: &str, rank: usize| -> Result<Vec<usize>> {
        let s =
            t.get(n).map(|(s, _)| s.clone()).ok_or_else(|| InteropError::Weights(format!("missing key for `{n}`")))?;
        if s.len() != rank {
            return Err(InteropError::Weights(format!(
                "`{n}` has shape {s:?}: a weight of {rank} dimensions expected"
            )));
        }
        Ok(s)
    };
    let mut conv = [0usize; 5];
    let mut groups = [1usize; 5];
    let mut in_c = 3;
    for i in 0..5 {
        let name = format!("conv{}.weight", i + 1);
        let s = t
            .get(&name)
            .map(|(s, _)| s.clone())
            .ok_or_else(|| InteropError::Weights(format!("missing key for `{name}`")))?;
        if s.len() != 4 || s.contains(&0) || in_c % s[1] != 0 {
            return Err(InteropError::Weights(format!(
                "`{name}` has shape {s:?}, not a convolution over {in_c} channels"
            )));
        }
        conv[i] = s[0];
        groups[i] = in_c / s[1];
        in_c = s[0];
    }
    let fc6 = shape("fc6.weight", 2)?;
    let fc = [fc6[0], shape("fc7.weight", 2)?[0]];
    let classes = shape("fc8.weight", 2)?[0];
    if fc6[1] % conv[4] != 0 {
        return Err(InteropError::Weights(format!(
            "`fc6.weight` has shape {fc6:?}: its input is not a multiple of conv5's {} channels",
            conv[4]
        )));
    }
    let side = ((fc6[1] / conv[4]) as f64).sqrt().round() as usize;
    if side.checked_mul(side).and_then(|a| a.checked_mul(conv[4])) != Some(fc6[1]) {
        return Err(InteropError::Weights(format!(
            "`fc6.weight` has shape {fc6:?}: its input is not {} channels of a square map",
            conv[4]
        )));
    }
    if groups[0] != 1 || groups[2] != 1 || groups[3] != groups[1] || groups[4] != groups[1] {
        return Err(InteropError::Weights(format!(
            "groups {groups:?} per conv: only the paper's (1, g, 1, g, g) pattern is supported"
        )));
    }
    Ok(Shapes { conv, groups, fc, classes, side })
}

/// What `import` takes the tensors to be (`--model`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ImportAs {
    /// The topology the tensors' shapes and key names say (grouped: paper; torchvision keys:
    /// torchvision; else paper-1gpu).
    #[default]
    Infer,
    /// `paper`, `paper-1gpu`, `caffenet` or `torchvision`, with the widths the shapes say.
    Topology(String),
    /// Exactly this network (a model file): every tensor under its name, with its shape.
    Config(ModelConfig),
}

/// Builds the model config the tensors describe.
fn infer_config(
    t: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    model: Option<&str>,
    tv_keys: bool,
) -> Result<ModelConfig> {
    let Shapes { conv, groups, fc, classes, side } = shapes_of(t)?;
    let topology = match model {
        Some(m) => m.to_string(),
        None if groups[1] > 1 => "paper".into(),
        None if tv_keys => "torchvision".into(),
        None => "paper-1gpu".into(),
    };
    let mut cfg = match topology.as_str() {
        "torchvision" => {
            if groups[1] != 1 {
                return Err("torchvision's topology has no groups, but conv2 is grouped".into());
            }
            torchvision_topology(conv, fc, classes, 224)
        }
        "paper" | "paper-1gpu" | "caffenet" => {
            let w = AlexNetWidths {
                conv,
                fc,
                classes,
                input: 227,
                groups: groups[1],
                pool_before_norm: topology == "caffenet",
            };
            let input = paper_input_for(side, &w).ok_or(format!("no input size gives a {side}x{side} pool5 map"))?;
            let mut c = paper_topology(&topology, &AlexNetWidths { input, ..w });
            if input != 227 {
                c.name = format!("{topology}-{}x{}x{}x{}x{}", conv[0], conv[1], conv[2], conv[3], conv[4]);
            }
            c
        }
        other => {
            return Err(InteropError::Weights(format!(
                "cannot import into the `{other}` topology (paper, paper-1gpu, caffenet, torchvision)"
            )));
        }
    };
    cfg.dropout_mode = DropoutMode::Inverted;
    cfg.data = DataSpec { stored: 256.max(cfg.input[1]), pad: 0, normalize: Normalize::IMAGENET };
    Ok(cfg)
}

/// The network the tensors are taken as: the file's own (`own_json`, its alexnet.config), which
/// a contradicting `--model` may not override, or else what `model` says.
fn network_of(
    own_json: Option<&str>,
    model: &ImportAs,
    by_name: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    tv_keys: bool,
) -> Result<ModelConfig> {
    let Some(json) = own_json else {
        return match model {
            ImportAs::Config(c) => Ok(c.clone()),
            ImportAs::Topology(t) => infer_config(by_name, Some(t), tv_keys),
            ImportAs::Infer => infer_config(by_name, None, tv_keys),
        };
    };
    let own: ModelConfig = serde_json::from_str(json).map_err(|e| format!("metadata alexnet.config: {e}"))?;
    if let ImportAs::Config(c) = model {
        check_holds(&own, c)?;
    }
    Ok(own)
}

/// A file that says which network it holds (`own`, from its alexnet.config) and a `--model`
/// that names another: a mistake, not an instruction to reinterpret the tensors.
fn check_holds(own: &ModelConfig, given: &ModelConfig) -> Result<()> {
    if same_network(own, given) {
        return Ok(());
    }
    Err(InteropError::Weights(format!(
        "the file holds the `{}` network (its alexnet.config), not the `{}` given by --model: leave --model out",
        own.name, given.name
    )))
}

/// Whether `a` and `b` compute the same function of the same tensors, whatever their class
/// counts and the values their biases started from.
fn same_network(a: &ModelConfig, b: &ModelConfig) -> bool {
    let layers = |c: &ModelConfig| {
        let mut c = c.clone().with_classes(1);
        for l in &mut c.layers {
            if let crate::model::LayerSpec::Conv { bias_init, .. } | crate::model::LayerSpec::Linear { bias_init, .. } =
                l
            {
                *bias_init = 0.0;
            }
        }
        c.layers
    };
    a.input == b.input && layers(a) == layers(b)
}

/// Refuses NaN and infinite weights, naming the tensor and the first bad element.
fn finite(name: &str, data: &[f32]) -> Result<()> {
    match crate::tensor::first_non_finite(data) {
        None => Ok(()),
        Some(what) => Err(InteropError::Weights(format!("`{name}` holds {what}"))),
    }
}

/// Reads `path` and builds a checkpoint. `classes` names the outputs (default: ImageNet's for
/// 1000 outputs, else numbers).
pub fn import(path: &Path, model: &ImportAs, classes: Option<Vec<ClassInfo>>) -> Result<Checkpoint> {
    let (tensors, meta): (Vec<Named>, _) = torch::read_tensors(path)?;
    // Our own checkpoints, and files we exported with our config attached, round-trip exactly.
    if meta.get("format").is_some_and(|f| crate::checkpoint::is_checkpoint_format(f)) {
        let ck = Checkpoint::load(path)?;
        if let ImportAs::Config(c) = model {
            check_holds(&ck.config, c)?;
        }
        for p in &ck.params {
            finite(&p.name, &p.data)?;
        }
        return Ok(ck);
    }
    let mut by_name = HashMap::new();
    let mut unknown = Vec::new();
    let mut tv_keys = false;
    // A model file's own layer names are taken as they are (`module.` stripped, as PyTorch's
    // DataParallel adds it).
    let exact: Vec<String> = match model {
        ImportAs::Config(c) => plan(c)?.param_specs().map(|p| p.name.clone()).collect(),
        _ => Vec::new(),
    };
    for NamedTensor { name: key, shape, data } in tensors {
        let plain = key.strip_prefix("module.").unwrap_or(&key);
        let mapped = match exact.iter().find(|n| *n == plain) {
            Some(n) => Some((n.clone(), false)),
            None => our_name(&key),
        };
        match mapped {
            Some((n, tv)) => {
                tv_keys |= tv;
                if shape.contains(&0) {
                    return Err(InteropError::Weights(format!("`{key}` has shape {shape:?}: an empty dimension")));
                }
                if by_name.insert(n.clone(), (shape, data)).is_some() {
                    return Err(InteropError::Weights(format!("two keys map to {n} (one of them `{key}`)")));
                }
            }
            None if key.ends_with("num_batches_tracked") => {}
            None => unknown.push(key),
        }
    }
    if !unknown.is_empty() {
        return Err(InteropError::Weights(format!(
            "unknown keys (not AlexNet parameters): {}; expected torchvision's features.N / classifier.N or conv1..fc8",
            unknown.join(", ")
        )));
    }
    let mut cfg = network_of(meta.get("alexnet.config").map(String::as_str), model, &by_name, tv_keys)?;
    let classifier = match cfg.layers.iter().rev().find_map(|l| match l {
        crate::model::LayerSpec::Linear { name, .. } => Some(name.clone()),
        _ => None,
    }) {
        Some(name) => format!("{name}.weight"),
        None => return Err(crate::model::ConfigError::NoClassifier.into()),
    };
    let n_out = match by_name.get(&classifier).map(|(s, _)| s.as_slice()) {
        Some(&[n, _]) => n,
        Some(s) => {
            return Err(InteropError::Weights(format!(
                "`{classifier}` has shape {s:?}: a weight of 2 dimensions expected"
            )));
        }
        None => return Err(InteropError::Weights(format!("missing key for `{classifier}`"))),
    };
    let classes = match (classes, meta.get("alexnet.classes")) {
        (Some(c), _) => c,
        (None, Some(json)) => serde_json::from_str(json).map_err(|e| format!("metadata alexnet.classes: {e}"))?,
        (None, None) if n_out == 1000 => imagenet::classes(),
        (None, None) => (0..n_out).map(|i| ClassInfo { id: i.to_string(), name: i.to_string() }).collect(),
    };
    if classes.len() != n_out {
        return Err(InteropError::Weights(format!("{} class names for {n_out} outputs", classes.len())));
    }
    cfg = cfg.with_classes(n_out);
    let summary = plan(&cfg)?;
    let mut params = Vec::new();
    for p in summary.param_specs() {
        let (shape, data) =
            by_name.remove(&p.name).ok_or_else(|| InteropError::Weights(format!("missing key for `{}`", p.name)))?;
        if shape != p.shape {
            return Err(InteropError::Weights(format!(
                "`{}`: the file has shape {shape:?}, the {} model needs {:?}",
                p.name, cfg.name, p.shape
            )));
        }
        finite(&p.name, &data)?;
        params.push(NamedTensor::new(&p.name, shape, data));
    }
    if let Some(k) = by_name.keys().next() {
        return Err(InteropError::Weights(format!("`{k}` has no place in the {} model", cfg.name)));
    }
    let stats = imagenet::stats(cfg.data.stored);
    Ok(Checkpoint { config: cfg, classes, stats, params, velocity: None, sgd: None, train_state: None })
}

/// Tensors under torchvision's key names (`features.0.weight`, ...), for `export --safetensors`.
pub fn torchvision_named(ck: &Checkpoint) -> Result<Vec<Named>> {
    ck.params
        .iter()
        .map(|p| {
            let (layer, kind) = p.name.rsplit_once('.').ok_or("bad parameter name")?;
            let tv = TORCHVISION_KEYS
                .iter()
                .find(|(_, ours)| *ours == layer)
                .map(|(tv, _)| *tv)
                .ok_or_else(|| format!("`{layer}` has no torchvision name (conv1..conv5, fc6..fc8 only)"))?;
            Ok(NamedTensor::new(format!("{tv}.{kind}"), p.shape.clone(), p.data.clone()))
        })
        .collect()
}
