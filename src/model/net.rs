//! The network at run time: parameters and activation buffers built from a [`ModelConfig`],
//! a forward pass over the layer list and a backward pass back down it.
//!
//! Activations are NCHW. `acts[i]` is the input of layer `i`, `acts[i+1]` its output; the
//! backward pass ping-pongs between two gradient buffers the size of the largest activation.

use super::config::{ConfigError, Init, LayerSpec, ModelConfig};
use super::init;
use super::summary::{LayerInfo, Summary, plan};
use crate::kernels::{act, conv, dropout, linear, lrn, pool};
use std::time::Instant;

/// A learnable tensor and its gradient, in PyTorch's layout.
#[derive(Clone, Debug)]
pub struct Param {
    /// `conv1.weight`, `fc8.bias`, ...
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub grad: Vec<f32>,
    /// True for biases (some recipes exempt them from weight decay).
    pub is_bias: bool,
}

/// Whether the forward pass trains (dropout masks drawn) or evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout draws its masks from `(seed, step)`.
    Train {
        seed: u64,
        step: u64,
    },
    Eval,
}

/// Per-layer wall time accumulated while profiling is on.
#[derive(Clone, Debug, Default)]
pub struct LayerTime {
    pub forward_s: f64,
    pub backward_s: f64,
    pub calls: usize,
}

pub struct Network {
    pub config: ModelConfig,
    pub summary: Summary,
    pub params: Vec<Param>,
    /// For each layer, the index in `params` of its weight (its bias follows).
    layer_param: Vec<Option<usize>>,
    capacity: usize,
    batch: usize,
    mode: Mode,
    acts: Vec<Vec<f32>>,
    /// LRN's scale `s` or dropout's mask, per layer.
    aux: Vec<Vec<f32>>,
    argmax: Vec<Vec<u32>>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    input_grad: Vec<f32>,
    /// Set to `Some` to time every layer.
    pub profile: Option<Vec<LayerTime>>,
}

