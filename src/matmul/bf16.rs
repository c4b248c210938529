//! Products in bf16 with f32 accumulation: `C[m×n] (+)= bf16(A) · bf16(B)`, every product of two
//! bf16 values exact in f32 and summed in f32 (the `vdpbf16ps` instruction of AVX512-BF16).
//!
//! bf16 keeps f32's exponent and 8 of its 24 mantissa bits, so each operand is rounded with a
//! relative error of at most 2⁻⁹ and the sum is as exact as an f32 sum. The `gemm` crate has no
//! bf16 path, so this file is its own small GEMM in the GotoBLAS shape:
//! - both operands are packed once, rounded to bf16 (round to nearest even) and paired along
//!   `k`: a `u32` holds the elements `2p` (low half) and `2p+1` (high half) of a row of A or a
//!   column of B, the layout `vdpbf16ps` multiplies;
//! - A in panels of [`MR`] rows (`[panel][pair][MR]`), B in panels of [`NR`] columns
//!   (`[panel][pair][NR]`), both zero-padded to whole panels and an even `k`;
//! - a micro-kernel multiplies one A panel by one B panel over [`KC`] pairs into an `MR×NR`
//!   tile held in 24 of the 32 AVX-512 registers (6 rows × 4 vectors of 16 columns); per pair
//!   it loads 4 vectors of B, broadcasts 6 pairs of A and issues 24 `vdpbf16ps` (768
//!   multiply-adds);
//! - the `KC` pairs of a B panel (32 KiB) stay in L1 while every A panel of a task's rows
//!   passes by; tasks are blocks of C's rows, one per thread or several.
//!
//! [`Bf16Kernel::Emulated`] runs the same packing and tiling with a portable micro-kernel that
//! computes what the instruction does (except below ~1.2e-38: the instruction flushes denormal
//! inputs and results to zero, the emulation keeps them), so the whole path is tested on any
//! CPU; it is far slower than f32 and meant for tests.

use super::{Operand, Threads};
use rayon::prelude::*;

/// Rows of A in a panel and of the micro-kernel's tile.
pub const MR: usize = 6;
/// Columns of B in a panel and of the micro-kernel's tile: 4 vectors of 16 f32.
pub const NR: usize = 64;
/// Pairs of `k` per pass of the micro-kernel: a B panel's pass is `KC·NR·4` bytes = 32 KiB.
pub const KC: usize = 128;
/// Rows of C per task at most (a task's A panels, `MC·KC·4` bytes = 96 KiB, stay in L2).
const MC: usize = 32 * MR;

/// Which micro-kernel multiplies the packed panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// `vdpbf16ps` (AVX512-BF16): only where [`Bf16Kernel::native_available`].
    Native,
    /// Portable code with the instruction's numerics (but for denormals, which the instruction
    /// flushes to zero and this keeps), for testing on any CPU.
    Emulated,
}

impl Bf16Kernel {
    /// Whether this CPU has AVX-512F and AVX512-BF16 (checked at run time).
    pub fn native_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            // The compiler takes AVX512-BF16 to imply AVX512BW; every CPU with it has both.
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Multiplies `kc` pairs of an A panel (`a[p·MR + r]`) by a B panel (`b[p·NR + j]`) into
    /// `tile[r·NR + j]`, overwriting it.
    fn run(self, kc: usize, a: &[u32], b: &[u32], tile: &mut [f32; MR * NR]) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR, "panels shorter than {kc} pairs");
        match self {
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Native if Self::native_available() => {
                // SAFETY: the CPU has the features (checked above; the check is cached by std),
                // and the panels hold `kc` pairs (asserted).
                unsafe { native::kernel(kc, a, b, tile) }
            }
            Bf16Kernel::Native => panic!("the bf16 kernel needs AVX512-BF16, which this CPU lacks"),
            Bf16Kernel::Emulated => emulated_kernel(kc, a, b, tile),
        }
    }
}

/// `x` rounded to bf16 (to nearest, ties to even), as the top 16 bits of its f32. A NaN stays a
/// (quiet) NaN; a value that rounds past the largest bf16 becomes infinity, as in hardware.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let nan = ((bits >> 16) | 0x40) & 0xffff;
    (if x.is_nan() { nan } else { rounded }) as u16
}

