//! CPU references for the kernels (f64 accumulation), a Q8_0 encoder following ggml's reference
//! rule, and comparison helpers that print the first mismatches.

use half::f16;

/// One Q8_0 block as stored: f16 scale bits and 32 signed quants (34 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Quantises one row (length a multiple of 32) with ggml's rule: d = max|x| / 127 stored as f16,
/// q = round(x · (1/d)) rounding half away from zero.
pub fn quantize_q8_0(row: &[f32]) -> Vec<BlockQ8_0> {
    assert!(row.len() % 32 == 0, "Q8_0 rows are multiples of 32");
    row.chunks_exact(32)
        .map(|c| {
            let amax = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; 32];
            for (q, v) in qs.iter_mut().zip(c) {
                *q = (v * id).round() as i8;
            }
            BlockQ8_0 { d: f16::from_f32(d).to_le_bytes(), qs }
        })
        .collect()
}

/// Dequantises blocks back to floats (what the GPU sees).
pub fn dequantize_q8_0(blocks: &[BlockQ8_0]) -> Vec<f32> {
    blocks
        .iter()
        .flat_map(|b| {
            let d = f16::from_le_bytes(b.d).to_f32();
            b.qs.iter().map(move |&q| d * q as f32)
        })
        .collect()
}

/// Quantises a whole row-major matrix; returns the bytes and the dequantised values.
pub fn quantize_matrix_q8_0(values: &[f32], cols: usize) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::with_capacity(values.len() / 32 * 34);
    let mut deq = Vec::with_capacity(values.len());
    for row in values.chunks_exact(cols) {
        let b = quantize_q8_0(row);
        bytes.extend_from_slice(bytemuck::cast_slice(&b));
        deq.extend(dequantize_q8_0(&b));
    }
    (bytes, deq)
}

/// Q8_1 as the GPU computes it (round half to even, f32 scales): the values the int-dot kernels see.
pub fn q8_1_roundtrip(x: &[f32]) -> Vec<f32> {
    x.chunks(32)
        .flat_map(|c| {
            let amax = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            c.iter().map(move |v| (v * id).round_ties_even().clamp(-127.0, 127.0) * d)
        })
        .collect()
}

/// y = W·x in f64 for a row-major `[rows, cols]` W.
pub fn matvec(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows).map(|r| w[r * cols..(r + 1) * cols].iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()).collect()
}

/// Y[n, m] = Σ_k W[m, k] X[n, k] in f64.
pub fn matmul(w: &[f32], x: &[f32], rows: usize, cols: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * rows];
    for t in 0..n {
        let xr = &x[t * cols..(t + 1) * cols];
        for m in 0..rows {
            y[t * rows + m] = w[m * cols..(m + 1) * cols].iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
        }
    }
    y
}

pub fn rms_norm(x: &[f32], w: &[f32], n: usize, eps: f32) -> Vec<f64> {
    x.chunks_exact(n)
        .flat_map(|r| {
            let ms: f64 = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            r.iter().zip(w).map(move |(&v, &g)| v as f64 * s * g as f64)
        })
        .collect()
}

pub fn softmax(x: &[f32], n: usize, scale: f32) -> Vec<f64> {
    x.chunks_exact(n)
        .flat_map(|r| {
            let m = r.iter().map(|&v| v as f64 * scale as f64).fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = r.iter().map(|&v| (v as f64 * scale as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

pub fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// Relative L2 error ‖got − want‖ / ‖want‖.
pub fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (&g, &w) in got.iter().zip(want) {
        num += (g as f64 - w).powi(2);
        den += w * w;
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Normalised mean squared error Σ(got − want)² / Σ want².
pub fn nmse(got: &[f32], want: &[f64]) -> f64 {
    rel_l2(got, want).powi(2)
}

/// Checks |got − want| ≤ abs + rel·|want| element-wise; on failure the message lists the first
/// mismatches with their indices.
pub fn check_close(what: &str, got: &[f32], want: &[f64], abs: f64, rel: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    let bad: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (&g, &w))| !((g as f64 - w).abs() <= abs + rel * w.abs()))
        .take(8)
        .map(|(i, (g, w))| format!("[{i}] got {g} want {w}"))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: mismatches (abs {abs}, rel {rel}): {}", bad.join(", ")))
    }
}

/// A small deterministic generator for test and benchmark data (xorshift64*), never all zeros.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// The error function in f64 (Rust's std has none): Maclaurin series below 2.5, the classic
/// continued fraction for erfc above; ~1e-15 relative.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(a) = 2/√π Σ (−1)^n a^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = exp(−a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …))))
        let mut t = a;
        for k in (1..=80).rev() {
            t = a + (k as f64 / 2.0) / t;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / t
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// GELU with the exact error function: 0.5·x·(1 + erf(x/√2)).
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}
