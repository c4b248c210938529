//! Training-set statistics: the mean image (the paper subtracts it), per-channel mean and std,
//! and the eigen-decomposition of the RGB covariance for PCA colour noise (section 4.1).

// 3×3 matrix code reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

/// Statistics of a set of `size × size` RGB images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    pub count: usize,
    pub size: usize,
    /// Mean image, HWC, 0-255 units. Not in JSON: stored as a tensor.
    #[serde(skip)]
    pub mean_image: Vec<f32>,
    /// Per-channel mean and standard deviation, 0-255 units.
    pub channel_mean: [f32; 3],
    pub channel_std: [f32; 3],
    /// Eigenvalues (descending) of the RGB covariance of the pixels on a 0-1 scale, and the
    /// eigenvectors as columns: `eigvec[c][i]` is component `c` of eigenvector `i`.
    pub eigval: [f32; 3],
    pub eigvec: [[f32; 3]; 3],
}

/// Exact integer sums over images, mergeable across threads, and stored in a packed cache so
/// that the statistics of most of a set (its training part) are the whole set's sums minus
/// those of the few images left out, without reading the rest again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsAccumulator {
    size: usize,
    count: u64,
    sum_image: Vec<u64>,
    sum: [u64; 3],
    sum_sq: [[u64; 3]; 3],
}

impl StatsAccumulator {
    pub fn new(size: usize) -> Self {
        Self { size, count: 0, sum_image: vec![0; size * size * 3], sum: [0; 3], sum_sq: [[0; 3]; 3] }
    }

    /// Adds one `size × size` HWC RGB image.
    pub fn add(&mut self, img: &[u8]) {
        debug_assert_eq!(img.len(), self.sum_image.len());
        self.count += 1;
        for (s, &v) in self.sum_image.iter_mut().zip(img) {
            *s += v as u64;
        }
        // Per-image partial sums, exact in u64, added to the set's sums.
        let (mut s, mut sq) = ([0u64; 3], [[0u64; 3]; 3]);
        for px in img.chunks_exact(3) {
            let p = [px[0] as u64, px[1] as u64, px[2] as u64];
            for c in 0..3 {
                s[c] += p[c];
                for d in c..3 {
                    sq[c][d] += p[c] * p[d];
                }
            }
        }
        for c in 0..3 {
            self.sum[c] += s[c];
            for d in c..3 {
                self.sum_sq[c][d] += sq[c][d];
            }
        }
    }

    /// The sums of the images in `self` but not in `part` (which must be a subset of them):
    /// `None` when `part` cannot be one (another size, or a sum larger than the whole's).
    pub fn minus(&self, part: &Self) -> Option<Self> {
        if part.size != self.size || part.sum_image.len() != self.sum_image.len() {
            return None;
        }
        let mut out = self.clone();
        out.count = self.count.checked_sub(part.count)?;
        for (a, b) in out.sum_image.iter_mut().zip(&part.sum_image) {
            *a = a.checked_sub(*b)?;
        }
        for c in 0..3 {
            out.sum[c] = out.sum[c].checked_sub(part.sum[c])?;
            for d in 0..3 {
                out.sum_sq[c][d] = out.sum_sq[c][d].checked_sub(part.sum_sq[c][d])?;
            }
        }
        Some(out)
    }

    /// Images summed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the sums fit images of `size × size` (as read from a file: checked before use).
    pub fn fits(&self, size: usize) -> bool {
        self.size == size && size.checked_mul(size).and_then(|p| p.checked_mul(3)) == Some(self.sum_image.len())
    }

    pub fn merge(mut self, other: &Self) -> Self {
        self.count += other.count;
        self.sum_image.iter_mut().zip(&other.sum_image).for_each(|(a, b)| *a += b);
        for c in 0..3 {
            self.sum[c] += other.sum[c];
            for d in 0..3 {
                self.sum_sq[c][d] += other.sum_sq[c][d];
            }
        }
        self
    }

    pub fn finish(&self) -> DataStats {
        let n = self.count.max(1) as f64;
        let pixels = n * (self.size * self.size) as f64;
        let mean_image = self.sum_image.iter().map(|&s| (s as f64 / n) as f32).collect();
        let mean: Vec<f64> = self.sum.iter().map(|&s| s as f64 / pixels).collect();
        let mut cov = [[0.0f64; 3]; 3];
        for c in 0..3 {
            for d in c..3 {
                // On a 0-1 scale, as the PCA lighting presets are.
                let v = (self.sum_sq[c][d] as f64 / pixels - mean[c] * mean[d]) / (255.0 * 255.0);
                cov[c][d] = v;
                cov[d][c] = v;
            }
        }
        let (vals, vecs) = sym3_eigen(cov);
        DataStats {
            count: self.count as usize,
            size: self.size,
            mean_image,
            channel_mean: [mean[0] as f32, mean[1] as f32, mean[2] as f32],
            channel_std: std::array::from_fn(|c| (cov[c][c].max(0.0).sqrt() * 255.0) as f32),
            eigval: vals.map(|v| v as f32),
            eigvec: vecs.map(|r| r.map(|v| v as f32)),
        }
    }
}

/// Eigenvalues (descending) and eigenvectors (columns) of a symmetric 3×3 matrix, by cyclic
/// Jacobi rotations (converges to machine precision in a handful of sweeps).
pub fn sym3_eigen(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        if off < 1e-30 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A <- Jᵀ A J, V <- V J
            for k in 0..3 {
                let (akp, akq) = (a[k][p], a[k][q]);
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let (apk, aqk) = (a[p][k], a[q][k]);
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for row in &mut v {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut order = [0, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let vals = order.map(|i| a[i][i]);
    let vecs = std::array::from_fn(|r| order.map(|i| v[r][i]));
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let m = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (vals, vecs) = sym3_eigen(m);
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2]);
        for r in 0..3 {
            for c in 0..3 {
                let rec: f64 = (0..3).map(|i| vecs[r][i] * vals[i] * vecs[c][i]).sum();
                assert!((rec - m[r][c]).abs() < 1e-10, "{r},{c}: {rec} vs {}", m[r][c]);
            }
        }
    }

    #[test]
    fn the_whole_minus_a_part_is_the_rest_exactly() {
        let img = |k: u8| (0..12).map(|i| k.wrapping_mul(37).wrapping_add(i * 19)).collect::<Vec<u8>>();
        let (mut all, mut part, mut rest) =
            (StatsAccumulator::new(2), StatsAccumulator::new(2), StatsAccumulator::new(2));
        for k in 0..10u8 {
            all.add(&img(k));
            if k % 3 == 0 { part.add(&img(k)) } else { rest.add(&img(k)) }
        }
        let diff = all.minus(&part).unwrap();
        assert_eq!(diff, rest);
        assert_eq!(diff.finish(), rest.finish());
        // Not a part of it: refused rather than wrapped.
        assert!(part.minus(&all).is_none());
        assert!(all.minus(&StatsAccumulator::new(3)).is_none());
    }

    #[test]
    fn stats_of_constant_images() {
        let mut acc = StatsAccumulator::new(2);
        acc.add(&[10, 20, 30].repeat(4));
        acc.add(&[30, 40, 50].repeat(4));
        let s = acc.finish();
        assert_eq!(s.channel_mean, [20.0, 30.0, 40.0]);
        assert!(s.channel_std.iter().all(|&v| (v - 10.0).abs() < 1e-4));
        assert_eq!(&s.mean_image[..3], &[20.0, 30.0, 40.0]);
        // All channels move together: one direction carries all the variance.
        assert!(s.eigval[1].abs() < 1e-6 && s.eigval[0] > 0.0);
    }
}
