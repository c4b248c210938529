//! A layer at run time: built once from its row of the plan, owning its parameters and its
//! scratch (LRN's scale, max-pool's argmax, dropout's mask), with the glue between the network's
//! activation buffers and its kernel — forward and backward side by side.
//!
//! Adding a layer kind means a kernel file in `kernels/`, a [`LayerSpec`](super::LayerSpec)
//! with its shape rule in `plan.rs`, and one arm in each `match` below.

use super::plan::{LayerInfo, LayerKind, ParamSpec};
use crate::kernels::conv::{ConvAlgo, ConvChoice, ConvShape};
use crate::kernels::dropout::DropoutMode;
use crate::kernels::lrn::LrnParams;
use crate::kernels::pool::PoolShape;
use crate::kernels::winograd::KernelCache;
use crate::kernels::{act, conv, dropout, linear, lrn, pool};
use crate::matmul::Precision;

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

impl Param {
    /// Zero gradient, every value at `spec.fill`.
    pub fn new(spec: &ParamSpec) -> Self {
        let n = spec.len();
        Self {
            name: spec.name.clone(),
            shape: spec.shape.clone(),
            data: vec![spec.fill; n],
            grad: vec![0.0; n],
            is_bias: spec.is_bias,
        }
    }
}

/// Whether the forward pass trains (dropout masks drawn) or evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout draws its masks from `(seed, step)`, the first image of the batch being image
    /// `first_image` of the step's global batch (0 but in data-parallel training).
    Train {
        seed: u64,
        step: u64,
        first_image: usize,
    },
    Eval,
}

/// One layer with what it needs at run time.
#[derive(Clone, Debug)]
pub enum Layer {
    /// `[weight, bias]`; `algo` resolved from `choice` (`--conv`) for this shape and
    /// `precision`; the products in `precision` (FFT's excepted); `kernels`: Winograd's or
    /// FFT's transform of the weights for `algo`, and `kernels_below` for what an FFT layer
    /// computes by below its minimum batch in evaluation (F(2×2, 5×5)), or an F(5×5) layer below
    /// its (F(4×4)): two caches, so that batches on either side of that minimum (a server's) do
    /// not redo each other's transform.
    /// Both are invalidated by [`Layer::params_mut`] and by nothing else: the weights must only
    /// be changed through it.
    Conv {
        shape: ConvShape,
        params: [Param; 2],
        choice: ConvChoice,
        algo: ConvAlgo,
        precision: Precision,
        kernels: KernelCache,
        kernels_below: KernelCache,
    },
    /// `[weight, bias]`; the products in `precision`; `bf16_weight`: the weight rounded to
    /// bf16 for one-image evaluation in bf16 (half the bytes to read), made at the first such
    /// call and dropped whenever the parameters are lent mutably ([`Layer::params_mut`]).
    Linear {
        inp: usize,
        out: usize,
        params: [Param; 2],
        precision: Precision,
        bf16_weight: Vec<u16>,
    },
    Relu,
    Tanh,
    /// `scale` holds `s = k + α'·Σx²` of the last forward, for the backward.
    Lrn {
        p: LrnParams,
        c: usize,
        plane: usize,
        scale: Vec<f32>,
    },
    /// `argmax` holds the winner of each window of the last forward.
    MaxPool {
        shape: PoolShape,
        argmax: Vec<u32>,
    },
    AdaptiveAvgPool {
        c: usize,
        input: (usize, usize),
        output: (usize, usize),
    },
    Flatten,
    /// `index` (the layer's position) keys its masks: `mix(seed, step, index)`.
    Dropout {
        p: f32,
        form: DropoutMode,
        index: u64,
        mask: Vec<f32>,
    },
}

