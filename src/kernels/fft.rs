//! FFT convolution for stride-1 layers with large kernels: conv2 (5×5) of the paper and
//! torchvision nets, where it does 8× fewer multiplies than direct convolution.
//!
//! Each plane, padded to `N×N` (N the power of two at least `H + 2P`), is taken to the
//! frequency domain by a 2-D real FFT, which keeps `S = N·(N/2 + 1)` complex points ξ (the
//! other half is their conjugate). There the convolution of every channel pair becomes one
//! complex product per point, and the sum over input channels a complex matrix product per
//! point (as NNPACK does):
//!
//! - forward (cross-correlation): `Y[ξ] [M/G, B] = conj(W[ξ]) [M/G, C/G] · X[ξ] [C/G, B]`;
//! - data gradient (convolution by the kernels): `dX[ξ] = W[ξ]ᵀ · dY[ξ]`;
//! - weight gradient: `dW[ξ] [M/G, C/G] = conj(dY[ξ]) · X[ξ]ᵀ`, summed over the batch by the
//!   product itself; only the `r×r` taps of its inverse are kept.
//!
//! `W` is the transform of the kernel placed at the corner of an `N×N` zero plane, `X` of the
//! input at offset `(P, P)`, `dY` of the output gradient at the corner. The padding makes the
//! circular convolutions linear where it matters: every output, input-gradient and tap index
//! reads only terms that do not wrap around (`H + 2P ≤ N`).
//!
//! A complex product is done by a real one of twice the size: a complex number `a + ib` is
//! the pair of rows (or columns) `[a, b]`, and `conj(W)` becomes the real block
//! `[[a, b], [-b, a]]` per kernel, so every product runs on the `gemm` crate at its usual speed
//! (4 real multiplies per complex one). The paper's conv2 at 27×27 takes N = 32, S = 544, so
//! `4·544 = 2,176` real multiplies per channel pair where direct convolution takes
//! `27²·25 = 18,225`.
//!
//! The FFTs are radix-2 over L = 8 planes side by side (8 images of one channel), one per SIMD
//! lane, like the Winograd transforms (`super::winograd`); two real rows go through one
//! complex FFT. The kernels' transforms are not FFTs but one matrix product with the DFT
//! matrix of their `r²` taps (`r²` of `N²` inputs are non-zero), as is the inverse of the
//! weight gradient (`r²` of `N²` outputs are wanted).
//!
//! Rounding: f32 FFTs of 32 points lose about `log₂ N` ulps; the tests hold every result to
//! 1e-4 of the direct kernels, on the paper's layer sizes.

use super::conv::ConvShape;
use crate::matmul::{Operand, Threads, matmul, transpose};
use rayon::prelude::*;
use std::f64::consts::PI;

/// Planes transformed together, one per SIMD lane.
const L: usize = 8;
type Lane = [f32; L];

/// The largest transform: 64×64 (maps up to 64 with padding). Larger maps spend more in the
/// transforms than the products save and need spectra of many megabytes a channel.
const MAX_N: usize = 64;

/// Side `N` of the transform for `s`: the power of two holding the padded map.
pub fn size(s: &ConvShape) -> usize {
    (s.in_h.max(s.in_w) + 2 * s.pad).next_power_of_two().max(4)
}

/// Whether this file computes the convolution `s`: stride 1, padding smaller than the kernel
/// and the padded map at most [`MAX_N`] (64) on a side.
pub fn applies(s: &ConvShape) -> bool {
    s.stride == 1 && s.pad < s.kh.min(s.kw) && size(s) <= MAX_N && s.kh <= s.in_h + 2 * s.pad
}

/// Real multiplies per channel pair and image: 4 for each of the `S` complex points.
pub fn multiplies(s: &ConvShape) -> usize {
    let n = size(s);
    4 * n * (n / 2 + 1)
}

/// Twiddles and bit-reversal of a radix-2 FFT of `n` points.
struct Plan {
    n: usize,
    /// `cos(2πj/n)`, `sin(2πj/n)` for `j < n/2`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    rev: Vec<usize>,
}

