//! 2-D convolution with stride, zero padding and groups (the paper's two-GPU split), NCHW.
//!
//! Shapes: `x [B, C, H, W]`, `w [M, C/G, KH, KW]` (PyTorch layout), `b [M]`,
//! `y [B, M, OH, OW]` with `OH = (H + 2P - KH)/S + 1`, `OW = (W + 2P - KW)/S + 1`.
//!
//! Forward, per image and group g (im2col + one matrix product):
//! `col_g [C/G·KH·KW, OH·OW]`, `y_g [M/G, OH·OW] = w_g [M/G, C/G·KH·KW] · col_g + b_g`.
//!
//! Backward: `dw_g += dy_g · col_gᵀ`, `db += Σ_{oh,ow} dy`, `dcol_g = w_gᵀ · dy_g`, then col2im
//! scatters `dcol` back onto `dx`. The im2col of the forward pass is recomputed rather than
//! stored: at batch 128 the columns of conv2 alone would take 900 MB.
//!
//! Images are split into one contiguous chunk per thread; each thread runs single-threaded
//! products (small matrices scale better that way than one product split in two) and, in the
//! backward pass, accumulates its own `dw`, summed at the end in thread order so the result is
//! deterministic for a given thread count.

use super::winograd::{self, Tile};
use super::{fft, polyphase};
use crate::matmul::{Operand, Precision, Threads, matmul_in};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvShape {
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Rows of one group's column matrix: `C/G · KH · KW`.
    pub fn k_group(&self) -> usize {
        self.in_c / self.groups * self.kh * self.kw
    }
    pub fn m_group(&self) -> usize {
        self.out_c / self.groups
    }
    pub fn n(&self) -> usize {
        self.out_h() * self.out_w()
    }
    pub fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }
    pub fn out_len(&self) -> usize {
        self.out_c * self.n()
    }
    pub fn weight_len(&self) -> usize {
        self.out_c * self.k_group()
    }
    /// Multiply-adds for one image.
    pub fn macs(&self) -> usize {
        self.out_len() * self.k_group()
    }
}

/// Valid output range `[lo, hi)` along one axis for kernel offset `k`: the outputs whose input
/// coordinate `o*stride - pad + k` falls inside `[0, size)`.
#[inline]
pub(crate) fn valid_range(k: usize, pad: usize, stride: usize, size: usize, out: usize) -> (usize, usize) {
    let lo = if k >= pad { 0 } else { (pad - k).div_ceil(stride) };
    // o*stride + k - pad <= size - 1  <=>  o <= (size - 1 + pad - k) / stride
    let hi = if size + pad > k { ((size - 1 + pad - k) / stride + 1).min(out) } else { 0 };
    (lo.min(hi), hi)
}

/// Unrolls the channels `[c0, c0 + C/G)` of one image `x [C, H, W]` into `col [C/G·KH·KW, OH·OW]`,
/// its rows shared across the pool with `Threads::Pool` (see [`threads_within_image`]).
pub fn im2col(s: &ConvShape, x: &[f32], group: usize, col: &mut [f32], threads: Threads) {
    let n = s.out_h() * s.out_w();
    let col = &mut col[..s.k_group() * n];
    match threads {
        Threads::Pool => col.par_chunks_mut(n).enumerate().for_each(|(row, dst)| im2col_row(s, x, group, row, dst)),
        Threads::One => col.chunks_mut(n).enumerate().for_each(|(row, dst)| im2col_row(s, x, group, row, dst)),
    }
}

