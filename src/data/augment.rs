//! From a stored `S × S` RGB image to the network's `C × crop × crop` float input.
//!
//! Normalisation: `(x + lighting − mean) / std`, with `mean` the training set's mean image (the
//! paper), its per-channel mean, or a fixed preset. Training crops (section 4.1): a random
//! `crop × crop` window (from the image zero-padded by `pad` in normalised units, for CIFAR),
//! mirrored with probability ½, plus PCA colour noise: every pixel gets
//! `255 · [p₁ p₂ p₃][α₁λ₁ α₂λ₂ α₃λ₃]ᵀ` with `αᵢ ~ N(0, σ²)` drawn once per image, `pᵢ, λᵢ` the
//! eigenvectors and eigenvalues of the RGB covariance (0-1 scale). Test crops: the centre, or the
//! paper's ten (four corners and centre, each also mirrored).

use super::{DataSpec, DataStats, Normalize};
use crate::rng;
use serde::{Deserialize, Serialize};

/// Subtracts the mean and divides by the std, pixel by pixel.
#[derive(Clone, Debug)]
pub struct Normalizer {
    /// Stored image side `S`.
    pub size: usize,
    /// Per-pixel mean, HWC, 0-255 (a per-channel mean repeated).
    pub mean: Vec<f32>,
    pub inv_std: [f32; 3],
}

impl Normalizer {
    pub fn new(spec: &DataSpec, stats: &DataStats) -> Self {
        let s = spec.stored;
        let tile = |m: [f32; 3]| m.iter().copied().cycle().take(s * s * 3).collect::<Vec<f32>>();
        let (mean, std) = match spec.normalize {
            Normalize::PerPixelMean => {
                let m = if stats.mean_image.len() == s * s * 3 {
                    stats.mean_image.clone()
                } else {
                    tile(stats.channel_mean)
                };
                (m, [1.0; 3])
            }
            Normalize::PerChannel => (tile(stats.channel_mean), stats.channel_std.map(|v| v.max(1e-3))),
            Normalize::Fixed { mean, std } => (tile(mean), std),
        };
        Self { size: s, mean, inv_std: std.map(|v| 1.0 / v) }
    }
}

/// Training-time augmentation settings; each piece can be switched off or scaled.
#[derive(Clone, Debug)]
pub struct Augment {
    /// Random crop position (else the centre).
    pub random_crop: bool,
    /// Mirror with probability ½.
    pub flip: bool,
    /// σ of the PCA lighting coefficients (the paper: 0.1; 0 turns it off).
    pub pca_std: f32,
    pub eigval: [f32; 3],
    pub eigvec: [[f32; 3]; 3],
}

/// Where PCA colour noise takes its eigenvectors from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum PcaSource {
    /// The training set's own RGB covariance (the paper).
    Data,
    /// The published ImageNet eigenvalues and eigenvectors.
    Imagenet,
}

/// Which augmentations a run uses (part of its configuration); [`Default`] is the paper's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentOptions {
    pub random_crop: bool,
    pub flip: bool,
    /// σ of the PCA lighting coefficients (the paper: 0.1; 0 turns it off).
    pub pca_std: f32,
    pub pca: PcaSource,
}

impl Default for AugmentOptions {
    /// Section 4.1: random crops, horizontal flips, PCA colour noise of σ 0.1 from the data.
    fn default() -> Self {
        Self { random_crop: true, flip: true, pca_std: 0.1, pca: PcaSource::Data }
    }
}

impl Augment {
    /// `opts` with the eigen-decomposition they name: `stats`' own or ImageNet's.
    pub fn new(opts: &AugmentOptions, stats: &DataStats) -> Self {
        let (eigval, eigvec) = match opts.pca {
            PcaSource::Data => (stats.eigval, stats.eigvec),
            PcaSource::Imagenet => (super::imagenet::PCA_EIGVAL, super::imagenet::PCA_EIGVEC),
        };
        Self { random_crop: opts.random_crop, flip: opts.flip, pca_std: opts.pca_std, eigval, eigvec }
    }