impl Plan {
    fn new(n: usize) -> Self {
        assert!(n.is_power_of_two() && n >= 2);
        let bits = n.trailing_zeros();
        let angle = |j: usize| 2.0 * PI * j as f64 / n as f64;
        Plan {
            n,
            cos: (0..n / 2).map(|j| angle(j).cos() as f32).collect(),
            sin: (0..n / 2).map(|j| angle(j).sin() as f32).collect(),
            rev: (0..n).map(|i| i.reverse_bits() >> (usize::BITS - bits)).collect(),
        }
    }

    /// In place, over L lanes: `X[k] = Σ_j x[j]·e^{∓2πi·jk/n}` (`-` forward, `+` inverse,
    /// unscaled).
    fn fft(&self, re: &mut [Lane], im: &mut [Lane], inverse: bool) {
        let n = self.n;
        let (re, im) = (&mut re[..n], &mut im[..n]);
        for i in 0..n {
            let j = self.rev[i];
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let sign = if inverse { 1.0 } else { -1.0 };
        let mut half = 1;
        while half < n {
            let step = n / (2 * half);
            for start in (0..n).step_by(2 * half) {
                for j in 0..half {
                    let (c, s) = (self.cos[j * step], sign * self.sin[j * step]);
                    let (a, b) = (start + j, start + j + half);
                    let (br, bi) = (re[b], im[b]);
                    let (mut ar, mut ai) = (re[a], im[a]);
                    let (mut or, mut oi) = ([0.0f32; L], [0.0f32; L]);
                    for l in 0..L {
                        let tr = br[l] * c - bi[l] * s;
                        let ti = br[l] * s + bi[l] * c;
                        or[l] = ar[l] - tr;
                        oi[l] = ai[l] - ti;
                        ar[l] += tr;
                        ai[l] += ti;
                    }
                    (re[a], im[a], re[b], im[b]) = (ar, ai, or, oi);
                }
            }
            half *= 2;
        }
    }
}

/// One 2-D transform's buffers: the spectrum `[N/2+1][N]` (column f2, then row f1) and a row.
struct Planes {
    re: Vec<Lane>,
    im: Vec<Lane>,
    row_re: Vec<Lane>,
    row_im: Vec<Lane>,
}

impl Planes {
    fn new(n: usize) -> Self {
        let h = n / 2 + 1;
        Planes {
            re: vec![[0.0; L]; h * n],
            im: vec![[0.0; L]; h * n],
            row_re: vec![[0.0; L]; n],
            row_im: vec![[0.0; L]; n],
        }
    }

    /// The spectrum of L real planes whose rows `rows` are given by `load(row, dst)` (the
    /// others zero): `self.re/im[f2·N + f1]`, f2 < N/2 + 1. Rows go two at a time through one
    /// complex FFT (`z = a + ib`, then `A[k] = (Z[k] + conj Z[-k])/2`, `B[k] = (Z[k] - conj
    /// Z[-k])/2i`), then the columns.
    fn forward(&mut self, p: &Plan, rows: std::ops::Range<usize>, mut load: impl FnMut(usize, &mut [Lane])) {
        let (n, h) = (p.n, p.n / 2 + 1);
        self.re.fill([0.0; L]);
        self.im.fill([0.0; L]);
        let mut a = rows.start;
        while a < rows.end {
            let b = a + 1;
            load(a, &mut self.row_re);
            if b < rows.end {
                load(b, &mut self.row_im);
            } else {
                self.row_im.fill([0.0; L]);
            }
            p.fft(&mut self.row_re, &mut self.row_im, false);
            for k in 0..h {
                let m = (n - k) % n;
                let (zr, zi, mr, mi) = (self.row_re[k], self.row_im[k], self.row_re[m], self.row_im[m]);
                let (ar, ai, br, bi) = (&mut [0.0f32; L], &mut [0.0f32; L], &mut [0.0f32; L], &mut [0.0f32; L]);
                for l in 0..L {
                    ar[l] = 0.5 * (zr[l] + mr[l]);
                    ai[l] = 0.5 * (zi[l] - mi[l]);
                    br[l] = 0.5 * (zi[l] + mi[l]);
                    bi[l] = 0.5 * (mr[l] - zr[l]);
                }
                (self.re[k * n + a], self.im[k * n + a]) = (*ar, *ai);
                if b < rows.end {
                    (self.re[k * n + b], self.im[k * n + b]) = (*br, *bi);
                }
            }
            a += 2;
        }
        for k in 0..h {
            p.fft(&mut self.re[k * n..(k + 1) * n], &mut self.im[k * n..(k + 1) * n], false);
        }
    }

