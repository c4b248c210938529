//! A safe, row-major face on the `gemm` crate: the one place this crate multiplies matrices.
//!
//! `C[m,n] = (accumulate ? C : 0) + op(A)[m,k] · op(B)[k,n]`, where `op(A)` is `A` (stored
//! row-major `m×k`) or `Aᵀ` (stored row-major `k×m`) depending on the transpose flag.

use gemm::Parallelism;
use rayon::prelude::*;

pub mod bf16;
pub use bf16::Bf16Kernel;

/// `--precision`: what a run asks for, resolved on this CPU by [`PrecisionChoice::resolve`].
/// Weights, gradients, activations and the optimizer stay f32 in every choice; only the
/// operands of the matrix products are rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PrecisionChoice {
    #[default]
    F32,
    /// Products of bf16-rounded operands summed in f32, by `vdpbf16ps`: CPUs with AVX512-BF16
    /// (AMD Zen 4 and later, Intel Cooper Lake, Sapphire Rapids and later).
    Bf16,
    /// bf16's numerics in portable code, on any CPU: slow, to test the path where the
    /// instruction is missing.
    Bf16Emulated,
}

impl PrecisionChoice {
    /// The precision the layers compute in; `Bf16` on a CPU without AVX512-BF16 is an error
    /// (rather than a silent fall back to a path many times slower).
    pub fn resolve(self) -> crate::Result<Precision> {
        match self {
            PrecisionChoice::F32 => Ok(Precision::F32),
            PrecisionChoice::Bf16Emulated => Ok(Precision::Bf16(Bf16Kernel::Emulated)),
            PrecisionChoice::Bf16 if Bf16Kernel::native_available() => Ok(Precision::Bf16(Bf16Kernel::Native)),
            PrecisionChoice::Bf16 => Err(crate::Error::Invalid(
                "--precision bf16 needs a CPU with AVX512-BF16 (the vdpbf16ps instruction: AMD Zen 4 and later, \
                 Intel Sapphire Rapids and later), and this one has none. Use --precision f32 (the default), or \
                 bf16-emulated to run bf16's numerics slowly in portable code"
                    .into(),
            )),
        }
    }
}

/// The precision of a product's multiplications; sums are f32 in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 operands (the `gemm` crate).
    #[default]
    F32,
    /// Operands rounded to bf16, products exact, sums in f32 ([`bf16`]), by the given kernel.
    Bf16(Bf16Kernel),
}

/// A matrix operand: a row-major slice, whether the product reads it transposed, and the
/// distance between its rows when they are not packed (a slice of a larger layout).
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub transposed: bool,
    /// Elements from one row to the next; 0: packed (the row length).
    pub row_stride: usize,
}

impl<'a> Operand<'a> {
    /// The slice as it is (row-major, `rows×cols` of the product's view).
    pub fn plain(data: &'a [f32]) -> Self {
        Self { data, transposed: false, row_stride: 0 }
    }
    /// The transpose of the stored row-major matrix.
    pub fn t(data: &'a [f32]) -> Self {
        Self { data, transposed: true, row_stride: 0 }
    }
    /// Rows `row_stride` elements apart, the first at `data[0]`.
    pub fn strided(data: &'a [f32], row_stride: usize) -> Self {
        Self { data, transposed: false, row_stride }
    }
    /// The transpose of a stored matrix whose rows are `row_stride` elements apart.
    pub fn strided_t(data: &'a [f32], row_stride: usize) -> Self {
        Self { data, transposed: true, row_stride }
    }
    /// (row stride, column stride) of the operand seen as `rows×cols`, in elements.
    fn steps(&self, rows: usize, cols: usize) -> (usize, usize) {
        let packed = |n: usize| if self.row_stride == 0 { n } else { self.row_stride };
        if self.transposed { (1, packed(rows)) } else { (packed(cols), 1) }
    }
    /// [`Self::steps`] as the product takes them (checked to fit by [`Self::reach`]).
    fn strides(&self, rows: usize, cols: usize) -> (isize, isize) {
        let (rs, cs) = self.steps(rows, cols);
        (rs as isize, cs as isize)
    }
    /// Elements the `rows×cols` view reaches: one past its last; `usize::MAX` when that
    /// overflows or a stride does not fit the `isize` the product takes (never in bounds).
    fn reach(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        let (rs, cs) = self.steps(rows, cols);
        if rs > isize::MAX as usize || cs > isize::MAX as usize {
            return usize::MAX;
        }
        (rows - 1)
            .checked_mul(rs)
            .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
            .and_then(|r| r.checked_add(1))
            .unwrap_or(usize::MAX)
    }
    /// Rows `first..` of the `rows×cols` view, as a view of its own (same strides).
    fn rows_from(&self, rows: usize, cols: usize, first: usize) -> Operand<'a> {
        let (rs, cs) = self.steps(rows, cols);
        let offset = first * rs;
        let row_stride = if self.transposed { cs } else { rs };
        Operand { data: &self.data[offset.min(self.data.len())..], transposed: self.transposed, row_stride }
    }
    /// The element at (i, j) of the `rows×cols` view.
    fn at(&self, rows: usize, cols: usize, i: usize, j: usize) -> f32 {
        let (rs, cs) = self.steps(rows, cols);
        self.data[i * rs + j * cs]
    }
}

