//! A strided convolution as a stride-1 one over the input's phases, so that Winograd computes
//! conv1 (11×11, stride 4) too.
//!
//! With stride S, output `(o1, o2)` reads input row `S·o1 + ki`. Writing `ki = S·a + p`
//! (`p < S`), that row is row `o1 + a` of the input's phase `p`, the rows `p, p + S, p + 2S...`.
//! So, with `x_pq [C][H'][W']` the phase `(p, q)` of the padded input, `x_pq[i][j] =
//! x_pad[S·i + p][S·j + q]`, and `w_pq [M][C][K'][K']` the taps `w[S·a + p][S·b + q]` (zero past
//! the kernel), `K' = ⌈K/S⌉`:
//!
//! `y[m] = Σ_{c, p, q} x_pq[c] ⋆ w_pq[m][c]` (stride 1, no padding),
//!
//! one convolution over `C·S²` channels (`c·S² + p·S + q`, so that groups stay contiguous) with
//! `K'×K'` kernels, `H' = OH + K' - 1`. The paper's conv1 becomes 48 channels of 57×57 and 3×3
//! kernels: Winograd's F(4×4, 3×3) then does 3.2× fewer multiplies than conv1's direct
//! convolution (`48·14²·36` against `3·55²·121` per output channel), where the 3×3 sub-kernels'
//! zero taps (`48·9 = 432` against 363) are the price of the rearrangement. The gradients come
//! back the same way: `dw` gathers the sub-kernels' gradients into the taps, `dx` scatters the
//! phases' gradients onto the input.

use super::conv::ConvShape;
use super::winograd::{self, KernelCache, Tile};
use crate::matmul::Precision;
use rayon::prelude::*;

/// The stride-1 convolution over the phases of `s`.
pub fn phase_shape(s: &ConvShape) -> ConvShape {
    let st = s.stride;
    let (kh, kw) = (s.kh.div_ceil(st), s.kw.div_ceil(st));
    ConvShape {
        in_c: s.in_c * st * st,
        in_h: s.out_h() + kh - 1,
        in_w: s.out_w() + kw - 1,
        out_c: s.out_c,
        kh,
        kw,
        stride: 1,
        pad: 0,
        groups: s.groups,
    }
}

/// Whether Winograd computes `s` over its phases: a stride above 1 whose phases' kernels are
/// 3×3 (conv1's 11×11 by 4, ZFNet's 7×7 by 2 is 4×4: not).
pub fn applies(s: &ConvShape) -> bool {
    s.stride > 1 && winograd::applies(&phase_shape(s)) && s.kh == s.kw
}

/// The phases `x' [B][C·S²][H'][W']` of `x [B][C][H][W]` (padding included, zero past it).
fn phases(s: &ConvShape, x: &[f32], batch: usize, out: &mut Vec<f32>) {
    let t = phase_shape(s);
    let st = s.stride;
    let (il, tl, tp) = (s.in_len(), t.in_len(), t.in_h * t.in_w);
    out.resize(batch * tl, 0.0);
    out.par_chunks_mut(tp).enumerate().for_each(|(k, dst)| {
        let (b, ch) = (k / t.in_c, k % t.in_c);
        let (c, p, q) = (ch / (st * st), ch / st % st, ch % st);
        let src = &x[b * il + c * s.in_h * s.in_w..][..s.in_h * s.in_w];
        for (i, row) in dst.chunks_mut(t.in_w).enumerate() {
            // Padded row S·i + p is input row S·i + p - pad.
            let r = (st * i + p).checked_sub(s.pad).filter(|&r| r < s.in_h);
            let Some(r) = r else {
                row.fill(0.0);
                continue;
            };
            let src_row = &src[r * s.in_w..(r + 1) * s.in_w];
            // Columns j whose padded column S·j + q is in the row: [lo, hi); zero outside.
            let (lo, hi) = (first_at(s.pad, st, q, 0), first_at(s.pad, st, q, s.in_w).min(row.len()));
            let lo = lo.min(hi);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            for (j, v) in (lo..hi).zip(&mut row[lo..hi]) {
                *v = src_row[st * j + q - s.pad];
            }
        }
    });
}

/// The first `j` with `S·j + q >= pad + col` (for `col` 0: the first column inside the row; for
/// the row's width: the first past it).
fn first_at(pad: usize, st: usize, q: usize, col: usize) -> usize {
    (pad + col).saturating_sub(q).div_ceil(st)
}

