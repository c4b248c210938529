//! Winograd convolution F(m×m, r×r) (Lavin & Gray 2016) for 3×3 and 5×5 stride-1 layers: conv2-5
//! of the paper net, 77% of its multiply-adds.
//!
//! An output tile `Y [m, m]` of one channel pair comes from an input tile `d [α, α]`,
//! α = m + r - 1, and the kernel `g [r, r]` as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over the input
//! channels, the element-wise product becomes α² independent matrix products, one per point ξ
//! of the transformed tile:
//! `M[ξ] [M/G, T] = U[ξ] [M/G, C/G] · V[ξ] [C/G, T]`, with `U = G g Gᵀ` for every kernel and
//! `V = Bᵀ d B` for every input tile (T tiles of all the images in a block). F(2×2, 3×3) takes
//! 16 multiplies for 4 outputs where direct convolution takes 36 (2.25× fewer), F(4×4, 3×3) 36
//! for 16 (4× fewer), F(5×5, 3×3) 49 for 25 (4.59× fewer; on a 13×13 map, with the tiles'
//! overhang, 3.45× against F(4×4)'s 2.64×: 23% fewer multiplies on conv3-5), F(2×2, 5×5) 36 for
//! 4 where direct takes 100 (2.8× fewer), less the tiles' overhang past the map's edge. The
//! transforms are not free: at AlexNet's sizes they take about a quarter of a forward pass to
//! the products' three fifths (perf, conv3-5 at batch 64,
//! Zen 4); rounding grows with the tile (F(4×4) keeps ~1e-6 relative error in
//! f32 on AlexNet's layers, measured by the tests against the direct kernels).
//!
//! The data gradient of a stride-1 convolution is itself one: `dx = conv(dy, w')` with
//! `w'[c, m] = w[m, c]` rotated by 180° and padding `r - 1 - pad`, so it takes the same path. The
//! weight gradient uses the same transforms backwards ([`backward_weights`]): the gradient of
//! `U` is one product per point over all the batch's tiles, `Σ (A dY Aᵀ)[ξ] · V[ξ]ᵀ`, and
//! `∂L/∂g = Gᵀ (∂L/∂U) G`.
//!
//! Layouts, per group g: `U [M/G][α²][C/G]` (a row of kernels per output channel), `V [C/G][α²][T]`
//! (a row of tiles per input channel), so that the transforms of one channel write one
//! contiguous block and the products read strided slices; `M [α²][M/G][T]`.

use super::conv::{ConvShape, image_chunks, threads_within_image};
use crate::matmul::{Operand, Precision, Threads, matmul_in};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The output tile of a Winograd convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 transformed tiles, 2.25× fewer multiplies, the least rounding.
    F2,
    /// F(4×4, 3×3): 6×6 transformed tiles, 4× fewer multiplies.
    F4,
    /// F(5×5, 3×3): 7×7 transformed tiles, 4.59× fewer multiplies; on 13×13 maps (conv3-5) its
    /// tiles fit the map better (3 a side, 1.33× overhang, against F(4×4)'s 4 a side and 1.51×),
    /// which makes 23% fewer multiplies there than F(4×4).
    F5,
}

impl Tile {
    /// Outputs a side of one tile.
    pub fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
            Tile::F5 => 5,
        }
    }
    /// Multiplies of the products for an `oh×ow` map of `r×r` kernels, per input-output channel
    /// pair.
    pub fn multiplies(self, r: usize, oh: usize, ow: usize) -> usize {
        let (m, a) = (self.m(), self.m() + r - 1);
        oh.div_ceil(m) * ow.div_ceil(m) * a * a
    }
    /// Whether this tile has transforms for `r×r` kernels: all for 3×3, F(2×2) for 5×5 (F(4×4,
    /// 5×5) would need 8 points and round too much in f32).
    pub fn fits(self, r: usize) -> bool {
        r == 3 || (r == 5 && self == Tile::F2)
    }
}

/// Whether Winograd F(m×m, r×r) computes this convolution: 3×3 or 5×5 kernels, stride 1,
/// padding at most `r - 1` (so that its data gradient, padded by `r - 1 - pad`, is one too).
pub fn applies(s: &ConvShape) -> bool {
    s.kh == s.kw && (s.kh == 3 || s.kh == 5) && s.stride == 1 && s.pad < s.kh
}

/// The transforms of `tile` for the shape's kernels, handed to `f` (a generic function, as
/// a closure cannot be).
macro_rules! with_transforms {
    ($tile:expr, $s:expr, $f:ident($($arg:expr),*)) => {
        match ($tile, $s.kh) {
            (Tile::F2, 3) => $f(PointsF2, $($arg),*),
            (Tile::F4, 3) => $f(PointsF4, $($arg),*),
            (Tile::F5, 3) => $f(PointsF5, $($arg),*),
            (Tile::F2, 5) => $f(PointsF2R5, $($arg),*),
            (tile, r) => panic!("no Winograd transforms for {tile:?} with {r}x{r} kernels"),
        }
    };
}

/// The transforms of F(m×m, 3×3) with α = m + 2 points, as published, and their transposes
/// (derived once, at compile time), so that every product below is a constant matrix times
/// tiles or tiles times a constant matrix.
struct Transforms<const M: usize, const R: usize, const A: usize> {
    /// `Bᵀ [α, α]`: input tile to its transform.
    bt: [[f32; A]; A],
    /// `G [α, r]`: kernel to its transform.
    g: [[f32; R]; A],
    /// `Aᵀ [m, α]`: transformed product back to the output tile.
    at: [[f32; A]; M],
    b: [[f32; A]; A],
    gt: [[f32; A]; R],
    a: [[f32; M]; A],
}

impl<const M: usize, const R: usize, const A: usize> Transforms<M, R, A> {
    const fn new(bt: [[f32; A]; A], g: [[f32; R]; A], at: [[f32; A]; M]) -> Self {
        Self { bt, g, at, b: transpose(bt), gt: transpose(g), a: transpose(at) }
    }
}

const fn transpose<const R: usize, const C: usize>(m: [[f32; C]; R]) -> [[f32; R]; C] {
    let mut out = [[0.0f32; R]; C];
    let mut i = 0;
    while i < R {
        let mut j = 0;
        while j < C {
            out[j][i] = m[i][j];
            j += 1;
        }
        i += 1;
    }
    out
}

