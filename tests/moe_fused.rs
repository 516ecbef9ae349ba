//! MoE decode fusions against their unfused forms and f64: routing + gate/up with the RMSNorm
//! prologue, and the router folded into the o-projection stage.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{Matrix, MatvecPath, WType};
use qwen3_omni_vk::{MoeRouteGateUp, RouterFold};

use common::moe_data::{experts_q8, separated_logits, Case};

/// Routing + gate/up with the post-attention RMSNorm fused in front (the decode path) against
/// rms_norm followed by the unfused-norm kernel, on both paths: same experts and weights, and h
/// within the tolerance of a different summation order (int-dot: of a rare Q8_1 rounding flip).
#[test]
fn moe_route_gate_up_with_norm_matches_unfused() {
    let mut k = kernels();
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        k.set_matvec_path(path).unwrap();
        let g = k.gpu().clone();
        let c = Case { experts: 16, top: 4, hidden: 256, inter: 96, tokens: 1 };
        let mut rng = Rng::new(990);
        let (gate_b, _) = experts_q8(&mut rng, &c, c.inter, c.hidden);
        let (up_b, _) = experts_q8(&mut rng, &c, c.inter, c.hidden);
        let x = rng.vec(c.hidden, 6.0);
        let nw: Vec<f32> = rng.vec(c.hidden, 1.0).iter().map(|v| v + 1.5).collect();
        let logits = separated_logits(&mut rng, c.experts);
        let up = |n: &str, d: &[f32]| g.buffer_from(n, d, MemoryIntent::Upload).unwrap();
        let (xb, nb, lb) = (up("x", &x), up("norm", &nw), up("logits", &logits));
        let gb = g.buffer_from("gate", &gate_b, MemoryIntent::Weights).unwrap();
        let ub = g.buffer_from("up", &up_b, MemoryIntent::Weights).unwrap();
        let yb = g.buffer("normed", c.hidden as u64 * 4, MemoryIntent::Scratch).unwrap();
        let pairs = (c.top * c.inter) as u64 * 4;
        let out = |n: &str, len: u64| g.buffer(n, len, MemoryIntent::Readback).unwrap();
        let (ids_a, w_a, h_a) = (out("ids a", c.top as u64 * 4), out("w a", c.top as u64 * 4), out("h a", pairs));
        let (ids_b, w_b, h_b) = (out("ids b", c.top as u64 * 4), out("w b", c.top as u64 * 4), out("h b", pairs));
        let gm = Matrix::new(&gb, WType::Q8_0Planar, c.inter as u32, c.hidden as u32).experts(c.experts as u32);
        let um = Matrix::new(&ub, WType::Q8_0Planar, c.inter as u32, c.hidden as u32).experts(c.experts as u32);
        let eps = 1e-6;
        let top = c.top as u32;
        let mut rec = g.recorder(false).unwrap();
        k.rms_norm(&mut rec, &xb, &nb, &yb, c.hidden as u32, 1, eps).unwrap();
        k.moe_route_gate_up(
            &mut rec,
            MoeRouteGateUp {
                logits: &lb,
                gate: gm,
                up: um,
                x: &yb,
                ids: &ids_a,
                weights: &w_a,
                k: top,
                n_tokens: 1,
                renormalize: true,
                h: &h_a,
            },
        )
        .unwrap();
        k.moe_route_gate_up_norm(
            &mut rec,
            MoeRouteGateUp {
                logits: &lb,
                gate: gm,
                up: um,
                x: &xb,
                ids: &ids_b,
                weights: &w_b,
                k: top,
                n_tokens: 1,
                renormalize: true,
                h: &h_b,
            },
            Some((&nb, eps)),
        )
        .unwrap();
        rec.submit().unwrap();
        assert_eq!(ids_a.read_vec::<u32>().unwrap(), ids_b.read_vec::<u32>().unwrap(), "{path:?}: ids");
        assert_eq!(w_a.read_vec::<f32>().unwrap(), w_b.read_vec::<f32>().unwrap(), "{path:?}: weights");
        let (ha, hb): (Vec<f32>, Vec<f32>) = (h_a.read_vec().unwrap(), h_b.read_vec().unwrap());
        let want: Vec<f64> = ha.iter().map(|&v| v as f64).collect();
        let e = r::rel_l2(&hb, &want);
        eprintln!("{path:?}: fused-norm h vs unfused, relative L2 {e:.2e}");
        assert!(e < if path == MatvecPath::IntDot { 3e-3 } else { 1e-5 }, "{path:?}: h differs by {e:e}");
        assert_clean(&g);
    }
}

