//! Element-wise activations. The paper's Figure 1 compares ReLU with tanh: both are here.
//!
//! ReLU: `y = max(0, x)`, `dx = dy · [y > 0]`.
//! Tanh: `y = tanh(x)`, `dx = dy · (1 - y²)`.
//! Both backward passes read only the output, so the input need not be kept.

use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

pub fn relu_forward(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = if x > 0.0 { x } else { 0.0 });
    });
}

pub fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).zip(dy.par_chunks(CHUNK)).for_each(|((dx, y), dy)| {
        dx.iter_mut().zip(y).zip(dy).for_each(|((d, &y), &g)| *d = if y > 0.0 { g } else { 0.0 });
    });
}

pub fn tanh_forward(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.tanh());
    });
}

pub fn tanh_backward(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).zip(dy.par_chunks(CHUNK)).for_each(|((dx, y), dy)| {
        dx.iter_mut().zip(y).zip(dy).for_each(|((d, &y), &g)| *d = g * (1.0 - y * y));
    });
}