/// A tile's transforms as a type: each kernel below is compiled for one set of constants, so
/// that the zero coefficients are skipped and the ±1 ones folded at compile time (through a
/// reference the coefficients were loaded and tested for zero at run time: about a quarter of
/// the input transform's time, perf annotate on conv3-5 at batch 64).
trait Points<const M: usize, const R: usize, const A: usize>: Copy + Send + Sync {
    const T: Transforms<M, R, A>;
}

#[derive(Clone, Copy)]
struct PointsF2;
impl Points<2, 3, 4> for PointsF2 {
    const T: Transforms<2, 3, 4> = F2;
}

#[derive(Clone, Copy)]
struct PointsF4;
impl Points<4, 3, 6> for PointsF4 {
    const T: Transforms<4, 3, 6> = F4;
}

#[derive(Clone, Copy)]
struct PointsF5;
impl Points<5, 3, 7> for PointsF5 {
    const T: Transforms<5, 3, 7> = F5;
}

#[derive(Clone, Copy)]
struct PointsF2R5;
impl Points<2, 5, 6> for PointsF2R5 {
    const T: Transforms<2, 5, 6> = F2R5;
}

/// Points 0, 1, -1 and ∞.
const F2: Transforms<2, 3, 4> = Transforms::new(
    [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]],
    [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
    [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]],
);

/// Points 0, ±1, ±2 and ∞ (Lavin & Gray's F(4×4, 3×3)).
const F4: Transforms<4, 3, 6> = Transforms::new(
    [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ],
    [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ],
    [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ],
);

/// Points 0, ±1, ±2, 1/2 and ∞: F(4×4, 3×3)'s and one more, 1/2 (the next smallest in size and
/// rounding: every coefficient of `Bᵀ` and `Aᵀ` is a short binary fraction, exact in f32). Built by
/// the Cook-Toom construction: `Aᵀ` holds the powers `p^i` of each finite point (∞ the last
/// output's), `G` the powers `p^k / Π_{q≠p}(p − q)`, and `Bᵀ` is the one matrix that makes
/// `Aᵀ [(G g) ⊙ (Bᵀ d)]` the correlation of `d` with `g` (solved exactly in rationals, and checked
/// by the tests against direct convolution). Rounding, simulated in f32 over 256 channels: 1.6×
/// F(4×4)'s (mean relative error 6.8e-6 against 4.2e-6).
const F5: Transforms<5, 3, 7> = Transforms::new(
    [
        [-2.0, 4.0, 5.0 / 2.0, -5.0, -1.0 / 2.0, 1.0, 0.0],
        [0.0, 2.0, -2.0, -9.0 / 2.0, 1.0 / 2.0, 1.0, 0.0],
        [0.0, -2.0, 6.0, -7.0 / 2.0, -3.0 / 2.0, 1.0, 0.0],
        [0.0, 1.0, -3.0 / 2.0, -2.0, 3.0 / 2.0, 1.0, 0.0],
        [0.0, -1.0, 5.0 / 2.0, 0.0, -5.0 / 2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -2.0, 4.0, 5.0 / 2.0, -5.0, -1.0 / 2.0, 1.0],
    ],
    [
        [-1.0 / 2.0, 0.0, 0.0],
        [-1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
        [1.0 / 9.0, -1.0 / 9.0, 1.0 / 9.0],
        [1.0 / 36.0, 1.0 / 18.0, 1.0 / 9.0],
        [-1.0 / 60.0, 1.0 / 30.0, -1.0 / 15.0],
        [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
        [0.0, 0.0, 1.0],
    ],
    [
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 1.0 / 2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 1.0 / 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0 / 8.0, 0.0],
        [0.0, 1.0, 1.0, 16.0, 16.0, 1.0 / 16.0, 1.0],
    ],
);

/// F(2×2, 5×5) on the points of F(4×4, 3×3) (0, ±1, ±2, ∞): the same six points, so the same
/// input transform `Bᵀ`; `G [6, 5]` holds `p^k / Π_{q≠p}(p − q)` for each finite point p, and
/// `Aᵀ [2, 6]` the powers `p^0, p^1` (∞ contributes to the last output only).
const F2R5: Transforms<2, 5, 6> = Transforms::new(
    F4.bt,
    [
        [1.0 / 4.0, 0.0, 0.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0, 2.0 / 3.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ],
    [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 1.0]],
);

/// Tiles transformed together, one per SIMD lane: the transforms are the same arithmetic on
/// every tile, so eight tiles side by side make 8-wide vector operations of them, and the
/// transformed values of consecutive tiles land contiguous in `V` (and are read so from `M`).
const L: usize = 8;

/// An `R×C` matrix of L tiles side by side: element (i, j) of tile `lane` is `[i][j][lane]`.
type Lanes<const R: usize, const C: usize> = [[[f32; L]; C]; R];

/// `out = l [R, K] · r [K, C]` for `r` a tile per lane; zero coefficients skipped. Written in
/// place, each element summed in a register and stored once (returned by value, these kilobyte
/// arrays were zeroed and copied by `memset` and `memcpy` calls).
#[inline(always)]
fn lanes_mul<const R: usize, const K: usize, const C: usize>(
    l: &[[f32; K]; R],
    r: &Lanes<K, C>,
    out: &mut Lanes<R, C>,
) {
    for (li, oi) in l.iter().zip(out.iter_mut()) {
        for (j, o) in oi.iter_mut().enumerate() {
            let mut acc = [0.0f32; L];
            for (&coef, rp) in li.iter().zip(r) {
                if coef == 0.0 {
                    continue;
                }
                for (a, &x) in acc.iter_mut().zip(&rp[j]) {
                    *a += coef * x;
                }
            }
            *o = acc;
        }
    }
}

/// `l · r` for `l [R, K]` a tile per lane and `r [K, C]`, zero coefficients skipped; element
/// `(i, j)` handed to `emit(i, j, lanes)` as soon as it is summed, each element's terms added
/// in order of `p` from 0.0, as [`lanes_mul`] adds its.
#[inline(always)]
fn lanes_mul_r<const R: usize, const K: usize, const C: usize>(
    l: &Lanes<R, K>,
    r: &[[f32; C]; K],
    mut emit: impl FnMut(usize, usize, &[f32; L]),
) {
    for (i, li) in l.iter().enumerate() {
        for j in 0..C {
            let mut acc = [0.0f32; L];
            for (rp, lp) in r.iter().zip(li) {
                let coef = rp[j];
                if coef == 0.0 {
                    continue;
                }
                for (a, &x) in acc.iter_mut().zip(lp) {
                    *a += coef * x;
                }
            }
            emit(i, j, &acc);
        }
    }
}

/// `dst[..n] = lanes[..n]`, as one vector store when `n == L` (all but a block's last group).
/// The two cases are written differently on purpose: as two copies of different lengths, they
/// were merged into one `memcpy` call of a run-time length.
#[inline(always)]
fn store_lanes(dst: &mut [f32], lanes: &[f32; L], n: usize) {
    if n == L {
        let d: &mut [f32; L] = (&mut dst[..L]).try_into().expect("L values");
        *d = *lanes;
    } else {
        for (d, &v) in dst[..n].iter_mut().zip(lanes) {
            *d = v;
        }
    }
}

/// `lanes = src[..n]`, zero past `n`: [`store_lanes`]'s converse.
#[inline(always)]
fn load_lanes(lanes: &mut [f32; L], src: &[f32], n: usize) {
    if n == L {
        *lanes = *<&[f32; L]>::try_from(&src[..L]).expect("L values");
    } else {
        *lanes = std::array::from_fn(|i| if i < n { src[i] } else { 0.0 });
    }
}

/// Rows or images processed together: enough tiles that each product's `T` keeps the matrix
/// multiply efficient, few enough that `V` and `M` stay in the caches' reach.
const TARGET_TILES: usize = 256;

/// [`TARGET_TILES`] for the weight gradient: each block adds its products into the whole of
/// `∂L/∂U` (19 MB for the paper's conv3 in F(5×5)), so fewer, larger blocks read and write it
/// less. Measured with F(5×5) at batch 64 (Zen 4, 2 threads, the weight gradient alone, two runs
/// each, ms, 512 against 256): conv3 47.6-49.7 against 51.5-52.0, conv4 45.6-46.7 against
/// 47.4-48.7, conv5 34.7-36.1 against 35.7-36.2; F(4×4)'s conv3 gained nothing (56.7-57.9 against
/// 55.3-57.4).
const WEIGHT_TARGET_TILES: usize = 512;

/// `y = conv(x, w) + b` for a batch, as [`super::conv::forward`], for shapes where [`applies`].
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
) {
    let mut u = with_scratch(|scratch| std::mem::take(&mut scratch.u));
    with_transforms!(tile, s, kernel_transform(s, w, &mut u));
    with_transforms!(tile, s, forward_with(s, x, &u, b, y, batch, precision));
    with_scratch(|scratch| scratch.u = u);
}

