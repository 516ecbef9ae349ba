//! The AudioTower's kernels (LayerNorm, bias + GELU, the stride-2 conv stem, windowed
//! bidirectional attention) against f64 CPU references on random data, validation on.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{AttnBidirWindow, LayerNorm};
use qwen3_omni_vk::{Conv2dShape, Matrix, WType};

#[test]
fn erf_reference_is_accurate() {
    // Values from the closed form's tables (Abramowitz & Stegun 7.1).
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (-1.5, -0.966_105_146_475_310_7),
    ] {
        assert!((r::erf(x) - want).abs() < 1e-14, "erf({x}) = {} vs {want}", r::erf(x));
    }
}

#[test]
fn layer_norm_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(rows, n)) in [(1usize, 64usize), (7, 96), (33, 1280), (5, 300)].iter().enumerate() {
        let mut rng = Rng::new(100 + i as u64);
        let x: Vec<f32> = rng.vec(rows * n, 3.0).iter().map(|v| v + 0.7).collect();
        let w = rng.vec(n, 1.5);
        let b = rng.vec(n, 0.5);
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let wb = g.buffer_from("w", &w, MemoryIntent::Upload).unwrap();
        let bb = g.buffer_from("b", &b, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", (rows * n * 4) as u64, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.layer_norm(&mut rec, LayerNorm { x: &xb, w: &wb, b: &bb, y: &yb, n: n as u32, rows: rows as u32, eps: 1e-5 })
            .unwrap();
        rec.submit().unwrap();
        let y: Vec<f32> = yb.read_vec().unwrap();
        let mut want = Vec::new();
        for row in x.chunks_exact(n) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let s = 1.0 / (var + 1e-5).sqrt();
            want.extend(row.iter().enumerate().map(|(j, &v)| (v as f64 - mean) * s * w[j] as f64 + b[j] as f64));
        }
        r::check_close(&format!("layer_norm {rows}×{n}"), &y, &want, 1e-5, 1e-5).unwrap();
    }
    assert_clean(g);
}

#[test]
fn add_gelu_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    let mut rng = Rng::new(7);
    let (n, bl) = (3000usize, 120usize);
    let a = rng.vec(n, 6.0);
    let b = rng.vec(bl, 1.0);
    let ab = g.buffer_from("a", &a, MemoryIntent::Upload).unwrap();
    let bb = g.buffer_from("b", &b, MemoryIntent::Upload).unwrap();
    let yb = g.buffer("y", (n * 4) as u64, MemoryIntent::Readback).unwrap();
    let mut rec = g.recorder(false).unwrap();
    k.add_gelu(&mut rec, &ab, &bb, &yb, n as u64, bl as u64).unwrap();
    rec.submit().unwrap();
    let y: Vec<f32> = yb.read_vec().unwrap();
    let want: Vec<f64> = (0..n).map(|i| r::gelu(a[i] as f64 + b[i % bl] as f64)).collect();
    r::check_close("add_gelu", &y, &want, 1e-6, 1e-6).unwrap();
    assert_clean(g);
}

fn conv_ref(s: Conv2dShape, x: &[f32], w: &[f32], bias: &[f32], flat: bool) -> Vec<f64> {
    let (ho, wo) = (s.hout() as usize, s.wout() as usize);
    let (n, cin, hin, win, cout) = (s.n as usize, s.cin as usize, s.hin as usize, s.win as usize, s.cout as usize);
    let mut y = vec![0f64; n * cout * ho * wo];
    for b in 0..n {
        for co in 0..cout {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = bias[co] as f64;
                    for ci in 0..cin {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let (h, ww) = ((2 * oh + kh) as isize - 1, (2 * ow + kw) as isize - 1);
                                if h < 0 || ww < 0 || h >= hin as isize || ww >= win as isize {
                                    continue;
                                }
                                acc += w[((co * cin + ci) * 3 + kh) * 3 + kw] as f64
                                    * x[((b * cin + ci) * hin + h as usize) * win + ww as usize] as f64;
                            }
                        }
                    }
                    let idx = if flat {
                        (b * wo + ow) * cout * ho + co * ho + oh
                    } else {
                        ((b * cout + co) * ho + oh) * wo + ow
                    };
                    y[idx] = r::gelu(acc);
                }
            }
        }
    }
    y
}

