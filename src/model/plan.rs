//! The plan of a network, from its [`ModelConfig`] alone and without allocating any tensor: each
//! layer's input and output shape, its parameters (names, shapes), its multiply-adds — the table
//! of the AlexNet lecture notes, and what [`super::Network`], checkpoints and importers are
//! built from.

use super::config::{ConfigError, LayerSpec, ModelConfig};
use crate::kernels::conv::ConvShape;
use crate::kernels::pool::PoolShape;
use serde::Serialize;

/// Limits on what a config may ask for, checked before anything is allocated: configs come
/// from checkpoints, and a checkpoint can come from anyone.
pub mod limits {
    /// Any one size in a layer spec: widths, kernels, strides, pads, the input's sides.
    pub const MAX_DIM: usize = 1 << 20;
    /// Values of one image's activation after any layer, and of a convolution's column
    /// matrix for one image (64 MiB of f32; the paper's largest is conv2's 0.9 M).
    pub const MAX_ACTIVATION: usize = 1 << 24;
    /// Side of the stored images (the paper: 256) and their padding.
    pub const MAX_STORED: usize = 4096;
    /// Values of all the activations of one image together: what training keeps for the
    /// backward pass (512 MiB of f32 an image; the paper's net: ~2.5 M).
    pub const MAX_ACTIVATIONS: usize = 1 << 27;
    /// Parameters of one layer, and of the whole network (8 GiB of f32, before the gradient
    /// and the momentum that training adds; the paper's net: 61 M).
    pub const MAX_LAYER_PARAMS: usize = 1 << 31;
    pub const MAX_PARAMS: usize = 1 << 31;
    /// Layers in a network.
    pub const MAX_LAYERS: usize = 1 << 12;
}

/// The product of `dims`, or an error naming what overflowed or exceeded `limit`.
fn checked_len(index: usize, what: &str, dims: &[usize], limit: usize) -> Result<usize, ConfigError> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= limit)
        .ok_or_else(|| bad(index, what, format!("{dims:?} is too large (at most {limit} values)")))
}

/// A learnable tensor as the plan knows it: before any value exists.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// `conv1.weight`, `fc8.bias`, ...
    pub name: String,
    /// PyTorch's layout: `[out, in/groups, kh, kw]` for a convolution, `[out, in]` for a linear
    /// layer, `[out]` for a bias.
    pub shape: Vec<usize>,
    pub is_bias: bool,
    /// The value every element starts at (biases; weights are drawn by [`super::init`]).
    pub fill: f32,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Inputs per output (`in/groups·kh·kw`, or `in`): what He init scales by.
    pub fn fan_in(&self) -> usize {
        self.shape[1..].iter().product()
    }
}

/// What a layer computes, with every size resolved against its input.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// Weight `[out, in/groups, kh, kw]` and bias `[out]`.
    Conv {
        shape: ConvShape,
        params: [ParamSpec; 2],
    },
    /// `inp` inputs (the flattened input) to `out` outputs; weight `[out, inp]`, bias `[out]`.
    Linear {
        inp: usize,
        out: usize,
        params: [ParamSpec; 2],
    },
    Relu,
    Tanh,
    Lrn(crate::kernels::lrn::LrnParams),
    MaxPool(PoolShape),
    AdaptiveAvgPool {
        out_h: usize,
        out_w: usize,
    },
    Flatten,
    Dropout {
        p: f32,
    },
}

/// One row of the layer table.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    /// `conv1`, `relu`, `lrn`, `maxpool`, ...; parametrised layers carry their config name.
    pub name: String,
    /// Kernel size, for conv and pooling layers (the window size `n` for LRN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    /// `[C, H, W]` of the input of one image (`[F, 1, 1]` for a linear layer: it flattens).
    #[serde(skip)]
    pub input: [usize; 3],
    /// `[C, H, W]` of the output of one image (`[F, 1, 1]` after flatten).
    pub output: [usize; 3],
    pub params: usize,
    /// Multiply-adds per image (convolutions and fully connected layers only).
    pub macs: usize,
    #[serde(skip)]
    pub kind: LayerKind,
}