/// The transformed kernels `U` of a layer, kept between calls by [`forward_cached`] and
/// recomputed when the weights change. With fixed weights (inference: `predict`, `serve`,
/// `eval`) the kernels are transformed once: the transform reads every weight and writes α²/r²
/// times as many values (4× for F(4×4, 3×3): 32 MB for conv3-5 of the paper net), which at one
/// image cost as much as the products it saved.
///
/// How a change is seen: a default cache keeps a copy of the weights and compares it at each
/// use (bit for bit, stopping at the first difference); one made by
/// [`KernelCache::invalidated_by_owner`] keeps no copy, and its owner calls
/// [`KernelCache::invalidate`] whenever the weights may have changed (a network's layer does,
/// whenever it lends its parameters mutably: the only way to change them). The comparison read
/// the weights and their copy at every call: 18 MB for the paper net's convolutions, ~0.6 ms of
/// its ~17 ms at one image.
#[derive(Clone, Default)]
pub struct KernelCache {
    /// What `u` holds: Winograd's `U` for a tile, or the FFT's spectra; `None`: nothing valid.
    algo: Option<super::conv::ConvAlgo>,
    /// The weights `u` was made from (empty when `owner_invalidates`).
    weights: Vec<f32>,
    owner_invalidates: bool,
    u: Vec<f32>,
}

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KernelCache {{ algo: {:?}, {} weights, owner invalidates: {}, {} transformed }}",
            self.algo,
            self.weights.len(),
            self.owner_invalidates,
            self.u.len()
        )
    }
}

impl KernelCache {
    /// A cache that trusts its owner to call [`KernelCache::invalidate`] at every change of
    /// the weights, instead of comparing them at each use.
    pub fn invalidated_by_owner() -> Self {
        KernelCache { owner_invalidates: true, ..KernelCache::default() }
    }

    /// Forgets what the cache holds (its buffer is kept for the next transform): the weights
    /// may have changed.
    pub fn invalidate(&mut self) {
        self.algo = None;
    }

    /// Whether the cache holds `algo`'s transform and will use it without looking at the weights
    /// (a cache its owner invalidates): a caller that derives the weights it would pass (conv1's
    /// phase kernels) can skip deriving them.
    pub(crate) fn holds_without_weights(&self, algo: super::conv::ConvAlgo) -> bool {
        self.owner_invalidates && self.algo == Some(algo)
    }

    /// `U` for `w` with `tile`, transformed now only if it differs from the last call's.
    fn kernels(&mut self, s: &ConvShape, w: &[f32], tile: Tile) -> &[f32] {
        self.get(super::conv::ConvAlgo::Winograd(tile), w, |u| with_transforms!(tile, s, kernel_transform(s, w, u)))
    }

    /// What `transform` makes of `w` for `algo`, recomputed only when `algo` differs from the
    /// last call's, or `w` does (bit for bit; or, for a cache its owner invalidates, when it
    /// was invalidated since).
    pub(crate) fn get(
        &mut self,
        algo: super::conv::ConvAlgo,
        w: &[f32],
        transform: impl FnOnce(&mut Vec<f32>),
    ) -> &[f32] {
        let same = self.algo == Some(algo)
            && (self.owner_invalidates
                || (self.weights.len() == w.len()
                    && self.weights.iter().zip(w).all(|(p, q)| p.to_bits() == q.to_bits())));
        if !same {
            transform(&mut self.u);
            if !self.owner_invalidates {
                self.weights.clear();
                self.weights.extend_from_slice(w);
            }
            self.algo = Some(algo);
        }
        &self.u
    }
}

/// [`forward`] with the kernels' transform kept in `cache` across calls ([`KernelCache`]). `w`
/// is read only to compare or transform: when [`KernelCache::holds_without_weights`], it may be
/// empty.
#[allow(clippy::too_many_arguments)]
pub fn forward_cached(
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
    let u = cache.kernels(s, w, tile);
    with_transforms!(tile, s, forward_with(s, x, u, b, y, batch, precision))
}