/// Whether a product may split itself across the current rayon pool.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Threads {
    /// Single-threaded: the caller is already parallel (one image per thread).
    One,
    /// Use every thread of the current rayon pool.
    Pool,
}

/// `c[m×n] (+)= a[m×k] · b[k×n]` with the operands' transpose flags.
#[allow(clippy::too_many_arguments)]
///
/// # Panics
/// If a slice is shorter than its declared shape: that is a bug in the caller, not bad input.
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: Threads,
) {
    matmul_in(Precision::F32, m, n, k, a, b, c, accumulate, threads)
}

/// [`matmul`] with its multiplications in `precision`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_in(
    precision: Precision,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: Threads,
) {
    assert!(a.data.len() >= a.reach(m, k), "lhs too short: {} for {m}x{k}", a.data.len());
    assert!(b.data.len() >= b.reach(k, n), "rhs too short: {} for {k}x{n}", b.data.len());
    assert!(a.row_stride == 0 || a.row_stride >= if a.transposed { m } else { k }, "lhs rows overlap");
    assert!(b.row_stride == 0 || b.row_stride >= if b.transposed { k } else { n }, "rhs rows overlap");
    assert!(m.checked_mul(n).is_some_and(|mn| c.len() >= mn), "dst too short: {} < {m}x{n}", c.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // A product with one row or one column (a fully connected layer at batch 1) stays f32: it
    // reads each element of the larger operand once, and packing them into bf16 first would
    // triple that traffic (the paper net at batch 1 took 42.6 ms so against 19.8 in f32). So
    // does any such piece of a larger product (a last row block of one row, a Winograd point
    // with one tile), whatever the layer's label says. (A fully connected layer evaluating one
    // image in bf16 does not come here: it keeps its weights in bf16 and calls `gemv_bf16`.)
    if let Precision::Bf16(kernel) = precision
        && m > 1
        && n > 1
    {
        return bf16::matmul(kernel, m, n, k, a, b, c, accumulate, threads);
    }
    if n == 1 && !a.transposed && b.steps(k, 1).0 == 1 {
        let lda = a.steps(m, k).0;
        return gemv(k, a.data, lda, &b.data[..k], &mut c[..m], accumulate, threads, |v| v);
    }
    let (a_rs, a_cs) = a.strides(m, k);
    let (b_rs, b_cs) = b.strides(k, n);
    let par = match threads {
        Threads::One => Parallelism::None,
        Threads::Pool => match rayon::current_num_threads() {
            0 | 1 => Parallelism::None,
            t => Parallelism::Rayon(t),
        },
    };
    // SAFETY: the asserts above guarantee every index the strides can reach is in bounds:
    // the largest offset of an operand's view is `reach - 1`, checked against its length;
    // `c` is exclusively borrowed, and `a`, `b` cannot alias it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// `dst [cols][rows]` = the transpose of `src`'s `rows×cols` matrix whose rows are `stride`
/// values apart: `dst[j·rows + i] = src[i·stride + j]`, 8×8 blocks at a time in registers
/// (with AVX), value by value at the edges.
///
/// For products whose operands both hold the summed dimension contiguous (weight gradients
/// summed over tiles or images): the `gemm` crate wants one of them contiguous along its other
/// side and transposes it value by value in its packing otherwise, measured at a quarter of a
/// Winograd weight gradient's time.
pub fn transpose(src: &[f32], stride: usize, rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 8;
    assert!(dst.len() >= rows * cols, "transpose: dst {} < {rows}x{cols}", dst.len());
    let reach = (rows.max(1) - 1).checked_mul(stride).and_then(|r| r.checked_add(cols));
    assert!(rows == 0 || cols == 0 || reach.is_some_and(|r| src.len() >= r), "transpose: src too short");
    for i0 in (0..rows).step_by(B) {
        for j0 in (0..cols).step_by(B) {
            #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
            if i0 + B <= rows && j0 + B <= cols {
                use std::arch::x86_64::{__m256, _mm256_loadu_ps, _mm256_storeu_ps};
                let block: [__m256; B] = std::array::from_fn(|i| {
                    let r: &[f32; B] = src[(i0 + i) * stride + j0..][..B].try_into().expect("8 values");
                    // SAFETY: `r` holds the 8 values read; this build targets AVX (the cfg above).
                    unsafe { _mm256_loadu_ps(r.as_ptr()) }
                });
                for (j, column) in transpose8(block).into_iter().enumerate() {
                    let d: &mut [f32; B] = (&mut dst[(j0 + j) * rows + i0..][..B]).try_into().expect("8 values");
                    // SAFETY: `d` holds the 8 values written; AVX as above.
                    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), column) };
                }
                continue;
            }
            for i in i0..rows.min(i0 + B) {
                for j in j0..cols.min(j0 + B) {
                    dst[j * rows + i] = src[i * stride + j];
                }
            }
        }
    }
}

