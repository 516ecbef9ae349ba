//! Every kernel against its CPU reference on random (never zero) data, ragged sizes included,
//! on whatever Vulkan device is present (lavapipe in CI) with validation on.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{Kernels, Matrix, MatvecPath, WType};

/// Planar Q8_0 matrix × vector (the layout the model uses).
fn q8_matvec(k: &Kernels, rows: usize, cols: usize, seed: u64) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let w = rng.vec(rows * cols, 1.0);
    let x = rng.vec(cols, 2.0);
    let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
    let bytes = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
    let g = k.gpu();
    let wb = g.buffer_from("w", &bytes, MemoryIntent::Weights).unwrap();
    let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
    let yb = g.buffer("y", rows as u64 * 4, MemoryIntent::Readback).unwrap();
    let s = k.q8_1_scratch(cols as u64).unwrap();
    let mut rec = g.recorder(false).unwrap();
    k.matvec(&mut rec, Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32), &xb, &yb, Some(&s)).unwrap();
    rec.submit().unwrap();
    let y: Vec<f32> = yb.read_vec().unwrap();
    let want = r::matvec(&deq, &x, rows, cols);
    let want_q = r::matvec(&deq, &r::q8_1_roundtrip(&x), rows, cols);
    (y, want, want_q)
}

const MV_SHAPES: &[(usize, usize)] = &[(1, 32), (3, 64), (37, 160), (130, 96), (257, 1024), (64, 2048)];

#[test]
fn matvec_q8_0_float_matches_f64() {
    let mut k = kernels();
    k.set_matvec_path(MatvecPath::Float).unwrap();
    for (i, &(rows, cols)) in MV_SHAPES.iter().enumerate() {
        let (y, want, _) = q8_matvec(&k, rows, cols, 10 + i as u64);
        let e = r::rel_l2(&y, &want);
        assert!(e <= 1e-5, "{rows}×{cols}: relative error {e:e} > 1e-5");
        r::check_close(&format!("float {rows}×{cols}"), &y, &want, 1e-4, 1e-4).unwrap();
    }
    assert_clean(k.gpu());
}

#[test]
fn matvec_q8_0_intdot_matches_f64() {
    let mut k = kernels();
    if !k.gpu().caps().int_dot {
        panic!("the device lacks shaderIntegerDotProduct; lavapipe and every target have it");
    }
    k.set_matvec_path(MatvecPath::IntDot).unwrap();
    for (i, &(rows, cols)) in MV_SHAPES.iter().enumerate() {
        let (y, want, want_q) = q8_matvec(&k, rows, cols, 20 + i as u64);
        let e = r::rel_l2(&y, &want);
        eprintln!("int-dot {rows}×{cols}: rel L2 {e:.3e}, NMSE {:.3e}", r::nmse(&y, &want));
        assert!(e <= 2e-2, "{rows}×{cols}: relative error {e:e} > 2e-2");
        // Against the same Q8_1 activations the kernel is exact up to f32 accumulation.
        let eq = r::rel_l2(&y, &want_q);
        assert!(eq <= 1e-5, "{rows}×{cols}: error vs Q8_1 reference {eq:e}");
    }
    assert_clean(k.gpu());
}

