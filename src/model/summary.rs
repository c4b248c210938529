//! Shape propagation through a [`ModelConfig`]: each layer's output size, parameters and
//! multiply-adds — the table of the AlexNet lecture notes, and the plan the network is built from.

use super::config::{ConfigError, LayerSpec, ModelConfig};
use crate::kernels::conv::ConvShape;
use crate::kernels::pool::PoolShape;
use serde::Serialize;

/// One row of the layer table.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    /// `conv1`, `relu`, `lrn`, `maxpool`, ...; parametrised layers carry their config name.
    pub name: String,
    /// Kernel size, for conv and pooling layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    /// `[C, H, W]` of the input of one image.
    #[serde(skip)]
    pub input: [usize; 3],
    /// `[C, H, W]` of the output of one image (`[F, 1, 1]` after flatten).
    pub output: [usize; 3],
    pub params: usize,
    /// Multiply-adds per image (convolutions and fully connected layers only).
    pub macs: usize,
    #[serde(skip)]
    pub spec: LayerSpec,
}

impl LayerInfo {
    pub fn conv_shape(&self) -> Option<ConvShape> {
        match &self.spec {
            LayerSpec::Conv { out, kernel, stride, pad, groups, .. } => Some(ConvShape {
                in_c: self.input[0],
                in_h: self.input[1],
                in_w: self.input[2],
                out_c: *out,
                kh: *kernel,
                kw: *kernel,
                stride: *stride,
                pad: *pad,
                groups: *groups,
            }),
            _ => None,
        }
    }
    pub fn pool_shape(&self) -> Option<PoolShape> {
        match &self.spec {
            LayerSpec::MaxPool { kernel, stride, pad } => Some(PoolShape {
                c: self.input[0],
                in_h: self.input[1],
                in_w: self.input[2],
                kernel: *kernel,
                stride: *stride,
                pad: *pad,
            }),
            _ => None,
        }
    }
    pub fn in_len(&self) -> usize {
        self.input.iter().product()
    }
    pub fn out_len(&self) -> usize {
        self.output.iter().product()
    }
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

/// Walks the layers, checking that each fits its input.
pub fn plan(cfg: &ModelConfig) -> Result<Summary, ConfigError> {
    let mut shape = cfg.input;
    if shape.contains(&0) {
        return Err(bad(0, "input", format!("input shape {shape:?} has a zero")));
    }
    let mut layers = Vec::with_capacity(cfg.layers.len());
    for (index, spec) in cfg.layers.iter().enumerate() {
        let [c, h, w] = shape;
        let mut info = LayerInfo {
            name: String::new(),
            kernel: None,
            stride: None,
            pad: None,
            groups: None,
            input: shape,
            output: shape,
            params: 0,
            macs: 0,
            spec: spec.clone(),
        };
        match spec {
            LayerSpec::Conv { name, out, kernel, stride, pad, groups, .. } => {
                let (out, k, s, p, g) = (*out, *kernel, *stride, *pad, *groups);
                if k == 0 || s == 0 || g == 0 || out == 0 {
                    return Err(bad(index, name, "kernel, stride, groups and width must be positive"));
                }
                if c % g != 0 || out % g != 0 {
                    return Err(bad(
                        index,
                        name,
                        format!("{c} input and {out} output channels do not split into {g} groups"),
                    ));
                }
                if h + 2 * p < k || w + 2 * p < k {
                    return Err(bad(index, name, format!("kernel {k} larger than padded input {h}x{w} (pad {p})")));
                }
                info.name = name.clone();
                (info.kernel, info.stride, info.pad, info.groups) = (Some(k), Some(s), Some(p), Some(g));
                let cs = info.conv_shape().expect("conv");
                info.output = [out, cs.out_h(), cs.out_w()];
                info.params = cs.weight_len() + out;
                info.macs = cs.macs();
            }
            LayerSpec::Linear { name, out, .. } => {
                if *out == 0 {
                    return Err(bad(index, name, "width must be positive"));
                }
                info.name = name.clone();
                let inp = c * h * w;
                info.output = [*out, 1, 1];
                info.params = inp * out + out;
                info.macs = inp * out;
            }
            LayerSpec::Relu => info.name = "relu".into(),
            LayerSpec::Tanh => info.name = "tanh".into(),
            LayerSpec::Lrn(p) => {
                if p.size == 0 {
                    return Err(bad(index, "lrn", "size must be positive"));
                }
                info.name = "lrn".into();
                info.kernel = Some(p.size);
            }
            LayerSpec::MaxPool { kernel, stride, pad } => {
                let (k, s, p) = (*kernel, *stride, *pad);
                if k == 0 || s == 0 {
                    return Err(bad(index, "maxpool", "kernel and stride must be positive"));
                }
                if p >= k {
                    return Err(bad(index, "maxpool", format!("pad {p} must be smaller than the kernel {k}")));
                }
                if h + 2 * p < k || w + 2 * p < k {
                    return Err(bad(index, "maxpool", format!("window {k} larger than input {h}x{w}")));
                }
                info.name = "maxpool".into();
                (info.kernel, info.stride, info.pad) = (Some(k), Some(s), Some(p));
                let ps = info.pool_shape().expect("pool");
                info.output = [c, ps.out_h(), ps.out_w()];
            }
            LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
                if *out_h == 0 || *out_w == 0 {
                    return Err(bad(index, "avgpool", "output size must be positive"));
                }
                info.name = "avgpool".into();
                info.output = [c, *out_h, *out_w];
            }
            LayerSpec::Flatten => {
                info.name = "flatten".into();
                info.output = [c * h * w, 1, 1];
            }
            LayerSpec::Dropout { p } => {
                if !(0.0..1.0).contains(p) {
                    return Err(bad(index, "dropout", format!("probability {p} not in [0, 1)")));
                }
                info.name = "dropout".into();
            }
        }
        if matches!(spec, LayerSpec::Linear { .. }) && (h != 1 || w != 1) {
            // A linear layer right after a conv flattens implicitly; say so in the table.
            info.input = [c * h * w, 1, 1];
        }
        shape = info.output;
        layers.push(info);
    }
    cfg.classes()?;
    Ok(Summary {
        model: cfg.name.clone(),
        input: cfg.input,
        params: layers.iter().map(|l| l.params).sum(),
        macs: layers.iter().map(|l| l.macs).sum(),
        layers,
    })
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
            let k =
                l.kernel.map_or("-".into(), |k| if l.name == "lrn" { format!("n={k}") } else { format!("{k}x{k}") });
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
