//! ONNX export (opset 17): the network as a graph of standard operators with its weights as
//! initializers. The protobuf messages are written by hand: a dozen fields of `onnx.proto`,
//! which is less code than a protobuf tool chain.
//!
//! Mapping: Conv (with `group`), Relu / Tanh, LRN (ONNX divides α by n, so the paper convention
//! exports `α·n`), MaxPool, AveragePool for an adaptive pool whose sizes divide (identity when
//! equal), Flatten, Gemm with `transB = 1` for linear layers. Dropout is its test-time form: the
//! paper's `× (1 − p)` becomes a Mul, inverted dropout nothing.

use super::checkpoint::Checkpoint;
use crate::kernels::dropout::{DropoutMode, factors};
use crate::kernels::lrn::LrnConvention;
use crate::model::LayerSpec;
use crate::model::plan;

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

/// The ONNX model bytes of a checkpoint. Input `input [N, C, H, W]`, output `logits [N, classes]`.
pub fn export(ck: &Checkpoint) -> Result<Vec<u8>, String> {
    let summary = plan(&ck.config).map_err(|e| e.to_string())?;
    let mut graph = Msg::default();
    let mut cur = "input".to_string();
    let mut params = ck.params.iter();
    let mut initializers = Vec::new();
    let mut flat = false; // whether `cur` is already [N, features]
    for (i, l) in summary.layers.iter().enumerate() {
        let out = if i + 1 == summary.layers.len() { "logits".to_string() } else { format!("t{i}") };
        let name = format!("{}_{i}", l.name);
        let n = match &l.spec {
            LayerSpec::Conv { kernel, stride, pad, groups, .. } => {
                let (wn, ws, wd) = params.next().ok_or("fewer parameters than layers")?;
                let (bn, bs, bd) = params.next().ok_or("fewer parameters than layers")?;
                initializers.push(tensor(wn, ws, wd));
                initializers.push(tensor(bn, bs, bd));
                let (k, s, p) = (*kernel as i64, *stride as i64, *pad as i64);
                node(
                    "Conv",
                    &name,
                    &[&cur, wn, bn],
                    &out,
                    &[
                        ("kernel_shape", Attr::Ints(vec![k, k])),
                        ("strides", Attr::Ints(vec![s, s])),
                        ("pads", Attr::Ints(vec![p, p, p, p])),
                        ("group", Attr::Int(*groups as i64)),
                    ],
                )
            }
            LayerSpec::Linear { .. } => {
                if !flat {
                    let f = format!("{name}_flat");
                    graph.msg(1, &node("Flatten", &f, &[&cur], &f, &[("axis", Attr::Int(1))]));
                    cur = f;
                }
                let (wn, ws, wd) = params.next().ok_or("fewer parameters than layers")?;
                let (bn, bs, bd) = params.next().ok_or("fewer parameters than layers")?;
                initializers.push(tensor(wn, ws, wd));
                initializers.push(tensor(bn, bs, bd));
                node("Gemm", &name, &[&cur, wn, bn], &out, &[("transB", Attr::Int(1))])
            }
            LayerSpec::Relu => node("Relu", &name, &[&cur], &out, &[]),
            LayerSpec::Tanh => node("Tanh", &name, &[&cur], &out, &[]),
            LayerSpec::Lrn(p) => {
                if p.size.is_multiple_of(2) {
                    return Err(format!("LRN of even size {} centres its window differently in ONNX", p.size));
                }
                let alpha = match p.convention {
                    LrnConvention::AlphaOverN => p.alpha,
                    LrnConvention::Paper => p.alpha * p.size as f32,
                };
                node(
                    "LRN",
                    &name,
                    &[&cur],
                    &out,
                    &[
                        ("size", Attr::Int(p.size as i64)),
                        ("alpha", Attr::Float(alpha)),
                        ("beta", Attr::Float(p.beta)),
                        ("bias", Attr::Float(p.k)),
                    ],
                )
            }
            LayerSpec::MaxPool { kernel, stride, pad } => {
                let (k, s, p) = (*kernel as i64, *stride as i64, *pad as i64);
                node(
                    "MaxPool",
                    &name,
                    &[&cur],
                    &out,
                    &[
                        ("kernel_shape", Attr::Ints(vec![k, k])),
                        ("strides", Attr::Ints(vec![s, s])),
                        ("pads", Attr::Ints(vec![p, p, p, p])),
                    ],
                )
            }
            LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
                let [_, h, w] = l.input;
                if h % out_h != 0 || w % out_w != 0 {
                    return Err(format!("adaptive average pool {h}x{w} -> {out_h}x{out_w} has uneven windows"));
                }
                let (kh, kw) = ((h / out_h) as i64, (w / out_w) as i64);
                node(
                    "AveragePool",
                    &name,
                    &[&cur],
                    &out,
                    &[("kernel_shape", Attr::Ints(vec![kh, kw])), ("strides", Attr::Ints(vec![kh, kw]))],
                )
            }
            LayerSpec::Flatten => node("Flatten", &name, &[&cur], &out, &[("axis", Attr::Int(1))]),
            LayerSpec::Dropout { p } => {
                let (_, test) = factors(*p, ck.config.dropout_mode);
                if ck.config.dropout_mode == DropoutMode::Inverted || test == 1.0 {
                    continue;
                }
                let c = format!("{name}_scale");
                initializers.push(tensor(&c, &[], &[test]));
                node("Mul", &name, &[&cur, &c], &out, &[])
            }
        };
        graph.msg(1, &n);
        flat |= matches!(l.spec, LayerSpec::Flatten | LayerSpec::Linear { .. });
        cur = out;
    }
    if cur != "logits" {
        // The last layer was a skipped dropout: name the output anyway.
        graph.msg(1, &node("Identity", "output", &[&cur], "logits", &[]));
    }
    graph.str(2, &ck.config.name);
    for t in &initializers {
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
