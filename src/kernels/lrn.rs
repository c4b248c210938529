//! Local response normalisation across channels (Krizhevsky et al. 2012, section 3.3), NCHW.
//!
//! `b[c] = a[c] / s[c]^β`, `s[c] = k + α' · Σ_{c' ∈ W(c)} a[c']²`, with the window
//! `W(c) = [c - ⌊n/2⌋, c + ⌊(n-1)/2⌋]` clipped to the existing channels, and
//!
//! * [`LrnConvention::AlphaOverN`] (the default): `α' = α/n`. This is what the code that
//!   produced the paper's numbers computes (cuda-convnet divides its `scale` by the window
//!   size), and what Caffe's `bvlc_alexnet` and PyTorch's `LocalResponseNorm` compute, so the
//!   same (k, n, α, β) mean the same network everywhere and imported weights behave as trained.
//! * [`LrnConvention::Paper`]: `α' = α`, the formula as section 3.3 prints it. With α = 1e-4 it
//!   normalises n = 5 times more strongly than the code did.
//!
//! Backward, with `y = b` and `g = ∂L/∂b`:
//! `∂L/∂a[j] = g[j]·s[j]^-β − 2α'β·a[j]·Σ_{i: j ∈ W(i)} g[i]·y[i]/s[i]`.
//!
//! The window sums run one whole channel plane at a time, so the inner loops are over
//! contiguous pixels and vectorise.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum LrnConvention {
    /// `k + α/n · Σ a²` (cuda-convnet, Caffe, PyTorch): the default.
    #[default]
    AlphaOverN,
    /// `k + α · Σ a²`, as the paper prints it.
    Paper,
}

/// An LRN layer's constants; in a model file every field defaults to the paper's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LrnParams {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub k: f32,
    #[serde(default)]
    pub convention: LrnConvention,
}

impl Default for LrnParams {
    fn default() -> Self {
        Self::paper()
    }
}

impl LrnParams {
    /// The paper's n = 5, α = 1e-4, β = 0.75, k = 2, with the default convention.
    pub fn paper() -> Self {
        Self { size: 5, alpha: 1e-4, beta: 0.75, k: 2.0, convention: LrnConvention::AlphaOverN }
    }
    /// The coefficient α' that multiplies the window sum.
    pub fn alpha_eff(&self) -> f32 {
        match self.convention {
            LrnConvention::AlphaOverN => self.alpha / self.size as f32,
            LrnConvention::Paper => self.alpha,
        }
    }
    /// Channels before and after `c` in its window.
    pub fn reach(&self) -> (usize, usize) {
        (self.size / 2, (self.size - 1) / 2)
    }
}

/// `out = v · s^-β`. The paper's β = 0.75 is done as `1/(√s·√√s)`, which vectorises and is
/// several times faster than `powf`; the branch sits outside the loop so both loops vectorise.
#[inline(always)]
fn scale_by_pow(out: &mut [f32], v: &[f32], s: &[f32], beta: f32) {
    if beta == 0.75 {
        for ((o, &v), &s) in out.iter_mut().zip(v).zip(s) {
            let r = s.sqrt();
            *o = v / (r * r.sqrt());
        }
    } else {
        for ((o, &v), &s) in out.iter_mut().zip(v).zip(s) {
            *o = v * s.powf(-beta);
        }
    }
}

/// `acc = Σ_{q=lo..=hi} f(src[q])`, plane by plane. Summing the whole window afresh (n adds a
/// pixel) rather than sliding it keeps the result exact to rounding whatever came before.
#[inline(always)]
fn window_sum(src: &[f32], plane: usize, lo: usize, hi: usize, acc: &mut [f32], f: impl Fn(f32) -> f32) {
    acc.iter_mut().zip(&src[lo * plane..(lo + 1) * plane]).for_each(|(a, &v)| *a = f(v));
    for q in lo + 1..=hi {
        acc.iter_mut().zip(&src[q * plane..(q + 1) * plane]).for_each(|(a, &v)| *a += f(v));
    }
}