    /// The inverse of [`Self::forward`] (scaled by `1/N²`): the rows `rows` of the L real
    /// planes whose spectrum is in `self.re/im`, handed to `store(row, values)`; the spectrum
    /// is overwritten. Two rows come out of one complex FFT of `A + iB`, whose real and
    /// imaginary parts are the two real rows.
    fn inverse(&mut self, p: &Plan, rows: std::ops::Range<usize>, mut store: impl FnMut(usize, &[Lane])) {
        let (n, h) = (p.n, p.n / 2 + 1);
        for k in 0..h {
            p.fft(&mut self.re[k * n..(k + 1) * n], &mut self.im[k * n..(k + 1) * n], true);
        }
        let scale = 1.0 / (n * n) as f32;
        let mut a = rows.start;
        while a < rows.end {
            let b = (a + 1).min(n - 1);
            for k in 0..n {
                // Column k of the full spectrum: conj of column N - k beyond the half.
                let (kk, conj) = if k < h { (k, 1.0) } else { (n - k, -1.0) };
                let (ar, ai) = (self.re[kk * n + a], self.im[kk * n + a]);
                let (br, bi) = (self.re[kk * n + b], self.im[kk * n + b]);
                for l in 0..L {
                    self.row_re[k][l] = ar[l] - conj * bi[l];
                    self.row_im[k][l] = conj * ai[l] + br[l];
                }
            }
            p.fft(&mut self.row_re, &mut self.row_im, true);
            for v in self.row_re.iter_mut().chain(self.row_im.iter_mut()) {
                v.iter_mut().for_each(|x| *x *= scale);
            }
            store(a, &self.row_re);
            if a + 1 < rows.end {
                store(a + 1, &self.row_im);
            }
            a += 2;
        }
    }
}

/// The DFT of an `r_h×r_w` kernel at the corner of an `N×N` plane, as a `[2S, r_h·r_w]`
/// matrix: row `2ξ` the real parts' coefficients `cos θ`, row `2ξ + 1` the imaginary parts'
/// `-sin θ`, `θ = 2π(f1·i + f2·j)/N`, ξ = f2·N + f1. With `inverse`, the other way: the
/// taps `(i, j)` of the real inverse of a half spectrum, `w = (1/N²) Σ c(f2) (Re·cos θ - Im·sin θ)`,
/// `c(f2)` 1 at columns 0 and N/2 (their own conjugates) and 2 elsewhere (each stands for its
/// conjugate too): rows `2ξ`, `2ξ + 1` hold those two coefficients.
fn dft_taps(n: usize, rh: usize, rw: usize, inverse: bool) -> Vec<f32> {
    let h = n / 2 + 1;
    let mut t = vec![0.0f32; 2 * n * h * rh * rw];
    for f2 in 0..h {
        let c = if !inverse {
            1.0
        } else if f2 == 0 || 2 * f2 == n {
            1.0 / (n * n) as f64
        } else {
            2.0 / (n * n) as f64
        };
        for f1 in 0..n {
            let xi = f2 * n + f1;
            for i in 0..rh {
                for j in 0..rw {
                    let theta = 2.0 * PI * ((f1 * i + f2 * j) % n) as f64 / n as f64;
                    t[(2 * xi) * rh * rw + i * rw + j] = (c * theta.cos()) as f32;
                    t[(2 * xi + 1) * rh * rw + i * rw + j] = (-c * theta.sin()) as f32;
                }
            }
        }
    }
    t
}

/// The kernels' spectra `[G][S][2][M/G·C/G]`: at `[g][ξ][0][m·C/G + c]` the real part of
/// `W[ξ]` for output channel `m` and input channel `c` of group `g`, at `[1]` the imaginary.
/// One product a group with the DFT matrix of the taps ([`dft_taps`]).
pub fn kernel_spectra(s: &ConvShape, w: &[f32], out: &mut Vec<f32>) {
    let n = size(s);
    let pts = n * (n / 2 + 1);
    let (rr, pairs) = (s.kh * s.kw, s.m_group() * (s.in_c / s.groups));
    assert_eq!(w.len(), s.weight_len(), "weights of {s:?}");
    let t = dft_taps(n, s.kh, s.kw, false);
    out.resize(s.groups * 2 * pts * pairs, 0.0);
    for (g, og) in out.chunks_mut(2 * pts * pairs).enumerate() {
        let wg = &w[g * pairs * rr..(g + 1) * pairs * rr];
        matmul(2 * pts, pairs, rr, Operand::plain(&t), Operand::t(wg), og, false, Threads::Pool);
    }
}

/// The real `[2M/G, 2C/G]` block of `conj(W[ξ])` for group `g`: per kernel `[[a, b], [-b, a]]`
/// (rows: the output's real and imaginary parts; columns: the input's).
fn conj_block(s: &ConvShape, spectra: &[f32], g: usize, xi: usize, dst: &mut Vec<f32>) {
    let n = size(s);
    let pts = n * (n / 2 + 1);
    let (mg, cg) = (s.m_group(), s.in_c / s.groups);
    let pairs = mg * cg;
    let at = &spectra[(g * pts + xi) * 2 * pairs..][..2 * pairs];
    let (wr, wi) = at.split_at(pairs);
    dst.resize(4 * pairs, 0.0);
    let w2 = 2 * cg;
    for m in 0..mg {
        let (top, bottom) = dst[2 * m * w2..(2 * m + 2) * w2].split_at_mut(w2);
        for c in 0..cg {
            let (a, b) = (wr[m * cg + c], wi[m * cg + c]);
            (top[2 * c], top[2 * c + 1]) = (a, b);
            (bottom[2 * c], bottom[2 * c + 1]) = (-b, a);
        }
    }
}

/// Buffers of a call's spectra, kept across calls on the calling thread (they reach a few
/// hundred MB at batch 128 on conv2, whose pages should be touched once, not every step).
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    crate::threads::with_taken(&SCRATCH, f)
}

