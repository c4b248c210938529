//! A safe, row-major face on the `gemm` crate: the one place this crate multiplies matrices.
//!
//! `C[m,n] = (accumulate ? C : 0) + op(A)[m,k] · op(B)[k,n]`, where `op(A)` is `A` (stored
//! row-major `m×k`) or `Aᵀ` (stored row-major `k×m`) depending on the transpose flag.

use gemm::Parallelism;

/// A matrix operand: a row-major slice and whether the product reads it transposed.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    /// The slice as it is (row-major, `rows×cols` of the product's view).
    pub fn plain(data: &'a [f32]) -> Self {
        Self { data, transposed: false }
    }
    /// The transpose of the stored row-major matrix.
    pub fn t(data: &'a [f32]) -> Self {
        Self { data, transposed: true }
    }
    /// (row stride, column stride) of the operand seen as `rows×cols`.
    fn strides(&self, rows: usize, cols: usize) -> (isize, isize) {
        if self.transposed { (1, rows as isize) } else { (cols as isize, 1) }
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
    assert!(a.data.len() >= m * k, "lhs too short: {} < {m}x{k}", a.data.len());
    assert!(b.data.len() >= k * n, "rhs too short: {} < {k}x{n}", b.data.len());
    assert!(c.len() >= m * n, "dst too short: {} < {m}x{n}", c.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
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
    // the largest offset for a row-major m×k view is (m-1)*k + (k-1) < m*k, and likewise for
    // the transposed view; `c` is exclusively borrowed, and `a`, `b` cannot alias it.
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

/// Naive triple loop with the same contract as [`matmul`]; the reference the tests compare to.
pub fn matmul_naive(m: usize, n: usize, k: usize, a: Operand<'_>, b: Operand<'_>, c: &mut [f32], accumulate: bool) {
    let at = |i: usize, p: usize| if a.transposed { a.data[p * m + i] } else { a.data[i * k + p] };
    let bt = |p: usize, j: usize| if b.transposed { b.data[j * k + p] } else { b.data[p * n + j] };
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
    fn all_transposes_match_naive() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 10, 128)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = uniform_vec(m * k, 1);
                    let b = uniform_vec(k * n, 2);
                    let c0 = uniform_vec(m * n, 3);
                    for acc in [false, true] {
                        let mut c1 = c0.clone();
                        let mut c2 = c0.clone();
                        let oa = Operand { data: &a, transposed: ta };
                        let ob = Operand { data: &b, transposed: tb };
                        matmul(m, n, k, oa, ob, &mut c1, acc, Threads::Pool);
                        matmul_naive(m, n, k, oa, ob, &mut c2, acc);
                        let err = crate::tensor::rel_err(&c1, &c2);
                        assert!(err < 1e-5, "{m}x{n}x{k} ta={ta} tb={tb} acc={acc}: {err}");
                    }
                }
            }
        }
    }
}
