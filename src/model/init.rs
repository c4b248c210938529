//! Parameter initialisation.
//!
//! Paper (section 5): weights ~ N(0, 0.01²); biases 1 in conv2, conv4, conv5, fc6 and fc7 ("this
//! accelerates the early stages of learning by providing the ReLUs with positive inputs"), 0
//! elsewhere — the per-layer `bias_init` of the config. He: weights ~ N(0, 2/fan_in).
//! Every value is a pure function of (seed, parameter index, element index).

use super::config::Init;
use crate::rng;

/// Fills a weight tensor of `fan_in` inputs per output.
pub fn init_weight(init: Init, seed: u64, param_index: usize, fan_in: usize, w: &mut [f32]) {
    let std = match init {
        Init::Gaussian { std } => std,
        Init::He => (2.0 / fan_in as f32).sqrt(),
    };
    let s = rng::mix(&[seed, param_index as u64]);
    for (j, v) in w.iter_mut().enumerate() {
        *v = std * rng::normal(s, j as u64);
    }
}

/// The reference formula of ../shared/reference (no weight file needed): parameter `i`, element
/// `j` is `sqrt(6/fan_in)·(2u-1)` for weights and `0.1·(2u-1)` for biases, `u = u24(i, j)`.
pub fn formula_value(param_index: usize, j: usize, fan_in: Option<usize>) -> f32 {
    let u = rng::u24(param_index as u64, j as u64);
    match fan_in {
        Some(f) => ((6.0f64 / f as f64).sqrt() * (2.0 * u as f64 - 1.0)) as f32,
        None => 0.1 * (2.0 * u - 1.0),
    }
}