impl Layer {
    /// The layer of `info`, at position `index` of the network, parameters at their fill value.
    pub fn new(info: &LayerInfo, index: usize, form: DropoutMode) -> Self {
        let [c, h, w] = info.input;
        match &info.kind {
            LayerKind::Conv { shape, params } => {
                let (choice, precision) = (ConvChoice::default(), Precision::F32);
                let algo = choice.resolve_in(shape, precision);
                let params = params.each_ref().map(Param::new);
                Layer::Conv {
                    shape: *shape,
                    params,
                    choice,
                    algo,
                    precision,
                    kernels: KernelCache::invalidated_by_owner(),
                    kernels_below: KernelCache::invalidated_by_owner(),
                }
            }
            LayerKind::Linear { inp, out, params } => {
                let params = params.each_ref().map(Param::new);
                Layer::Linear { inp: *inp, out: *out, params, precision: Precision::F32, bf16_weight: Vec::new() }
            }
            LayerKind::Relu => Layer::Relu,
            LayerKind::Tanh => Layer::Tanh,
            LayerKind::Lrn(p) => Layer::Lrn { p: *p, c, plane: h * w, scale: Vec::new() },
            LayerKind::MaxPool(shape) => Layer::MaxPool { shape: *shape, argmax: Vec::new() },
            LayerKind::AdaptiveAvgPool { out_h, out_w } => {
                Layer::AdaptiveAvgPool { c, input: (h, w), output: (*out_h, *out_w) }
            }
            LayerKind::Flatten => Layer::Flatten,
            LayerKind::Dropout { p } => Layer::Dropout { p: *p, form, index: index as u64, mask: Vec::new() },
        }
    }

    /// A convolution's algorithm as resolved for its shape and precision, and what its forward
    /// pass computes by for `batch` images in `mode` (others: nothing). (The backward computes
    /// by [`ConvAlgo::for_batch`] in either mode: see [`conv::backward_with`].)
    pub fn conv_algo(&self, batch: usize, mode: Mode) -> Option<(ConvAlgo, ConvAlgo)> {
        match self {
            Layer::Conv { shape, algo, precision, .. } => {
                Some((*algo, conv_algo_at(*algo, shape, *precision, batch, mode)))
            }
            _ => None,
        }
    }

    /// Weight and bias, for conv and linear layers.
    pub fn params(&self) -> &[Param] {
        match self {
            Layer::Conv { params, .. } | Layer::Linear { params, .. } => params,
            _ => &[],
        }
    }

    /// Weight and bias, to change: a linear layer's bf16 copy of its weight is dropped, a
    /// convolution's transformed kernels invalidated (its [`KernelCache`] trusts this to be the
    /// only way its weights change).
    pub fn params_mut(&mut self) -> &mut [Param] {
        match self {
            Layer::Conv { params, kernels, kernels_below, .. } => {
                kernels.invalidate();
                kernels_below.invalidate();
                params
            }
            Layer::Linear { params, bf16_weight, .. } => {
                *bf16_weight = Vec::new();
                params
            }
            _ => &mut [],
        }
    }

    /// A convolution's algorithm from `--conv`, resolved by its shape and precision (other
    /// layers: nothing).
    pub fn set_conv(&mut self, to: ConvChoice) {
        if let Layer::Conv { shape, choice, algo, precision, kernels, kernels_below, .. } = self {
            *choice = to;
            *algo = to.resolve_in(shape, *precision);
            // Both caches dropped with their memory: whatever the layer now computes by is
            // transformed again at its next forward (a setting, not a per-step call).
            *kernels = KernelCache::invalidated_by_owner();
            *kernels_below = KernelCache::invalidated_by_owner();
        }
    }

    /// The precision of a convolution's or linear layer's products (others: nothing); a
    /// convolution's algorithm is resolved again for it.
    pub fn set_precision(&mut self, p: Precision) {
        match self {
            Layer::Conv { choice, precision, .. } => {
                *precision = p;
                let choice = *choice;
                self.set_conv(choice);
            }
            Layer::Linear { precision, bf16_weight, .. } => {
                *precision = p;
                *bf16_weight = Vec::new();
            }
            _ => {}
        }
    }

    /// Grows the scratch to hold `out_len` values (a batch of this layer's outputs).
    pub fn reserve(&mut self, out_len: usize) {
        match self {
            Layer::Lrn { scale: v, .. } | Layer::Dropout { mask: v, .. } if v.len() < out_len => v.resize(out_len, 0.0),
            Layer::MaxPool { argmax, .. } if argmax.len() < out_len => argmax.resize(out_len, 0),
            _ => {}
        }
    }