#[test]
fn conv2d_s2_gelu_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    let shapes = [
        (Conv2dShape { n: 2, cin: 1, hin: 128, win: 100, cout: 8 }, false),
        (Conv2dShape { n: 3, cin: 5, hin: 17, win: 9, cout: 4 }, false),
        (Conv2dShape { n: 2, cin: 6, hin: 32, win: 25, cout: 7 }, true),
        (Conv2dShape { n: 1, cin: 3, hin: 1, win: 1, cout: 2 }, true),
        // Tiled (cin · 9 ≥ 64): ragged tiles in both directions, both layouts.
        (Conv2dShape { n: 3, cin: 8, hin: 13, win: 11, cout: 70 }, false),
        (Conv2dShape { n: 2, cin: 37, hin: 16, win: 13, cout: 96 }, true),
        (Conv2dShape { n: 1, cin: 64, hin: 32, win: 25, cout: 64 }, true),
    ];
    for (i, &(s, flat)) in shapes.iter().enumerate() {
        let mut rng = Rng::new(300 + i as u64);
        let x = rng.vec(s.in_len() as usize, 1.0);
        let w = rng.vec((s.cout * s.cin * 9) as usize, 0.5);
        let b = rng.vec(s.cout as usize, 0.3);
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let wb = g.buffer_from("w", &w, MemoryIntent::Upload).unwrap();
        let bb = g.buffer_from("b", &b, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", s.out_len() * 4, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.conv2d_s2_gelu(&mut rec, s, &xb, &wb, &bb, &yb, flat).unwrap();
        rec.submit().unwrap();
        let y: Vec<f32> = yb.read_vec().unwrap();
        let want = conv_ref(s, &x, &w, &b, flat);
        r::check_close(&format!("conv2d {s:?} flat={flat}"), &y, &want, 2e-6, 1e-5).unwrap();
    }
    assert_clean(g);
}

#[test]
fn attn_bidir_window_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(n_tok, heads, hd, window)) in
        [(50u32, 3u32, 32u32, 13u32), (230, 2, 64, 104), (9, 4, 16, 52), (300, 1, 128, 300)].iter().enumerate()
    {
        let mut rng = Rng::new(500 + i as u64);
        let len = (n_tok * heads * hd) as usize;
        let (q, kk, v) = (rng.vec(len, 1.0), rng.vec(len, 1.0), rng.vec(len, 1.0));
        let scale = 1.0 / (hd as f32).sqrt();
        let qb = g.buffer_from("q", &q, MemoryIntent::Upload).unwrap();
        let kb = g.buffer_from("k", &kk, MemoryIntent::Upload).unwrap();
        let vb = g.buffer_from("v", &v, MemoryIntent::Upload).unwrap();
        let ob = g.buffer("o", len as u64 * 4, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.attn_bidir_window(
            &mut rec,
            AttnBidirWindow { q: &qb, k: &kb, v: &vb, o: &ob, n_tok, heads, head_dim: hd, window, scale },
        )
        .unwrap();
        rec.submit().unwrap();
        let o: Vec<f32> = ob.read_vec().unwrap();
        let (row, hd_) = ((heads * hd) as usize, hd as usize);
        let mut want = vec![0f64; len];
        for t in 0..n_tok as usize {
            let w0 = t / window as usize * window as usize;
            let w1 = (w0 + window as usize).min(n_tok as usize);
            for h in 0..heads as usize {
                let s: Vec<f64> = (w0..w1)
                    .map(|j| {
                        (0..hd_)
                            .map(|d| q[t * row + h * hd_ + d] as f64 * kk[j * row + h * hd_ + d] as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let l: f64 = e.iter().sum();
                for d in 0..hd_ {
                    want[t * row + h * hd_ + d] =
                        (w0..w1).zip(&e).map(|(j, p)| p * v[j * row + h * hd_ + d] as f64).sum::<f64>() / l;
                }
            }
        }
        r::check_close(&format!("attn_bidir_window {n_tok}×{heads}×{hd} window {window}"), &o, &want, 1e-5, 1e-4)
            .unwrap();
    }
    assert_clean(g);
}

#[test]
fn matmul_q8_0_float_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    for (i, &(rows, cols, n)) in
        [(64usize, 64usize, 64usize), (70, 96, 13), (130, 160, 100), (33, 7680, 5), (1, 32, 1)].iter().enumerate()
    {
        let mut rng = Rng::new(700 + i as u64);
        let w = rng.vec(rows * cols, 1.0);
        let x = rng.vec(n * cols, 2.0);
        let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
        let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
        let wb = g.buffer_from("w", &planar, MemoryIntent::Weights).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", (n * rows * 4) as u64, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.matmul_q8_0_float(
            &mut rec,
            Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32),
            &xb,
            n as u32,
            &yb,
        )
        .unwrap();
        rec.submit().unwrap();
        let y: Vec<f32> = yb.read_vec().unwrap();
        let want = r::matmul(&deq, &x, rows, cols, n);
        let e = r::rel_l2(&y, &want);
        assert!(e <= 1e-5, "{rows}×{cols} × {n}: relative error {e:e}");
        r::check_close(&format!("mm_q8_0p_f32 {rows}×{cols} × {n}"), &y, &want, 1e-3, 1e-4).unwrap();
    }
    assert_clean(g);
}