/// A batch's planes in the frequency domain, `[planes][2][S][Bp]` (`Bp` the batch rounded up
/// to L): for plane (channel) `p`, its spectra's real parts at point ξ of image `i` at
/// `[p][0][ξ][i]`, the imaginary at `[p][1][ξ][i]`. As a matrix, the planes' rows (p, part)
/// are `S·Bp` apart: the operand of one point's product is a strided view.
#[allow(clippy::too_many_arguments)]
fn spectra_of_planes(
    p: &Plan,
    planes: usize,
    batch: usize,
    image_len: usize,
    (h, w): (usize, usize),
    offset: usize,
    x: &[f32],
    out: &mut Vec<f32>,
) {
    let n = p.n;
    let pts = n * (n / 2 + 1);
    let bp = batch.next_multiple_of(L);
    out.resize(planes * 2 * pts * bp, 0.0);
    out.par_chunks_mut(2 * pts * bp).enumerate().for_each_init(
        || Planes::new(n),
        |f, (c, dst)| {
            for blk in 0..bp / L {
                let images = L.min(batch.saturating_sub(blk * L));
                f.forward(p, offset..offset + h, |row, d| {
                    d.fill([0.0; L]);
                    for l in 0..images {
                        let src = &x[(blk * L + l) * image_len + c * h * w + (row - offset) * w..][..w];
                        for (j, &v) in src.iter().enumerate() {
                            d[offset + j][l] = v;
                        }
                    }
                });
                let (re, im) = dst.split_at_mut(pts * bp);
                for xi in 0..pts {
                    re[xi * bp + blk * L..][..L].copy_from_slice(&f.re[xi]);
                    im[xi * bp + blk * L..][..L].copy_from_slice(&f.im[xi]);
                }
            }
        },
    );
}