/// `dx = ∂L/∂x` from `dy` (overwritten), as [`super::conv::backward`]'s, for shapes where
/// [`applies`]: the convolution of `dy` with the transposed, rotated kernels, padded by `2 - pad`.
#[allow(clippy::too_many_arguments)]
pub fn backward_data(
    s: &ConvShape,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    batch: usize,
    tile: Tile,
    precision: Precision,
) {
    let (cg, mg) = (s.in_c / s.groups, s.m_group());
    // w' [C, M/G, 3, 3]: output channel c of group g reads the group's M/G channels of dy.
    let (r, rr) = (s.kh, s.kh * s.kw);
    let mut wt = vec![0.0f32; s.in_c * mg * rr];
    wt.par_chunks_mut(mg * rr).enumerate().for_each(|(gc, dst)| {
        let (g, c) = (gc / cg, gc % cg);
        for (m, dst) in dst.chunks_mut(rr).enumerate() {
            let src = &w[((g * mg + m) * cg + c) * rr..][..rr];
            for (k, v) in dst.iter_mut().enumerate() {
                *v = src[rr - 1 - k];
            }
        }
    });
    let t = ConvShape {
        in_c: s.out_c,
        in_h: s.out_h(),
        in_w: s.out_w(),
        out_c: s.in_c,
        kh: r,
        kw: r,
        stride: 1,
        pad: r - 1 - s.pad,
        groups: s.groups,
    };
    debug_assert_eq!((t.out_h(), t.out_w()), (s.in_h, s.in_w));
    let zero = vec![0.0f32; s.in_c];
    forward(&t, dy, &wt, &zero, dx, batch, tile, precision);
}

/// Where the tiles of a block start in zero-padded copies of its planes (tiles numbered image
/// by image, row by row), so that gathering a tile is α rows of α contiguous values: no division
/// and no bounds test per value. Those took most of the transforms' time: ~500 ns per 8 tiles
/// of F(4×4) gathered value by value (perf on the paper net at batch 1, Zen 4).
struct Grid {
    images: usize,
    tiles: usize,
    /// Input planes padded: `ph × pw`, row `r` is the map's row `r - pad`, zero outside it.
    ph: usize,
    pw: usize,
    /// Output planes padded to whole tiles: `qh × qw`, zero past the map (for `dY`).
    qh: usize,
    qw: usize,
    /// Tile `t`'s first value in the padded input planes.
    input: Vec<usize>,
    /// Tile `t`'s first value in the output planes.
    output: Vec<usize>,
}

impl Grid {
    fn new<const M: usize, const A: usize>(s: &ConvShape, images: usize) -> Grid {
        let (th, tw) = tiles_of(s, M);
        let (ph, pw, qh, qw) = (th * M + A - M, tw * M + A - M, th * M, tw * M);
        let tiles = images * th * tw;
        let (mut input, mut output) = (Vec::with_capacity(tiles), Vec::with_capacity(tiles));
        for img in 0..images {
            for ty in 0..th {
                for tx in 0..tw {
                    input.push(img * ph * pw + ty * M * pw + tx * M);
                    output.push(img * qh * qw + ty * M * qw + tx * M);
                }
            }
        }
        Grid { images, tiles, ph, pw, qh, qw, input, output }
    }

