//! The cooperative-matrix prefill GEMM (`mm_q8_0p_f16_coop`) against a CPU reference that rounds
//! the dequantised weights and the activations to f16 as the kernel does. Lavapipe has no
//! cooperative matrices: there the launcher must refuse clearly; the numbers are checked on the
//! GPU machine (docs/gpu-runs.md: test binaries carried there, validation on).

mod common;

use common::{assert_clean, kernels};
use half::f16;
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{Matrix, WType};

fn round16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x.clamp(-65504.0, 65504.0)).to_f32()).collect()
}

#[test]
fn coop_matmul_matches_the_f16_rounded_reference() {
    let k = kernels();
    let g = k.gpu();
    // Edges in every direction: rows not a multiple of 128 or 16, token counts below and across 64.
    let shapes = [
        (128usize, 64usize, 64usize),
        (64, 32, 1),
        (200, 96, 13),
        (130, 160, 100),
        (512, 2048, 77),
        (33, 7680, 5),
        (4096, 2048, 512),
    ];
    if !k.has_coopmat() {
        let wb = g.buffer("w", 64 * 34, MemoryIntent::Weights).unwrap();
        let xb = g.buffer("x", 64 * 4, MemoryIntent::Scratch).unwrap();
        let yb = g.buffer("y", 64 * 4, MemoryIntent::Scratch).unwrap();
        let mut rec = g.recorder(false).unwrap();
        let e = k.matmul_q8_0_coop(&mut rec, Matrix::new(&wb, WType::Q8_0Planar, 2, 32), &xb, 2, &yb).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mm_q8_0p_f16_coop") && msg.contains("cooperative"), "unclear refusal: {msg}");
        eprintln!("no cooperative matrices on {}: refused as `{msg}`; numbers not checked here", g.caps().name);
        assert_clean(g);
        return;
    }
    for (i, &(rows, cols, n)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(900 + i as u64);
        let w = rng.vec(rows * cols, 1.0);
        let x = rng.vec(n * cols, 2.0);
        let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
        let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
        let wb = g.buffer_from("w", &planar, MemoryIntent::Weights).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", (n * rows * 4) as u64, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.matmul_q8_0_coop(&mut rec, Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32), &xb, n as u32, &yb)
            .unwrap();
        rec.submit().unwrap();
        let y: Vec<f32> = yb.read_vec().unwrap();
        // What the kernel computes: f16 operands, exact products, f32 sums.
        let want = r::matmul(&round16(&deq), &round16(&x), rows, cols, n);
        let e = r::rel_l2(&y, &want);
        assert!(e <= 1e-5, "{rows}×{cols} × {n}: relative error {e:e} against the f16-rounded reference");
        r::check_close(&format!("mm_q8_0p_f16_coop {rows}×{cols} × {n}"), &y, &want, 1e-3, 1e-4).unwrap();
        // And what rounding to f16 costs against the exact product.
        let exact = r::matmul(&deq, &x, rows, cols, n);
        let e = r::rel_l2(&y, &exact);
        assert!(e <= 2e-3, "{rows}×{cols} × {n}: relative error {e:e} against the exact product");
    }
    assert_clean(g);
}
