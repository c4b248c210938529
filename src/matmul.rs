//! A safe, row-major face on the `gemm` crate: the one place this crate multiplies matrices.
//!
//! `C[m,n] = (accumulate ? C : 0) + op(A)[m,k] · op(B)[k,n]`, where `op(A)` is `A` (stored
//! row-major `m×k`) or `Aᵀ` (stored row-major `k×m`) depending on the transpose flag.

use gemm::Parallelism;

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
}