#[test]
fn matvec_f32_and_f16_match_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(rows, cols)) in [(1usize, 1usize), (5, 7), (33, 129), (100, 1000)].iter().enumerate() {
        let mut rng = Rng::new(30 + i as u64);
        let w = rng.vec(rows * cols, 1.0);
        let x = rng.vec(cols, 1.0);
        let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
        let w16f: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let wb = g.buffer_from("w32", &w, MemoryIntent::Weights).unwrap();
        let wh = g.buffer_from("w16", &w16, MemoryIntent::Weights).unwrap();
        let y32 = g.buffer("y32", rows as u64 * 4, MemoryIntent::Readback).unwrap();
        let y16 = g.buffer("y16", rows as u64 * 4, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.matvec(&mut rec, Matrix::new(&wb, WType::F32, rows as u32, cols as u32), &xb, &y32, None).unwrap();
        k.matvec(&mut rec, Matrix::new(&wh, WType::F16, rows as u32, cols as u32), &xb, &y16, None).unwrap();
        rec.submit().unwrap();
        r::check_close("mv_f32", &y32.read_vec::<f32>().unwrap(), &r::matvec(&w, &x, rows, cols), 1e-5, 1e-5).unwrap();
        r::check_close("mv_f16", &y16.read_vec::<f32>().unwrap(), &r::matvec(&w16f, &x, rows, cols), 1e-5, 1e-5)
            .unwrap();
    }
    assert_clean(g);
}

#[test]
fn matmul_q8_0_intdot_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(rows, cols, n)) in
        [(1usize, 32usize, 1usize), (70, 96, 5), (64, 64, 64), (130, 256, 67), (200, 128, 130)].iter().enumerate()
    {
        let mut rng = Rng::new(40 + i as u64);
        let w = rng.vec(rows * cols, 1.0);
        let x = rng.vec(n * cols, 1.5);
        let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
        let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
        let wp = g.buffer_from("w planar", &planar, MemoryIntent::Weights).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", (n * rows) as u64 * 4, MemoryIntent::Readback).unwrap();
        let yp = g.buffer("y prequantized", (n * rows) as u64 * 4, MemoryIntent::Readback).unwrap();
        let s = k.q8_1_scratch((n * cols) as u64).unwrap();
        let mut rec = g.recorder(false).unwrap();
        let wpm = Matrix::new(&wp, WType::Q8_0Planar, rows as u32, cols as u32);
        k.matmul_q8_0(&mut rec, wpm, &xb, n as u32, &yb, &s).unwrap();
        k.matmul_q8_0_prequantized(&mut rec, wpm, n as u32, &yp, &s).unwrap();
        rec.submit().unwrap();
        let y: Vec<f32> = yb.read_vec().unwrap();
        // The second reads the quantisation the first made: identical results.
        assert_eq!(yp.read_vec::<f32>().unwrap(), y, "prequantized and quantizing matmul differ");
        let want = r::matmul(&deq, &x, rows, cols, n);
        let e = r::rel_l2(&y, &want);
        eprintln!("mm_q8_0p_q8_1 {rows}×{cols}×{n}: rel L2 {e:.3e}, NMSE {:.3e}", r::nmse(&y, &want));
        assert!(e <= 2e-2, "{rows}×{cols}×{n}: relative error {e:e}");
        let want_q = r::matmul(&deq, &r::q8_1_roundtrip(&x), rows, cols, n);
        let eq = r::rel_l2(&y, &want_q);
        assert!(eq <= 1e-5, "{rows}×{cols}×{n}: error vs Q8_1 reference {eq:e}");
    }
    assert_clean(g);
}

#[test]
fn rms_norm_softmax_match_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(n, rows)) in [(1usize, 1usize), (7, 3), (300, 5), (2048, 2), (5000, 1)].iter().enumerate() {
        let mut rng = Rng::new(50 + i as u64);
        let x = rng.vec(n * rows, 3.0);
        let w = rng.vec(n, 1.0);
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let wb = g.buffer_from("w", &w, MemoryIntent::Weights).unwrap();
        let yn = g.buffer("norm", (n * rows) as u64 * 4, MemoryIntent::Readback).unwrap();
        let ys = g.buffer("soft", (n * rows) as u64 * 4, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.rms_norm(&mut rec, &xb, &wb, &yn, n as u32, rows as u32, 1e-6).unwrap();
        k.softmax(&mut rec, &xb, &ys, n as u32, rows as u32, 0.7).unwrap();
        rec.submit().unwrap();
        r::check_close("rms_norm", &yn.read_vec::<f32>().unwrap(), &r::rms_norm(&x, &w, n, 1e-6), 1e-6, 1e-5).unwrap();
        r::check_close("softmax", &ys.read_vec::<f32>().unwrap(), &r::softmax(&x, n, 0.7), 1e-7, 1e-5).unwrap();
    }
    assert_clean(g);
}

