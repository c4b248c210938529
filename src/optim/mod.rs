//! Stochastic gradient descent with momentum and weight decay, in two equivalent-looking but
//! different forms.
//!
//! * [`SgdForm::Paper`] (section 5): `v ← m·v − wd·lr·w − lr·g;  w ← w + v`.
//!   The learning rate is folded into the velocity, so changing `lr` changes only new steps.
//! * [`SgdForm::Pytorch`] (`torch.optim.SGD`): `v ← m·v + (g + wd·w);  w ← w − lr·v`.
//!   With a constant `lr` both give the same trajectory; after an `lr` drop they differ: in
//!   PyTorch's form the accumulated velocity is rescaled by the new `lr` at once.

use crate::model::Param;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum SgdForm {
    /// `v = m·v - wd·lr·w - lr·g; w += v` (the paper, section 5).
    #[default]
    Paper,
    /// `v = m·v + g + wd·w; w -= lr·v` (`torch.optim.SGD`).
    Pytorch,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub form: SgdForm,
    /// Apply weight decay to biases too (the paper's update rule names no exception).
    pub decay_biases: bool,
}

impl Default for SgdConfig {
    /// The paper: lr 0.01, momentum 0.9, weight decay 0.0005.
    fn default() -> Self {
        Self { lr: 0.01, momentum: 0.9, weight_decay: 5e-4, form: SgdForm::Paper, decay_biases: true }
    }
}

/// The optimizer and its state: one velocity buffer per parameter.
pub struct Sgd {
    pub config: SgdConfig,
    pub velocity: Vec<Vec<f32>>,
}

impl Sgd {
    /// Zero velocities for `params` (a network's [`params`](crate::Network::params)).
    pub fn new<'a>(config: SgdConfig, params: impl IntoIterator<Item = &'a Param>) -> Self {
        Self { config, velocity: params.into_iter().map(|p| vec![0.0; p.data.len()]).collect() }
    }

    /// One update of every parameter from its `grad`, in the order `new` saw them.
    pub fn step<'a>(&mut self, params: impl IntoIterator<Item = &'a mut Param>) {
        let SgdConfig { lr, momentum: m, weight_decay, form, decay_biases } = self.config;
        const CHUNK: usize = 1 << 16;
        for (p, v) in params.into_iter().zip(&mut self.velocity) {
            let wd = if p.is_bias && !decay_biases { 0.0 } else { weight_decay };
            p.data.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)).zip(p.grad.par_chunks(CHUNK)).for_each(
                |((w, v), g)| match form {
                    SgdForm::Paper => {
                        for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                            *v = m * *v - wd * lr * *w - lr * g;
                            *w += *v;
                        }
                    }
                    SgdForm::Pytorch => {
                        for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                            *v = m * *v + (g + wd * *w);
                            *w -= lr * *v;
                        }
                    }
                },
            );
        }
    }
}