    /// The paper's augmentation with `stats`' eigen-decomposition.
    pub fn paper(stats: &DataStats) -> Self {
        Self::new(&AugmentOptions::default(), stats)
    }
    pub fn none() -> Self {
        Self { random_crop: false, flip: false, pca_std: 0.0, eigval: [0.0; 3], eigvec: [[0.0; 3]; 3] }
    }
}

/// Writes the `crop × crop` window at `(oy, ox)` of the image padded by `pad` into `out`
/// (CHW), mirrored if asked, with `shift` (0-255 units) added to every pixel.
#[allow(clippy::too_many_arguments)]
pub fn crop_into(
    img: &[u8],
    norm: &Normalizer,
    crop: usize,
    pad: usize,
    (oy, ox): (usize, usize),
    flip: bool,
    shift: [f32; 3],
    out: &mut [f32],
) {
    let s = norm.size;
    let plane = crop * crop;
    for y in 0..crop {
        let sy = (oy + y) as isize - pad as isize;
        for x in 0..crop {
            let xx = if flip { crop - 1 - x } else { x };
            let sx = (ox + xx) as isize - pad as isize;
            let inside = sy >= 0 && sx >= 0 && (sy as usize) < s && (sx as usize) < s;
            for c in 0..3 {
                out[c * plane + y * crop + x] = if inside {
                    let i = (sy as usize * s + sx as usize) * 3 + c;
                    (img[i] as f32 + shift[c] - norm.mean[i]) * norm.inv_std[c]
                } else {
                    0.0
                };
            }
        }
    }
}

/// One augmented training sample; all randomness from `seed` (one per image and epoch).
pub fn train_sample(img: &[u8], norm: &Normalizer, aug: &Augment, crop: usize, pad: usize, seed: u64, out: &mut [f32]) {
    let span = norm.size + 2 * pad - crop;
    let (oy, ox) = if aug.random_crop {
        let pick = |j| ((rng::uniform(seed, j) * (span + 1) as f32) as usize).min(span);
        (pick(0), pick(1))
    } else {
        (span / 2, span / 2)
    };
    let flip = aug.flip && rng::uniform(seed, 2) < 0.5;
    let mut shift = [0.0f32; 3];
    if aug.pca_std > 0.0 {
        let alpha: [f32; 3] = std::array::from_fn(|i| aug.pca_std * rng::normal(seed, 3 + i as u64));
        for (c, sh) in shift.iter_mut().enumerate() {
            *sh = 255.0 * (0..3).map(|i| aug.eigvec[c][i] * alpha[i] * aug.eigval[i]).sum::<f32>();
        }
    }
    crop_into(img, norm, crop, pad, (oy, ox), flip, shift, out);
}

/// The centre crop (of the unpadded image).
pub fn center_crop(img: &[u8], norm: &Normalizer, crop: usize, out: &mut [f32]) {
    let m = (norm.size - crop) / 2;
    crop_into(img, norm, crop, 0, (m, m), false, [0.0; 3], out);
}

/// Window origins of the paper's ten crops: four corners and the centre.
pub fn five_origins(size: usize, crop: usize) -> [(usize, usize); 5] {
    let (e, m) = (size - crop, (size - crop) / 2);
    [(0, 0), (0, e), (e, 0), (e, e), (m, m)]
}

/// The paper's ten test crops: `out` holds 10 consecutive `3 × crop × crop` inputs — the five
/// windows of [`five_origins`], then the same five mirrored.
pub fn ten_crop(img: &[u8], norm: &Normalizer, crop: usize, out: &mut [f32]) {
    let n = 3 * crop * crop;
    for (k, flip) in [false, true].into_iter().enumerate() {
        for (j, &o) in five_origins(norm.size, crop).iter().enumerate() {
            let i = k * 5 + j;
            crop_into(img, norm, crop, 0, o, flip, [0.0; 3], &mut out[i * n..(i + 1) * n]);
        }
    }
}
