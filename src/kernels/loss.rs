//! Softmax cross-entropy, mean over the batch (PyTorch's `cross_entropy`).
//!
//! `p = softmax(z)`, `L = -(1/B) Σ_b log p[b, y_b]`, `∂L/∂z = (p - onehot(y)) / B`.
//! Computed with the max subtracted, in f64 for the log-sum-exp.

/// Row-wise softmax of `logits [B, K]`.
pub fn softmax(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut p = vec![0.0f32; logits.len()];
    for (row, out) in logits.chunks(classes).zip(p.chunks_mut(classes)) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut z = 0.0f64;
        for (o, &v) in out.iter_mut().zip(row) {
            let e = ((v - m) as f64).exp();
            *o = e as f32;
            z += e;
        }
        out.iter_mut().for_each(|o| *o = (*o as f64 / z) as f32);
    }
    p
}

/// Mean loss and `∂L/∂logits` (written to `dlogits`). Labels must be `< classes`.
pub fn softmax_cross_entropy(logits: &[f32], labels: &[usize], classes: usize, dlogits: &mut [f32]) -> f32 {
    let batch = labels.len();
    let mut loss = 0.0f64;
    for ((row, d), &y) in logits.chunks(classes).zip(dlogits.chunks_mut(classes)).zip(labels) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
        let lse = m as f64 + z.ln();
        loss += lse - row[y] as f64;
        for (j, (dv, &v)) in d.iter_mut().zip(row).enumerate() {
            let p = (v as f64 - lse).exp();
            *dv = ((p - if j == y { 1.0 } else { 0.0 }) / batch as f64) as f32;
        }
    }
    (loss / batch as f64) as f32
}

/// Whether `label` is among the `k` highest of `p` (ties counted against us: a class scoring
/// the same as the true one and listed before it takes the slot). NaN ranks below everything:
/// a NaN score is never a hit.
pub fn in_top_k(p: &[f32], label: usize, k: usize) -> bool {
    let v = p[label];
    if v.is_nan() {
        return false;
    }
    let above = p.iter().enumerate().filter(|&(i, &q)| q > v || (q == v && i < label)).count();
    above < k
}
