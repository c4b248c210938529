//! Pooling over each channel plane, NCHW.
//!
//! Max-pooling: `y[b,c,i,j] = max_{0<=p<K, 0<=q<K} x[b,c,i·S+p-P, j·S+q-P]` (padding never
//! wins), with `OH = (H + 2P - K)/S + 1`. The paper's pooling overlaps: K=3, S=2. The forward pass
//! records each window's arg-max; the backward pass routes the gradient to it. Ties go to the
//! first maximum in row-major order, as in PyTorch and Caffe; a NaN counts as the maximum so it
//! propagates instead of vanishing.
//!
//! Adaptive average pooling (torchvision's `AdaptiveAvgPool2d((6, 6))`): output cell `i` averages
//! input rows `[floor(i·H/OH), ceil((i+1)·H/OH))`, and likewise for columns.

use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolShape {
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad - self.kernel) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad - self.kernel) / self.stride + 1
    }
    pub fn in_len(&self) -> usize {
        self.c * self.in_h * self.in_w
    }
    pub fn out_len(&self) -> usize {
        self.c * self.out_h() * self.out_w()
    }
}

/// `(best, arg) ← (v, vi)` if `v` wins by PyTorch's rule: greater, or NaN.
///
/// Branch-free (`select_unpredictable`): with real data the winner's position is random, and
/// the branches LLVM otherwise emits made this pass 5x slower (measured). One value at a time;
/// vectors of them go by [`take_max_v`].
#[inline(always)]
fn take_max(v: f32, vi: u32, best: &mut f32, arg: &mut u32) {
    let win = (v > *best) | v.is_nan();
    // Selected as bits: LLVM keeps an integer select branch-free but not a float one.
    *best = f32::from_bits(std::hint::select_unpredictable(win, v.to_bits(), best.to_bits()));
    *arg = std::hint::select_unpredictable(win, vi, *arg);
}

/// Max-pool forward over `planes = B·C` planes. `argmax` receives, per output, the index of the
/// winning input inside its plane.
///
/// Separable: first the max over each window's columns for every input row, then over the
/// window's rows. Scanning columns first keeps PyTorch's tie rule (the first maximum in
/// row-major order): the row pass takes the earliest row among equal maxima, and within that
/// row the column pass already took the earliest column.
pub fn max_forward(s: &PoolShape, x: &[f32], y: &mut [f32], argmax: &mut [u32], planes: usize) {
    let (ih, iw, oh, ow) = (s.in_h, s.in_w, s.out_h(), s.out_w());
    let (ip, op) = (ih * iw, oh * ow);
    let (k, st, pad) = (s.kernel, s.stride, s.pad);
    // Input columns [lo, hi) of output column j's window, clipped to the row.
    let cols: Vec<(usize, usize)> = (0..ow)
        .map(|j| {
            let x0 = (j * st) as isize - pad as isize;
            (x0.max(0) as usize, ((x0 + k as isize) as usize).min(iw))
        })
        .collect();
    let per = crate::kernels::conv::image_chunks(planes).max(1);
    y[..planes * op]
        .par_chunks_mut(per * op)
        .zip(argmax[..planes * op].par_chunks_mut(per * op))
        .zip(x[..planes * ip].par_chunks(per * ip))
        .for_each(|((ys, args), xs)| {
            let mut hmax = vec![0.0f32; ih * ow];
            let mut harg = vec![0u32; ih * ow];
            // Windows inside the row (no padding), V or more, take the vectorised path over the
            // row's phases.
            let phased = pad == 0 && ow >= V;
            let mut phases = vec![0.0f32; st * iw.div_ceil(st)];
            for ((yp, ap), xp) in ys.chunks_mut(op).zip(args.chunks_mut(op)).zip(xs.chunks(ip)) {
                // Column pass: each output column's maximum over its window, in registers.
                for r in 0..ih {
                    let row = &xp[r * iw..(r + 1) * iw];
                    let (hm, ha) = (&mut hmax[r * ow..(r + 1) * ow], &mut harg[r * ow..(r + 1) * ow]);
                    if phased {
                        row_max_phased(row, k, st, &mut phases, hm, ha);
                    }
                    for ((h, a), &(lo, hi)) in
                        hm.iter_mut().zip(ha.iter_mut()).zip(&cols).skip(if phased { ow } else { 0 })
                    {
                        let (mut best, mut arg) = (row[lo], lo as u32);
                        for (c, &v) in row[lo + 1..hi].iter().enumerate() {
                            take_max(v, (lo + 1 + c) as u32, &mut best, &mut arg);
                        }
                        *h = best;
                        *a = arg;
                    }
                    ha.iter_mut().for_each(|a| *a += (r * iw) as u32);
                }
                // Row pass.
                for i in 0..oh {
                    let y0 = (i * st) as isize - pad as isize;
                    let (lo, hi) = (y0.max(0) as usize, ((y0 + k as isize) as usize).min(ih));
                    let (yr, ar) = (&mut yp[i * ow..(i + 1) * ow], &mut ap[i * ow..(i + 1) * ow]);
                    // V columns at a time in registers (vectorised); below V columns, one by one.
                    let (rows, rargs) = (&hmax[lo * ow..hi * ow], &harg[lo * ow..hi * ow]);
                    for j0 in vector_starts(ow) {
                        let mut best: [f32; V] = rows[j0..j0 + V].try_into().expect("V values");
                        let mut arg: [u32; V] = rargs[j0..j0 + V].try_into().expect("V values");
                        for r in 1..hi - lo {
                            let h: &[f32; V] = rows[r * ow + j0..][..V].try_into().expect("V values");
                            let ha: &[u32; V] = rargs[r * ow + j0..][..V].try_into().expect("V values");
                            take_max_v(h, ha, &mut best, &mut arg);
                        }
                        yr[j0..j0 + V].copy_from_slice(&best);
                        ar[j0..j0 + V].copy_from_slice(&arg);
                    }
                    for j in 0..if ow < V { ow } else { 0 } {
                        let (mut best, mut arg) = (rows[j], rargs[j]);
                        for r in 1..hi - lo {
                            take_max(rows[r * ow + j], rargs[r * ow + j], &mut best, &mut arg);
                        }
                        (yr[j], ar[j]) = (best, arg);
                    }
                }
            }
        });
}