impl LayerInfo {
    pub fn in_len(&self) -> usize {
        self.input.iter().product()
    }
    pub fn out_len(&self) -> usize {
        self.output.iter().product()
    }

    /// Weight then bias, for conv and linear layers; empty otherwise.
    pub fn param_specs(&self) -> &[ParamSpec] {
        match &self.kind {
            LayerKind::Conv { params, .. } | LayerKind::Linear { params, .. } => params,
            _ => &[],
        }
    }

    /// Resolves layer `index` of spec `spec` against its input `[c, h, w]`, checking that it fits.
    fn new(index: usize, spec: &LayerSpec, input: [usize; 3]) -> Result<Self, ConfigError> {
        check_name_and_bias(index, spec)?;
        let info = Self::resolve(index, spec, input)?;
        checked_len(index, &info.name, &info.output, limits::MAX_ACTIVATION)?;
        for p in info.param_specs() {
            checked_len(index, &p.name, &p.shape, limits::MAX_LAYER_PARAMS)?;
        }
        Ok(info)
    }

    fn resolve(index: usize, spec: &LayerSpec, input: [usize; 3]) -> Result<Self, ConfigError> {
        spec_dims_within_limits(index, spec)?;
        let mut info = LayerInfo {
            name: String::new(),
            kernel: None,
            stride: None,
            pad: None,
            groups: None,
            input,
            output: input,
            params: 0,
            macs: 0,
            kind: LayerKind::Flatten,
        };
        let [c, h, w] = input;
        match spec {
            LayerSpec::Conv { name, out, kernel, stride, pad, groups, bias_init } => {
                let cs = conv_shape(index, name, input, (*out, *kernel, *stride, *pad, *groups))?;
                info.name = name.clone();
                (info.kernel, info.stride, info.pad, info.groups) =
                    (Some(*kernel), Some(*stride), Some(*pad), Some(*groups));
                info.output = [*out, cs.out_h(), cs.out_w()];
                info.macs = conv_macs(index, name, &cs)?;
                let wshape = vec![*out, c / groups, *kernel, *kernel];
                info.kind = LayerKind::Conv { shape: cs, params: weight_and_bias(name, wshape, *out, *bias_init) };
            }
            LayerSpec::Linear { name, out, bias_init } => {
                if *out == 0 {
                    return Err(bad(index, name, format!("{name}.out = 0: must be positive")));
                }
                let inp = checked_len(index, name, &input, limits::MAX_ACTIVATION)?;
                info.name = name.clone();
                // A linear layer right after a conv flattens implicitly; the table says so.
                info.input = [inp, 1, 1];
                info.output = [*out, 1, 1];
                info.macs = checked_len(index, name, &[inp, *out], limits::MAX_LAYER_PARAMS)?;
                let params = weight_and_bias(name, vec![*out, inp], *out, *bias_init);
                info.kind = LayerKind::Linear { inp, out: *out, params };
            }
            LayerSpec::Relu => (info.name, info.kind) = ("relu".into(), LayerKind::Relu),
            LayerSpec::Tanh => (info.name, info.kind) = ("tanh".into(), LayerKind::Tanh),
            LayerSpec::Lrn(p) => {
                check_lrn(index, p)?;
                (info.name, info.kernel, info.kind) = ("lrn".into(), Some(p.size), LayerKind::Lrn(*p));
            }
            LayerSpec::MaxPool { kernel, stride, pad } => {
                let ps = pool_shape(index, input, (*kernel, *stride, *pad))?;
                info.name = "maxpool".into();
                (info.kernel, info.stride, info.pad) = (Some(*kernel), Some(*stride), Some(*pad));
                info.output = [c, ps.out_h(), ps.out_w()];
                info.kind = LayerKind::MaxPool(ps);
            }
            LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
                if *out_h == 0 || *out_w == 0 {
                    return Err(bad(index, "avgpool", "output size must be positive"));
                }
                info.name = "avgpool".into();
                info.output = [c, *out_h, *out_w];
                info.kind = LayerKind::AdaptiveAvgPool { out_h: *out_h, out_w: *out_w };
            }
            LayerSpec::Flatten => (info.name, info.output) = ("flatten".into(), [c * h * w, 1, 1]),
            LayerSpec::Dropout { p } => {
                if !(0.0..1.0).contains(p) {
                    return Err(bad(index, "dropout", format!("probability {p} not in [0, 1)")));
                }
                (info.name, info.kind) = ("dropout".into(), LayerKind::Dropout { p: *p });
            }
        }
        info.params = info
            .param_specs()
            .iter()
            .map(|p| checked_len(index, &p.name, &p.shape, limits::MAX_LAYER_PARAMS))
            .sum::<Result<_, _>>()?;
        Ok(info)
    }
}