#[test]
fn elementwise_match_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(n, b_len)) in [(1usize, 1usize), (1000, 1000), (4099, 4099), (768, 256), (100_003, 7)].iter().enumerate()
    {
        let mut rng = Rng::new(60 + i as u64);
        let a = rng.vec(n, 4.0);
        let b = rng.vec(b_len, 2.0);
        let ab = g.buffer_from("a", &a, MemoryIntent::Upload).unwrap();
        let bb = g.buffer_from("b", &b, MemoryIntent::Upload).unwrap();
        let out: Vec<_> = ["add", "mul", "silu_mul"]
            .iter()
            .map(|m| g.buffer(m, n as u64 * 4, MemoryIntent::Readback).unwrap())
            .collect();
        let mut rec = g.recorder(false).unwrap();
        k.add(&mut rec, &ab, &bb, &out[0], n as u64, b_len as u64).unwrap();
        k.mul(&mut rec, &ab, &bb, &out[1], n as u64, b_len as u64).unwrap();
        if b_len == n {
            k.silu_mul(&mut rec, &ab, &bb, &out[2], n as u64).unwrap();
        }
        rec.submit().unwrap();
        let bi = |j: usize| b[j % b_len] as f64;
        let add: Vec<f64> = (0..n).map(|j| a[j] as f64 + bi(j)).collect();
        let mul: Vec<f64> = (0..n).map(|j| a[j] as f64 * bi(j)).collect();
        r::check_close("add", &out[0].read_vec::<f32>().unwrap(), &add, 1e-6, 1e-6).unwrap();
        r::check_close("mul", &out[1].read_vec::<f32>().unwrap(), &mul, 1e-6, 1e-6).unwrap();
        if b_len == n {
            let sm: Vec<f64> = (0..n).map(|j| r::silu(a[j] as f64) * bi(j)).collect();
            r::check_close("silu_mul", &out[2].read_vec::<f32>().unwrap(), &sm, 1e-6, 1e-5).unwrap();
        }
    }
    assert_clean(g);
}

#[test]
fn stream_copy_and_read() {
    let k = kernels();
    let g = k.gpu();
    let n = 1 << 18;
    let x = Rng::new(70).vec(n, 1.0);
    let src = g.buffer_from("src", &x, MemoryIntent::Upload).unwrap();
    let dst = g.buffer("dst", n as u64 * 4, MemoryIntent::Readback).unwrap();
    let sink = g.buffer_from("sink", &vec![7.0f32; n], MemoryIntent::Readback).unwrap();
    let mut rec = g.recorder(false).unwrap();
    k.stream_copy(&mut rec, &src, &dst, n as u64 * 4).unwrap();
    k.stream_read(&mut rec, &src, &sink, n as u64 * 4).unwrap();
    rec.submit().unwrap();
    assert_eq!(dst.read_vec::<f32>().unwrap(), x);
    assert!(sink.read_vec::<f32>().unwrap().iter().all(|&v| v == 7.0), "the read kernel must not write");
    assert_clean(g);
}

