//! ONNX export (opset 17): the network as a graph of standard operators with its weights as
//! initializers. The protobuf messages are written by hand: a dozen fields of `onnx.proto`,
//! which is less code than a protobuf tool chain.
//!
//! Mapping: Conv (with `group`), Relu / Tanh, LRN (ONNX divides α by n, so the paper convention
//! exports `α·n`), MaxPool, AveragePool for an adaptive pool whose sizes divide (identity when
//! equal), Flatten, Gemm with `transB = 1` for linear layers. Dropout is its test-time form: the
//! paper's `× (1 − p)` becomes a Mul, inverted dropout nothing.

use super::{InteropError, Result};
use crate::checkpoint::Checkpoint;
use crate::kernels::dropout::{DropoutMode, factors};
use crate::kernels::lrn::{LrnConvention, LrnParams};
use crate::model::LayerInfo;
use crate::model::LayerSpec;
use crate::model::plan;
use crate::tensor::NamedTensor;

/// Protobuf wire encoding, just what ONNX needs.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(((field << 3) | wire) as u64);
    }
    fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
    fn float(&mut self, field: u32, f: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&f.to_le_bytes());
        self
    }
}

enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

fn attribute(name: &str, a: &Attr) -> Msg {
    let mut m = Msg::default();
    m.str(1, name);
    match a {
        Attr::Float(f) => m.float(2, *f).int(20, 1),
        Attr::Int(i) => m.int(3, *i).int(20, 2),
        Attr::Ints(v) => {
            for &i in v {
                m.int(8, i);
            }
            m.int(20, 7)
        }
    };
    m
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) -> Msg {
    let mut m = Msg::default();
    for i in inputs {
        m.str(1, i);
    }
    m.str(2, output).str(3, name).str(4, op);
    for (n, a) in attrs {
        m.msg(5, &attribute(n, a));
    }
    m
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m.int(1, d as i64);
    }
    m.int(2, 1); // FLOAT
    m.str(8, name);
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    m.bytes(9, &raw);
    m
}

/// `name: float[N, dims...]` with a symbolic batch.
fn value_info(name: &str, dims: &[usize]) -> Msg {
    let mut shape = Msg::default();
    let mut d = Msg::default();
    d.str(2, "N");
    shape.msg(1, &d);
    for &v in dims {
        let mut d = Msg::default();
        d.int(1, v as i64);
        shape.msg(1, &d);
    }
    let mut tt = Msg::default();
    tt.int(1, 1).msg(2, &shape);
    let mut ty = Msg::default();
    ty.msg(1, &tt);
    let mut m = Msg::default();
    m.str(1, name).msg(2, &ty);
    m
}

/// The next layer's weight and bias, added to the initializers; returns their names.
fn take_params<'a>(params: &mut impl Iterator<Item = &'a NamedTensor>, inits: &mut Vec<Msg>) -> Result<[&'a str; 2]> {
    let w = params.next().ok_or("fewer parameters than layers")?;
    let b = params.next().ok_or("fewer parameters than layers")?;
    inits.push(tensor(&w.name, &w.shape, &w.data));
    inits.push(tensor(&b.name, &b.shape, &b.data));
    Ok([&w.name, &b.name])
}

/// ONNX's LRN node for `p`: ONNX divides α by the window size, as cuda-convnet, Caffe and
/// PyTorch do, so the paper's printed convention is converted.
fn lrn_node(p: &LrnParams, name: &str, cur: &str, out: &str) -> Result<Msg> {
    if p.size.is_multiple_of(2) {
        return Err(InteropError::Export(format!(
            "LRN of even size {} centres its window differently in ONNX",
            p.size
        )));
    }
    let alpha = match p.convention {
        LrnConvention::AlphaOverN => p.alpha,
        LrnConvention::Paper => p.alpha * p.size as f32,
    };
    let attrs = [
        ("size", Attr::Int(p.size as i64)),
        ("alpha", Attr::Float(alpha)),
        ("beta", Attr::Float(p.beta)),
        ("bias", Attr::Float(p.k)),
    ];
    Ok(node("LRN", name, &[cur], out, &attrs))
}

/// What one layer adds to the graph.
struct Step<'a, 'p, P: Iterator<Item = &'p NamedTensor>> {
    graph: &'a mut Msg,
    params: &'a mut P,
    inits: &'a mut Vec<Msg>,
    /// Whether the current tensor is already `[N, features]`.
    flat: bool,
}

