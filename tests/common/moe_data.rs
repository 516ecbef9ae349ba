//! MoE test data shared by tests/moe.rs and tests/moe_fused.rs: reference routing, separated
//! logits, block shapes and stacked planar experts.

use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::Matrix;

/// Reference routing of one token: softmax in f64 over the f32 logits, top-k by (logit desc, index
/// asc), optionally renormalised. Returns (ids, weights).
pub fn route_ref(logits: &[f32], k: usize, renorm: bool) -> (Vec<u32>, Vec<f64>) {
    let m = logits.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap().then(a.cmp(&b)));
    let ids: Vec<u32> = order[..k].iter().map(|&i| i as u32).collect();
    let p: Vec<f64> = order[..k].iter().map(|&i| e[i] / s).collect();
    let sum: f64 = p.iter().sum();
    let w = if renorm { p.iter().map(|v| v / sum).collect() } else { p };
    (ids, w)
}

/// Logits of one token with every gap between distinct experts ≥ 0.03: a random permutation of
/// 0.05·i plus noise below 0.01 (ids then match the reference exactly, whatever the rounding).
pub fn separated_logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    perm.iter().map(|&p| p as f32 * 0.05 - 2.0 + 0.01 * rng.uniform()).collect()
}

/// One MoE block configuration.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub experts: usize,
    pub top: usize,
    pub hidden: usize,
    pub inter: usize,
    pub tokens: usize,
}

/// Expert weights `[experts, rows, cols]`: stacked planar bytes and dequantised values.
pub fn experts_q8(rng: &mut Rng, c: &Case, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let (bytes, deq) = r::quantize_matrix_q8_0(&rng.vec(c.experts * rows * cols, 1.0), cols);
    (Matrix::repack_experts_q8_0_planar(&bytes, c.experts, rows, cols).unwrap(), deq)
}