#[test]
fn bad_launches_are_errors() {
    let mut k = kernels();
    // The shape errors on the float path (the int-dot path first asks for its Q8_1 scratch: the
    // default on devices with accelerated int8 dot products, e.g. the H200).
    k.set_matvec_path(MatvecPath::Float).unwrap();
    let g = k.gpu();
    let w = g.buffer("w", 34 * 8, MemoryIntent::Weights).unwrap();
    let x = g.buffer("x", 64 * 4, MemoryIntent::Upload).unwrap();
    let y = g.buffer("y", 4, MemoryIntent::Readback).unwrap();
    let mut rec = g.recorder(false).unwrap();
    // Ragged Q8_0 columns.
    let e = k.matvec(&mut rec, Matrix::new(&w, WType::Q8_0Planar, 1, 48), &x, &y, None).unwrap_err();
    assert!(e.to_string().contains("multiple of 32"), "{e}");
    // Matrix larger than its buffer: 8 planar rows of 64 need 544 bytes, the buffer has 272.
    let e = k.matvec(&mut rec, Matrix::new(&w, WType::Q8_0Planar, 8, 64), &x, &y, None).unwrap_err();
    assert!(e.to_string().contains("outside its 272 bytes"), "{e}");
    // Output too small for 2 rows (the matrix, 264 bytes, fits).
    let e = k.matvec(&mut rec, Matrix::new(&w, WType::Q8_0Planar, 2, 64), &x, &y, None).unwrap_err();
    assert!(e.to_string().contains("'y'"), "{e}");
    drop(rec);
    assert_clean(g);
    if k.gpu().caps().int_dot {
        k.set_matvec_path(MatvecPath::IntDot).unwrap();
        let g = k.gpu();
        let mut rec = g.recorder(false).unwrap();
        let e = k.matvec(&mut rec, Matrix::new(&w, WType::Q8_0Planar, 1, 64), &x, &y, None).unwrap_err();
        assert!(e.to_string().contains("needs a Q8_1 scratch"), "{e}");
    }
    assert_clean(k.gpu());
}

#[test]
fn one_quantisation_feeds_several_matrices() {
    let mut k = kernels();
    k.set_matvec_path(MatvecPath::IntDot).unwrap();
    let g = k.gpu();
    let (rows, cols) = (40usize, 256usize);
    let mut rng = Rng::new(80);
    let x = rng.vec(cols, 1.0);
    let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
    let s = k.q8_1_scratch(cols as u64).unwrap();
    let mats: Vec<(Vec<u8>, Vec<f32>)> =
        (0..3).map(|_| r::quantize_matrix_q8_0(&rng.vec(rows * cols, 1.0), cols)).collect();
    let wbs: Vec<_> = mats
        .iter()
        .map(|(b, _)| {
            g.buffer_from(
                "w",
                &qwen3_omni_vk::layout::repack_q8_0_planar(b, rows, cols).unwrap(),
                MemoryIntent::Weights,
            )
            .unwrap()
        })
        .collect();
    let ys: Vec<_> = (0..3).map(|_| g.buffer("y", rows as u64 * 4, MemoryIntent::Readback).unwrap()).collect();
    let mut rec = g.recorder(false).unwrap();
    k.quantize_q8_1(&mut rec, &xb, cols as u64, &s).unwrap();
    for (wb, y) in wbs.iter().zip(&ys) {
        k.matvec_prequantized(&mut rec, Matrix::new(wb, WType::Q8_0Planar, rows as u32, cols as u32), &xb, y, &s)
            .unwrap();
    }
    let batch = rec.finish().unwrap();
    // Quantise, one barrier, then three independent matrices.
    assert_eq!((batch.dispatches(), batch.barriers()), (4, 1));
    let mut batch = batch;
    batch.submit().unwrap();
    let xq = r::q8_1_roundtrip(&x);
    for ((_, deq), y) in mats.iter().zip(&ys) {
        let e = r::rel_l2(&y.read_vec::<f32>().unwrap(), &r::matvec(deq, &xq, rows, cols));
        assert!(e <= 1e-5, "error vs Q8_1 reference {e:e}");
    }
    drop(batch);
    assert_clean(g);
}

