//! Counter-based randomness: every random number is a pure function of (seed, stream, index),
//! so results do not depend on thread count or on the order work is scheduled, and a resumed
//! run needs no RNG state beyond its step counter.

/// SplitMix64 finaliser (Steele, Lea, Flood 2014), wrapping arithmetic.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes several words into one seed.
pub fn mix(words: &[u64]) -> u64 {
    words.iter().fold(0x5EED_u64, |acc, &w| splitmix64(acc ^ splitmix64(w)))
}

/// Uniform in [0, 1) with 24 bits, exactly the reference formula
/// `u(stream, j) = (splitmix64(stream * 2^32 + j) >> 40) / 2^24`.
#[inline]
pub fn u24(stream: u64, j: u64) -> f32 {
    ((splitmix64((stream << 32).wrapping_add(j)) >> 40) as f32) / 16_777_216.0
}

/// Uniform in [0, 1) from a seed and a counter (24-bit resolution, enough for masks).
#[inline]
pub fn uniform(seed: u64, j: u64) -> f32 {
    ((splitmix64(seed ^ splitmix64(j)) >> 40) as f32) / 16_777_216.0
}

/// Standard normal from a seed and a counter (Box–Muller on two 53-bit uniforms).
#[inline]
pub fn normal(seed: u64, j: u64) -> f32 {
    let a = splitmix64(seed ^ splitmix64(2 * j));
    let b = splitmix64(seed ^ splitmix64(2 * j + 1));
    let u1 = ((a >> 11) as f64 + 0.5) / (1u64 << 53) as f64; // (0, 1): log is finite
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `len` values uniform in [-1, 1): test data.
pub fn uniform_vec(len: usize, seed: u64) -> Vec<f32> {
    (0..len).map(|j| 2.0 * uniform(seed, j as u64) - 1.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_check_values() {
        // ../shared/reference/README.md lists these.
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-9;
        assert!(close(u24(0, 0), 0.8833107948));
        assert!(close(u24(0, 1), 0.5665615201));
        assert!(close(u24(0, 2), 0.5911896825));
        assert!(close(u24(1000, 0), 0.8676854968));
        assert!(close(u24(1000, 1), 0.3349525928));
        assert!(close(u24(1000, 2), 0.8679158688));
        assert!(close(u24(15, 0), 0.0527548194));
        assert!(close(u24(15, 1), 0.7347649931));
    }

    #[test]
    fn normal_has_unit_moments() {
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|j| normal(7, j) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }
}