/// A parametrised layer's name becomes its tensors' names (`conv1.weight`) in checkpoints and
/// exports: short, plain and without a dot. Its bias fill must be a number.
fn check_name_and_bias(index: usize, spec: &LayerSpec) -> Result<(), ConfigError> {
    let (LayerSpec::Conv { name, bias_init, .. } | LayerSpec::Linear { name, bias_init, .. }) = spec else {
        return Ok(());
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        let shown: String = name.chars().take(64).collect();
        return Err(bad(
            index,
            "name",
            format!("name = {shown:?}: a layer's name is 1 to 64 letters, digits, '_' or '-' (it names its tensors)"),
        ));
    }
    if !bias_init.is_finite() {
        return Err(bad(index, name, format!("{name}.bias_init = {bias_init}: must be a finite number")));
    }
    Ok(())
}

fn weight_and_bias(layer: &str, wshape: Vec<usize>, out: usize, bias_init: f32) -> [ParamSpec; 2] {
    [
        ParamSpec { name: format!("{layer}.weight"), shape: wshape, is_bias: false, fill: 0.0 },
        ParamSpec { name: format!("{layer}.bias"), shape: vec![out], is_bias: true, fill: bias_init },
    ]
}

/// Every number of a spec within [`limits::MAX_DIM`], so that the shape arithmetic below
/// cannot overflow.
fn spec_dims_within_limits(index: usize, spec: &LayerSpec) -> Result<(), ConfigError> {
    let (what, dims): (&str, Vec<(&str, usize)>) = match spec {
        LayerSpec::Conv { name, out, kernel, stride, pad, groups, .. } => {
            (name, vec![("out", *out), ("kernel", *kernel), ("stride", *stride), ("pad", *pad), ("groups", *groups)])
        }
        LayerSpec::Linear { name, out, .. } => (name, vec![("out", *out)]),
        LayerSpec::Lrn(p) => ("lrn", vec![("size", p.size)]),
        LayerSpec::MaxPool { kernel, stride, pad } => {
            ("max_pool", vec![("kernel", *kernel), ("stride", *stride), ("pad", *pad)])
        }
        LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
            ("adaptive_avg_pool", vec![("out_h", *out_h), ("out_w", *out_w)])
        }
        LayerSpec::Relu | LayerSpec::Tanh | LayerSpec::Flatten | LayerSpec::Dropout { .. } => return Ok(()),
    };
    match dims.iter().find(|(_, d)| *d > limits::MAX_DIM) {
        Some((field, d)) => {
            Err(bad(index, what, format!("{what}.{field} = {d} is beyond the limit of {}", limits::MAX_DIM)))
        }
        None => Ok(()),
    }
}

/// A convolution's multiply-adds per image, out_c·OH·OW outputs of (C/G)·K·K each (`cs.macs()`
/// without overflow), after checking its im2col buffer, (C/G)·K·K rows of OH·OW, is in bounds.
fn conv_macs(index: usize, name: &str, cs: &ConvShape) -> Result<usize, ConfigError> {
    let rows = [cs.in_c / cs.groups, cs.kh, cs.kw];
    checked_len(index, name, &[&rows[..], &[cs.out_h(), cs.out_w()]].concat(), limits::MAX_ACTIVATION)?;
    checked_len(index, name, &[&rows[..], &[cs.out_c, cs.out_h(), cs.out_w()]].concat(), usize::MAX)
}

