//! Named f32 tensors and their comparison. Activations and parameters are plain `Vec<f32>` in
//! NCHW (or PyTorch's weight layout), their shapes kept by the layer plan; there is no tensor
//! type with operations and no autograd: every layer owns its forward and backward explicitly.

/// Relative error `||a - b|| / ||b||` (the plain norm of `a - b` when `b` is zero), in f64.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_err: lengths differ");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    if den == 0.0 { num.sqrt() } else { (num / den).sqrt() }
}

/// A named f32 tensor: a parameter in a checkpoint, or a tensor of another tool's file.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// `conv1.weight`, `features.0.bias`, ...
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { name: name.into(), shape, data }
    }
}

/// `Σ v` in 16 independent sums, added together at the end: vectorised, so it reads memory as
/// fast as it streams. (`iter().sum()` adds one value at a time, each add waiting for the last:
/// ~4 cycles a value.)
pub fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// f32 values as little-endian bytes (safetensors' F32 layout).
pub fn f32_to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes as f32 values; a trailing partial value is ignored.
pub fn f32_from_le_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The first value of `data` that is not finite, described for an error message
/// (`NaN at index 17`, `+infinity at index 3`), or None.
pub fn first_non_finite(data: &[f32]) -> Option<String> {
    let (i, &x) = data.iter().enumerate().find(|(_, x)| !x.is_finite())?;
    let what = if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "+infinity"
    } else {
        "-infinity"
    };
    Some(format!("{what} at index {i}"))
}