impl Network {
    /// Builds the network and initialises it as its config says, from `seed`.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self, ConfigError> {
        let summary = plan(&config)?;
        let mut params = Vec::new();
        let mut layer_param = Vec::new();
        for info in &summary.layers {
            match &info.spec {
                LayerSpec::Conv { name, out, kernel, bias_init, .. } => {
                    let cs = info.conv_shape().expect("conv");
                    layer_param.push(Some(params.len()));
                    let wshape = vec![*out, cs.in_c / cs.groups, *kernel, *kernel];
                    params.push(new_param(format!("{name}.weight"), wshape, 0.0, false));
                    params.push(new_param(format!("{name}.bias"), vec![*out], *bias_init, true));
                }
                LayerSpec::Linear { name, out, bias_init } => {
                    layer_param.push(Some(params.len()));
                    params.push(new_param(format!("{name}.weight"), vec![*out, info.in_len()], 0.0, false));
                    params.push(new_param(format!("{name}.bias"), vec![*out], *bias_init, true));
                }
                _ => layer_param.push(None),
            }
        }
        let mut net = Network {
            config,
            summary,
            params,
            layer_param,
            capacity: 0,
            batch: 0,
            mode: Mode::Eval,
            acts: Vec::new(),
            aux: Vec::new(),
            argmax: Vec::new(),
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            input_grad: Vec::new(),
            profile: None,
        };
        net.init(net.config.init, seed);
        Ok(net)
    }

    /// Draws every weight afresh; biases take their layer's `bias_init`.
    pub fn init(&mut self, how: Init, seed: u64) {
        for (i, p) in self.params.iter_mut().enumerate() {
            if !p.is_bias {
                let fan_in: usize = p.shape[1..].iter().product();
                init::init_weight(how, seed, i, fan_in, &mut p.data);
            }
        }
    }

    /// Sets every parameter from the reference formula (see [`init::formula_value`]).
    pub fn init_formula(&mut self) {
        for (i, p) in self.params.iter_mut().enumerate() {
            let fan_in = (!p.is_bias).then(|| p.shape[1..].iter().product());
            for (j, v) in p.data.iter_mut().enumerate() {
                *v = init::formula_value(i, j, fan_in);
            }
        }
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn param_mut(&mut self, name: &str) -> Option<&mut Param> {
        self.params.iter_mut().find(|p| p.name == name)
    }

    pub fn layers(&self) -> &[LayerInfo] {
        &self.summary.layers
    }

    /// Values per input image (`C·H·W`).
    pub fn input_len(&self) -> usize {
        self.config.input.iter().product()
    }

    pub fn classes(&self) -> usize {
        self.summary.layers.last().map_or(0, |l| l.out_len())
    }

    /// Grows the activation buffers to hold `batch` images. Never shrinks.
    fn reserve(&mut self, batch: usize) {
        if batch <= self.capacity {
            return;
        }
        let layers = &self.summary.layers;
        self.acts = std::iter::once(self.input_len())
            .chain(layers.iter().map(|l| l.out_len()))
            .map(|n| vec![0.0; n * batch])
            .collect();
        self.aux = layers
            .iter()
            .map(|l| match l.spec {
                LayerSpec::Lrn(_) | LayerSpec::Dropout { .. } => vec![0.0; l.out_len() * batch],
                _ => Vec::new(),
            })
            .collect();
        self.argmax = layers
            .iter()
            .map(|l| match l.spec {
                LayerSpec::MaxPool { .. } => vec![0; l.out_len() * batch],
                _ => Vec::new(),
            })
            .collect();
        let widest = layers.iter().map(|l| l.in_len().max(l.out_len())).max().unwrap_or(0);
        self.grad_a = vec![0.0; widest * batch];
        self.grad_b = vec![0.0; widest * batch];
        self.capacity = batch;
    }

    /// Runs `batch` images `x [B, C, H, W]` through the network; returns the logits `[B, classes]`.
    ///
    /// # Panics
    /// If `x` does not hold exactly `batch` images of the configured input size.
    pub fn forward(&mut self, x: &[f32], batch: usize, mode: Mode) -> &[f32] {
        assert_eq!(x.len(), batch * self.input_len(), "input holds {} values, expected {batch} images", x.len());
        self.reserve(batch);
        self.batch = batch;
        self.mode = mode;
        self.acts[0][..x.len()].copy_from_slice(x);
        for i in 0..self.summary.layers.len() {
            let t0 = Instant::now();
            self.forward_layer(i);
            if let Some(p) = &mut self.profile {
                p.resize(self.summary.layers.len(), LayerTime::default());
                p[i].forward_s += t0.elapsed().as_secs_f64();
                p[i].calls += 1;
            }
        }
        let n = self.classes() * batch;
        &self.acts[self.summary.layers.len()][..n]
    }

    fn forward_layer(&mut self, i: usize) {
        let batch = self.batch;
        let info = &self.summary.layers[i];
        let (il, ol) = (info.in_len() * batch, info.out_len() * batch);
        let (lo, hi) = self.acts.split_at_mut(i + 1);
        let x = &lo[i][..il];
        let y = &mut hi[0][..ol];
        match &info.spec {
            LayerSpec::Conv { .. } => {
                let p = self.layer_param[i].expect("conv has params");
                let cs = info.conv_shape().expect("conv");
                conv::forward(&cs, x, &self.params[p].data, &self.params[p + 1].data, y, batch);
            }
            LayerSpec::Linear { out, .. } => {
                let p = self.layer_param[i].expect("linear has params");
                linear::forward(x, &self.params[p].data, &self.params[p + 1].data, y, batch, info.in_len(), *out);
            }
            LayerSpec::Relu => act::relu_forward(x, y),
            LayerSpec::Tanh => act::tanh_forward(x, y),
            LayerSpec::Lrn(p) => {
                let [c, h, w] = info.input;
                lrn::forward(p, x, y, &mut self.aux[i], batch, c, h * w);
            }
            LayerSpec::MaxPool { .. } => {
                let ps = info.pool_shape().expect("pool");
                pool::max_forward(&ps, x, y, &mut self.argmax[i], batch * ps.c);
            }
            LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
                let [c, h, w] = info.input;
                pool::adaptive_avg_forward((h, w), (*out_h, *out_w), x, y, batch * c);
            }
            LayerSpec::Flatten => y.copy_from_slice(x),
            LayerSpec::Dropout { p } => match self.mode {
                Mode::Train { seed, step } => {
                    let s = crate::rng::mix(&[seed, step, i as u64]);
                    dropout::forward_train(*p, self.config.dropout_mode, s, x, y, &mut self.aux[i][..ol]);
                }
                Mode::Eval => dropout::forward_eval(*p, self.config.dropout_mode, x, y),
            },
        }
    }

    /// Back-propagates `dlogits [B, classes]` through the last forward pass, overwriting every
    /// parameter's `grad`. With `input_grad`, also computes `∂L/∂x` (see [`Network::input_grad`]).
    pub fn backward(&mut self, dlogits: &[f32], input_grad: bool) {
        let batch = self.batch;
        assert_eq!(dlogits.len(), batch * self.classes(), "dlogits size");
        self.grad_a[..dlogits.len()].copy_from_slice(dlogits);
        for i in (0..self.summary.layers.len()).rev() {
            let t0 = Instant::now();
            let need_dx = i > 0 || input_grad;
            self.backward_layer(i, need_dx);
            std::mem::swap(&mut self.grad_a, &mut self.grad_b);
            if let Some(p) = &mut self.profile {
                p[i].backward_s += t0.elapsed().as_secs_f64();
            }
        }
        if input_grad {
            let n = batch * self.input_len();
            self.input_grad.clear();
            self.input_grad.extend_from_slice(&self.grad_a[..n]);
        }
    }

    /// `∂L/∂x` of the last [`Network::backward`] called with `input_grad = true`.
    pub fn input_grad(&self) -> &[f32] {
        &self.input_grad
    }

    /// Layer `i`: reads `grad_a` (∂L/∂output), writes `grad_b` (∂L/∂input) when `need_dx`.
    fn backward_layer(&mut self, i: usize, need_dx: bool) {
        let batch = self.batch;
        let info = &self.summary.layers[i];
        let (il, ol) = (info.in_len() * batch, info.out_len() * batch);
        let x = &self.acts[i][..il];
        let y = &self.acts[i + 1][..ol];
        let dy = &self.grad_a[..ol];
        let dx = &mut self.grad_b[..il];
        match &info.spec {
            LayerSpec::Conv { .. } => {
                let p = self.layer_param[i].expect("conv has params");
                let cs = info.conv_shape().expect("conv");
                let (wp, bp) = self.params.split_at_mut(p + 1);
                let w = &mut wp[p];
                conv::backward(&cs, x, &w.data, dy, &mut w.grad, &mut bp[0].grad, need_dx.then_some(dx), batch);
            }
            LayerSpec::Linear { out, .. } => {
                let p = self.layer_param[i].expect("linear has params");
                let (wp, bp) = self.params.split_at_mut(p + 1);
                let w = &mut wp[p];
                let inp = info.in_len();
                linear::backward(x, &w.data, dy, &mut w.grad, &mut bp[0].grad, need_dx.then_some(dx), batch, inp, *out);
            }
            _ if !need_dx => {}
            LayerSpec::Relu => act::relu_backward(y, dy, dx),
            LayerSpec::Tanh => act::tanh_backward(y, dy, dx),
            LayerSpec::Lrn(p) => {
                let [c, h, w] = info.input;
                lrn::backward(p, x, y, &self.aux[i], dy, dx, batch, c, h * w);
            }
            LayerSpec::MaxPool { .. } => {
                let ps = info.pool_shape().expect("pool");
                pool::max_backward(&ps, dy, &self.argmax[i], dx, batch * ps.c);
            }
            LayerSpec::AdaptiveAvgPool { out_h, out_w } => {
                let [c, h, w] = info.input;
                pool::adaptive_avg_backward((h, w), (*out_h, *out_w), dy, dx, batch * c);
            }
            LayerSpec::Flatten => dx.copy_from_slice(dy),
            LayerSpec::Dropout { p } => match self.mode {
                Mode::Train { .. } => dropout::backward(Some(&self.aux[i][..ol]), 1.0, dy, dx),
                Mode::Eval => {
                    let (_, s) = dropout::factors(*p, self.config.dropout_mode);
                    dropout::backward(None, s, dy, dx)
                }
            },
        }
    }
}

fn new_param(name: String, shape: Vec<usize>, fill: f32, is_bias: bool) -> Param {
    let n = shape.iter().product();
    Param { name, shape, data: vec![fill; n], grad: vec![0.0; n], is_bias }
}