#[test]
fn matmul_f32_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(rows, cols, n)) in
        [(1usize, 1usize, 1usize), (48, 32, 7), (128, 2048, 5), (5, 300, 70)].iter().enumerate()
    {
        let mut rng = Rng::new(90 + i as u64);
        let w = rng.vec(rows * cols, 1.0);
        let x = rng.vec(n * cols, 1.0);
        let wb = g.buffer_from("w", &w, MemoryIntent::Weights).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", (n * rows) as u64 * 4, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.matmul_f32(&mut rec, Matrix::new(&wb, WType::F32, rows as u32, cols as u32), &xb, n as u32, &yb).unwrap();
        rec.submit().unwrap();
        // f32 sums of up to 2048 products of magnitude ~1: absolute error grows like √K · 2^-24 · |sum|.
        let (got, want) = (yb.read_vec::<f32>().unwrap(), r::matmul(&w, &x, rows, cols, n));
        assert!(r::rel_l2(&got, &want) <= 1e-6, "mm_f32 {rows}×{cols}×{n}: {:e}", r::rel_l2(&got, &want));
        r::check_close("mm_f32", &got, &want, 2e-4, 1e-5).unwrap();
    }
    assert_clean(g);
}

#[test]
fn matvec_with_fused_residual() {
    let mut k = kernels();
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        k.set_matvec_path(path).unwrap();
        let g = k.gpu().clone();
        let (rows, cols) = (96usize, 256usize);
        let mut rng = Rng::new(120);
        let (bytes, deq) = r::quantize_matrix_q8_0(&rng.vec(rows * cols, 1.0), cols);
        let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
        let x = rng.vec(cols, 1.0);
        let res = rng.vec(rows, 5.0);
        let wb = g.buffer_from("w", &planar, MemoryIntent::Weights).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let rb = g.buffer_from("residual", &res, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", rows as u64 * 4, MemoryIntent::Readback).unwrap();
        let s = k.q8_1_scratch(cols as u64).unwrap();
        let mut rec = g.recorder(false).unwrap();
        let m = Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32);
        k.matvec_residual(&mut rec, m, &xb, &rb, &yb, Some(&s)).unwrap();
        rec.submit().unwrap();
        let xs = if path == MatvecPath::IntDot { r::q8_1_roundtrip(&x) } else { x.clone() };
        let want: Vec<f64> = r::matvec(&deq, &xs, rows, cols).iter().zip(&res).map(|(a, b)| a + *b as f64).collect();
        r::check_close(&format!("{path:?} matvec + residual"), &yb.read_vec::<f32>().unwrap(), &want, 1e-4, 1e-5)
            .unwrap();
        // Other weight types refuse the fused residual with a clear error.
        let mut rec = g.recorder(false).unwrap();
        let e = k.matvec_residual(&mut rec, Matrix::new(&wb, WType::F32, 4, 4), &xb, &rb, &yb, None).unwrap_err();
        assert!(e.to_string().contains("planar"), "{e}");
        drop(rec);
        assert_clean(&g);
    }
}