/// Outputs a vector step of the passes computes.
const V: usize = 8;

/// [`take_max`]'s rule lane by lane on V values, its selects as masks: so they vectorise (as
/// `select_unpredictable`s or `if`s the compiler kept them scalar, 2-3x slower; one value at a
/// time, masks were 3x slower than [`take_max`]'s selects: both measured).
#[inline(always)]
fn take_max_v(v: &[f32; V], vi: &[u32; V], best: &mut [f32; V], arg: &mut [u32; V]) {
    for l in 0..V {
        masked_max(v[l], vi[l], &mut best[l], &mut arg[l]);
    }
}

/// [`take_max`] by masks.
#[inline(always)]
fn masked_max(v: f32, vi: u32, best: &mut f32, arg: &mut u32) {
    let win = (u32::from((v > *best) | v.is_nan())).wrapping_neg();
    *best = f32::from_bits((v.to_bits() & win) | (best.to_bits() & !win));
    *arg = (vi & win) | (*arg & !win);
}

/// Where the vector steps over `n >= V` outputs start: every V, the last one ending at `n`
/// (overlapping its predecessor: outputs computed twice come out the same); none below V.
fn vector_starts(n: usize) -> impl Iterator<Item = usize> {
    let steps = if n < V { 0 } else { n.div_ceil(V) };
    (0..steps).map(move |c| (c * V).min(n - V))
}