    /// `y = f(x)` for `batch` images; `x` and `y` hold exactly one batch.
    pub fn forward(&mut self, x: &[f32], y: &mut [f32], batch: usize, mode: Mode) {
        match self {
            Layer::Conv { shape, params: [w, b], algo: resolved, precision, kernels, kernels_below, .. } => {
                let algo = conv_algo_at(*resolved, shape, *precision, batch, mode);
                let kernels = if algo == *resolved { kernels } else { kernels_below };
                conv::forward_with(algo, *precision, shape, x, &w.data, &b.data, y, batch, kernels)
            }
            // One image in evaluation is bound by reading the weight: in bf16 it reads half.
            Layer::Linear { inp, out, params: [w, b], precision: Precision::Bf16(_), bf16_weight }
                if batch == 1 && matches!(mode, Mode::Eval) =>
            {
                if bf16_weight.is_empty() {
                    *bf16_weight = crate::matmul::round_rows(&w.data);
                }
                linear::forward_one_bf16(x, bf16_weight, &b.data, y, *inp, *out)
            }
            Layer::Linear { inp, out, params: [w, b], precision, .. } => {
                linear::forward(x, &w.data, &b.data, y, batch, *inp, *out, *precision)
            }
            Layer::Relu => act::relu_forward(x, y),
            Layer::Tanh => act::tanh_forward(x, y),
            Layer::Lrn { p, c, plane, scale } => lrn::forward(p, x, y, scale, batch, *c, *plane),
            Layer::MaxPool { shape, argmax } => pool::max_forward(shape, x, y, argmax, batch * shape.c),
            Layer::AdaptiveAvgPool { c, input, output } => {
                pool::adaptive_avg_forward(*input, *output, x, y, batch * *c)
            }
            Layer::Flatten => y.copy_from_slice(x),
            Layer::Dropout { p, form, index, mask } => match mode {
                Mode::Train { seed, step, first_image } => {
                    let s = crate::rng::mix(&[seed, step, *index]);
                    let first = (first_image * (y.len() / batch.max(1))) as u64;
                    dropout::forward_train(*p, *form, s, first, x, y, &mut mask[..y.len()]);
                }
                Mode::Eval => dropout::forward_eval(*p, *form, x, y),
            },
        }
    }

    /// From `dy = ∂L/∂y` of the last forward (`x`, `y` its input and output): overwrites the
    /// parameters' gradients and, when given, `dx = ∂L/∂x`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(&mut self, x: &[f32], y: &[f32], dy: &[f32], dx: Option<&mut [f32]>, batch: usize, mode: Mode) {
        match (self, dx) {
            (Layer::Conv { shape, params: [w, b], algo, precision, kernels, .. }, dx) => {
                let (w, dw) = (&w.data, &mut w.grad);
                conv::backward_with(*algo, *precision, shape, x, w, dy, dw, &mut b.grad, dx, batch, kernels)
            }
            (Layer::Linear { inp, out, params: [w, b], precision, .. }, dx) => {
                linear::backward(x, &w.data, dy, &mut w.grad, &mut b.grad, dx, batch, *inp, *out, *precision)
            }
            (_, None) => {}
            (Layer::Relu, Some(dx)) => act::relu_backward(y, dy, dx),
            (Layer::Tanh, Some(dx)) => act::tanh_backward(y, dy, dx),
            (Layer::Lrn { p, c, plane, scale }, Some(dx)) => lrn::backward(p, x, y, scale, dy, dx, batch, *c, *plane),
            (Layer::MaxPool { shape, argmax }, Some(dx)) => pool::max_backward(shape, dy, argmax, dx, batch * shape.c),
            (Layer::AdaptiveAvgPool { c, input, output }, Some(dx)) => {
                pool::adaptive_avg_backward(*input, *output, dy, dx, batch * *c)
            }
            (Layer::Flatten, Some(dx)) => dx.copy_from_slice(dy),
            (Layer::Dropout { p, form, mask, .. }, Some(dx)) => match mode {
                Mode::Train { .. } => dropout::backward(Some(&mask[..dy.len()]), 1.0, dy, dx),
                Mode::Eval => dropout::backward(None, dropout::factors(*p, *form).1, dy, dx),
            },
        }
    }
}

/// What a convolution resolved to `algo` computes its forward pass by for `batch` images in
/// `mode`: the one rule [`Layer::forward`] and [`Layer::conv_algo`] share. Training
/// changes the weights every step: small batches would redo Winograd's kernel transform for too
/// little work ([`ConvAlgo::for_batch`]). Evaluation keeps the transformed kernels
/// ([`ConvAlgo::for_eval`]).
fn conv_algo_at(algo: ConvAlgo, s: &ConvShape, precision: Precision, batch: usize, mode: Mode) -> ConvAlgo {
    match mode {
        Mode::Eval => algo.for_eval(s, batch, precision),
        Mode::Train { .. } => algo.for_batch(batch),
    }
}