/// The f32 a bf16 stands for (exact).
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` rounded to the nearest bf16, as an f32.
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// A pair of elements, rounded, as `vdpbf16ps` reads it: `lo` in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | (u32::from(to_bf16(hi)) << 16)
}

/// Packs the `rows×k` view `op` (row `i`, column `p`) into panels of `width` rows:
/// `out[(panel·kp + pair)·width + r] = (op[i, 2·pair], op[i, 2·pair+1])` for `i = panel·width + r`,
/// zero beyond the view. A is packed by rows, B by its columns (the view of `Bᵀ`).
fn pack(op: Operand<'_>, rows: usize, k: usize, width: usize, threads: Threads, out: &mut Vec<u32>) {
    let (kp, panels) = (k.div_ceil(2), rows.div_ceil(width));
    // Every element is written below but the last panel's rows past the view: only they are
    // zeroed (the buffer is reused, and clearing it all cost a pass over fc6's 75 MB).
    out.resize(panels * kp * width, 0);
    if !rows.is_multiple_of(width) {
        out[(panels - 1) * kp * width..].fill(0);
    }
    let (rs, cs) = op.steps(rows, k);
    // Panels packed together by one task: with the rows side by side in memory (rs = 1), at
    // least 512 of them, so that every line read is 2 KiB and a page's translation serves 512
    // elements (A's 6-row panels of a transposed weight one at a time read 24 bytes a line, a
    // page apart: fc6's data gradient spent 11 ms packing a block of 512 rows, now 2-3).
    let group = if rs == 1 { 512usize.div_ceil(width) } else { 1 };
    let fill = |(g, dst): (usize, &mut [u32])| {
        let i0 = g * group * width;
        let view = Packing { d: op.data, rs, cs, k, kp, width, i0 };
        // An operand is stored by rows or transposed, so one of its steps is 1.
        match (rs, cs) {
            (1, _) => view.lines((group * width).min(rows - i0), dst),
            (_, 1) => view.rows(width.min(rows - i0), dst),
            _ => unreachable!("an operand with steps {rs} and {cs}"),
        }
    };
    // k > 0 (the caller returns before), so the chunks are not empty.
    let chunks = out.chunks_mut(group * kp * width);
    match threads {
        Threads::Pool => chunks.collect::<Vec<_>>().into_par_iter().enumerate().for_each(fill),
        Threads::One => chunks.enumerate().for_each(fill),
    }
}

/// One task of [`pack`]: the operand's data and steps, `k` and its `kp` pairs, the panels'
/// width and the first row the task packs.
struct Packing<'a> {
    d: &'a [f32],
    rs: usize,
    cs: usize,
    k: usize,
    kp: usize,
    width: usize,
    i0: usize,
}

impl Packing<'_> {
    /// Rows side by side in memory (`rs = 1`: B stored `k×n`, A stored transposed): two lines
    /// of the task's `wg` rows make a line of pairs (the loop vectorises), cut into its panels.
    fn lines(&self, wg: usize, dst: &mut [u32]) {
        let (d, k, width) = (self.d, self.k, self.width);
        let line = |p: usize| (p < k).then(|| &d[self.i0 + p * self.cs..][..wg]);
        let mut pairs = vec![0u32; wg];
        for q in 0..self.kp {
            match (line(2 * q), line(2 * q + 1)) {
                (Some(l0), Some(l1)) => {
                    pairs.iter_mut().zip(l0.iter().zip(l1)).for_each(|(o, (&x, &y))| *o = pair(x, y))
                }
                (Some(l0), None) => pairs.iter_mut().zip(l0).for_each(|(o, &x)| *o = pair(x, 0.0)),
                _ => unreachable!("pair {q} of {k}"),
            }
            for (panel, src) in dst.chunks_exact_mut(self.kp * width).zip(pairs.chunks(width)) {
                panel[q * width..][..src.len()].copy_from_slice(src);
            }
        }
    }

    /// Each row's pairs side by side (`cs = 1`: A stored by rows, B stored transposed, as the
    /// fully connected weights and Winograd's kernels are): a run of a row rounded into pairs
    /// (the loop vectorises), then spread across the panel's lanes, RUN pairs at a time so
    /// the block being written stays in L1.
    fn rows(&self, w: usize, dst: &mut [u32]) {
        const RUN: usize = 64;
        let (k, width) = (self.k, self.width);
        let mut run = [0u32; RUN];
        for q0 in (0..self.kp).step_by(RUN) {
            let nq = RUN.min(self.kp - q0);
            // Pairs with both elements in the row (all but the last when k is odd).
            let full = nq.min(k / 2 - q0);
            for r in 0..w {
                let row = &self.d[(self.i0 + r) * self.rs..];
                let src = &row[2 * q0..][..2 * full];
                run[..full].iter_mut().zip(src.chunks_exact(2)).for_each(|(o, p)| *o = pair(p[0], p[1]));
                if full < nq {
                    run[full] = pair(row[2 * (q0 + full)], 0.0);
                }
                for (q, &v) in run[..nq].iter().enumerate() {
                    dst[(q0 + q) * width + r] = v;
                }
            }
        }
    }
}

thread_local! {
    /// A thread's buffers for the packed A and B (taken during a product, so a nested product on
    /// the same thread allocates its own).
    static PACKS: std::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The transposed view of an operand (`cols×rows` of the same storage), so B's columns can be
/// packed as rows.
fn transposed(op: Operand<'_>) -> Operand<'_> {
    Operand { transposed: !op.transposed, ..op }
}

/// `c[m×n] (+)= bf16(a)[m×k] · bf16(b)[k×n]`, accumulated in f32; the contract of
/// [`super::matmul`] (shapes checked by the caller).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    kernel: Bf16Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: Threads,
) {
    let kp = k.div_ceil(2);
    // The packed operands' buffers are kept per thread: fresh ones cost a page fault per 4 KiB
    // (fc6's 75 MB of packed weights, twice a step).
    crate::threads::with_taken(&PACKS, |(apack, bpack)| {
        pack(a, m, k, MR, threads, apack);
        pack(transposed(b), n, k, NR, threads, bpack);
        let tasks = if threads == Threads::Pool { 4 * rayon::current_num_threads().max(1) } else { 1 };
        // Rows per task: whole panels, at most MC, enough tasks to share among threads.
        let rows = (m.div_ceil(tasks).div_ceil(MR) * MR).clamp(MR, MC);
        let task = |(t, block): (usize, &mut [f32])| {
            let (r0, nrows) = (t * rows, block.len() / n);
            let mut tile = [0.0f32; MR * NR];
            for pc in (0..kp).step_by(KC) {
                let kc = KC.min(kp - pc);
                let first = pc == 0 && !accumulate;
                // A B panel's pass stays in L1 while the task's A panels go by.
                for jp in 0..n.div_ceil(NR) {
                    let bp = &bpack[(jp * kp + pc) * NR..][..kc * NR];
                    let (j0, cols) = (jp * NR, NR.min(n - jp * NR));
                    for ip in r0 / MR..(r0 + nrows).div_ceil(MR) {
                        kernel.run(kc, &apack[(ip * kp + pc) * MR..][..kc * MR], bp, &mut tile);
                        for r in 0..MR.min(r0 + nrows - ip * MR) {
                            let dst = &mut block[(ip * MR + r - r0) * n + j0..][..cols];
                            let src = &tile[r * NR..][..cols];
                            if first {
                                dst.copy_from_slice(src);
                            } else {
                                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                }
            }
        };
        let blocks = c[..m * n].chunks_mut(rows * n);
        match threads {
            Threads::Pool => blocks.collect::<Vec<_>>().into_par_iter().enumerate().for_each(task),
            Threads::One => blocks.enumerate().for_each(task),
        }
    })
}

/// The micro-kernel in portable code: what `vdpbf16ps` computes per lane, the high pair's
/// product added first, then the low one's (each product of two bf16 is exact in f32);
/// denormals are kept where the instruction flushes them.
fn emulated_kernel(kc: usize, a: &[u32], b: &[u32], tile: &mut [f32; MR * NR]) {
    tile.fill(0.0);
    let (lo, hi) = (|w: u32| f32::from_bits(w << 16), |w: u32| f32::from_bits(w & 0xffff_0000));
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &w) in tile.chunks_exact_mut(NR).zip(ap) {
            let (al, ah) = (lo(w), hi(w));
            for (t, &v) in row.iter_mut().zip(bp) {
                *t += ah * hi(v);
                *t += al * lo(v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod native {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    const NV: usize = NR / 16;

    /// The `vdpbf16ps` micro-kernel: a 6×64 tile in 24 zmm registers.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16; `a` must hold `kc·MR` and `b` `kc·NR` pairs.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn kernel(kc: usize, a: &[u32], b: &[u32], tile: &mut [f32; MR * NR]) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        for p in 0..kc {
            // SAFETY: p < kc, so `p·NR + 16·v + 15 < kc·NR ≤ b.len()` and
            // `p·MR + r < kc·MR ≤ a.len()`; the bf16 vectors are the same 512 bits as the integers.
            unsafe {
                let bv: [__m512bh; NV] = std::array::from_fn(|v| {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(p * NR + 16 * v).cast()))
                });
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(p * MR + r) as i32));
                    for (acc, &bv) in row.iter_mut().zip(&bv) {
                        *acc = _mm512_dpbf16_ps(*acc, av, bv);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &acc) in row.iter().enumerate() {
                // SAFETY: `r·NR + 16·v + 15 < MR·NR`, the tile's length.
                unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR + 16 * v), acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::uniform_vec;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa, 1.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0 + 1.0 / 4096.0), 1.0 + 1.0 / 128.0);
        assert_eq!(round_bf16(-2.5), -2.5);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
        for x in uniform_vec(1000, 7) {
            let (r, x) = (round_bf16(x * 100.0), x * 100.0);
            assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
        }
    }
}