/// The column pass of one row, `hm.len() >= V` output columns (windows inside the row): `hm[j]`
/// the maximum of `row[j·S .. j·S + K]` by [`take_max`]'s rule (the first on ties, the last
/// NaN), `ha[j]` its column. Value by value, each window is a chain of
/// dependent selects; split into its `S` phases (`phase p` = `row[p], row[p + S]...`), tap `t` of
/// windows `j..j + V` is the contiguous run `phase[t % S][j + t/S ..]`, and V windows go at once.
fn row_max_phased(row: &[f32], k: usize, st: usize, phases: &mut [f32], hm: &mut [f32], ha: &mut [u32]) {
    let pl = row.len().div_ceil(st);
    if st == 2 {
        // Written pairwise so that the compiler de-interleaves by vector shuffles.
        let (even, odd) = phases.split_at_mut(pl);
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
            (*e, *o) = (pair[0], pair[1]);
        }
        if row.len() % 2 == 1 {
            even[pl - 1] = row[row.len() - 1];
        }
    } else {
        for (i, &v) in row.iter().enumerate() {
            phases[(i % st) * pl + i / st] = v;
        }
    }
    for j0 in vector_starts(hm.len()) {
        let mut best: [f32; V] = phases[j0..j0 + V].try_into().expect("V values");
        let mut arg = [0u32; V];
        for t in 1..k {
            let tap: &[f32; V] = phases[(t % st) * pl + t / st + j0..][..V].try_into().expect("V values");
            take_max_v(tap, &[t as u32; V], &mut best, &mut arg);
        }
        for (l, ((h, a), (&b, &t))) in
            hm[j0..j0 + V].iter_mut().zip(&mut ha[j0..j0 + V]).zip(best.iter().zip(&arg)).enumerate()
        {
            *h = b;
            *a = ((j0 + l) * st) as u32 + t;
        }
    }
}

/// Max-pool backward: `dx` (overwritten) gets each `dy` at its window's arg-max.
pub fn max_backward(s: &PoolShape, dy: &[f32], argmax: &[u32], dx: &mut [f32], planes: usize) {
    let (ip, op) = (s.in_h * s.in_w, s.out_h() * s.out_w());
    dx[..planes * ip]
        .par_chunks_mut(ip)
        .zip(dy[..planes * op].par_chunks(op))
        .zip(argmax[..planes * op].par_chunks(op))
        .for_each(|((dxp, dyp), ap)| {
            dxp.fill(0.0);
            for (&g, &a) in dyp.iter().zip(ap) {
                dxp[a as usize] += g;
            }
        });
}

/// Input range `[lo, hi)` averaged by adaptive output cell `i` of `out` over `size` inputs.
#[inline]
fn adaptive_range(i: usize, size: usize, out: usize) -> (usize, usize) {
    (i * size / out, ((i + 1) * size).div_ceil(out))
}

/// Adaptive average pooling forward: `x [planes, H, W] -> y [planes, OH, OW]`.
pub fn adaptive_avg_forward(
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
    x: &[f32],
    y: &mut [f32],
    planes: usize,
) {
    let (ip, op) = (ih * iw, oh * ow);
    y[..planes * op].par_chunks_mut(op).zip(x[..planes * ip].par_chunks(ip)).for_each(|(yp, xp)| {
        for i in 0..oh {
            let (ylo, yhi) = adaptive_range(i, ih, oh);
            for j in 0..ow {
                let (xlo, xhi) = adaptive_range(j, iw, ow);
                let mut s = 0.0f32;
                for yy in ylo..yhi {
                    s += xp[yy * iw + xlo..yy * iw + xhi].iter().sum::<f32>();
                }
                yp[i * ow + j] = s / ((yhi - ylo) * (xhi - xlo)) as f32;
            }
        }
    });
}

/// Adaptive average pooling backward: each input gets `dy / window size` from every window
/// holding it. `dx` is overwritten.
pub fn adaptive_avg_backward(
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
    dy: &[f32],
    dx: &mut [f32],
    planes: usize,
) {
    let (ip, op) = (ih * iw, oh * ow);
    dx[..planes * ip].par_chunks_mut(ip).zip(dy[..planes * op].par_chunks(op)).for_each(|(dxp, dyp)| {
        dxp.fill(0.0);
        for i in 0..oh {
            let (ylo, yhi) = adaptive_range(i, ih, oh);
            for j in 0..ow {
                let (xlo, xhi) = adaptive_range(j, iw, ow);
                let g = dyp[i * ow + j] / ((yhi - ylo) * (xhi - xlo)) as f32;
                for yy in ylo..yhi {
                    dxp[yy * iw + xlo..yy * iw + xhi].iter_mut().for_each(|v| *v += g);
                }
            }
        }
    });
}