/// The transpose of an 8×8 block held as 8 row vectors: column j out as vector j.
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
#[inline(always)]
pub(crate) fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped across.
    // SAFETY: register-only AVX instructions, which this build targets (the cfg above).
    unsafe {
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        [
            _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
            _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
        ]
    }
}

/// Rows of `c` a task of [`matmul_row_blocks`] computes: a fixed number, so that how a product
/// is cut (and so the order of its sums) does not depend on the number of threads. 512 rows cut
/// fc6's products at batch 64 in 8 blocks and its data gradient's in 18, which measured best on
/// 2 threads (see [`matmul_row_blocks`]).
const ROW_BLOCK: usize = 512;

/// [`matmul_in`] on the whole pool, split into blocks of [`ROW_BLOCK`] rows of `c`, each block
/// a single-threaded product. One column (one image) goes to [`matmul_in`] on the pool instead:
/// with a plain `a`, its dot products already share the rows in smaller tasks. For tall
/// products with a small `b` (the fully connected layers' forward pass and data gradient: `m`
/// = 4096 or 9216 rows, `n` = the batch), each block re-packs only `b`, and the blocks need no
/// synchronisation but the last join; the weight gradient's `b` is `x` (batch × inputs), packed
/// once a block, and still measured faster. At batch 64 on fc6's shapes (Zen 3, 2 threads,
/// GFLOP/s, `gemm`'s own threading → 8-18 row blocks): `yᵀ = w·xᵀ` 140-146 → 161-164,
/// `dw = dyᵀ·x` 134-141 → 158-162, `dxᵀ = wᵀ·dyᵀ` 98-106 → 110 (and `dx = dy·w`, the form this
/// replaced, 56).
#[allow(clippy::too_many_arguments)]
pub fn matmul_row_blocks(
    precision: Precision,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(m.checked_mul(n).is_some_and(|mn| c.len() >= mn), "dst too short: {} < {m}x{n}", c.len());
    if n <= 1 {
        return matmul_in(precision, m, n, k, a, b, c, accumulate, Threads::Pool);
    }
    c[..m * n].par_chunks_mut(ROW_BLOCK * n).enumerate().for_each(|(i, cb)| {
        let rows = a.rows_from(m, k, i * ROW_BLOCK);
        matmul_in(precision, cb.len() / n, n, k, rows, b, cb, accumulate, Threads::One);
    });
}

