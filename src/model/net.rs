//! The network at run time: the typed layers built from a [`ModelConfig`]'s plan, the
//! activation buffers between them, a forward pass down the list, a backward pass back up it,
//! and [`Network::train_step`], the one place the training step is written.
//!
//! Activations are NCHW. `acts[i]` is the input of layer `i`, `acts[i+1]` its output; the
//! backward pass ping-pongs between two gradient buffers the size of the largest activation.

use super::config::{ConfigError, Init, ModelConfig};
use super::init;
use super::layer::{Layer, Mode, Param};
use super::plan::{LayerInfo, LayerKind, Summary, plan};
use crate::kernels::loss::{in_top_k, softmax_cross_entropy};
use crate::optim::Sgd;
use crate::threads::process_cpu_seconds;
use std::time::Instant;

/// Per-layer wall time, and the process's CPU time over the same intervals
/// ([`crate::threads::process_cpu_seconds`]; NaN where that clock is unavailable), accumulated
/// while profiling is on.
#[derive(Clone, Debug, Default)]
pub struct LayerTime {
    pub forward_s: f64,
    pub backward_s: f64,
    pub forward_cpu_s: f64,
    pub backward_cpu_s: f64,
    pub calls: usize,
}

/// The process's CPU seconds since `start` ([`process_cpu_seconds`]), NaN when either reading
/// is missing.
fn cpu_seconds_since(start: Option<f64>) -> f64 {
    match (start, process_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    }
}

/// The batch's mean softmax cross-entropy and top-1 hits from its `logits [B, classes]`, with
/// `∂L/∂logits` into `dlogits` (resized to fit).
pub fn score(logits: &[f32], labels: &[usize], classes: usize, dlogits: &mut Vec<f32>) -> StepResult {
    dlogits.resize(labels.len() * classes, 0.0);
    let correct = logits.chunks(classes).zip(labels).filter(|(p, y)| in_top_k(p, **y, 1)).count();
    let loss = softmax_cross_entropy(logits, labels, classes, dlogits);
    StepResult { loss, correct }
}

/// What one [`Network::train_step`] saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Mean cross-entropy of the batch, before the update. Not finite: the step was not taken.
    pub loss: f32,
    /// Images whose highest logit was their label's.
    pub correct: usize,
}

pub struct Network {
    pub config: ModelConfig,
    pub summary: Summary,
    layers: Vec<Layer>,
    capacity: usize,
    batch: usize,
    mode: Mode,
    acts: Vec<Vec<f32>>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    input_grad: Vec<f32>,
    dlogits: Vec<f32>,
    /// Set to `Some` to time every layer.
    pub profile: Option<Vec<LayerTime>>,
}

