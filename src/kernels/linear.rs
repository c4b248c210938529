//! Fully connected layer: `y [B, O] = x [B, I] · wᵀ + b`, with `w [O, I]` (PyTorch layout).
//!
//! Backward: `dw [O, I] = dyᵀ · x`, `db = Σ_b dy`, `dx [B, I] = dy · w`.
//! These products are large (fc6 is 4096×9216), and each is split by blocks of its output's
//! rows across the whole thread pool ([`matmul_row_blocks`]): the weight's outputs for `yᵀ` and
//! `dw`, its inputs for `dxᵀ`.

use crate::matmul::{Operand, Precision, matmul_row_blocks};

/// `y [B, O] = x [B, I] · wᵀ + b`, the products in `precision`.
///
/// Computed as `yᵀ = w · xᵀ` and transposed: with the weight as the row-major left operand the
/// `gemm` crate runs this 4× faster at batch 64 than `x · wᵀ` (measured: 318 vs 75 GFLOP/s),
/// and its rows are what the threads split.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    batch: usize,
    inp: usize,
    out: usize,
    precision: Precision,
) {
    let mut yt = vec![0.0f32; out * batch];
    matmul_row_blocks(precision, out, batch, inp, Operand::plain(w), Operand::t(x), &mut yt, false);
    for (i, row) in y[..batch * out].chunks_mut(out).enumerate() {
        for (o, (v, &bias)) in row.iter_mut().zip(b).enumerate() {
            *v = yt[o * batch + i] + bias;
        }
    }
}

/// [`forward`] of one image with the weight already in bf16 (`wb`, [`crate::matmul::round_rows`]):
/// the products of [`Precision::Bf16`] at half f32's weight traffic.
pub fn forward_one_bf16(x: &[f32], wb: &[u16], b: &[f32], y: &mut [f32], inp: usize, out: usize) {
    crate::matmul::gemv_bf16(out, inp, wb, &x[..inp], &mut y[..out]);
    y[..out].iter_mut().zip(b).for_each(|(v, &bias)| *v += bias);
}

/// `dw`, `db` overwritten; `dx` (when asked for) overwritten; the products in `precision`.
///
/// `dx` is computed as `dxᵀ = wᵀ · dyᵀ` and transposed, for the reason of [`forward`]: `dy · w`
/// ran at 56 GFLOP/s on fc6 at batch 64, this at 110 (Zen 3, 2 threads).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    batch: usize,
    inp: usize,
    out: usize,
    precision: Precision,
) {
    matmul_row_blocks(precision, out, inp, batch, Operand::t(dy), Operand::plain(x), dw, false);
    db.fill(0.0);
    for row in dy[..batch * out].chunks(out) {
        db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
    }
    if let Some(dx) = dx {
        let mut dxt = vec![0.0f32; inp * batch];
        matmul_row_blocks(precision, inp, batch, out, Operand::t(w), Operand::t(dy), &mut dxt, false);
        for (i, row) in dx[..batch * inp].chunks_mut(inp).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = dxt[j * batch + i];
            }
        }
    }
}