impl<'p, P: Iterator<Item = &'p NamedTensor>> Step<'_, 'p, P> {
    /// The node of `spec` from `cur` to `out`, or None for a layer ONNX does without.
    fn node(
        &mut self,
        spec: &LayerSpec,
        info: &LayerInfo,
        name: &str,
        cur: &mut String,
        out: &str,
        ck: &Checkpoint,
    ) -> Result<Option<Msg>> {
        let square = |k: usize| Attr::Ints(vec![k as i64, k as i64]);
        let pads = |p: usize| Attr::Ints(vec![p as i64; 4]);
        Ok(Some(match spec {
            LayerSpec::Conv { kernel, stride, pad, groups, .. } => {
                let [w, b] = take_params(self.params, self.inits)?;
                let attrs = [
                    ("kernel_shape", square(*kernel)),
                    ("strides", square(*stride)),
                    ("pads", pads(*pad)),
                    ("group", Attr::Int(*groups as i64)),
                ];
                node("Conv", name, &[cur, w, b], out, &attrs)
            }
            LayerSpec::Linear { .. } => {
                if !self.flat {
                    let f = format!("{name}_flat");
                    self.graph.msg(1, &node("Flatten", &f, &[cur], &f, &[("axis", Attr::Int(1))]));
                    *cur = f;
                }
                let [w, b] = take_params(self.params, self.inits)?;
                node("Gemm", name, &[cur, w, b], out, &[("transB", Attr::Int(1))])
            }
            LayerSpec::Relu => node("Relu", name, &[cur], out, &[]),
            LayerSpec::Tanh => node("Tanh", name, &[cur], out, &[]),
            LayerSpec::Lrn(p) => lrn_node(p, name, cur, out)?,
            LayerSpec::MaxPool { kernel, stride, pad } => {
                let attrs = [("kernel_shape", square(*kernel)), ("strides", square(*stride)), ("pads", pads(*pad))];
                node("MaxPool", name, &[cur], out, &attrs)
            }
            LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
                let [_, h, w] = info.input;
                if h % out_h != 0 || w % out_w != 0 {
                    return Err(InteropError::Export(format!(
                        "adaptive average pool {h}x{w} -> {out_h}x{out_w} has uneven windows"
                    )));
                }
                let (kh, kw) = ((h / out_h) as i64, (w / out_w) as i64);
                let attrs = [("kernel_shape", Attr::Ints(vec![kh, kw])), ("strides", Attr::Ints(vec![kh, kw]))];
                node("AveragePool", name, &[cur], out, &attrs)
            }
            LayerSpec::Flatten => node("Flatten", name, &[cur], out, &[("axis", Attr::Int(1))]),
            LayerSpec::Dropout { p } => {
                // The paper's dropout scales by 1 - p at test time; the inverted form is the identity.
                let (_, test) = factors(*p, ck.config.dropout_mode);
                if ck.config.dropout_mode == DropoutMode::Inverted || test == 1.0 {
                    return Ok(None);
                }
                let c = format!("{name}_scale");
                self.inits.push(tensor(&c, &[], &[test]));
                node("Mul", name, &[cur, &c], out, &[])
            }
        }))
    }
}

/// The ONNX model bytes of a checkpoint. Input `input [N, C, H, W]`, output `logits [N, classes]`.
pub fn export(ck: &Checkpoint) -> Result<Vec<u8>> {
    let summary = plan(&ck.config)?;
    let mut graph = Msg::default();
    let mut cur = "input".to_string();
    let mut params = ck.params.iter();
    let mut inits = Vec::new();
    let mut flat = false;
    for (i, (spec, info)) in ck.config.layers.iter().zip(&summary.layers).enumerate() {
        let out = if i + 1 == summary.layers.len() { "logits".to_string() } else { format!("t{i}") };
        let name = format!("{}_{i}", info.name);
        let mut step = Step { graph: &mut graph, params: &mut params, inits: &mut inits, flat };
        let Some(n) = step.node(spec, info, &name, &mut cur, &out, ck)? else { continue };
        graph.msg(1, &n);
        flat |= matches!(spec, LayerSpec::Flatten | LayerSpec::Linear { .. });
        cur = out;
    }
    if cur != "logits" {
        // The last layer was a skipped dropout: name the output anyway.
        graph.msg(1, &node("Identity", "output", &[&cur], "logits", &[]));
    }
    graph.str(2, &ck.config.name);
    for t in &inits {
        graph.msg(5, t);
    }
    graph.msg(11, &value_info("input", &ck.config.input));
    graph.msg(12, &value_info("logits", &[ck.classes.len()]));
    let mut opset = Msg::default();
    opset.str(1, "").int(2, 17);
    let mut model = Msg::default();
    model.int(1, 8).str(2, "alexnet").str(3, env!("CARGO_PKG_VERSION")).msg(7, &graph).msg(8, &opset);
    Ok(model.0)
}
