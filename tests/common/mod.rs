//! Shared test helpers: fixture loading and finite differences.
#![allow(dead_code)]

use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// All tensors of a fixture file as f32 (int64 converted), by name, with shapes.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn load(name: &str) -> Self {
        let p = fixture_path(name);
        Self { bytes: std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) }
    }
    pub fn get(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
        let data = match t.dtype() {
            Dtype::F32 => t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::I64 => t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            d => panic!("unexpected dtype {d:?}"),
        };
        (t.shape().to_vec(), data)
    }
    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.get(name).1
    }
}

/// `Σ f(x)·r` in f64: the scalar whose gradient w.r.t. `x` is the backward of `f` applied to `r`.
pub fn dot(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Central finite differences of `x ↦ Σ f(x)·r` at every element of `x`.
pub fn numeric_grad(x: &[f32], r: &[f32], eps: f32, f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let lp = dot(&f(&xp), r);
            xp[i] = orig - eps;
            let lm = dot(&f(&xp), r);
            xp[i] = orig;
            ((lp - lm) / (2.0 * eps as f64)) as f32
        })
        .collect()
}

pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: length {} vs {}", ours.len(), reference.len());
    let e = alexnet::tensor::rel_err(ours, reference);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}