/// Each tap of `w [M][C/G][K][K]` with the index it takes in the phases' kernels
/// `w' [M][C·S²][K'][K']`: tap `(ki, kj) = (S·a + p, S·b + q)` of channel `c` is tap `(a, b)` of
/// phase channel `c·S² + p·S + q` (the other taps of `w'` are zero).
fn phase_taps(s: &ConvShape) -> impl Iterator<Item = (usize, usize)> {
    let t = phase_shape(s);
    let st = s.stride;
    let (cg, tcg) = (s.in_c / s.groups, t.in_c / t.groups);
    (0..s.out_c * cg * s.kh * s.kw).map(move |i| {
        let (mc, ki, kj) = (i / (s.kh * s.kw), i / s.kw % s.kh, i % s.kw);
        let (m, c) = (mc / cg, mc % cg);
        let (a, p, b, q) = (ki / st, ki % st, kj / st, kj % st);
        let ch = c * st * st + p * st + q;
        (i, ((m * tcg + ch) * t.kh + a) * t.kw + b)
    })
}

/// The phases' kernels `w' [M][C·S²][K'][K']` of `w [M][C/G][K][K]`.
fn phase_kernels(s: &ConvShape, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; phase_shape(s).weight_len()];
    for (tap, phase_tap) in phase_taps(s) {
        out[phase_tap] = w[tap];
    }
    out
}

/// `dw [M][C/G][K][K]` from the phases' kernels' gradient `dw'`: the adjoint of
/// [`phase_kernels`] (each tap is one sub-kernel tap).
fn gather_kernels(s: &ConvShape, dwp: &[f32], dw: &mut [f32]) {
    for (tap, phase_tap) in phase_taps(s) {
        dw[tap] = dwp[phase_tap];
    }
}

/// `dx` from the phases' gradient `dx'`: the adjoint of [`phases`] (each input pixel is in one
/// phase; padding's gradients dropped).
fn scatter_phases(s: &ConvShape, dxp: &[f32], dx: &mut [f32], batch: usize) {
    let t = phase_shape(s);
    let st = s.stride;
    let (il, tl) = (s.in_len(), t.in_len());
    let plane = s.in_h * s.in_w;
    dx[..batch * il].par_chunks_mut(plane).enumerate().for_each(|(k, dst)| {
        let (b, c) = (k / s.in_c, k % s.in_c);
        for (r, row) in dst.chunks_mut(s.in_w).enumerate() {
            let (i, p) = ((r + s.pad) / st, (r + s.pad) % st);
            for (col, v) in row.iter_mut().enumerate() {
                let (j, q) = ((col + s.pad) / st, (col + s.pad) % st);
                let ch = c * st * st + p * st + q;
                *v = if i < t.in_h && j < t.in_w { dxp[b * tl + (ch * t.in_h + i) * t.in_w + j] } else { 0.0 };
            }
        }
    });
}

thread_local! {
    /// The phases of the last call's input (the calling thread's), kept for their pages.
    static PHASES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn with_phases<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    crate::threads::with_taken(&PHASES, f)
}

/// `y = conv(x, w) + b` for a batch by Winograd over the phases, for shapes where [`applies`];
/// the phases' transformed kernels kept in `cache`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    batch: usize,
    tile: Tile,
    precision: Precision,
    cache: &mut KernelCache,
) {
    let t = phase_shape(s);
    // The phases' kernels only when the cache must compare them or transform them (serial,
    // ~0.2 ms of the paper net's one image: 1.1% of its perf samples).
    let kept = cache.holds_without_weights(super::conv::ConvAlgo::Winograd(tile));
    let wp = if kept { Vec::new() } else { phase_kernels(s, w) };
    with_phases(|xp| {
        phases(s, x, batch, xp);
        winograd::forward_cached(&t, xp, &wp, b, y, batch, tile, precision, cache);
    });
}

/// Gradients by Winograd over the phases, as [`super::conv::backward`].
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    batch: usize,
    tile: Tile,
    precision: Precision,
) {
    let t = phase_shape(s);
    let mut dwp = vec![0.0f32; t.weight_len()];
    with_phases(|xp| {
        phases(s, x, batch, xp);
        winograd::backward_weights(&t, xp, dy, &mut dwp, db, batch, tile, precision);
        gather_kernels(s, &dwp, dw);
        if let Some(dx) = dx {
            let wp = phase_kernels(s, w);
            winograd::backward_data(&t, &wp, dy, &mut xp[..batch * t.in_len()], batch, tile, precision);
            scatter_phases(s, xp, dx, batch);
        }
    });
}
