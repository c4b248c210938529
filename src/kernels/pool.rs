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

/// Max-pool forward over `planes = B·C` planes. `argmax` receives, per output, the index of the
/// winning input inside its plane.
pub fn max_forward(s: &PoolShape, x: &[f32], y: &mut [f32], argmax: &mut [u32], planes: usize) {
    let (ih, iw, oh, ow) = (s.in_h, s.in_w, s.out_h(), s.out_w());
    let (ip, op) = (ih * iw, oh * ow);
    y[..planes * op]
        .par_chunks_mut(op)
        .zip(argmax[..planes * op].par_chunks_mut(op))
        .zip(x[..planes * ip].par_chunks(ip))
        .for_each(|((yp, ap), xp)| {
            for i in 0..oh {
                let y0 = (i * s.stride) as isize - s.pad as isize;
                let ylo = y0.max(0) as usize;
                let yhi = ((y0 + s.kernel as isize) as usize).min(ih);
                for j in 0..ow {
                    let x0 = (j * s.stride) as isize - s.pad as isize;
                    let xlo = x0.max(0) as usize;
                    let xhi = ((x0 + s.kernel as isize) as usize).min(iw);
                    let mut best = f32::NEG_INFINITY;
                    let mut arg = ylo * iw + xlo;
                    for yy in ylo..yhi {
                        for xx in xlo..xhi {
                            let v = xp[yy * iw + xx];
                            if v > best || (v.is_nan() && !best.is_nan()) {
                                best = v;
                                arg = yy * iw + xx;
                            }
                        }
                    }
                    yp[i * ow + j] = best;
                    ap[i * ow + j] = arg as u32;
                }
            }
        });
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