/// Forward over `batch` images of `c` channels of `plane` pixels. `scale` receives `s`.
pub fn forward(p: &LrnParams, x: &[f32], y: &mut [f32], scale: &mut [f32], batch: usize, c: usize, plane: usize) {
    let il = c * plane;
    let (y, scale, x) = (&mut y[..batch * il], &mut scale[..batch * il], &x[..batch * il]);
    if crate::kernels::conv::threads_within_image(batch) == crate::matmul::Threads::Pool {
        // Fewer images than threads (one-image latency): the channels are shared across them.
        y.par_chunks_mut(plane).zip(scale.par_chunks_mut(plane)).enumerate().for_each_init(
            || vec![0.0f32; plane],
            |acc, (i, (yc, sc))| forward_channel(p, &x[i / c * il..][..il], i % c, c, plane, acc, yc, sc),
        );
        return;
    }
    y.par_chunks_mut(il).zip(scale.par_chunks_mut(il)).zip(x.par_chunks(il)).for_each(|((yi, si), xi)| {
        let mut acc = vec![0.0f32; plane];
        for (ch, (yc, sc)) in yi.chunks_mut(plane).zip(si.chunks_mut(plane)).enumerate() {
            forward_channel(p, xi, ch, c, plane, &mut acc, yc, sc);
        }
    });
}

/// Channel `ch` of one image `xi [c, plane]` into `yc` and its `s` into `sc` (`acc`: scratch).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_channel(
    p: &LrnParams,
    xi: &[f32],
    ch: usize,
    c: usize,
    plane: usize,
    acc: &mut [f32],
    yc: &mut [f32],
    sc: &mut [f32],
) {
    let (before, after) = p.reach();
    let ae = p.alpha_eff();
    window_sum(xi, plane, ch.saturating_sub(before), (ch + after).min(c - 1), acc, |v| v * v);
    for (sv, &a) in sc.iter_mut().zip(acc.iter()) {
        *sv = p.k + ae * a;
    }
    scale_by_pow(yc, &xi[ch * plane..(ch + 1) * plane], sc, p.beta);
}

/// Backward. Needs the forward's `x`, `y` and `scale`; `dx` is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    p: &LrnParams,
    x: &[f32],
    y: &[f32],
    scale: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    batch: usize,
    c: usize,
    plane: usize,
) {
    let il = c * plane;
    let (before, after) = p.reach();
    let coef = 2.0 * p.alpha_eff() * p.beta;
    let per = crate::kernels::conv::image_chunks(batch) * il;
    dx[..batch * il]
        .par_chunks_mut(per)
        .zip(x[..batch * il].par_chunks(per))
        .zip(y[..batch * il].par_chunks(per))
        .zip(scale[..batch * il].par_chunks(per))
        .zip(dy[..batch * il].par_chunks(per))
        .for_each(|((((dxs, xs), ys), ss), gs)| {
            let mut t = vec![0.0f32; il];
            let mut acc = vec![0.0f32; plane];
            for ((((dxi, xi), yi), si), gi) in
                dxs.chunks_mut(il).zip(xs.chunks(il)).zip(ys.chunks(il)).zip(ss.chunks(il)).zip(gs.chunks(il))
            {
                // t[i] = g[i]·y[i]/s[i]; channel j collects Σ t[i] over i with j ∈ W(i),
                // i.e. i ∈ [j - after, j + before].
                for (((tv, &g), &yv), &s) in t.iter_mut().zip(gi).zip(yi).zip(si) {
                    *tv = g * yv / s;
                }
                for ch in 0..c {
                    window_sum(&t, plane, ch.saturating_sub(after), (ch + before).min(c - 1), &mut acc, |v| v);
                    let r = ch * plane..(ch + 1) * plane;
                    let (dc, gc, sc, xc) = (&mut dxi[r.clone()], &gi[r.clone()], &si[r.clone()], &xi[r]);
                    scale_by_pow(dc, gc, sc, p.beta);
                    for ((d, &xv), &a) in dc.iter_mut().zip(xc).zip(&acc) {
                        *d -= coef * xv * a;
                    }
                }
            }
        });
}

/// Direct evaluation of the formula: the reference the tests compare to.
pub fn forward_naive(p: &LrnParams, x: &[f32], batch: usize, c: usize, plane: usize) -> Vec<f32> {
    let (before, after) = p.reach();
    let mut y = vec![0.0; x.len()];
    for b in 0..batch {
        for ch in 0..c {
            for px in 0..plane {
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                let sum: f64 = (lo..=hi).map(|q| (x[(b * c + q) * plane + px] as f64).powi(2)).sum();
                let s = p.k as f64 + p.alpha_eff() as f64 * sum;
                let i = (b * c + ch) * plane + px;
                y[i] = (x[i] as f64 / s.powf(p.beta as f64)) as f32;
            }
        }
    }
    y
}