/// Rows of A a task of [`gemv`] reads (64 rows of fc6: 2.4 MB).
const GEMV_ROWS: usize = 64;

/// `c[m] (+)= A[m×k] · x[k]`, A's rows `lda` apart: a product with one column (a fully connected
/// layer at batch 1) reads each weight once and is bound by memory, not arithmetic; the `gemm`
/// crate's packing only adds traffic. Row blocks are shared across the pool; `A`'s elements are
/// f32 or anything `widen` turns into one exactly (bf16 for [`gemv_bf16`]).
#[allow(clippy::too_many_arguments)]
fn gemv<T: Copy + Sync>(
    k: usize,
    a: &[T],
    lda: usize,
    x: &[f32],
    c: &mut [f32],
    accumulate: bool,
    threads: Threads,
    widen: impl Fn(T) -> f32 + Copy + Sync,
) {
    let block = |(bi, cs): (usize, &mut [f32])| {
        let row = |r: usize| &a[(bi * GEMV_ROWS + r) * lda..][..k];
        for (q, cq) in cs.chunks_mut(4).enumerate() {
            let r = 4 * q;
            let d = if cq.len() == 4 {
                dot4([row(r), row(r + 1), row(r + 2), row(r + 3)], x, widen)
            } else {
                let mut d = [0.0; 4];
                for (i, v) in d.iter_mut().take(cq.len()).enumerate() {
                    *v = dot(row(r + i), x, widen);
                }
                d
            };
            for (ci, di) in cq.iter_mut().zip(d) {
                *ci = if accumulate { *ci + di } else { di };
            }
        }
    };
    match threads {
        Threads::Pool => c.par_chunks_mut(GEMV_ROWS).enumerate().for_each(block),
        Threads::One => c.chunks_mut(GEMV_ROWS).enumerate().for_each(block),
    }
}

/// `c[m] = A[m×k] · x[k]` with `A` held in bf16 (row-major, rows `k` apart) and `x` rounded to
/// bf16: products of bf16 operands (exact in f32) summed in f32, the contract of
/// [`Precision::Bf16`], on any x86-64 (a bf16 widens to f32 by a shift). A fully connected layer
/// at one image is bound by reading its weights: kept in bf16 ([`round_rows`]), they are half
/// the bytes of f32's.
pub fn gemv_bf16(m: usize, k: usize, a: &[u16], x: &[f32], c: &mut [f32]) {
    assert!(m.checked_mul(k).is_some_and(|mk| a.len() >= mk), "lhs too short: {} for {m}x{k}", a.len());
    assert!(x.len() >= k && c.len() >= m, "x or c too short for {m}x{k}");
    let x: Vec<f32> = x[..k].iter().map(|&v| bf16::round_bf16(v)).collect();
    gemv(k, a, k, &x, &mut c[..m], false, Threads::Pool, bf16::from_bf16);
}

/// `A` rounded to bf16, row-major as it was: the weights [`gemv_bf16`] reads.
pub fn round_rows(a: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; a.len()];
    out.par_chunks_mut(1 << 16).zip(a.par_chunks(1 << 16)).for_each(|(o, a)| {
        o.iter_mut().zip(a).for_each(|(o, &v)| *o = bf16::to_bf16(v));
    });
    out
}