fn conv_shape(
    index: usize,
    name: &str,
    [c, h, w]: [usize; 3],
    (out, k, s, p, g): (usize, usize, usize, usize, usize),
) -> Result<ConvShape, ConfigError> {
    for (field, v) in [("out", out), ("kernel", k), ("stride", s), ("groups", g)] {
        if v == 0 {
            return Err(bad(index, name, format!("{name}.{field} = 0: must be positive")));
        }
    }
    if c % g != 0 {
        return Err(bad(index, name, format!("{name}.groups = {g} does not divide {c} input channels")));
    }
    if out % g != 0 {
        return Err(bad(index, name, format!("{name}.groups = {g} does not divide {name}.out = {out}")));
    }
    if h + 2 * p < k || w + 2 * p < k {
        return Err(bad(
            index,
            name,
            format!("{name}.kernel = {k} is larger than its {h}x{w} input padded by {p}: the map shrinks to nothing"),
        ));
    }
    Ok(ConvShape { in_c: c, in_h: h, in_w: w, out_c: out, kh: k, kw: k, stride: s, pad: p, groups: g })
}

fn pool_shape(index: usize, [c, h, w]: [usize; 3], (k, s, p): (usize, usize, usize)) -> Result<PoolShape, ConfigError> {
    if k == 0 || s == 0 {
        return Err(bad(index, "max_pool", format!("kernel = {k}, stride = {s}: both must be positive")));
    }
    if p >= k {
        return Err(bad(index, "max_pool", format!("pad = {p} must be smaller than kernel = {k}")));
    }
    if h + 2 * p < k || w + 2 * p < k {
        return Err(bad(
            index,
            "max_pool",
            format!("kernel = {k} is larger than its {h}x{w} input padded by {p}: the map shrinks to nothing"),
        ));
    }
    Ok(PoolShape { c, in_h: h, in_w: w, kernel: k, stride: s, pad: p })
}

/// The whole table.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub input: [usize; 3],
    pub params: usize,
    pub macs: usize,
    pub layers: Vec<LayerInfo>,
}

fn bad(index: usize, what: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::BadLayer { index, what: what.into(), problem: problem.into() }
}

/// An LRN layer's window and constants: a zero or negative base `k + α·Σ` would divide by zero
/// or take a power of a negative.
fn check_lrn(index: usize, p: &crate::kernels::lrn::LrnParams) -> Result<(), ConfigError> {
    if p.size == 0 {
        return Err(bad(index, "lrn", "size must be positive"));
    }
    let finite = p.alpha.is_finite() && p.beta.is_finite() && p.k.is_finite();
    if !finite || p.alpha < 0.0 || p.beta < 0.0 || p.k <= 0.0 {
        let values = format!("k {}, alpha {}, beta {}", p.k, p.alpha, p.beta);
        return Err(bad(index, "lrn", format!("needs k > 0, alpha >= 0, beta >= 0 ({values})")));
    }
    Ok(())
}

/// Walks the layers, checking that each fits its input.
pub fn plan(cfg: &ModelConfig) -> Result<Summary, ConfigError> {
    check_model(cfg)?;
    let mut shape = cfg.input;
    let mut layers: Vec<LayerInfo> = Vec::with_capacity(cfg.layers.len());
    let mut activations = 0usize;
    for (index, spec) in cfg.layers.iter().enumerate() {
        let info = LayerInfo::new(index, spec, shape)?;
        if !info.param_specs().is_empty()
            && let Some(first) = layers.iter().position(|l| !l.param_specs().is_empty() && l.name == info.name)
        {
            return Err(bad(
                index,
                &info.name,
                format!("name = {:?} is layer {}'s too: its tensors would collide", info.name, first + 1),
            ));
        }
        shape = info.output;
        activations += info.out_len();
        if activations > limits::MAX_ACTIVATIONS {
            return Err(bad(
                index,
                &info.name,
                format!(
                    "the activations of one image reach {activations} values here, beyond the limit of {} for all layers",
                    limits::MAX_ACTIVATIONS
                ),
            ));
        }
        layers.push(info);
    }
    let params: usize = layers.iter().map(|l| l.params).sum();
    if params > limits::MAX_PARAMS {
        return Err(ConfigError::BadModel(format!("{params} parameters, beyond the limit of {}", limits::MAX_PARAMS)));
    }
    cfg.classes()?;
    Ok(Summary { model: cfg.name.clone(), input: cfg.input, params, macs: layers.iter().map(|l| l.macs).sum(), layers })
}

