//! Dropout (Hinton et al. 2012), as AlexNet uses it before fc6 and fc7.
//!
//! Training: each unit is kept with probability `1 - p`; the mask of unit `j` at step `t` is a
//! pure function of `(seed, t, j)` (see [`crate::rng`]), so it does not depend on thread count.
//!
//! * [`DropoutMode::Paper`]: train `y = m·x`; test `y = (1 - p)·x` — the paper's "multiply the
//!   outputs by 0.5".
//! * [`DropoutMode::Inverted`]: train `y = m·x/(1 - p)`; test `y = x` — PyTorch's form, needed to
//!   run torchvision's weights unchanged.
//!
//! The two are the same network in expectation; they differ only in where the factor sits.
//! Backward: `dx = dy · (train ? m·scale : test_scale)`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropoutMode {
    #[default]
    Paper,
    Inverted,
}

/// The factor kept units are multiplied by at train time and the factor at test time.
pub fn factors(p: f32, mode: DropoutMode) -> (f32, f32) {
    match mode {
        DropoutMode::Paper => (1.0, 1.0 - p),
        DropoutMode::Inverted => (if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 }, 1.0),
    }
}

/// Training forward: writes the per-unit multiplier (0 or the train factor) to `mask`. Unit `j`
/// of `x` draws its mask from `(seed, first + j)`: `first` places `x` in a larger batch (a
/// data-parallel process's share of the global batch draws what one process would).
pub fn forward_train(p: f32, mode: DropoutMode, seed: u64, first: u64, x: &[f32], y: &mut [f32], mask: &mut [f32]) {
    let (keep_scale, _) = factors(p, mode);
    const CHUNK: usize = 1 << 14;
    y.par_chunks_mut(CHUNK).zip(mask.par_chunks_mut(CHUNK)).zip(x.par_chunks(CHUNK)).enumerate().for_each(
        |(ci, ((y, m), x))| {
            for (j, ((y, m), &x)) in y.iter_mut().zip(m.iter_mut()).zip(x).enumerate() {
                let u = crate::rng::uniform(seed, first + (ci * CHUNK + j) as u64);
                *m = if u >= p { keep_scale } else { 0.0 };
                *y = x * *m;
            }
        },
    );
}

/// Evaluation forward: `y = test_factor · x`.
pub fn forward_eval(p: f32, mode: DropoutMode, x: &[f32], y: &mut [f32]) {
    let (_, s) = factors(p, mode);
    y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * s);
}

/// Backward of either forward: `dx = dy · mask` (train) or `dy · test_factor` (eval).
pub fn backward(mask: Option<&[f32]>, test_factor: f32, dy: &[f32], dx: &mut [f32]) {
    match mask {
        Some(m) => dx.iter_mut().zip(dy).zip(m).for_each(|((d, &g), &m)| *d = g * m),
        None => dx.iter_mut().zip(dy).for_each(|(d, &g)| *d = g * test_factor),
    }
}