/// `Σ widen(a_i)·b_i` in 16 interleaved f32 sums (two AVX2 vectors; the compiler vectorises them).
#[inline(always)]
fn dot<T: Copy>(a: &[T], b: &[f32], widen: impl Fn(T) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(&x, y)| widen(x) * y).sum();
    for (x, y) in ac.zip(bc) {
        for j in 0..16 {
            acc[j] = widen(x[j]).mul_add(y[j], acc[j]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`dot`] of four rows with one `b`: each element of `b` loaded once for four rows.
#[inline(always)]
fn dot4<T: Copy>(a: [&[T]; 4], b: &[f32], widen: impl Fn(T) -> f32) -> [f32; 4] {
    let k = b.len();
    let body = k / 16 * 16;
    let mut acc = [[0.0f32; 16]; 4];
    let [a0, a1, a2, a3] = a.map(|r| r[..body].chunks_exact(16));
    for ((((y, x0), x1), x2), x3) in b[..body].chunks_exact(16).zip(a0).zip(a1).zip(a2).zip(a3) {
        for j in 0..16 {
            acc[0][j] = widen(x0[j]).mul_add(y[j], acc[0][j]);
            acc[1][j] = widen(x1[j]).mul_add(y[j], acc[1][j]);
            acc[2][j] = widen(x2[j]).mul_add(y[j], acc[2][j]);
            acc[3][j] = widen(x3[j]).mul_add(y[j], acc[3][j]);
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, acc), a) in out.iter_mut().zip(&acc).zip(&a) {
        let tail: f32 = a[body..k].iter().zip(&b[body..k]).map(|(&x, y)| widen(x) * y).sum();
        *o = acc.iter().sum::<f32>() + tail;
    }
    out
}

/// Naive triple loop with the same contract as [`matmul`]; the reference the tests compare to.
pub fn matmul_naive(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>, c: &mut [f32], accumulate: bool) {
    let at = |i: usize, p: usize| a.at(m, k, i, p);
    let bt = |p: usize, j: usize| b.at(k, n, p, j);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += at(i, p) as f64 * bt(p, j) as f64;
            }
            let dst = &mut c[i * n + j];
            *dst = if accumulate { *dst + s as f32 } else { s as f32 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::uniform_vec;

    #[test]
    fn transpose_matches_the_definition() {
        // Whole 8×8 blocks, ragged edges on either side, a row stride past the columns.
        for &(rows, cols, stride) in
            &[(8usize, 8usize, 8usize), (16, 24, 30), (13, 9, 9), (3, 17, 20), (1, 1, 1), (0, 5, 5)]
        {
            let src = uniform_vec(rows.saturating_sub(1) * stride + cols, 5);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&src, stride, rows, cols, &mut dst);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(
                        dst[j * rows + i].to_bits(),
                        src[i * stride + j].to_bits(),
                        "{rows}x{cols}/{stride} ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn all_transposes_match_naive() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 10, 128), (130, 1, 37), (70, 1, 300)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = uniform_vec(m * k, 1);
                    let b = uniform_vec(k * n, 2);
                    let c0 = uniform_vec(m * n, 3);
                    for acc in [false, true] {
                        let mut c1 = c0.clone();
                        let mut c2 = c0.clone();
                        let oa = Operand { data: &a, transposed: ta, row_stride: 0 };
                        let ob = Operand { data: &b, transposed: tb, row_stride: 0 };
                        matmul(m, n, k, oa, ob, &mut c1, acc, Threads::Pool);
                        matmul_naive(m, n, k, oa, ob, &mut c2, acc);
                        let err = crate::tensor::rel_err(&c1, &c2);
                        assert!(err < 1e-5, "{m}x{n}x{k} ta={ta} tb={tb} acc={acc}: {err}");
                    }
                }
            }
        }
    }

    #[test]
    fn row_blocks_match_naive() {
        // Several blocks of ROW_BLOCK rows and a partial last one, on 3 threads.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for &(m, n, k) in &[(1, 3, 5), (70, 1, 33), (1100, 5, 37), (1500, 64, 9)] {
            for (ta, tb, acc) in (0..8).map(|i| (i & 1 == 1, i & 2 == 2, i & 4 == 4)) {
                let (a, b, c0) = (uniform_vec(m * k, 6), uniform_vec(k * n, 7), uniform_vec(m * n, 8));
                let oa = Operand { data: &a, transposed: ta, row_stride: 0 };
                let ob = Operand { data: &b, transposed: tb, row_stride: 0 };
                let (mut c1, mut c2) = (c0.clone(), c0.clone());
                pool.install(|| matmul_row_blocks(Precision::F32, m, n, k, oa, ob, &mut c1, acc));
                matmul_naive(m, n, k, oa, ob, &mut c2, acc);
                let err = crate::tensor::rel_err(&c1, &c2);
                assert!(err < 1e-5, "{m}x{n}x{k} ta={ta} tb={tb} acc={acc}: {err}");
            }
            // `a` a slice of a wider matrix (rows 3 elements longer than the product reads).
            let (a, b) = (uniform_vec(m * (k + 3) + 1, 9), uniform_vec(k * n, 10));
            let (oa, ob) = (Operand::strided(&a[1..], k + 3), Operand::plain(&b));
            let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
            pool.install(|| matmul_row_blocks(Precision::F32, m, n, k, oa, ob, &mut c1, false));
            matmul_naive(m, n, k, oa, ob, &mut c2, false);
            assert!(crate::tensor::rel_err(&c1, &c2) < 1e-5, "{m}x{n}x{k} strided");
        }
    }

    #[test]
    fn bf16_gemv_matches_rounded_naive() {
        // Rows past a whole group of four and past a multiple of 16 columns, several row blocks.
        for &(m, k) in &[(1, 1), (7, 37), (130, 300), (2 * GEMV_ROWS + 3, 64)] {
            let (a, x) = (uniform_vec(m * k, 11), uniform_vec(k, 12));
            let rounded = |v: &[f32]| v.iter().map(|&v| bf16::round_bf16(v)).collect::<Vec<_>>();
            let mut want = vec![0.0; m];
            matmul_naive(m, 1, k, Operand::plain(&rounded(&a)), Operand::plain(&rounded(&x)), &mut want, false);
            let mut got = vec![f32::NAN; m];
            gemv_bf16(m, k, &round_rows(&a), &x, &mut got);
            // The products are exact; only the f32 sums' order differs from the naive f64 ones.
            let err = crate::tensor::rel_err(&got, &want);
            assert!(err < 1e-5, "{m}x{k}: {err}");
        }
    }

    #[test]
    fn strided_operands_match_naive() {
        // Every third row of a wider matrix, as Winograd's products read their slices.
        let (m, n, k) = (5, 7, 4);
        let a = uniform_vec(m * 9, 4);
        let b = uniform_vec(k * 11, 5);
        let (oa, ob) = (Operand::strided(&a[2..], 9), Operand::strided(&b[1..], 11));
        let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
        matmul(m, n, k, oa, ob, &mut c1, false, Threads::One);
        matmul_naive(m, n, k, oa, ob, &mut c2, false);
        assert!(crate::tensor::rel_err(&c1, &c2) < 1e-5);
        let dense: Vec<f32> = (0..m).flat_map(|i| a[2 + i * 9..2 + i * 9 + k].to_vec()).collect();
        let mut c3 = vec![0.0; m * n];
        matmul_naive(m, n, k, Operand::plain(&dense), ob, &mut c3, false);
        assert_eq!(c2, c3);
    }

    #[test]
    fn one_column_with_strided_rows_matches_naive() {
        let (m, k) = (100, 21);
        let (a, b) = (uniform_vec(m * 30, 8), uniform_vec(k, 9));
        let (mut c1, mut c2) = (uniform_vec(m, 10), uniform_vec(m, 10));
        matmul(m, 1, k, Operand::strided(&a[3..], 30), Operand::plain(&b), &mut c1, true, Threads::Pool);
        matmul_naive(m, 1, k, Operand::strided(&a[3..], 30), Operand::plain(&b), &mut c2, true);
        assert!(crate::tensor::rel_err(&c1, &c2) < 1e-6);
    }

    /// The bf16 kernels against the naive product of bf16-rounded operands, over shapes with
    /// partial panels, odd `k`, several `KC` passes, several packing groups, every transpose,
    /// strides and accumulation.
    fn bf16_matches_rounded_naive(kernel: Bf16Kernel) {
        use bf16::{KC, MR, NR, round_bf16};
        // The last two: more than one task's group of panels when packed from side-by-side rows.
        let shapes = [
            (2, 2, 1),
            (MR + 1, NR + 3, 7),
            (2 * MR, 2 * NR, 2 * KC),
            (13, 70, 2 * KC * 2 + 5),
            (40, 5, 300),
            (87 * MR + 1, 3, 5),
            (7, 8 * NR + 5, 9),
        ];
        for &(m, n, k) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (a, b, c0) = (uniform_vec(m * k, 1), uniform_vec(k * n, 2), uniform_vec(m * n, 3));
                let (ar, br): (Vec<f32>, Vec<f32>) =
                    (a.iter().map(|&x| round_bf16(x)).collect(), b.iter().map(|&x| round_bf16(x)).collect());
                for (acc, threads) in [(false, Threads::Pool), (true, Threads::One)] {
                    let op = |d, t| Operand { data: d, transposed: t, row_stride: 0 };
                    let (mut c1, mut c2, mut c3) = (c0.clone(), c0.clone(), c0.clone());
                    matmul_in(Precision::Bf16(kernel), m, n, k, op(&a, ta), op(&b, tb), &mut c1, acc, threads);
                    matmul_naive(m, n, k, op(&ar, ta), op(&br, tb), &mut c2, acc);
                    matmul_naive(m, n, k, op(&a, ta), op(&b, tb), &mut c3, acc);
                    let what = format!("{kernel:?} {m}x{n}x{k} ta={ta} tb={tb} acc={acc}");
                    let err = crate::tensor::rel_err(&c1, &c2);
                    assert!(err < 1e-5, "{what}: {err} against the rounded operands");
                    // Against the unrounded operands the error is bf16's (2⁻⁹ an operand), not
                    // less (on sums long enough not to hinge on one product's cancellation).
                    let err = crate::tensor::rel_err(&c1, &c3);
                    assert!(k < 7 || (err < 1e-2 && err > 1e-5), "{what}: {err} against f32");
                }
            }
        }
        // One column (a fully connected layer at batch 1): f32, as the weights are read once.
        let (a1, b1) = (uniform_vec(5 * 9, 6), uniform_vec(9, 7));
        let (mut c1, mut c2) = (vec![0.0; 5], vec![0.0; 5]);
        matmul_in(
            Precision::Bf16(kernel),
            5,
            1,
            9,
            Operand::plain(&a1),
            Operand::plain(&b1),
            &mut c1,
            false,
            Threads::One,
        );
        matmul(5, 1, 9, Operand::plain(&a1), Operand::plain(&b1), &mut c2, false, Threads::One);
        assert_eq!(c1, c2);
        // One row too.
        let (mut c1, mut c2) = (vec![0.0; 5], vec![0.0; 5]);
        matmul_in(Precision::Bf16(kernel), 1, 5, 9, Operand::plain(&b1), Operand::t(&a1), &mut c1, false, Threads::One);
        matmul(1, 5, 9, Operand::plain(&b1), Operand::t(&a1), &mut c2, false, Threads::One);
        assert_eq!(c1, c2);
        // A strided slice, as Winograd's products read theirs.
        let (a, b) = (uniform_vec(5 * 9, 4), uniform_vec(4 * 11, 5));
        let rounded = |v: &[f32]| v.iter().map(|&x| round_bf16(x)).collect::<Vec<_>>();
        let (ar, br) = (rounded(&a), rounded(&b));
        let (mut c1, mut c2) = (vec![0.0; 35], vec![0.0; 35]);
        matmul_in(
            Precision::Bf16(kernel),
            5,
            7,
            4,
            Operand::strided(&a[2..], 9),
            Operand::strided(&b[1..], 11),
            &mut c1,
            false,
            Threads::One,
        );
        matmul_naive(5, 7, 4, Operand::strided(&ar[2..], 9), Operand::strided(&br[1..], 11), &mut c2, false);
        assert!(crate::tensor::rel_err(&c1, &c2) < 1e-5);
    }

    #[test]
    fn bf16_emulated_matches_rounded_naive() {
        bf16_matches_rounded_naive(Bf16Kernel::Emulated);
    }

    /// Runs `vdpbf16ps` where the CPU has it (Zen 4/5, Sapphire Rapids); says so where not.
    #[test]
    fn bf16_native_matches_rounded_naive() {
        if !Bf16Kernel::native_available() {
            eprintln!("skipped: this CPU has no AVX512-BF16 (the emulated kernel is tested instead)");
            return;
        }
        bf16_matches_rounded_naive(Bf16Kernel::Native);
    }
}