/// Row `row` of [`im2col`]: input channel `row / (KH·KW)` of the group, kernel offset
/// `(row / KW % KH, row % KW)`, at every output position.
fn im2col_row(s: &ConvShape, x: &[f32], group: usize, row: usize, dst: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let plane = s.in_h * s.in_w;
    let (c, ki, kj) = (group * (s.in_c / s.groups) + row / (s.kh * s.kw), row / s.kw % s.kh, row % s.kw);
    let xc = &x[c * plane..(c + 1) * plane];
    let (ylo, yhi) = valid_range(ki, s.pad, s.stride, s.in_h, oh);
    let (xlo, xhi) = valid_range(kj, s.pad, s.stride, s.in_w, ow);
    dst[..ylo * ow].fill(0.0);
    dst[yhi * ow..].fill(0.0);
    for y in ylo..yhi {
        let iy = y * s.stride + ki - s.pad;
        let d = &mut dst[y * ow..(y + 1) * ow];
        d[..xlo].fill(0.0);
        d[xhi..].fill(0.0);
        let src = &xc[iy * s.in_w..(iy + 1) * s.in_w];
        if s.stride == 1 {
            let ix0 = xlo + kj - s.pad;
            d[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
        } else if xhi > xlo {
            let ix0 = xlo * s.stride + kj - s.pad;
            for (v, &sv) in d[xlo..xhi].iter_mut().zip(src[ix0..].iter().step_by(s.stride)) {
                *v = sv;
            }
        }
    }
}

/// Adjoint of [`im2col`]: adds `col [C/G·KH·KW, OH·OW]` back onto the group's channels of `dx`.
pub fn col2im(s: &ConvShape, col: &[f32], group: usize, dx: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let cg = s.in_c / s.groups;
    let plane = s.in_h * s.in_w;
    let mut row = 0;
    for c in group * cg..(group + 1) * cg {
        let xc = &mut dx[c * plane..(c + 1) * plane];
        for ki in 0..s.kh {
            let (ylo, yhi) = valid_range(ki, s.pad, s.stride, s.in_h, oh);
            for kj in 0..s.kw {
                let (xlo, xhi) = valid_range(kj, s.pad, s.stride, s.in_w, ow);
                let src = &col[row * oh * ow..(row + 1) * oh * ow];
                row += 1;
                for y in ylo..yhi {
                    let iy = y * s.stride + ki - s.pad;
                    let d = &mut xc[iy * s.in_w..(iy + 1) * s.in_w];
                    let sr = &src[y * ow..(y + 1) * ow];
                    if s.stride == 1 {
                        let ix0 = xlo + kj - s.pad;
                        for (dv, &sv) in d[ix0..ix0 + (xhi - xlo)].iter_mut().zip(&sr[xlo..xhi]) {
                            *dv += sv;
                        }
                    } else {
                        for xo in xlo..xhi {
                            d[xo * s.stride + kj - s.pad] += sr[xo];
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// This thread's im2col buffer, kept across calls: see [`with_col`].
    static COL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's im2col buffer of at least `len` values (contents unspecified:
/// every user overwrites what it reads), taken out for the call and put back after. A fresh
/// buffer each call cost the paper net ~1 ms an image at batch 1 (12 MB of new pages a forward
/// pass, zeroed by the kernel at first touch); a nested call finds it empty and allocates.
fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    crate::threads::with_taken(&COL, |col| {
        if col.len() < len {
            col.resize(len, 0.0);
        }
        f(&mut col[..len])
    })
}

/// `db [M] = Σ dy [B, M, plane]` over images and pixels: a convolution's bias gradient, the
/// channels shared across the pool, each plane summed in 16 lanes ([`crate::tensor::sum_f32`]),
/// the images in order. Serial and one value at a time, as Winograd's and the FFT's backward
/// did, it took ~15 ms of conv1's backward at batch 64 (18.6M values at an add's latency each)
/// with the other core idle. (im2col's backward sums its own per-chunk partials, in the order
/// tests/pinned.rs pins.)
pub(crate) fn bias_gradient(dy: &[f32], batch: usize, plane: usize, db: &mut [f32]) {
    let ol = db.len() * plane;
    assert!(dy.len() >= batch * ol, "dy holds {} values, not {batch} images of {ol}", dy.len());
    db.par_iter_mut().enumerate().for_each(|(m, d)| {
        *d = (0..batch).map(|i| crate::tensor::sum_f32(&dy[i * ol + m * plane..][..plane])).sum();
    });
}

/// Splits `batch` images into one contiguous run per rayon thread.
pub(crate) fn image_chunks(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// How one convolution layer computes: what `--conv` resolves to for its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvAlgo {
    /// im2col and one matrix product per image and group: any shape.
    Im2col,
    /// Winograd F(m×m, r×r) ([`winograd`]): 3×3 and 5×5 stride-1 layers, forward and both
    /// gradients.
    Winograd(Tile),
    /// Winograd over the input's phases ([`polyphase`]): strided layers whose phases' kernels
    /// are 3×3 (conv1's 11×11 by 4), forward and both gradients.
    Polyphase(Tile),
    /// FFT convolution ([`fft`]): stride-1 layers on maps up to 64 with padding, forward and
    /// both gradients, from `min_batch` images ([`FFT_MIN_BATCH`] when chosen by `auto`, 1 when
    /// asked for); below, im2col in training and Winograd where it applies in f32 evaluation
    /// ([`ConvAlgo::for_eval`]).
    Fft { min_batch: usize },
}

/// `--conv auto|im2col|winograd|fft`: the algorithm asked for, resolved per layer by
/// [`ConvChoice::resolve_in`] (its shape and the precision of its products).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ConvChoice {
    /// Winograd on 3×3 layers where it saves at least a third of the multiplies and the layer
    /// has 16 or more input channels a group (fewer, and its transforms cost more than they
    /// save); FFT on wide 5×5 layers from 8 images (below: im2col, or F(2×2, 5×5) in f32
    /// evaluation, [`ConvAlgo::for_eval`]); im2col elsewhere (see [`ConvChoice::resolve`]).
    #[default]
    Auto,
    Im2col,
    /// Winograd on every layer it applies to (3×3 and 5×5, stride 1), im2col on the others.
    Winograd,
    /// FFT on every layer it applies to (stride 1, maps up to 64 with padding), im2col on the
    /// others.
    Fft,
}

impl ConvChoice {
    /// The algorithm for a layer of shape `s`: Winograd's tile is the one with fewer multiplies
    /// for the map (the smaller tile on a tie: less rounding).
    pub fn resolve(self, s: &ConvShape) -> ConvAlgo {
        let wide = s.in_c / s.groups >= 16;
        match self {
            ConvChoice::Im2col => return ConvAlgo::Im2col,
            ConvChoice::Fft if fft::applies(s) => return ConvAlgo::Fft { min_batch: 1 },
            ConvChoice::Fft => return ConvAlgo::Im2col,
            // FFT where it does at most a third of direct convolution's multiplies, on kernels
            // of 5×5 and more (3×3 ones save as much by Winograd's F(4×4), in real arithmetic
            // and cheaper transforms).
            ConvChoice::Auto
                if s.kh.min(s.kw) >= 5
                    && wide
                    && fft::applies(s)
                    && 3 * fft::multiplies(s) <= s.kh * s.kw * s.out_h() * s.out_w() =>
            {
                return ConvAlgo::Fft { min_batch: FFT_MIN_BATCH };
            }
            ConvChoice::Winograd | ConvChoice::Auto if polyphase::applies(s) => return Self::polyphase(self, s),
            _ if !winograd::applies(s) => return ConvAlgo::Im2col,
            _ => {}
        }
        let (oh, ow) = (s.out_h(), s.out_w());
        let r = s.kh;
        // F(5×5) only on 64 or more input channels a group: its 7×7 input transform takes up to 6
        // terms a row to F(4×4)'s 4, and on fewer channels that outweighs the products it saves
        // (the paper's conv1 over phases, 48 channels: 108-118 against 103-106 ms forward and
        // backward, Zen 4, batch 64; conv3-5, 192-256 channels: 5-18% faster).
        let tiles = [Tile::F2, Tile::F4, Tile::F5]
            .into_iter()
            .filter(|t| t.fits(r) && (*t != Tile::F5 || s.in_c / s.groups >= 64));
        let tile = tiles.min_by_key(|t| t.multiplies(r, oh, ow)).unwrap_or(Tile::F2);
        let saves_a_third = 3 * tile.multiplies(r, oh, ow) <= 2 * r * r * oh * ow;
        match self {
            // F(2×2, 5×5) on the paper's conv2 (48 input channels a group) measured slower than
            // im2col (Zen 3, batch 64: forward 433 vs 325 ms, backward 913 vs 715 ms): its
            // per-point products sum over only 48 channels where im2col's sum over 1,200.
            ConvChoice::Auto if r == 5 => ConvAlgo::Im2col,
            ConvChoice::Auto if !(saves_a_third && wide) => ConvAlgo::Im2col,
            _ => ConvAlgo::Winograd(tile),
        }
    }
}

impl ConvChoice {
    /// [`ConvChoice::resolve`] for products in `precision`. With bf16 products Winograd takes
    /// F(2×2) tiles: the transformed operands are rounded to bf16, and F(4×4)'s transforms grow
    /// that error (measured against f32 on conv3's shape: forward 3.1e-3, weight gradient
    /// 1.3e-2, data gradient 2.5e-2 relative, against bf16 im2col's 5.9e-4, 2.2e-3, 2.3e-3;
    /// F(2×2): 7.1e-4, 3.1e-3, 4.0e-3) for 5% more speed on the paper net. And `auto` takes
    /// im2col where f32 would compute over phases: on the paper's conv1 bf16 im2col measured
    /// faster than polyphase Winograd (AMD EPYC family 25 model 17, Zen 4, AVX512-BF16, batch 64
    /// training, forward + backward: 174 ms against 205 in bf16 and 228 in f32). FFT stays
    /// (its products stay f32: in bf16 they measured no faster, 177 against 174 ms on conv2;
    /// bf16 im2col took 321).
    pub fn resolve_in(self, s: &ConvShape, precision: Precision) -> ConvAlgo {
        if precision == Precision::F32 {
            return self.resolve(s);
        }
        match self.resolve(s) {
            ConvAlgo::Polyphase(_) if self == ConvChoice::Auto => ConvAlgo::Im2col,
            ConvAlgo::Polyphase(_) => ConvAlgo::Polyphase(Tile::F2),
            // `auto`'s rule again with F(2×2)'s count: on small maps it can fail where F(4×4)'s
            // passed.
            ConvAlgo::Winograd(_)
                if self == ConvChoice::Auto
                    && 3 * Tile::F2.multiplies(s.kh, s.out_h(), s.out_w())
                        > 2 * s.kh * s.kw * s.out_h() * s.out_w() =>
            {
                ConvAlgo::Im2col
            }
            ConvAlgo::Winograd(_) => ConvAlgo::Winograd(Tile::F2),
            a => a,
        }
    }

    /// A strided layer over its phases: the stride-1 layer's choice ([`ConvChoice::resolve`]),
    /// by `auto` only where it also saves a third of the strided layer's multiplies.
    fn polyphase(self, s: &ConvShape) -> ConvAlgo {
        let t = polyphase::phase_shape(s);
        match self.resolve(&t) {
            ConvAlgo::Winograd(tile) => {
                let direct = (s.in_c / s.groups) * s.kh * s.kw * s.out_h() * s.out_w();
                let ours = (t.in_c / t.groups) * tile.multiplies(t.kh, t.out_h(), t.out_w());
                if self == ConvChoice::Winograd || 3 * ours <= 2 * direct {
                    ConvAlgo::Polyphase(tile)
                } else {
                    ConvAlgo::Im2col
                }
            }
            _ => ConvAlgo::Im2col,
        }
    }
}

/// Who works on one image, the rule of every kernel: the whole pool when a batch has fewer
/// images than threads (one-image latency), otherwise one thread (each has its own images).
pub(crate) fn threads_within_image(batch: usize) -> Threads {
    if batch < rayon::current_num_threads() { Threads::Pool } else { Threads::One }
}

/// Fewest images for which a Winograd layer computes by Winograd in training, forward and
/// backward: the weights change every step, so the kernels' transform is redone every step, and
/// below this it is not amortised and each product has too few tiles to run near the
/// matrix-multiply peak. Measured on the paper net at batch 1 (Zen 3, 2 threads): conv3-5 took
/// 12.3 ms by Winograd, 9.0 ms by im2col. In evaluation the forward pass computes by Winograd at
/// any batch: its transformed kernels are kept while the weights stay the same
/// ([`winograd::KernelCache`]); at one image conv3-5 then took a median 6.2 ms against im2col's
/// 6.8 in ten alternating rounds (per-round ratios 0.85-1.52; the whole image 30.0 against 31.1
/// ms, inconclusive).
pub const WINOGRAD_MIN_BATCH: usize = 4;

/// Fewest images a thread for which a layer resolved to F(5×5, 3×3) computes by it, in training
/// and evaluation; below, by F(4×4). On a 13×13 map F(5×5) makes 9 tiles an image to F(4×4)'s 16,
/// so a thread's block of fewer images gives each of its 49 products too few tiles to run near
/// the matrix-multiply peak. Measured on the paper's conv3-5 in evaluation (AMD EPYC family 25
/// model 17, Zen 4, 2 threads, ms, F(4×4) against F(5×5), two runs each): 2 images 5.6-6.1
/// against 8.5-9.7, 4 7.8-9.4 against 9.8-10.3, 8 16.5-18.2 against 17.0-17.6, 16 33.6-38.0
/// against 27.8-31.4, 32 66.5-69.2 against 58.4-63.0.
pub const F5_MIN_IMAGES_A_THREAD: usize = 8;

/// Fewest images for which a layer `auto` resolved to FFT computes by it, in training and
/// evaluation: its transforms run 8 images side by side (one per SIMD lane), and each point's
/// product reads a block of the kernels' spectra (27 times the kernels' size on conv2) for a
/// few columns. Measured on the paper's conv2 (Zen 3, 2 threads, ms, FFT against im2col, two
/// runs each): evaluation at 2 images 13.8-14.6 against 6.6-10.8, at 4 15.5-16.8 against
/// 13.6-14.1, at 8 20.8-23.4 against 31.0-33.6; training (forward + backward) at 4 60-64
/// against 36-37, at 8 59-61 against 72-73.
pub const FFT_MIN_BATCH: usize = 8;

impl ConvAlgo {
    /// What a layer resolved to `self` computes by for `batch` images in training (im2col below
    /// [`WINOGRAD_MIN_BATCH`], or FFT's `min_batch`).
    pub fn for_batch(self, batch: usize) -> ConvAlgo {
        match self {
            ConvAlgo::Winograd(_) | ConvAlgo::Polyphase(_) if batch < WINOGRAD_MIN_BATCH => ConvAlgo::Im2col,
            ConvAlgo::Fft { min_batch } if batch < min_batch => ConvAlgo::Im2col,
            a => a.tile_for(batch),
        }
    }

    /// F(5×5) as F(4×4) below [`F5_MIN_IMAGES_A_THREAD`] images a thread; anything else as it is.
    fn tile_for(self, batch: usize) -> ConvAlgo {
        let few = image_chunks(batch) < F5_MIN_IMAGES_A_THREAD;
        match self {
            ConvAlgo::Winograd(Tile::F5) if few => ConvAlgo::Winograd(Tile::F4),
            ConvAlgo::Polyphase(Tile::F5) if few => ConvAlgo::Polyphase(Tile::F4),
            a => a,
        }
    }

    /// What it computes by in evaluation with products in `precision`, where Winograd's
    /// kernels are kept across calls (at any batch in f32) and FFT's too (from its
    /// `min_batch`). With bf16 products Winograd (F(2×2)) starts at [`WINOGRAD_MIN_BATCH`] as in
    /// training: below, its bf16 products repack the f32 transformed kernels at every call, for
    /// a few tiles each. Measured on the paper's conv3-5 (AMD EPYC family 25 model 17, Zen 4,
    /// 2 threads, evaluation, ms, Winograd against im2col): 1 image 4.3 against 3.35, 2 images
    /// 6.8 against 5.7, 4 images 10.7 against 11.0, 8 images 19.9 against 21.7. The same rule
    /// sends a layer over phases (`--conv winograd` on conv1; `auto` takes im2col there in bf16
    /// anyway) to im2col: its products are Winograd's.
    ///
    /// F(5×5) computes by F(4×4) below [`F5_MIN_IMAGES_A_THREAD`] images a thread, in either mode.
    ///
    /// An FFT layer (shape `s`) below its `min_batch` computes by Winograd in f32 where that
    /// applies (conv2's 5×5: F(2×2)), its kernels kept as FFT's are, and by im2col otherwise.
    /// Measured on the paper's conv2 (AMD EPYC family 25 model 17, Zen 4, 2 threads,
    /// evaluation, caches flushed before each call, least of 57 calls, ms, F(2×2, 5×5) against
    /// im2col, two runs): 1 image 1.9-3.2 against 2.9-4.9, 3 images 7.0-7.2 against 9.2-9.4,
    /// 4 6.9-7.0 against 9.3-9.4, 6 10.2 against 13.8-13.9; against FFT at 8 images 13.4-13.9
    /// against 13.5-15.0, at 16 26.5-29.4 against 17.5-17.7. (In training F(2×2, 5×5)
    /// transforms the kernels at every step and measured slower than im2col: see
    /// [`ConvChoice::resolve`].)
    pub fn for_eval(self, s: &ConvShape, batch: usize, precision: Precision) -> ConvAlgo {
        match self {
            ConvAlgo::Fft { min_batch } if batch < min_batch => match ConvChoice::Winograd.resolve(s) {
                w @ ConvAlgo::Winograd(_) if precision == Precision::F32 => w,
                _ => ConvAlgo::Im2col,
            },
            ConvAlgo::Winograd(_) | ConvAlgo::Polyphase(_)
                if precision != Precision::F32 && batch < WINOGRAD_MIN_BATCH =>
            {
                ConvAlgo::Im2col
            }
            a => a.tile_for(batch),
        }
    }
}

/// `y = conv(x, w) + b` with the layer's algorithm; im2col's and Winograd's products in
/// `precision` (FFT's are f32: see [`ConvChoice::resolve_in`]); Winograd's and FFT's
/// transformed kernels kept in `kernels` for the next call. `algo` is taken as given
/// (the layer applies [`ConvAlgo::for_batch`] in training).
#[allow(clippy::too_many_arguments)]
pub fn forward_with(
    algo: ConvAlgo,
    precision: Precision,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    batch: usize,
    kernels: &mut winograd::KernelCache,
) {
    match algo {
        ConvAlgo::Im2col => forward_in(precision, s, x, w, b, y, batch),
        ConvAlgo::Winograd(tile) => winograd::forward_cached(s, x, w, b, y, batch, tile, precision, kernels),
        ConvAlgo::Polyphase(tile) => polyphase::forward(s, x, w, b, y, batch, tile, precision, kernels),
        ConvAlgo::Fft { .. } => {
            let spectra = kernels.get(algo, w, |u| fft::kernel_spectra(s, w, u));
            fft::forward_with_spectra(s, x, spectra, b, y, batch)
        }
    }
}

/// `y = conv(x, w) + b` for a batch, by im2col. `x.len() = B·in_len`, `y.len() = B·out_len`.
pub fn forward(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], batch: usize) {
    forward_in(Precision::F32, s, x, w, b, y, batch)
}

/// [`forward`] with the products in `precision`.
pub fn forward_in(precision: Precision, s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], batch: usize) {
    let (il, ol) = (s.in_len(), s.out_len());
    let per = image_chunks(batch);
    let threads = threads_within_image(batch);
    let len = s.k_group() * s.n();
    y[..batch * ol]
        .par_chunks_mut(per * ol)
        .zip(x[..batch * il].par_chunks(per * il))
        .for_each(|(ys, xs)| with_col(len, |col| forward_images(precision, s, xs, w, b, ys, col, threads)));
}

/// [`forward_in`] of a run of images on one thread (or, one image, with the pool's help).
#[allow(clippy::too_many_arguments)]
fn forward_images(
    precision: Precision,
    s: &ConvShape,
    xs: &[f32],
    w: &[f32],
    b: &[f32],
    ys: &mut [f32],
    col: &mut [f32],
    threads: Threads,
) {
    let (kg, mg, n) = (s.k_group(), s.m_group(), s.n());
    let (il, ol) = (s.in_len(), s.out_len());
    for (yi, xi) in ys.chunks_mut(ol).zip(xs.chunks(il)) {
        for (m, row) in yi.chunks_mut(n).enumerate() {
            row.fill(b[m]);
        }
        for g in 0..s.groups {
            im2col(s, xi, g, col, threads);
            let wg = &w[g * mg * kg..(g + 1) * mg * kg];
            let yg = &mut yi[g * mg * n..(g + 1) * mg * n];
            matmul_in(precision, mg, n, kg, Operand::plain(wg), Operand::plain(col), yg, true, threads);
        }
    }
}

/// Gradients of the convolution with the layer's algorithm (`dw`, `db` overwritten; `dx` too
/// when asked for); the FFT's kernel spectra from `kernels` (those of the forward pass).
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    algo: ConvAlgo,
    precision: Precision,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    batch: usize,
    kernels: &mut winograd::KernelCache,
) {
    match (algo.for_batch(batch), dx) {
        (ConvAlgo::Polyphase(tile), dx) => polyphase::backward(s, x, w, dy, dw, db, dx, batch, tile, precision),
        (a @ ConvAlgo::Fft { .. }, dx) => {
            let spectra = kernels.get(a, w, |u| fft::kernel_spectra(s, w, u));
            fft::backward(s, x, spectra, dy, dw, db, dx.map(|d| &mut d[..batch * s.in_len()]), batch)
        }
        (ConvAlgo::Winograd(tile), dx) => {
            winograd::backward_weights(s, x, dy, dw, db, batch, tile, precision);
            if let Some(dx) = dx {
                winograd::backward_data(s, w, dy, &mut dx[..batch * s.in_len()], batch, tile, precision);
            }
        }
        (ConvAlgo::Im2col, dx) => backward_in(precision, s, x, w, dy, dw, db, dx, batch),
    }
}

/// Gradients of the convolution by im2col. `dw` and `db` are overwritten; `dx`, when asked
/// for, too.
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
) {
    backward_in(Precision::F32, s, x, w, dy, dw, db, dx, batch)
}

/// [`backward`] with the products in `precision`.
#[allow(clippy::too_many_arguments)]
pub fn backward_in(
    precision: Precision,
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
    batch: usize,
) {
    let (kg, mg, n) = (s.k_group(), s.m_group(), s.n());
    let (il, ol) = (s.in_len(), s.out_len());
    let per = image_chunks(batch);
    let threads = threads_within_image(batch);
    let want_dx = dx.is_some();
    let mut dx_owned: Vec<f32> = Vec::new();
    let dx: &mut [f32] = match dx {
        Some(d) => &mut d[..batch * il],
        None => &mut dx_owned,
    };
    // One (dw, db) partial per chunk, reduced in chunk order below.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dy[..batch * ol]
        .par_chunks(per * ol)
        .zip(x[..batch * il].par_chunks(per * il))
        .map(|(dys, xs)| {
            let mut pdw = vec![0.0f32; w.len()];
            let mut pdb = vec![0.0f32; s.out_c];
            with_col(kg * n, |col| {
                for (dyi, xi) in dys.chunks(ol).zip(xs.chunks(il)) {
                    for (m, row) in dyi.chunks(n).enumerate() {
                        pdb[m] += row.iter().sum::<f32>();
                    }
                    for g in 0..s.groups {
                        im2col(s, xi, g, col, threads);
                        let dyg = &dyi[g * mg * n..(g + 1) * mg * n];
                        let dwg = &mut pdw[g * mg * kg..(g + 1) * mg * kg];
                        matmul_in(precision, mg, kg, n, Operand::plain(dyg), Operand::t(col), dwg, true, threads);
                    }
                }
            });
            (pdw, pdb)
        })
        .collect();
    dw.fill(0.0);
    db.fill(0.0);
    for (pdw, pdb) in &partials {
        dw.iter_mut().zip(pdw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pdb).for_each(|(a, b)| *a += b);
    }
    if want_dx {
        dx.par_chunks_mut(per * il).zip(dy[..batch * ol].par_chunks(per * ol)).for_each(|(dxs, dys)| {
            with_col(kg * n, |col| {
                for (dxi, dyi) in dxs.chunks_mut(il).zip(dys.chunks(ol)) {
                    dxi.fill(0.0);
                    for g in 0..s.groups {
                        let wg = &w[g * mg * kg..(g + 1) * mg * kg];
                        let dyg = &dyi[g * mg * n..(g + 1) * mg * n];
                        matmul_in(precision, kg, n, mg, Operand::t(wg), Operand::plain(dyg), col, false, threads);
                        col2im(s, col, g, dxi);
                    }
                }
            });
        });
    }
}

/// Direct 7-loop convolution: the reference the tests hold the fast path to.
pub fn forward_naive(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32], batch: usize) -> Vec<f32> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (cg, mg) = (s.in_c / s.groups, s.m_group());
    let mut y = vec![0.0f32; batch * s.out_len()];
    for bi in 0..batch {
        for m in 0..s.out_c {
            let g = m / mg;
            for yo in 0..oh {
                for xo in 0..ow {
                    let mut acc = b[m] as f64;
                    for c in 0..cg {
                        for ki in 0..s.kh {
                            for kj in 0..s.kw {
                                let iy = (yo * s.stride + ki) as isize - s.pad as isize;
                                let ix = (xo * s.stride + kj) as isize - s.pad as isize;
                                if iy < 0 || ix < 0 || iy >= s.in_h as isize || ix >= s.in_w as isize {
                                    continue;
                                }
                                let xv = x[bi * s.in_len()
                                    + (g * cg + c) * s.in_h * s.in_w
                                    + iy as usize * s.in_w
                                    + ix as usize];
                                let wv = w[((m * cg + c) * s.kh + ki) * s.kw + kj];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[bi * s.out_len() + (m * oh + yo) * ow + xo] = acc as f32;
                }
            }
        }
    }
    y
}