    /// One channel's `h×w` planes (`plane(image)`) into `dst [images][ph][pw]`, shifted by `pad`,
    /// zero around.
    fn pad<'a>(
        &self,
        (h, w, pad): (usize, usize, usize),
        (ph, pw): (usize, usize),
        plane: impl Fn(usize) -> &'a [f32],
        dst: &mut Vec<f32>,
    ) {
        // L values of slack past the last plane, zero: [`gather`] reads whole vectors of L from a
        // tile row's start, past a narrower tile's last column.
        let len = self.images * ph * pw;
        dst.resize(len + L, 0.0);
        dst[len..].fill(0.0);
        for (img, d) in dst[..len].chunks_mut(ph * pw).enumerate() {
            let src = plane(img);
            for (r, row) in d.chunks_mut(pw).enumerate() {
                match r.checked_sub(pad).filter(|&iy| iy < h) {
                    Some(iy) => {
                        row[..pad].fill(0.0);
                        row[pad..pad + w].copy_from_slice(&src[iy * w..][..w]);
                        row[pad + w..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
    }

    /// One input channel's planes padded for its tiles.
    fn pad_input<'a>(&self, s: &ConvShape, plane: impl Fn(usize) -> &'a [f32], dst: &mut Vec<f32>) {
        self.pad((s.in_h, s.in_w, s.pad), (self.ph, self.pw), plane, dst)
    }

    /// One output channel's planes (`dY`) padded to whole tiles.
    fn pad_output<'a>(&self, s: &ConvShape, plane: impl Fn(usize) -> &'a [f32], dst: &mut Vec<f32>) {
        self.pad((s.out_h(), s.out_w(), 0), (self.qh, self.qw), plane, dst)
    }
}

/// `d` = lanes of `H×W` tiles, tile `lane` at `offsets[lane]` of `planes` (rows `stride` apart);
/// lanes past `offsets` zero. With AVX and a whole group of L tiles, each tile row is loaded as
/// one vector per tile (reading up to `L - W` values past it: [`Grid::pad`]'s slack) and the L×L
/// block transposed in registers; value by value, the gather took a fifth of the input
/// transform's time (perf annotate, conv3-5 at batch 64).
#[inline(always)]
fn gather<const H: usize, const W: usize>(planes: &[f32], offsets: &[usize], stride: usize, d: &mut Lanes<H, W>) {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    if offsets.len() == L && W <= L {
        use std::arch::x86_64::{__m256, _mm256_loadu_ps, _mm256_storeu_ps};
        for (i, row) in d.iter_mut().enumerate() {
            let rows: [__m256; L] = std::array::from_fn(|lane| {
                let src: &[f32; L] = planes[offsets[lane] + i * stride..][..L].try_into().expect("L values");
                // SAFETY: `src` holds the L values read; this build targets AVX (the cfg above).
                unsafe { _mm256_loadu_ps(src.as_ptr()) }
            });
            for (v, column) in row.iter_mut().zip(crate::matmul::transpose8(rows)) {
                // SAFETY: `v` holds the L values written; AVX as above.
                unsafe { _mm256_storeu_ps(v.as_mut_ptr(), column) };
            }
        }
        return;
    }
    gather_by_value(planes, offsets, stride, d);
}

/// [`gather`] value by value: without AVX, and for a block's last, partial group.
#[inline(always)]
fn gather_by_value<const H: usize, const W: usize>(
    planes: &[f32],
    offsets: &[usize],
    stride: usize,
    d: &mut Lanes<H, W>,
) {
    if offsets.len() < L {
        *d = [[[0.0; L]; W]; H];
    }
    for (lane, &o) in offsets.iter().enumerate().take(L) {
        for (i, row) in d.iter_mut().enumerate() {
            let src: &[f32; W] = planes[o + i * stride..][..W].try_into().expect("W values");
            for (v, &x) in row.iter_mut().zip(src) {
                v[lane] = x;
            }
        }
    }
}

/// [`gather`]'s inverse for output tiles: lane `lane` of `out`, plus `bias`, to `offsets[lane]`.
#[inline(always)]
fn scatter<const H: usize, const W: usize>(
    out: &Lanes<H, W>,
    planes: &mut [f32],
    offsets: &[usize],
    stride: usize,
    bias: f32,
) {
    for (lane, &o) in offsets.iter().enumerate().take(L) {
        for (i, row) in out.iter().enumerate() {
            let dst: &mut [f32; W] = (&mut planes[o + i * stride..][..W]).try_into().expect("W values");
            for (d, v) in dst.iter_mut().zip(row) {
                *d = v[lane] + bias;
            }
        }
    }
}

/// This thread's buffer of padded planes ([`Grid`]), kept across calls.
fn with_planes<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    thread_local! {
        static PLANES: std::cell::RefCell<Vec<f32>> = std::cell::RefCell::default();
    }
    crate::threads::with_taken(&PLANES, f)
}

/// Tiles of one image: `(rows, columns)` of `m×m` output tiles covering the map.
fn tiles_of(s: &ConvShape, m: usize) -> (usize, usize) {
    (s.out_h().div_ceil(m), s.out_w().div_ceil(m))
}

/// Images in a block of a batch of `batch` (`tiles` a image): about `target` tiles, with
/// each thread's run of images (or, below one image a thread, the batch) cut into equal blocks:
/// F(5×5)'s 9 tiles an image make blocks of 28 images, which would leave a run of 32 a block of 4,
/// whose products have too few tiles to run near the peak; two of 16 instead.
fn images_a_block(tiles: usize, batch: usize, target: usize) -> usize {
    let run = if threads_within_image(batch) == Threads::One { image_chunks(batch) } else { batch.max(1) };
    let most = (target / tiles.max(1)).clamp(1, run);
    run.div_ceil(run.div_ceil(most))
}

/// The forward pass with the kernels already transformed into `u` ([`kernel_transform`]).
#[allow(clippy::too_many_arguments)]
fn forward_with<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    t: P,
    s: &ConvShape,
    x: &[f32],
    u: &[f32],
    b: &[f32],
    y: &mut [f32],
    batch: usize,
    precision: Precision,
) {
    assert!(applies(s) && R == s.kh, "Winograd F(m, {R}) on {s:?}");
    assert_eq!(u.len(), s.out_c * A * A * (s.in_c / s.groups), "transformed kernels of {s:?}");
    let (il, ol) = (s.in_len(), s.out_len());
    let (th, tw) = tiles_of(s, M);
    let block = images_a_block(th * tw, batch, TARGET_TILES);
    let (x, y) = (&x[..batch * il], &mut y[..batch * ol]);
    if threads_within_image(batch) == Threads::One {
        // One run of images per thread, as im2col does; each thread's products single-threaded.
        let per = image_chunks(batch);
        y.par_chunks_mut(per * ol).zip(x.par_chunks(per * il)).for_each(|(ys, xs)| {
            with_scratch(|scratch| {
                for (yb, xb) in ys.chunks_mut(block * ol).zip(xs.chunks(block * il)) {
                    block_forward(t, s, u, xb, b, yb, scratch, false, precision);
                }
            })
        });
    } else {
        // Fewer images than threads (one-image latency): each block's work split across them.
        with_scratch(|scratch| {
            for (yb, xb) in y.chunks_mut(block * ol).zip(x.chunks(block * il)) {
                block_forward(t, s, u, xb, b, yb, scratch, true, precision);
            }
        });
    }
}

/// `U [G][M/G][α²][C/G]` into `u`: every kernel transformed, `G g Gᵀ`, L input channels at a time.
fn kernel_transform<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    _: P,
    s: &ConvShape,
    w: &[f32],
    u: &mut Vec<f32>,
) {
    let cg = s.in_c / s.groups;
    u.resize(s.out_c * A * A * cg, 0.0);
    // Output channel `o` (over all groups) owns one contiguous block of α²·C/G.
    u.par_chunks_mut(A * A * cg).enumerate().for_each(|(o, uo)| {
        for c0 in (0..cg).step_by(L) {
            let n = L.min(cg - c0);
            let mut gk = [[[0.0f32; L]; R]; R];
            for lane in 0..n {
                let k = &w[(o * cg + c0 + lane) * R * R..][..R * R];
                for (i, v) in gk.iter_mut().flatten().enumerate() {
                    v[lane] = k[i];
                }
            }
            let mut gg = [[[0.0f32; L]; R]; A];
            lanes_mul(&P::T.g, &gk, &mut gg);
            lanes_mul_r(&gg, &P::T.gt, |i, j, v| store_lanes(&mut uo[(i * A + j) * cg + c0..], v, n));
        }
    });
}

/// Buffers of one block, kept across blocks and calls (a thread's own: see [`with_scratch`]).
#[derive(Default)]
struct Scratch {
    /// Transformed kernels (the calling thread's).
    u: Vec<f32>,
    v: Vec<f32>,
    /// `V` point by point transposed, `[α²][T][C/G]`, for the weight gradient's products.
    vt: Vec<f32>,
    m: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Runs `f` with this thread's scratch, taken out for the call and put back after, so that the
/// megabytes of `U`, `V` and `M` are allocated (and their pages touched) once per thread, not
/// once per call; a nested call would find it empty and allocate its own.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    crate::threads::with_taken(&SCRATCH, f)
}