/// The decode fusions: RMSNorm (and on the int-dot path Q8_1 quantisation) in the matrix × vector
/// prologue, for planar Q8_0 and the f32 router, and quantisation + residual for the output
/// projection; against the f64 reference of the unfused sequence.
#[test]
fn matvec_fused_prologues() {
    let mut k = kernels();
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        k.set_matvec_path(path).unwrap();
        let g = k.gpu().clone();
        // 8192 columns: the int-dot prologue's loop for vectors longer than its registers hold.
        for (ci, &(rows, cols)) in [(96usize, 256usize), (40, 2048), (300, 4096), (24, 8192)].iter().enumerate() {
            let mut rng = Rng::new(130 + ci as u64);
            let (bytes, deq) = r::quantize_matrix_q8_0(&rng.vec(rows * cols, 1.0), cols);
            let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
            let wf = rng.vec(rows * cols, 0.1);
            // A residual stream far from unit scale, so a missing normalisation shows.
            let x = rng.vec(cols, 7.0);
            let nw: Vec<f32> = rng.vec(cols, 1.0).iter().map(|v| v + 1.5).collect();
            let res = rng.vec(rows, 5.0);
            let eps = 1e-6f32;
            let wb = g.buffer_from("w", &planar, MemoryIntent::Weights).unwrap();
            let wfb = g.buffer_from("w f32", &wf, MemoryIntent::Weights).unwrap();
            let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
            let nb = g.buffer_from("norm", &nw, MemoryIntent::Weights).unwrap();
            let rb = g.buffer_from("residual", &res, MemoryIntent::Upload).unwrap();
            let y1 = g.buffer("y norm", rows as u64 * 4, MemoryIntent::Readback).unwrap();
            let y2 = g.buffer("y residual", rows as u64 * 4, MemoryIntent::Readback).unwrap();
            let y3 = g.buffer("y f32 norm", rows as u64 * 4, MemoryIntent::Readback).unwrap();
            let m = Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32);
            let mf = Matrix::new(&wfb, WType::F32, rows as u32, cols as u32);
            let float_too_wide = path == MatvecPath::Float && cols > 4096;
            let mut rec = g.recorder(false).unwrap();
            if float_too_wide {
                let e = k.matvec_fused(&mut rec, m, &xb, Some((&nb, eps)), None, &y1).unwrap_err();
                assert!(e.to_string().contains("at most 4096"), "{e}");
                continue;
            }
            k.matvec_fused(&mut rec, m, &xb, Some((&nb, eps)), None, &y1).unwrap();
            k.matvec_fused(&mut rec, m, &xb, None, Some(&rb), &y2).unwrap();
            k.matvec_fused(&mut rec, mf, &xb, Some((&nb, eps)), None, &y3).unwrap();
            rec.submit().unwrap();
            let normed: Vec<f32> = r::rms_norm(&x, &nw, cols, eps).iter().map(|&v| v as f32).collect();
            let q = |v: &[f32]| if path == MatvecPath::IntDot { r::q8_1_roundtrip(v) } else { v.to_vec() };
            let label = format!("{path:?} {rows}×{cols}");
            let want1 = r::matvec(&deq, &q(&normed), rows, cols);
            r::check_close(&format!("{label} norm prologue"), &y1.read_vec::<f32>().unwrap(), &want1, 2e-3, 1e-4)
                .unwrap();
            let want2: Vec<f64> =
                r::matvec(&deq, &q(&x), rows, cols).iter().zip(&res).map(|(a, b)| a + *b as f64).collect();
            r::check_close(&format!("{label} quantise + residual"), &y2.read_vec::<f32>().unwrap(), &want2, 2e-3, 1e-4)
                .unwrap();
            let want3 = r::matvec(&wf, &normed, rows, cols);
            r::check_close(&format!("{label} f32 norm"), &y3.read_vec::<f32>().unwrap(), &want3, 1e-4, 1e-5).unwrap();
        }
        // Unsupported combinations say so.
        let wb = g.buffer("w", 4 * 32 * 4, MemoryIntent::Weights).unwrap();
        let xb = g.buffer("x", 32 * 4, MemoryIntent::Upload).unwrap();
        let mut rec = g.recorder(false).unwrap();
        let e = k.matvec_fused(&mut rec, Matrix::new(&wb, WType::F16, 4, 32), &xb, Some((&xb, 1e-6)), None, &xb);
        assert!(e.unwrap_err().to_string().contains("no such fused kernel"));
        drop(rec);
        assert_clean(&g);
    }
}

/// The launcher side of `add_f32`'s push constants (`uint n; uint b_len;`).
#[repr(C)]
#[derive(Clone, Copy)]
struct PushBinary {
    n: u32,
    b_len: u32,
}
qwen3_omni_vk::push_layout!(PushBinary { n, b_len });

/// Same size as `PushBinary`, one 8-byte member instead of two 4-byte ones.
#[repr(C)]
#[derive(Clone, Copy)]
struct PushWide {
    n: u64,
}
qwen3_omni_vk::push_layout!(PushWide { n });