/// The inverse of [`spectra_of_planes`] for spectra laid out `[S][2·planes][Bp]` (a point's
/// product's output): rows `offset..offset + h`, columns `offset..offset + w` of each plane,
/// plus `bias[p]`, into `y [batch][planes][h][w]`. One task a plane (channel), over all the
/// images: its spectra are then two rows of every point, read whole (by image blocks, the
/// reads were 32 bytes at a stride of 2·planes·Bp floats, and took most of the time). The
/// planes come out channel-major in `tmp [planes][batch][h][w]`, copied into `y` after.
#[allow(clippy::too_many_arguments)]
fn planes_of_spectra(
    p: &Plan,
    planes: usize,
    batch: usize,
    (h, w): (usize, usize),
    offset: usize,
    spectra: &[f32],
    bias: Option<&[f32]>,
    tmp: &mut Vec<f32>,
    y: &mut [f32],
) {
    let n = p.n;
    let pts = n * (n / 2 + 1);
    let bp = batch.next_multiple_of(L);
    let plane = h * w;
    tmp.resize(planes * batch * plane, 0.0);
    tmp.par_chunks_mut(batch * plane).enumerate().for_each_init(
        || Planes::new(n),
        |f, (c, yc)| {
            let b = bias.map_or(0.0, |b| b[c]);
            for (blk, yb) in yc.chunks_mut(L * plane).enumerate() {
                for xi in 0..pts {
                    let at = xi * 2 * planes * bp + 2 * c * bp + blk * L;
                    f.re[xi].copy_from_slice(&spectra[at..at + L]);
                    f.im[xi].copy_from_slice(&spectra[at + bp..at + bp + L]);
                }
                f.inverse(p, offset..offset + h, |row, v| {
                    for (l, yl) in yb.chunks_mut(plane).enumerate() {
                        let dst = &mut yl[(row - offset) * w..][..w];
                        for (j, d) in dst.iter_mut().enumerate() {
                            *d = v[offset + j][l] + b;
                        }
                    }
                });
            }
        },
    );
    let tmp = &tmp[..];
    y[..batch * planes * plane].par_chunks_mut(planes * plane).enumerate().for_each(|(i, yi)| {
        for (c, dst) in yi.chunks_mut(plane).enumerate() {
            dst.copy_from_slice(&tmp[(c * batch + i) * plane..][..plane]);
        }
    });
}

/// `out [S][2·rows_out][Bp]`: at every point, the product of one group's real block
/// (`block(g, ξ, dst)`, `[2·rows_out/G, 2·cols/G]`, or its transpose with `transpose`) by the
/// group's rows of `input [planes][2][S][Bp]`, points shared across the pool.
#[allow(clippy::too_many_arguments)]
fn point_products(
    s: &ConvShape,
    (rows_out, cols): (usize, usize),
    batch: usize,
    input: &[f32],
    transpose: bool,
    spectra: &[f32],
    out: &mut Vec<f32>,
) {
    let n = size(s);
    let pts = n * (n / 2 + 1);
    let bp = batch.next_multiple_of(L);
    let (rg, cgp) = (rows_out / s.groups, cols / s.groups);
    out.resize(pts * 2 * rows_out * bp, 0.0);
    out.par_chunks_mut(2 * rows_out * bp).enumerate().for_each_init(Vec::new, |block, (xi, o)| {
        for g in 0..s.groups {
            conj_block(s, spectra, g, xi, block);
            let a = if transpose { Operand::t(block) } else { Operand::plain(block) };
            let rhs = Operand::strided(&input[(2 * g * cgp * pts + xi) * bp..], pts * bp);
            let dst = &mut o[2 * g * rg * bp..2 * (g + 1) * rg * bp];
            matmul(2 * rg, bp, 2 * cgp, a, rhs, dst, false, Threads::One);
        }
    });
}

/// `y = conv(x, w) + b` for a batch, as [`super::conv::forward`], with the kernels' spectra
/// from [`kernel_spectra`], for shapes where [`applies`].
pub fn forward_with_spectra(s: &ConvShape, x: &[f32], spectra: &[f32], b: &[f32], y: &mut [f32], batch: usize) {
    assert!(applies(s), "FFT convolution of {s:?}");
    let p = Plan::new(size(s));
    with_scratch(|sc| {
        spectra_of_planes(&p, s.in_c, batch, s.in_len(), (s.in_h, s.in_w), s.pad, x, &mut sc.a);
        point_products(s, (s.out_c, s.in_c), batch, &sc.a, false, spectra, &mut sc.b);
        planes_of_spectra(&p, s.out_c, batch, (s.out_h(), s.out_w()), 0, &sc.b, Some(b), &mut sc.c, y);
    });
}

