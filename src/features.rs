//! Images described by the network's last hidden layer, and nearest neighbours among them:
//! the paper's Figure 4 ("if two images produce feature activation vectors with a small
//! Euclidean separation, we can say that the higher levels of the neural network consider them
//! to be similar").

use crate::data::augment::Normalizer;
use crate::eval::test_crops;
use crate::model::{Mode, Network};

/// Last-hidden-layer activations `[n, D]` of `images` (stored-size HWC bytes, centre crop),
/// `batch` at a time. Returns the activations and `D`.
pub fn last_hidden_features(net: &mut Network, norm: &Normalizer, images: &[&[u8]], batch: usize) -> (Vec<f32>, usize) {
    let crop = net.config.input[1];
    let d = net.layers().last().map_or(0, |l| l.in_len());
    let mut out = Vec::with_capacity(images.len() * d);
    for chunk in images.chunks(batch.max(1)) {
        let x = test_crops(chunk, norm, crop, false);
        net.forward(&x, chunk.len(), Mode::Eval);
        out.extend_from_slice(net.last_hidden());
    }
    (out, d)
}

/// Euclidean distance between two feature vectors (in f64, so ties are honest).
pub fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>().sqrt()
}

/// The `k` rows of `features [n, d]` nearest to `query [d]`: `(row, distance)`, nearest first
/// (ties by row).
pub fn nearest(features: &[f32], d: usize, query: &[f32], k: usize) -> Vec<(usize, f64)> {
    let mut all: Vec<(usize, f64)> =
        features.chunks(d.max(1)).enumerate().map(|(i, f)| (i, distance(f, query))).collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}