/// Runs `f` over `chunks` of `data`, on all threads or on this one.
fn each_chunk(data: &mut [f32], chunk: usize, parallel: bool, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if parallel {
        data.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// One block of images `x [n, C, H, W]` into `y [n, M, OH, OW]`, group by group: transform the
/// input tiles, α² products, transform back and add the bias.
#[allow(clippy::too_many_arguments)]
fn block_forward<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    t: P,
    s: &ConvShape,
    u: &[f32],
    x: &[f32],
    b: &[f32],
    y: &mut [f32],
    scratch: &mut Scratch,
    parallel: bool,
    precision: Precision,
) {
    let (cg, mg) = (s.in_c / s.groups, s.m_group());
    let (il, ol) = (s.in_len(), s.out_len());
    let images = x.len() / il;
    let grid = Grid::new::<M, A>(s, images);
    let tiles = grid.tiles;
    scratch.v.resize(cg * A * A * tiles, 0.0);
    scratch.m.resize(A * A * mg * tiles, 0.0);
    for g in 0..s.groups {
        input_transform(t, s, x, g, &grid, &mut scratch.v, parallel);
        // M[ξ] = U[ξ] · V[ξ] for each of the α² points.
        let ug = &u[g * mg * A * A * cg..(g + 1) * mg * A * A * cg];
        let v = &scratch.v;
        each_chunk(&mut scratch.m, mg * tiles, parallel, |xi, mx| {
            let a = Operand::strided(&ug[xi * cg..], A * A * cg);
            let bv = Operand::strided(&v[xi * tiles..], A * A * tiles);
            matmul_in(precision, mg, tiles, cg, a, bv, mx, false, Threads::One);
        });
        output_transform(t, s, &scratch.m, b, g, &grid, &mut y[..images * ol], parallel);
    }
}

/// `Y = Aᵀ M A + b` of group `g` into `y [n, M, OH, OW]`, clipped to the map: L tiles at a
/// time, output channel by channel (`m` holds `M [α²][M/G][T]`), each channel's tiles whole in
/// padded planes first.
#[allow(clippy::too_many_arguments)]
fn output_transform<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    _: P,
    s: &ConvShape,
    mm: &[f32],
    b: &[f32],
    g: usize,
    grid: &Grid,
    y: &mut [f32],
    parallel: bool,
) {
    let (mg, ol) = (s.m_group(), s.out_len());
    let (oh, ow) = (s.out_h(), s.out_w());
    let (tiles, images, qplane) = (grid.tiles, grid.images, grid.qh * grid.qw);
    // Output channel m's tiles, transformed back, bias added, into `q [images][qh][qw]`.
    let channel = |m: usize, q: &mut Vec<f32>| {
        q.resize(images * qplane, 0.0);
        let bias = b[g * mg + m];
        let (mut p, mut ap, mut out) = ([[[0.0f32; L]; A]; A], [[[0.0f32; L]; A]; M], [[[0.0f32; L]; M]; M]);
        for t0 in (0..tiles).step_by(L) {
            let offsets = &grid.output[t0..tiles.min(t0 + L)];
            for (xi, v) in p.iter_mut().flatten().enumerate() {
                load_lanes(v, &mm[(xi * mg + m) * tiles + t0..], offsets.len());
            }
            lanes_mul(&P::T.at, &p, &mut ap);
            lanes_mul_r(&ap, &P::T.a, |i, j, v| out[i][j] = *v);
            scatter(&out, q, offsets, grid.qw, bias);
        }
    };
    // Image `img`'s plane of `q`, clipped to the map.
    let clip = |q: &[f32], img: usize, plane: &mut [f32]| {
        for (r, row) in plane.chunks_mut(ow).enumerate() {
            row.copy_from_slice(&q[img * qplane + r * grid.qw..][..ow]);
        }
    };
    let plane_len = oh * ow;
    if images == 1 {
        // One image: its output channels are contiguous planes, split across threads.
        let yg = &mut y[g * mg * plane_len..][..mg * plane_len];
        each_chunk(yg, plane_len, parallel, |m, plane| {
            with_planes(|q| {
                channel(m, q);
                clip(q, 0, plane);
            })
        });
    } else {
        with_planes(|q| {
            for m in 0..mg {
                channel(m, q);
                for img in 0..images {
                    clip(q, img, &mut y[img * ol + (g * mg + m) * plane_len..][..plane_len]);
                }
            }
        });
    }
}

/// `V [C/G][α²][T]` of group `g` of the images `x`: input channel c's tiles of every image, L
/// tiles at a time (`v` holds exactly C/G·α²·T values).
fn input_transform<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    _: P,
    s: &ConvShape,
    x: &[f32],
    g: usize,
    grid: &Grid,
    v: &mut [f32],
    parallel: bool,
) {
    let (cg, il, plane) = (s.in_c / s.groups, s.in_len(), s.in_h * s.in_w);
    let tiles = grid.tiles;
    each_chunk(v, A * A * tiles, parallel, |c, vc| {
        with_planes(|padded| {
            grid.pad_input(s, |img| &x[img * il + (g * cg + c) * plane..][..plane], padded);
            transform_tiles(padded, &grid.input, grid.pw, &P::T.bt, &P::T.b, vc);
        })
    });
}

/// One channel's tiles transformed, L at a time: tile `t` of `H×W` values at `offsets[t]` of
/// `padded` (rows `stride` apart) to `l · d · r`, its point `(i, j)` at `dst[(i·α + j)·T + t]`
/// (T = `offsets.len()`). The input transform (`Bᵀ d B` of input tiles) and the weight
/// gradient's transform of `dY` (`A dY Aᵀ` of output tiles) are both this.
#[inline(always)]
fn transform_tiles<const H: usize, const W: usize, const A: usize>(
    padded: &[f32],
    offsets: &[usize],
    stride: usize,
    l: &[[f32; H]; A],
    r: &[[f32; A]; W],
    dst: &mut [f32],
) {
    let tiles = offsets.len();
    let (mut d, mut ld) = ([[[0.0f32; L]; W]; H], [[[0.0f32; L]; W]; A]);
    for t0 in (0..tiles).step_by(L) {
        let group = &offsets[t0..tiles.min(t0 + L)];
        gather(padded, group, stride, &mut d);
        lanes_mul(l, &d, &mut ld);
        lanes_mul_r(&ld, r, |i, j, v| store_lanes(&mut dst[(i * A + j) * tiles + t0..], v, group.len()));
    }
}