/// The network's own fields: its input, its data pipeline, its init, its layer count.
fn check_model(cfg: &ModelConfig) -> Result<(), ConfigError> {
    let bad_model = |m: String| Err(ConfigError::BadModel(m));
    // The name becomes a run folder's (runs/<name>-N) and appears in files: plain, no path.
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.+".contains(c);
    if cfg.name.is_empty() || cfg.name.len() > 128 || cfg.name.starts_with('.') || !cfg.name.chars().all(plain) {
        let shown: String = cfg.name.chars().take(128).collect();
        return bad_model(format!(
            "name = {shown:?}: 1 to 128 letters, digits, '_', '-', '.' or '+', not starting with '.'"
        ));
    }
    let shape = cfg.input;
    if shape.contains(&0) {
        return bad_model(format!("input = {shape:?} has a zero"));
    }
    if shape.iter().any(|&d| d > limits::MAX_DIM) {
        return bad_model(format!("input = {shape:?} is beyond the limit of {} a side", limits::MAX_DIM));
    }
    if cfg.layers.len() > limits::MAX_LAYERS {
        return bad_model(format!("{} layers, beyond the limit of {}", cfg.layers.len(), limits::MAX_LAYERS));
    }
    if shape.iter().product::<usize>() > limits::MAX_ACTIVATION {
        return bad_model(format!("input = {shape:?} is too large (at most {} values)", limits::MAX_ACTIVATION));
    }
    // Inputs are square RGB crops of the stored images (what the data pipeline makes).
    if shape[0] != 3 || shape[1] != shape[2] {
        return bad_model(format!("input = {shape:?}: the pipeline makes square RGB crops [3, S, S]"));
    }
    let d = cfg.data;
    if d.stored == 0 || d.stored > limits::MAX_STORED || d.pad > limits::MAX_STORED || d.stored + 2 * d.pad < shape[1] {
        return bad_model(format!(
            "data.stored = {}, data.pad = {}: cannot give {}-pixel crops (stored at most {})",
            d.stored,
            d.pad,
            shape[1],
            limits::MAX_STORED
        ));
    }
    if let crate::data::Normalize::Fixed { mean, std } = d.normalize
        && !(mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0))
    {
        return bad_model(format!("data.normalize: mean {mean:?} must be finite and std {std:?} positive"));
    }
    if let super::Init::Gaussian { std } = cfg.init
        && !(std.is_finite() && std > 0.0)
    {
        return bad_model(format!("init.std = {std}: must be a positive number"));
    }
    Ok(())
}

impl Summary {
    /// Every parameter of the network, in order (each layer's weight, then its bias).
    pub fn param_specs(&self) -> impl Iterator<Item = &ParamSpec> {
        self.layers.iter().flat_map(|l| l.param_specs())
    }

    /// Outputs of the last layer: the class count.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_len())
    }
}

/// Groups digits in threes: 60965224 -> "60,965,224".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Summary {
    /// The table as text.
    pub fn table(&self) -> String {
        let mut t = format!(
            "model {}   input {}x{}x{} (WxHxC)\n{:<9} {:>6} {:>6} {:>4} {:>6} {:>14} {:>12} {:>15}\n",
            self.model,
            self.input[2],
            self.input[1],
            self.input[0],
            "layer",
            "kernel",
            "stride",
            "pad",
            "groups",
            "output WxHxC",
            "params",
            "mult-adds"
        );
        let opt = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        for l in &self.layers {
            let k = l.kernel.map_or("-".into(), |k| match l.kind {
                LayerKind::Lrn(_) => format!("n={k}"),
                _ => format!("{k}x{k}"),
            });
            t += &format!(
                "{:<9} {:>6} {:>6} {:>4} {:>6} {:>14} {:>12} {:>15}\n",
                l.name,
                k,
                opt(l.stride),
                opt(l.pad),
                opt(l.groups),
                format!("{}x{}x{}", l.output[2], l.output[1], l.output[0]),
                thousands(l.params),
                thousands(l.macs)
            );
        }
        t += &format!("{:<9} {:>69} {:>15}\n", "total", thousands(self.params), thousands(self.macs));
        t
    }
}