/// The folded router (`router_fold_matrix` + `router_fold.comp`): R·[x ; a] equals the router of
/// the per-stage path in f64, W_r·(g ⊙ (x + W_o·ã)) with ã = a (float path) or a's Q8_1 value
/// (int-dot path, as the o-projection sees it) — on random data with ragged widths.
#[test]
fn router_fold_matches_f64() {
    let mut k = kernels();
    let g = k.gpu().clone();
    // (experts, hidden, o columns)
    for (ci, &(ne, h, qd)) in [(8usize, 64usize, 96usize), (128, 256, 512), (5, 36, 32)].iter().enumerate() {
        let mut rng = Rng::new(900 + ci as u64);
        let wr = rng.vec(ne * h, 1.0);
        let gn = rng.vec(h, 1.0);
        let (wo_q8, wo) = r::quantize_matrix_q8_0(&rng.vec(h * qd, 0.5), qd);
        let x = rng.vec(h, 1.0);
        let a = rng.vec(qd, 1.0);
        let rm = qwen3_omni_vk::router_fold_matrix(&wr, &gn, &wo_q8, h, qd, 3).unwrap();
        assert_eq!(rm.len(), ne * (h + qd));
        let rb = g.buffer_from("fold", &rm, MemoryIntent::Upload).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let ab = g.buffer_from("a", &a, MemoryIntent::Upload).unwrap();
        let ub = g.buffer("u", ne as u64 * 4, MemoryIntent::Readback).unwrap();
        for path in [MatvecPath::Float, MatvecPath::IntDot] {
            k.set_matvec_path(path).unwrap();
            // What the o-projection multiplies: a, or its Q8_1 round trip.
            let at: Vec<f64> = match path {
                MatvecPath::Float => a.iter().map(|&v| v as f64).collect(),
                MatvecPath::IntDot => r::q8_1_roundtrip(&a).iter().map(|&v| v as f64).collect(),
            };
            let y: Vec<f64> =
                (0..h).map(|i| x[i] as f64 + (0..qd).map(|j| wo[i * qd + j] as f64 * at[j]).sum::<f64>()).collect();
            let want: Vec<f64> =
                (0..ne).map(|e| (0..h).map(|i| wr[e * h + i] as f64 * gn[i] as f64 * y[i]).sum()).collect();
            let mut rec = g.recorder(false).unwrap();
            k.moe_router_fold(
                &mut rec,
                RouterFold { r: &rb, rows: ne as u32, x: &xb, k1: h as u32, a: &ab, k2: qd as u32, u: &ub },
            )
            .unwrap();
            rec.finish().unwrap().submit().unwrap();
            let got: Vec<f32> = ub.read_vec().unwrap();
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            for (e, (gv, wv)) in got.iter().zip(&want).enumerate() {
                assert!(
                    ((*gv as f64) - wv).abs() <= 1e-4 * scale,
                    "case {ci} {path:?}: expert {e}: {gv} vs {wv} (scale {scale})"
                );
            }
        }
    }
    // Bad shapes are errors naming the kernel.
    let b = g.buffer("b", 1024, MemoryIntent::Scratch).unwrap();
    let mut rec = g.recorder(false).unwrap();
    let e = k.moe_router_fold(&mut rec, RouterFold { r: &b, rows: 4, x: &b, k1: 6, a: &b, k2: 8, u: &b }).unwrap_err();
    assert!(e.to_string().contains("router_fold"), "{e}");
    assert!(qwen3_omni_vk::router_fold_matrix(&[1.0; 8], &[1.0; 4], &[0u8; 10], 4, 32, 1).is_err());
    drop(rec);
    assert_clean(&g);
}