/// `∂L/∂w` and `∂L/∂b` (overwritten) from `x` and `dy`, for shapes where [`applies`]. With
/// `Y = Aᵀ [U ⊙ V] A` and `U = G g Gᵀ`: `∂L/∂U[ξ] = Σ_tiles (A dY Aᵀ)[ξ] · V[ξ]`, one product
/// per point ξ over all the tiles of the batch, then `∂L/∂g = Gᵀ (∂L/∂U) G`.
#[allow(clippy::too_many_arguments)]
pub fn backward_weights(
    s: &ConvShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    batch: usize,
    tile: Tile,
    precision: Precision,
) {
    with_transforms!(tile, s, backward_weights_with(s, x, dy, dw, db, batch, precision))
}

#[allow(clippy::too_many_arguments)]
fn backward_weights_with<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    t: P,
    s: &ConvShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    batch: usize,
    precision: Precision,
) {
    assert!(applies(s) && R == s.kh, "Winograd F(m, {R}) on {s:?}");
    let (cg, mg) = (s.in_c / s.groups, s.m_group());
    let (il, ol, plane) = (s.in_len(), s.out_len(), s.out_h() * s.out_w());
    let (th, tw) = tiles_of(s, M);
    let block = images_a_block(th * tw, batch, WEIGHT_TARGET_TILES);
    let (x, dy) = (&x[..batch * il], &dy[..batch * ol]);
    // One ∂L/∂U [G][α²][M/G][C/G] per run of images, summed in run order (deterministic for a
    // given thread count, as im2col's partial dw are).
    let partial = |xs: &[f32], dys: &[f32], parallel: bool| {
        with_scratch(|scratch| {
            let mut du = vec![0.0f32; s.groups * A * A * mg * cg];
            for (xb, dyb) in xs.chunks(block * il).zip(dys.chunks(block * ol)) {
                block_weights(t, s, xb, dyb, &mut du, scratch, parallel, precision);
            }
            du
        })
    };
    let partials: Vec<Vec<f32>> = if threads_within_image(batch) == Threads::One {
        let per = image_chunks(batch);
        x.par_chunks(per * il).zip(dy.par_chunks(per * ol)).map(|(xs, dys)| partial(xs, dys, false)).collect()
    } else {
        vec![partial(x, dy, true)]
    };
    // Summed into the first in run order, across the pool (14 MB a partial for conv3: serial,
    // with a copy first, it left a core idle ~3 ms).
    let mut partials = partials.into_iter();
    let mut du = partials.next().expect("one partial per run of images, at least one run");
    for p in partials {
        du.par_chunks_mut(1 << 14).zip(p.par_chunks(1 << 14)).for_each(|(a, b)| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        });
    }
    // ∂L/∂g = Gᵀ (∂L/∂U) G, L input channels at a time.
    dw[..s.weight_len()].par_chunks_mut(cg * R * R).enumerate().for_each(|(o, dwo)| {
        let (g, m) = (o / mg, o % mg);
        for c0 in (0..cg).step_by(L) {
            let n = L.min(cg - c0);
            let (mut p, mut gp) = ([[[0.0f32; L]; A]; A], [[[0.0f32; L]; A]; R]);
            for (xi, v) in p.iter_mut().flatten().enumerate() {
                load_lanes(v, &du[((g * A * A + xi) * mg + m) * cg + c0..], n);
            }
            lanes_mul(&P::T.gt, &p, &mut gp);
            lanes_mul_r(&gp, &P::T.g, |i, j, v| {
                for (lane, &x) in v.iter().enumerate().take(n) {
                    dwo[(c0 + lane) * R * R + i * R + j] = x;
                }
            });
        }
    });
    super::conv::bias_gradient(dy, batch, plane, &mut db[..s.out_c]);
}

/// One block of images: adds its share of `∂L/∂U [G][α²][M/G][C/G]` to `du`.
#[allow(clippy::too_many_arguments)]
fn block_weights<const M: usize, const R: usize, const A: usize, P: Points<M, R, A>>(
    t: P,
    s: &ConvShape,
    x: &[f32],
    dy: &[f32],
    du: &mut [f32],
    scratch: &mut Scratch,
    parallel: bool,
    precision: Precision,
) {
    let (cg, mg) = (s.in_c / s.groups, s.m_group());
    let (il, ol) = (s.in_len(), s.out_len());
    let plane = s.out_h() * s.out_w();
    let grid = Grid::new::<M, A>(s, x.len() / il);
    let tiles = grid.tiles;
    scratch.v.resize(cg * A * A * tiles, 0.0);
    scratch.m.resize(mg * A * A * tiles, 0.0);
    for g in 0..s.groups {
        input_transform(t, s, x, g, &grid, &mut scratch.v, parallel);
        // dY' [M/G][α²][T] = A dY Aᵀ for output channel m's tiles, zero past the map's edge.
        each_chunk(&mut scratch.m, A * A * tiles, parallel, |m, dm| {
            with_planes(|padded| {
                grid.pad_output(s, |img| &dy[img * ol + (g * mg + m) * plane..][..plane], padded);
                transform_tiles(padded, &grid.output, grid.qw, &P::T.a, &P::T.at, dm);
            })
        });
        // ∂L/∂U[ξ] += dY'[ξ] [M/G, T] · V[ξ]ᵀ [T, C/G], with V[ξ]ᵀ laid out first.
        transpose_points(&scratch.v, &mut scratch.vt, cg, A * A, tiles, parallel);
        let (vt, dm) = (&scratch.vt, &scratch.m);
        let dug = &mut du[g * A * A * mg * cg..][..A * A * mg * cg];
        each_chunk(dug, mg * cg, parallel, |xi, d| {
            let a = Operand::strided(&dm[xi * tiles..], A * A * tiles);
            let b = Operand::strided(&vt[xi * tiles * cg..], cg);
            matmul_in(precision, mg, cg, tiles, a, b, d, true, Threads::One);
        });
    }
}