/// `y = conv(x, w) + b` for a batch by FFT, the kernels transformed for this call.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], batch: usize) {
    let mut spectra = Vec::new();
    kernel_spectra(s, w, &mut spectra);
    forward_with_spectra(s, x, &spectra, b, y, batch);
}

/// Gradients by FFT, as [`super::conv::backward`]: `dw`, `db` overwritten, `dx` too when asked
/// for; `spectra` the kernels' ([`kernel_spectra`]).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: &ConvShape,
    x: &[f32],
    spectra: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    batch: usize,
) {
    assert!(applies(s), "FFT convolution of {s:?}");
    let n = size(s);
    let p = Plan::new(n);
    let pts = n * (n / 2 + 1);
    let bp = batch.next_multiple_of(L);
    let (mg, cg) = (s.m_group(), s.in_c / s.groups);
    let (ol, on) = (s.out_len(), s.n());
    super::conv::bias_gradient(dy, batch, on, &mut db[..s.out_c]);
    with_scratch(|sc| {
        // dY's spectra [M][2][S][Bp], X's [C][2][S][Bp].
        spectra_of_planes(&p, s.out_c, batch, ol, (s.out_h(), s.out_w()), 0, dy, &mut sc.b);
        spectra_of_planes(&p, s.in_c, batch, s.in_len(), (s.in_h, s.in_w), s.pad, x, &mut sc.a);
        // dW[ξ] = conj(dY) · Xᵀ per group from the real product P = [dr; di] · [xr; xi]ᵀ:
        // Re = P_rr + P_ii, Im = P_ri - P_ir, into `c [S][2][M·C/G]`.
        let pairs = mg * cg;
        sc.c.resize(pts * 2 * s.groups * pairs, 0.0);
        let (a, b) = (&sc.a, &sc.b);
        let init = || (Vec::new(), Vec::new());
        sc.c.par_chunks_mut(2 * s.groups * pairs).enumerate().for_each_init(init, |(prod, xt), (xi, o)| {
            prod.resize(4 * pairs, 0.0);
            xt.resize(bp * 2 * cg, 0.0);
            let (re, im) = o.split_at_mut(s.groups * pairs);
            for g in 0..s.groups {
                let d = Operand::strided(&b[(2 * g * mg * pts + xi) * bp..], pts * bp);
                // Xᵀ [Bp, 2C/G] laid out first: both operands hold the images contiguous, and
                // the matrix multiply would otherwise transpose X value by value in its packing.
                transpose(&a[(2 * g * cg * pts + xi) * bp..], pts * bp, 2 * cg, bp, xt);
                matmul(2 * mg, 2 * cg, bp, d, Operand::plain(xt), prod, false, Threads::One);
                let w2 = 2 * cg;
                for m in 0..mg {
                    let (top, bottom) = prod[2 * m * w2..(2 * m + 2) * w2].split_at(w2);
                    let at = g * pairs + m * cg;
                    for c in 0..cg {
                        re[at + c] = top[2 * c] + bottom[2 * c + 1];
                        im[at + c] = top[2 * c + 1] - bottom[2 * c];
                    }
                }
            }
        });
        // The taps of the inverse: dw_g [pairs, r²] = c_gᵀ [pairs, 2S] · T [2S, r²].
        let rr = s.kh * s.kw;
        let t = dft_taps(n, s.kh, s.kw, true);
        for g in 0..s.groups {
            let cgt = Operand::strided_t(&sc.c[g * pairs..], s.groups * pairs);
            let dwg = &mut dw[g * pairs * rr..(g + 1) * pairs * rr];
            matmul(pairs, rr, 2 * pts, cgt, Operand::plain(&t), dwg, false, Threads::Pool);
        }
        if let Some(dx) = dx {
            // dX[ξ] = W[ξ]ᵀ · dY[ξ]: the transpose of conj(W)'s real block is W's.
            point_products(s, (s.in_c, s.out_c), batch, &sc.b, true, spectra, &mut sc.a);
            planes_of_spectra(&p, s.in_c, batch, (s.in_h, s.in_w), s.pad, &sc.a, None, &mut sc.c, dx);
        }
    });
}