/// Same size and member count, but a 2-byte first member (then 2 bytes of padding).
#[repr(C)]
#[derive(Clone, Copy)]
struct PushNarrow {
    n: u16,
    b_len: u32,
}
qwen3_omni_vk::push_layout!(PushNarrow { n, b_len });

#[test]
fn interface_mismatches_are_errors() {
    use qwen3_omni_vk::kernels::{self, names};
    use qwen3_omni_vk::vk_runtime::{Access, Binding, SpecConst};
    // The generated table: a name constant per kernel, access and push members consistent.
    assert_eq!(names::ADD_F32, "add_f32");
    for info in kernels::KERNELS {
        assert_eq!(info.access.len(), info.bindings, "{}", info.name);
        let end = info.push.iter().map(|m| m.offset + m.width).max().unwrap_or(0);
        assert_eq!(end, info.push_size, "{}", info.name);
    }
    let add = kernels::find(names::ADD_F32).unwrap();
    assert_eq!(add.access, &[Access::Read, Access::Read, Access::Write]);
    assert_eq!(
        add.push.iter().map(|m| (m.offset, m.width, m.name)).collect::<Vec<_>>(),
        [(0, 4, "n"), (4, 4, "b_len")]
    );

    let k = kernels();
    let spec = [SpecConst { id: 0, value: 64 }];
    // A push struct of the right size but the wrong members is refused.
    let e = k.pipeline_with_push::<PushWide>(names::ADD_F32, &spec).err().expect("refused").to_string();
    assert!(e.contains("add_f32") && e.contains("1 members, the SPIR-V's block 2"), "{e}");
    let e = k.pipeline_with_push::<PushNarrow>(names::ADD_F32, &spec).err().expect("refused").to_string();
    assert!(
        e.contains("add_f32")
            && e.contains("member 0 (`n`): the launcher has offset 0, width 2; the SPIR-V has offset 0, width 4"),
        "{e}"
    );
    let e = k.pipeline_with_push::<()>(names::ADD_F32, &spec).err().expect("refused").to_string();
    assert!(e.contains("0 bytes, the SPIR-V declares 8"), "{e}");
    let p = k.pipeline_with_push::<PushBinary>(names::ADD_F32, &spec).unwrap();

    // Bindings declared differently from the shader's readonly / writeonly are refused.
    let g = k.gpu();
    let a = g.buffer("a", 256, MemoryIntent::Upload).unwrap();
    let b = g.buffer("b", 256, MemoryIntent::Upload).unwrap();
    let y = g.buffer("y", 256, MemoryIntent::Readback).unwrap();
    let push = [64u32, 64].map(u32::to_le_bytes).concat();
    let mut rec = g.recorder(false).unwrap();
    // The written output declared as read: its write would get no barrier.
    let e = rec
        .dispatch(&p, &[Binding::read(&a), Binding::read(&b), Binding::read(&y)], &push, [1, 1, 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'add_f32', binding 2") && e.contains("bound as Read") && e.contains("declares Write"), "{e}");
    // A read-only input declared as written.
    let e = rec
        .dispatch(&p, &[Binding::read(&a), Binding::write(&b), Binding::write(&y)], &push, [1, 1, 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("binding 1") && e.contains("bound as Write") && e.contains("declares Read"), "{e}");
    // ReadWrite is accepted anywhere (a superset for the hazard tracking), and the right
    // declarations run.
    rec.dispatch(&p, &[Binding::read_write(&a), Binding::read(&b), Binding::read_write(&y)], &push, [1, 1, 1]).unwrap();
    rec.dispatch(&p, &[Binding::read(&a), Binding::read(&b), Binding::write(&y)], &push, [1, 1, 1]).unwrap();
    rec.submit().unwrap();
    assert_clean(g);
}