/// `vt [points][T][C]` = `v [C][points][T]`, each point's `C×T` block transposed
/// ([`crate::matmul::transpose`]).
///
/// The weight gradient's products `dY'[ξ] · V[ξ]ᵀ` sum over the tiles, which both operands hold
/// contiguous; the matrix multiply wants one of them contiguous along its other side, and
/// transposing `V` there (in its packing, value by value) took a quarter of the weight gradient's
/// time (perf, conv3-5 at batch 64).
fn transpose_points(v: &[f32], vt: &mut Vec<f32>, c: usize, points: usize, tiles: usize, parallel: bool) {
    vt.resize(points * tiles * c, 0.0);
    each_chunk(vt, tiles * c, parallel, |xi, dst| {
        crate::matmul::transpose(&v[xi * tiles..], points * tiles, c, tiles, dst)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv;
    use crate::rng::uniform_vec;

    fn shape(c: usize, hw: usize, m: usize, pad: usize, groups: usize) -> ConvShape {
        ConvShape { in_c: c, in_h: hw, in_w: hw + 1, out_c: m, kh: 3, kw: 3, stride: 1, pad, groups }
    }

    /// Every tile with every kernel size it has transforms for, and the shapes to try: the 3×3
    /// shapes given, and for 5×5 the same with one more row and column of padding (up to 4).
    fn cases(shapes: &[(ConvShape, usize)]) -> Vec<(Tile, ConvShape, usize)> {
        let mut out = Vec::new();
        for (tile, r) in [(Tile::F2, 3), (Tile::F4, 3), (Tile::F5, 3), (Tile::F2, 5)] {
            for &(s, batch) in shapes {
                let s = if r == 3 { s } else { ConvShape { kh: 5, kw: 5, pad: s.pad + 1, in_h: s.in_h + 1, ..s } };
                out.push((tile, s, batch));
            }
        }
        out
    }

    #[test]
    fn forward_matches_the_direct_convolution() {
        let shapes = [
            (shape(3, 5, 4, 1, 1), 1),
            (shape(8, 13, 6, 1, 2), 3),
            (shape(4, 7, 4, 0, 1), 2),
            (shape(6, 4, 6, 2, 3), 5),
            (shape(2, 3, 2, 0, 1), 1),
        ];
        for (tile, s, batch) in cases(&shapes) {
            let x = uniform_vec(batch * s.in_len(), 1);
            let w = uniform_vec(s.weight_len(), 2);
            let b = uniform_vec(s.out_c, 3);
            let mut y = vec![f32::NAN; batch * s.out_len()];
            forward(&s, &x, &w, &b, &mut y, batch, tile, Precision::F32);
            let r = conv::forward_naive(&s, &x, &w, &b, batch);
            let err = crate::tensor::rel_err(&y, &r);
            assert!(err < 1e-5, "{tile:?} {s:?} batch {batch}: {err}");
        }
    }

    /// The vector gather (whole groups, reading into the planes' slack) against the value by
    /// value one, which a build without AVX takes everywhere.
    #[test]
    fn gather_matches_value_by_value() {
        let planes = uniform_vec(3 * 10 * 10 + L, 4);
        // Tiles anywhere in three 10×10 planes, the last reading into the slack.
        let offsets: Vec<usize> = (0..L).map(|t| if t == L - 1 { 244 } else { t * 29 % 240 }).collect();
        for n in [L, 5] {
            let (mut d, mut r) = ([[[f32::NAN; L]; 6]; 6], [[[f32::NAN; L]; 6]; 6]);
            gather(&planes, &offsets[..n], 10, &mut d);
            gather_by_value(&planes, &offsets[..n], 10, &mut r);
            assert_eq!(d, r, "{n} tiles");
            let (mut d4, mut r4) = ([[[f32::NAN; L]; 4]; 4], [[[f32::NAN; L]; 4]; 4]);
            gather(&planes, &offsets[..n], 10, &mut d4);
            gather_by_value(&planes, &offsets[..n], 10, &mut r4);
            assert_eq!(d4, r4, "{n} tiles, 4x4");
            // 7×7 (F(5×5)): the last tile's last row ends on the planes' last value.
            let offsets7: Vec<usize> = (0..L).map(|t| if t == L - 1 { 233 } else { t * 29 % 220 }).collect();
            let (mut d7, mut r7) = ([[[f32::NAN; L]; 7]; 7], [[[f32::NAN; L]; 7]; 7]);
            gather(&planes, &offsets7[..n], 10, &mut d7);
            gather_by_value(&planes, &offsets7[..n], 10, &mut r7);
            assert_eq!(d7, r7, "{n} tiles, 7x7");
        }
    }

    #[test]
    fn both_gradients_match_im2col() {
        // The last: 12 input channels and 9 or more tiles a block, so that whole 8×8 blocks and
        // ragged edges both go through `transpose_points`.
        let shapes = [
            (shape(8, 13, 6, 1, 2), 3),
            (shape(4, 6, 4, 0, 1), 1),
            (shape(6, 5, 3, 2, 3), 2),
            (shape(12, 9, 10, 1, 1), 2),
        ];
        for (tile, s, batch) in cases(&shapes) {
            let x = uniform_vec(batch * s.in_len(), 7);
            let w = uniform_vec(s.weight_len(), 8);
            let dy = uniform_vec(batch * s.out_len(), 9);
            let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; s.out_c], vec![0.0; x.len()]);
            conv::backward(&s, &x, &w, &dy, &mut dw, &mut db, Some(&mut dx), batch);
            let (mut dww, mut dbw) = (vec![f32::NAN; w.len()], vec![f32::NAN; s.out_c]);
            backward_weights(&s, &x, &dy, &mut dww, &mut dbw, batch, tile, Precision::F32);
            let err = crate::tensor::rel_err(&dww, &dw);
            assert!(err < 1e-5, "{tile:?} {s:?}: dw {err}");
            // The bias gradient sums in another order than im2col's: against the exact sum.
            let plane = s.out_h() * s.out_w();
            let exact: Vec<f32> = (0..s.out_c)
                .map(|m| {
                    (0..batch).flat_map(|i| &dy[(i * s.out_c + m) * plane..][..plane]).map(|&v| v as f64).sum::<f64>()
                        as f32
                })
                .collect();
            let err = crate::tensor::rel_err(&dbw, &exact);
            assert!(err < 1e-6, "{tile:?} {s:?}: db {err} (im2col's {})", crate::tensor::rel_err(&db, &exact));
            let mut dxw = vec![f32::NAN; x.len()];
            backward_data(&s, &w, &dy, &mut dxw, batch, tile, Precision::F32);
            let err = crate::tensor::rel_err(&dxw, &dx);
            assert!(err < 1e-5, "{tile:?} {s:?}: dx {err}");
        }
    }
}