impl Network {
    /// Builds the network and initialises it as its config says, from `seed`.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self, ConfigError> {
        let mut net = Self::zeroed(config)?;
        net.init(net.config.init, seed);
        Ok(net)
    }

    /// Builds the network with weights 0 and biases at their `bias_init` (to be overwritten,
    /// e.g. from a checkpoint).
    pub fn zeroed(config: ModelConfig) -> Result<Self, ConfigError> {
        let summary = plan(&config)?;
        let layers = summary.layers.iter().enumerate().map(|(i, l)| Layer::new(l, i, config.dropout_mode)).collect();
        Ok(Network {
            config,
            summary,
            layers,
            capacity: 0,
            batch: 0,
            mode: Mode::Eval,
            acts: Vec::new(),
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            input_grad: Vec::new(),
            dlogits: Vec::new(),
            profile: None,
        })
    }

    /// Sets how every convolution computes (`--conv`), resolved per layer by its shape.
    pub fn set_conv(&mut self, choice: crate::kernels::conv::ConvChoice) {
        self.layers.iter_mut().for_each(|l| l.set_conv(choice))
    }

    /// Sets the precision of every convolution's and linear layer's products (`--precision`).
    pub fn set_precision(&mut self, p: crate::matmul::Precision) {
        self.layers.iter_mut().for_each(|l| l.set_precision(p))
    }

    /// Each convolution's name, algorithm as resolved for its shape and precision, and what it
    /// computes by for `batch` images in `mode` ([`Layer::conv_algo`]), in order (for
    /// `bench --profile`).
    pub fn conv_algos(
        &self,
        batch: usize,
        mode: Mode,
    ) -> Vec<(String, crate::kernels::conv::ConvAlgo, crate::kernels::conv::ConvAlgo)> {
        let convs = self.summary.layers.iter().filter(|l| matches!(l.kind, LayerKind::Conv { .. }));
        let algos = self.layers.iter().filter_map(|l| l.conv_algo(batch, mode));
        convs.zip(algos).map(|(l, (algo, at))| (l.name.clone(), algo, at)).collect()
    }

    /// Every parameter, in order: each layer's weight, then its bias.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| l.params())
    }

    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params_mut())
    }

    /// Draws every weight afresh; biases take their layer's `bias_init`. Weight `i` of the
    /// parameter list is a function of `(seed, i)` alone.
    pub fn init(&mut self, how: Init, seed: u64) {
        for (i, p) in self.params_mut().enumerate() {
            if !p.is_bias {
                let fan_in: usize = p.shape[1..].iter().product();
                init::init_weight(how, seed, i, fan_in, &mut p.data);
            }
        }
    }

    /// Sets every parameter from the reference formula (see [`init::formula_value`]).
    pub fn init_formula(&mut self) {
        for (i, p) in self.params_mut().enumerate() {
            let fan_in = (!p.is_bias).then(|| p.shape[1..].iter().product());
            for (j, v) in p.data.iter_mut().enumerate() {
                *v = init::formula_value(i, j, fan_in);
            }
        }
    }

    pub fn param_count(&self) -> usize {
        self.summary.params
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params().find(|p| p.name == name)
    }

    pub fn param_mut(&mut self, name: &str) -> Option<&mut Param> {
        self.params_mut().find(|p| p.name == name)
    }

    pub fn layers(&self) -> &[LayerInfo] {
        &self.summary.layers
    }

    /// Values per input image (`C·H·W`).
    pub fn input_len(&self) -> usize {
        self.config.input.iter().product()
    }

    pub fn classes(&self) -> usize {
        self.summary.classes()
    }

    /// Grows the activation buffers to hold `batch` images. Never shrinks.
    fn reserve(&mut self, batch: usize) {
        if batch <= self.capacity {
            return;
        }
        let infos = &self.summary.layers;
        self.acts = std::iter::once(self.input_len())
            .chain(infos.iter().map(|l| l.out_len()))
            .map(|n| vec![0.0; n * batch])
            .collect();
        for (layer, info) in self.layers.iter_mut().zip(infos) {
            layer.reserve(info.out_len() * batch);
        }
        let widest = infos.iter().map(|l| l.in_len().max(l.out_len())).max().unwrap_or(0);
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
        for (i, info) in self.summary.layers.iter().enumerate() {
            let (t0, c0) = (Instant::now(), self.profile.as_ref().and_then(|_| process_cpu_seconds()));
            let (lo, hi) = self.acts.split_at_mut(i + 1);
            let (x, y) = (&lo[i][..info.in_len() * batch], &mut hi[0][..info.out_len() * batch]);
            self.layers[i].forward(x, y, batch, mode);
            if let Some(p) = &mut self.profile {
                p.resize(self.layers.len(), LayerTime::default());
                p[i].forward_s += t0.elapsed().as_secs_f64();
                p[i].forward_cpu_s += cpu_seconds_since(c0);
                p[i].calls += 1;
            }
        }
        &self.acts[self.layers.len()][..self.summary.classes() * batch]
    }

    /// Back-propagates `dlogits [B, classes]` through the last forward pass, overwriting every
    /// parameter's `grad`. With `input_grad`, also computes `∂L/∂x` (see [`Network::input_grad`]).
    pub fn backward(&mut self, dlogits: &[f32], input_grad: bool) {
        self.backward_with(dlogits, input_grad, &mut |_, _| {})
    }

    /// [`Network::backward`], calling `ready(first, params)` as soon as a layer's parameter
    /// gradients are complete (the last layer's first): `params` are parameters `first..` of
    /// [`Network::params`]' order. A data-parallel step starts their all-reduce there, while
    /// the earlier layers' backward goes on.
    pub fn backward_with(&mut self, dlogits: &[f32], input_grad: bool, ready: &mut dyn FnMut(usize, &[Param])) {
        let batch = self.batch;
        let mut first = self.params().count();
        assert_eq!(dlogits.len(), batch * self.classes(), "dlogits size");
        self.grad_a[..dlogits.len()].copy_from_slice(dlogits);
        for (i, info) in self.summary.layers.iter().enumerate().rev() {
            let (t0, c0) = (Instant::now(), self.profile.as_ref().and_then(|_| process_cpu_seconds()));
            let (il, ol) = (info.in_len() * batch, info.out_len() * batch);
            let dx = (i > 0 || input_grad).then_some(&mut self.grad_b[..il]);
            let (x, y) = (&self.acts[i][..il], &self.acts[i + 1][..ol]);
            self.layers[i].backward(x, y, &self.grad_a[..ol], dx, batch, self.mode);
            std::mem::swap(&mut self.grad_a, &mut self.grad_b);
            if let Some(p) = &mut self.profile {
                p[i].backward_s += t0.elapsed().as_secs_f64();
                p[i].backward_cpu_s += cpu_seconds_since(c0);
            }
            let params = self.layers[i].params();
            if !params.is_empty() {
                first -= params.len();
                ready(first, params);
            }
        }
        if input_grad {
            let n = batch * self.input_len();
            self.input_grad.clear();
            self.input_grad.extend_from_slice(&self.grad_a[..n]);
        }
    }

    /// The input of the last layer (the classifier) in the last forward pass, `[B, D]`: the
    /// "last hidden layer" whose activations the paper compares images by (Figure 4).
    pub fn last_hidden(&self) -> &[f32] {
        let last = self.layers.len().saturating_sub(1);
        let d = self.summary.layers.get(last).map_or(0, |l| l.in_len());
        &self.acts[last][..d * self.batch]
    }

    /// `∂L/∂x` of the last [`Network::backward`] called with `input_grad = true`.
    pub fn input_grad(&self) -> &[f32] {
        &self.input_grad
    }

    /// One training step on `x [B, C, H, W]` with `labels`: forward with dropout masks of
    /// `(seed, step)`, softmax cross-entropy, backward, and `opt`'s update of every parameter.
    /// A loss that is not finite is returned without touching the weights.
    pub fn train_step(&mut self, x: &[f32], labels: &[usize], seed: u64, step: u64, opt: &mut Sgd) -> StepResult {
        let r = self.loss_and_gradients(x, labels, Mode::Train { seed, step, first_image: 0 });
        if r.loss.is_finite() {
            opt.step(self.params_mut());
        }
        r
    }

    /// [`Network::train_step`] without the update: forward in `mode`, softmax cross-entropy and,
    /// when the loss is finite, backward, leaving the gradients of the batch's mean loss in the
    /// parameters (a data-parallel step reduces them across processes before the update).
    pub fn loss_and_gradients(&mut self, x: &[f32], labels: &[usize], mode: Mode) -> StepResult {
        let r = self.forward_loss(x, labels, mode);
        if r.loss.is_finite() {
            self.backward_loss(&mut |_, _| {});
        }
        r
    }

    /// The first half of [`Network::loss_and_gradients`]: forward in `mode` and the softmax
    /// cross-entropy of the batch's mean loss, keeping `∂L/∂logits` for
    /// [`Network::backward_loss`].
    pub fn forward_loss(&mut self, x: &[f32], labels: &[usize], mode: Mode) -> StepResult {
        let mut dlogits = std::mem::take(&mut self.dlogits);
        let classes = self.classes();
        let r = score(self.forward(x, labels.len(), mode), labels, classes, &mut dlogits);
        self.dlogits = dlogits;
        r
    }

    /// The second half: back-propagates the loss of the last [`Network::forward_loss`], leaving
    /// its gradients in the parameters, with `ready` as in [`Network::backward_with`].
    pub fn backward_loss(&mut self, ready: &mut dyn FnMut(usize, &[Param])) {
        let dlogits = std::mem::take(&mut self.dlogits);
        self.backward_with(&dlogits, false, ready);
        self.dlogits = dlogits;
    }
}
