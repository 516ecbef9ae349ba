//! Mixture-of-experts kernels (routing, gate/up, down with the weighted sum and residual fused)
//! against an f64 CPU reference of the whole MoE block, on random (never zero) data with ragged
//! sizes, with the validation layer on.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{Kernels, Matrix, MatvecPath, WType};
use qwen3_omni_vk::{MoeDown, MoeDownGrouped, MoeGateUp, MoeGateUpGrouped, MoeRoute, MoeRouteGateUp, MoeSharedGate};

use common::moe_data::{experts_q8, route_ref, separated_logits, Case};

#[test]
fn moe_route_matches_f64() {
    let k = kernels();
    let g = k.gpu();
    // (experts, top-k, tokens, ties): ties rounds logits to a coarse grid so that many are equal.
    let cases = [
        (6usize, 2usize, 3usize, false),
        (8, 8, 2, false),
        (48, 4, 5, false),
        (128, 8, 7, false),
        (130, 6, 2, false),
        (128, 8, 4, true),
        (6, 5, 3, true),
        (1, 1, 1, false),
    ];
    for (ci, &(ne, top, nt, ties)) in cases.iter().enumerate() {
        let mut rng = Rng::new(100 + ci as u64);
        let logits: Vec<f32> = if ties {
            rng.vec(ne * nt, 3.0).iter().map(|v| (v * 2.0).round() / 2.0).collect()
        } else {
            (0..nt).flat_map(|_| separated_logits(&mut rng, ne)).collect()
        };
        let lb = g.buffer_from("logits", &logits, MemoryIntent::Upload).unwrap();
        for renorm in [true, false] {
            let ids = g.buffer("ids", (nt * top) as u64 * 4, MemoryIntent::Readback).unwrap();
            let wts = g.buffer("weights", (nt * top) as u64 * 4, MemoryIntent::Readback).unwrap();
            let mut rec = g.recorder(false).unwrap();
            k.moe_route(
                &mut rec,
                MoeRoute {
                    logits: &lb,
                    ids: &ids,
                    weights: &wts,
                    n_experts: ne as u32,
                    k: top as u32,
                    n_tokens: nt as u32,
                    renormalize: renorm,
                },
            )
            .unwrap();
            rec.submit().unwrap();
            let got_ids: Vec<u32> = ids.read_vec().unwrap();
            let got_w: Vec<f32> = wts.read_vec().unwrap();
            for t in 0..nt {
                let (want_ids, want_w) = route_ref(&logits[t * ne..(t + 1) * ne], top, renorm);
                let what = format!("route {ne} experts top-{top} token {t} (ties {ties}, renorm {renorm})");
                assert_eq!(&got_ids[t * top..(t + 1) * top], &want_ids[..], "{what}: ids");
                r::check_close(&what, &got_w[t * top..(t + 1) * top], &want_w, 1e-7, 2e-6).unwrap();
            }
        }
    }
    assert_clean(g);
}

#[test]
fn expert_layout_stacks_planar_blocks() {
    let (ne, rows, cols) = (3usize, 5usize, 96usize);
    let (bytes, _) = r::quantize_matrix_q8_0(&Rng::new(110).vec(ne * rows * cols, 1.0), cols);
    let stacked = Matrix::repack_experts_q8_0_planar(&bytes, ne, rows, cols).unwrap();
    let stride = Matrix::expert_stride(rows as u32, cols as u32) as usize;
    assert_eq!(stride % 256, 0);
    assert_eq!(stacked.len(), ne * stride);
    let per = rows * cols / 32 * 34;
    for e in 0..ne {
        let one = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes[e * per..(e + 1) * per], rows, cols).unwrap();
        assert_eq!(&stacked[e * stride..e * stride + one.len()], &one[..], "expert {e}");
        assert!(stacked[e * stride + one.len()..(e + 1) * stride].iter().all(|&b| b == 0));
    }
    assert!(Matrix::repack_experts_q8_0_planar(&bytes[1..], ne, rows, cols).is_err());
}

/// How `run_block` runs the experts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// moe_route, moe_gate_up, moe_down.
    Split,
    /// moe_route_gate_up, then moe_down (int-dot: moe_down_float).
    Fused,
    /// Prefill: moe_route, moe_group, moe_gate_up_grouped, moe_down_grouped.
    Grouped,
}

/// Results of one GPU run and its references.
struct BlockRun {
    h: Vec<f32>,
    y: Vec<f32>,
    /// References with the activations the kernels see (Q8_1 round trips on the int-dot path).
    h_want: Vec<f64>,
    y_want: Vec<f64>,
    /// Reference computed on the CPU alone: h from the reference's own gate/up (rounded to f32,
    /// Q8_1 round trip on the int-dot path) instead of the GPU's h.
    y_cpu: Vec<f64>,
    /// Reference with unquantised activations.
    y_exact: Vec<f64>,
}

/// Runs route → gate/up → down on the GPU in one recorder and the f64 reference. With
/// `gpu_router` (one token) the router logits come from the f32 matrix × vector kernel, else
/// they are uploaded. With `residual` the down kernel adds into y in place. With `fused`, routing
/// and gate/up run as one `moe_route_gate_up` dispatch, and on the int-dot path the down
/// projection is `moe_down_float` (h unquantised). With `Mode::Grouped`, the prefill kernels:
/// route, group by expert, grouped gate/up, grouped down + combine.
fn run_block(k: &Kernels, c: Case, seed: u64, residual: bool, gpu_router: bool, mode: Mode) -> BlockRun {
    let fused = mode == Mode::Fused;
    let g = k.gpu();
    let intdot = k.matvec_path() == MatvecPath::IntDot;
    let mut rng = Rng::new(seed);
    let (ne, top, hid, int, nt) = (c.experts, c.top, c.hidden, c.inter, c.tokens);
    let x = rng.vec(nt * hid, 1.0);
    let res = rng.vec(nt * hid, 4.0);
    let (gate_b, gate) = experts_q8(&mut rng, &c, int, hid);
    let (up_b, up) = experts_q8(&mut rng, &c, int, hid);
    let (down_b, down) = experts_q8(&mut rng, &c, hid, int);

    // Router: separated target logits; for the GPU router, a random matrix nudged along x so that
    // W·x hits them.
    let targets: Vec<f32> = (0..nt).flat_map(|_| separated_logits(&mut rng, ne)).collect();
    let mut wr = rng.vec(ne * hid, 0.1);
    let logits: Vec<f32> = if gpu_router {
        assert_eq!(nt, 1);
        let xx: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
        let base = r::matvec(&wr, &x, ne, hid);
        for e in 0..ne {
            let f = (targets[e] as f64 - base[e]) / xx;
            for i in 0..hid {
                wr[e * hid + i] = (wr[e * hid + i] as f64 + f * x[i] as f64) as f32;
            }
        }
        r::matvec(&wr, &x, ne, hid).iter().map(|&v| v as f32).collect()
    } else {
        targets
    };

    let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
    let wrb = g.buffer_from("router", &wr, MemoryIntent::Weights).unwrap();
    let lb = g.buffer_from("logits", &logits, MemoryIntent::Upload).unwrap();
    let gb = g.buffer_from("gate_exps", &gate_b, MemoryIntent::Weights).unwrap();
    let ub = g.buffer_from("up_exps", &up_b, MemoryIntent::Weights).unwrap();
    let db = g.buffer_from("down_exps", &down_b, MemoryIntent::Weights).unwrap();
    let ids = g.buffer("ids", (nt * top) as u64 * 4, MemoryIntent::Readback).unwrap();
    let wts = g.buffer("weights", (nt * top) as u64 * 4, MemoryIntent::Readback).unwrap();
    let hb = g.buffer("h", (nt * top * int) as u64 * 4, MemoryIntent::Readback).unwrap();
    let yb = if residual {
        g.buffer_from("y", &res, MemoryIntent::Readback).unwrap()
    } else {
        g.buffer("y", (nt * hid) as u64 * 4, MemoryIntent::Readback).unwrap()
    };
    let xs = k.q8_1_scratch((nt * hid) as u64).unwrap();
    let hs = k.q8_1_scratch((nt * top * int) as u64).unwrap();

    let gate_m = Matrix::new(&gb, WType::Q8_0Planar, int as u32, hid as u32).experts(ne as u32);
    let up_m = Matrix::new(&ub, WType::Q8_0Planar, int as u32, hid as u32).experts(ne as u32);
    let down_m = Matrix::new(&db, WType::Q8_0Planar, hid as u32, int as u32).experts(ne as u32);
    let offsets = g.buffer("offsets", (ne as u64 + 1) * 4, MemoryIntent::Readback).unwrap();
    let order = g.buffer("order", (nt * top) as u64 * 4, MemoryIntent::Readback).unwrap();
    let ob = g.buffer("o", (nt * top * hid) as u64 * 4, MemoryIntent::Scratch).unwrap();
    let mut rec = g.recorder(false).unwrap();
    if gpu_router {
        k.matvec(&mut rec, Matrix::new(&wrb, WType::F32, ne as u32, hid as u32), &xb, &lb, None).unwrap();
    }
    if fused {
        k.moe_route_gate_up(
            &mut rec,
            MoeRouteGateUp {
                logits: &lb,
                gate: gate_m,
                up: up_m,
                x: &xb,
                ids: &ids,
                weights: &wts,
                k: top as u32,
                n_tokens: nt as u32,
                renormalize: true,
                h: &hb,
            },
        )
        .unwrap();
    } else if mode == Mode::Grouped {
        k.moe_route(
            &mut rec,
            MoeRoute {
                logits: &lb,
                ids: &ids,
                weights: &wts,
                n_experts: ne as u32,
                k: top as u32,
                n_tokens: nt as u32,
                renormalize: true,
            },
        )
        .unwrap();
        k.moe_group(&mut rec, &ids, (nt * top) as u32, ne as u32, &offsets, &order).unwrap();
        k.moe_gate_up_grouped(
            &mut rec,
            MoeGateUpGrouped {
                gate: gate_m,
                up: up_m,
                x: &xb,
                k: top as u32,
                n_tokens: nt as u32,
                offsets: &offsets,
                order: &order,
                h: &hb,
            },
            Some(&xs),
        )
        .unwrap();
    } else {
        k.moe_route(
            &mut rec,
            MoeRoute {
                logits: &lb,
                ids: &ids,
                weights: &wts,
                n_experts: ne as u32,
                k: top as u32,
                n_tokens: nt as u32,
                renormalize: true,
            },
        )
        .unwrap();
        k.moe_gate_up(
            &mut rec,
            MoeGateUp { gate: gate_m, up: up_m, x: &xb, ids: &ids, k: top as u32, n_tokens: nt as u32, h: &hb },
            Some(&xs),
        )
        .unwrap();
    }
    let resid = if residual { Some(&yb) } else { None };
    let h_quantised = intdot && !fused;
    if mode == Mode::Grouped {
        k.moe_down_grouped(
            &mut rec,
            MoeDownGrouped {
                down: down_m,
                h: &hb,
                weights: &wts,
                k: top as u32,
                n_tokens: nt as u32,
                offsets: &offsets,
                order: &order,
                o: &ob,
                residual: resid,
                y: &yb,
            },
            Some(&hs),
        )
        .unwrap();
    } else if h_quantised {
        k.moe_down(
            &mut rec,
            MoeDown {
                down: down_m,
                h: &hb,
                ids: &ids,
                weights: &wts,
                k: top as u32,
                n_tokens: nt as u32,
                residual: resid,
                y: &yb,
            },
            Some(&hs),
        )
        .unwrap();
    } else {
        k.moe_down_float(
            &mut rec,
            MoeDown {
                down: down_m,
                h: &hb,
                ids: &ids,
                weights: &wts,
                k: top as u32,
                n_tokens: nt as u32,
                residual: resid,
                y: &yb,
            },
        )
        .unwrap();
    }
    rec.submit().unwrap();

    let got_ids: Vec<u32> = ids.read_vec().unwrap();
    if mode == Mode::Grouped {
        // Offsets and order: the pairs sorted by expert (any order within an expert's run).
        let mut want_order: Vec<u32> = (0..(nt * top) as u32).collect();
        want_order.sort_by_key(|&p| got_ids[p as usize]);
        let mut got_order: Vec<u32> = order.read_vec().unwrap();
        let mut want_off = vec![0u32; ne + 1];
        for &e in &got_ids {
            want_off[e as usize + 1] += 1;
        }
        for e in 0..ne {
            want_off[e + 1] += want_off[e];
        }
        assert_eq!(offsets.read_vec::<u32>().unwrap(), want_off, "{c:?}: group offsets");
        for e in 0..ne {
            got_order[want_off[e] as usize..want_off[e + 1] as usize].sort_unstable();
        }
        assert_eq!(got_order, want_order, "{c:?}: group order");
    }
    let got_w: Vec<f32> = wts.read_vec().unwrap();
    let h: Vec<f32> = hb.read_vec().unwrap();
    let y: Vec<f32> = yb.read_vec().unwrap();

    // Reference: the block on dequantised weights in f64.
    let xq = if intdot { r::q8_1_roundtrip(&x) } else { x.clone() };
    let mut h_want = vec![0.0f64; nt * top * int];
    let mut y_want = vec![0.0f64; nt * hid];
    let mut y_exact = vec![0.0f64; nt * hid];
    let mut y_cpu = vec![0.0f64; nt * hid];
    for t in 0..nt {
        let (want_ids, w) = route_ref(&logits[t * ne..(t + 1) * ne], top, true);
        assert_eq!(&got_ids[t * top..(t + 1) * top], &want_ids[..], "{c:?} token {t}: expert ids");
        r::check_close(&format!("{c:?} token {t}: routing weights"), &got_w[t * top..(t + 1) * top], &w, 1e-7, 2e-6)
            .unwrap();
        let xt = &x[t * hid..(t + 1) * hid];
        let xqt = &xq[t * hid..(t + 1) * hid];
        for (j, &e) in want_ids.iter().enumerate() {
            let e = e as usize;
            let pair = t * top + j;
            let expert = |xv: &[f32]| -> Vec<f64> {
                let gv = r::matvec(&gate[e * int * hid..(e + 1) * int * hid], xv, int, hid);
                let uv = r::matvec(&up[e * int * hid..(e + 1) * int * hid], xv, int, hid);
                gv.iter().zip(&uv).map(|(&a, &b)| r::silu(a) * b).collect()
            };
            let hq = expert(xqt);
            let he = expert(xt);
            h_want[pair * int..(pair + 1) * int].copy_from_slice(&hq);
            // Down sees the GPU's h (Q8_1 round trip of it on the int-dot path).
            let hg = &h[pair * int..(pair + 1) * int];
            let hgq = if h_quantised { r::q8_1_roundtrip(hg) } else { hg.to_vec() };
            let dw = &down[e * hid * int..(e + 1) * hid * int];
            let dq = r::matvec(dw, &hgq, hid, int);
            let he32: Vec<f32> = he.iter().map(|&v| v as f32).collect();
            let de = r::matvec(dw, &he32, hid, int);
            let hc: Vec<f32> = hq.iter().map(|&v| v as f32).collect();
            let hcq = if h_quantised { r::q8_1_roundtrip(&hc) } else { hc };
            let dc = r::matvec(dw, &hcq, hid, int);
            for m in 0..hid {
                y_want[t * hid + m] += w[j] * dq[m];
                y_cpu[t * hid + m] += w[j] * dc[m];
                y_exact[t * hid + m] += w[j] * de[m];
            }
        }
        if residual {
            for m in 0..hid {
                y_want[t * hid + m] += res[t * hid + m] as f64;
                y_cpu[t * hid + m] += res[t * hid + m] as f64;
                y_exact[t * hid + m] += res[t * hid + m] as f64;
            }
        }
    }
    BlockRun { h, y, h_want, y_want, y_cpu, y_exact }
}

const CASES: &[Case] = &[
    Case { experts: 8, top: 2, hidden: 64, inter: 32, tokens: 1 },
    Case { experts: 48, top: 4, hidden: 96, inter: 64, tokens: 1 },
    Case { experts: 128, top: 8, hidden: 256, inter: 96, tokens: 1 },
    Case { experts: 8, top: 2, hidden: 64, inter: 32, tokens: 5 },
    Case { experts: 48, top: 4, hidden: 96, inter: 64, tokens: 3 },
    Case { experts: 128, top: 8, hidden: 256, inter: 96, tokens: 2 },
    Case { experts: 6, top: 6, hidden: 160, inter: 224, tokens: 3 },
    // k·inter > 16384: the int-dot down projection quantises h in a separate dispatch.
    Case { experts: 8, top: 8, hidden: 32, inter: 2080, tokens: 1 },
    // Prefill-like: ~13 pairs per expert, so the grouped kernels run full and partial tiles of 8.
    Case { experts: 6, top: 2, hidden: 64, inter: 64, tokens: 40 },
];

fn check_block(path: MatvecPath) {
    check_cases(kernels(), path, CASES);
}

fn check_cases(mut k: Kernels, path: MatvecPath, cases: &[Case]) {
    k.set_matvec_path(path).unwrap();
    for (i, &c) in cases.iter().enumerate() {
        for mode in [Mode::Split, Mode::Fused, Mode::Grouped] {
            let residual = i % 2 == 0;
            let gpu_router = c.tokens == 1;
            let b = run_block(&k, c, 200 + i as u64, residual, gpu_router, mode);
            let eh = r::rel_l2(&b.h, &b.h_want);
            let ey = r::rel_l2(&b.y, &b.y_want);
            let ec = r::rel_l2(&b.y, &b.y_cpu);
            let ex = r::rel_l2(&b.y, &b.y_exact);
            let what = format!("{path:?} {c:?} residual {residual} {mode:?}");
            eprintln!(
                "{what}: h rel L2 {eh:.2e}, y rel L2 {ey:.2e} (CPU-only h {ec:.2e}, unquantised activations {ex:.2e}, NMSE {:.2e})",
                r::nmse(&b.y, &b.y_exact)
            );
            assert!(eh <= 1e-5, "{what}: h error {eh:e}");
            assert!(ey <= 1e-5, "{what}: y error {ey:e}");
            r::check_close(&format!("{what} y"), &b.y, &b.y_want, 1e-3, 1e-4).unwrap();
            // A Q8_1 rounding of h may flip where the GPU's h and the reference's differ in the last bit.
            assert!(ec <= 1e-4, "{what}: y error vs the CPU-only reference {ec:e}");
            assert!(ex <= 2e-2, "{what}: y error vs unquantised activations {ex:e}");
        }
    }
    assert_clean(k.gpu());
}

#[test]
fn moe_block_float_matches_f64() {
    check_block(MatvecPath::Float);
}

#[test]
fn moe_block_intdot_matches_f64() {
    assert!(
        kernels().gpu().caps().int_dot,
        "the device lacks shaderIntegerDotProduct; lavapipe and every target have it"
    );
    // The fused down projection with 1, 2 and 4 subgroups per row group (4 is the default).
    for ks in [1, 2, 4] {
        let k = kernels();
        k.set_ksplit(ks);
        check_cases(k, MatvecPath::IntDot, CASES);
    }
}

#[test]
fn moe_block_ragged_workgroups() {
    // 64-wide workgroups of 3 rows per subgroup step: row blocks that end inside a step and inside
    // a workgroup.
    let k = [kernels(), kernels()];
    for k in &k {
        k.set_tuning(qwen3_omni_vk::TuningOptions { mv_wg: Some(64), mv_rows: Some(3), ..Default::default() });
    }
    let cases = [
        Case { experts: 8, top: 3, hidden: 64, inter: 96, tokens: 1 },
        Case { experts: 20, top: 5, hidden: 224, inter: 32, tokens: 2 },
    ];
    let [a, b] = k;
    check_cases(a, MatvecPath::Float, &cases);
    check_cases(b, MatvecPath::IntDot, &cases);
}

#[test]
fn moe_block_dispatches_and_barriers() {
    // Decode, float path: route, gate/up, down; int-dot with routing fused into gate/up (x and h
    // quantised in shared memory): two dispatches. No CPU round trip; one barrier between each.
    for (path, fused, want) in [(MatvecPath::Float, false, (3, 2)), (MatvecPath::IntDot, true, (2, 1))] {
        let mut k = kernels();
        k.set_matvec_path(path).unwrap();
        let g = k.gpu();
        let c = Case { experts: 8, top: 2, hidden: 64, inter: 32, tokens: 1 };
        let mut rng = Rng::new(300);
        let (gb, _) = experts_q8(&mut rng, &c, 32, 64);
        let (db, _) = experts_q8(&mut rng, &c, 64, 32);
        let gb = g.buffer_from("gate_up", &gb, MemoryIntent::Weights).unwrap();
        let db = g.buffer_from("down", &db, MemoryIntent::Weights).unwrap();
        let lb = g.buffer_from("logits", &separated_logits(&mut rng, 8), MemoryIntent::Upload).unwrap();
        let xb = g.buffer_from("x", &rng.vec(64, 1.0), MemoryIntent::Upload).unwrap();
        let ids = g.buffer("ids", 8, MemoryIntent::Scratch).unwrap();
        let wts = g.buffer("weights", 8, MemoryIntent::Scratch).unwrap();
        let hb = g.buffer("h", 2 * 32 * 4, MemoryIntent::Scratch).unwrap();
        let yb = g.buffer("y", 64 * 4, MemoryIntent::Readback).unwrap();
        let gm = Matrix::new(&gb, WType::Q8_0Planar, 32, 64).experts(8);
        let dm = Matrix::new(&db, WType::Q8_0Planar, 64, 32).experts(8);
        let mut rec = g.recorder(false).unwrap();
        if fused {
            k.moe_route_gate_up(
                &mut rec,
                MoeRouteGateUp {
                    logits: &lb,
                    gate: gm,
                    up: gm,
                    x: &xb,
                    ids: &ids,
                    weights: &wts,
                    k: 2,
                    n_tokens: 1,
                    renormalize: true,
                    h: &hb,
                },
            )
            .unwrap();
        } else {
            k.moe_route(
                &mut rec,
                MoeRoute { logits: &lb, ids: &ids, weights: &wts, n_experts: 8, k: 2, n_tokens: 1, renormalize: true },
            )
            .unwrap();
            k.moe_gate_up(&mut rec, MoeGateUp { gate: gm, up: gm, x: &xb, ids: &ids, k: 2, n_tokens: 1, h: &hb }, None)
                .unwrap();
        }
        k.moe_down(
            &mut rec,
            MoeDown { down: dm, h: &hb, ids: &ids, weights: &wts, k: 2, n_tokens: 1, residual: None, y: &yb },
            None,
        )
        .unwrap();
        let mut batch = rec.finish().unwrap();
        assert_eq!((batch.dispatches(), batch.barriers()), want, "{path:?}");
        batch.submit().unwrap();
        assert!(yb.read_vec::<f32>().unwrap().iter().all(|v| v.is_finite() && *v != 0.0));
        drop(batch);
        assert_clean(g);
    }
}

#[test]
fn bad_moe_launches_are_errors() {
    let mut k = kernels();
    // The shape errors on the float path (int-dot first asks for its Q8_1 scratch).
    k.set_matvec_path(MatvecPath::Float).unwrap();
    let g = k.gpu();
    let lb = g.buffer("logits", 16 * 4, MemoryIntent::Upload).unwrap();
    let ids = g.buffer("ids", 64, MemoryIntent::Scratch).unwrap();
    let wts = g.buffer("weights", 64, MemoryIntent::Scratch).unwrap();
    let wb = g.buffer("w", Matrix::expert_stride(32, 64) * 2, MemoryIntent::Weights).unwrap();
    let hb = g.buffer("h", 4096, MemoryIntent::Scratch).unwrap();
    let mut rec = g.recorder(false).unwrap();
    // Top-9 is beyond the kernel's 8; top-5 of 4 experts is impossible.
    assert!(k
        .moe_route(
            &mut rec,
            MoeRoute { logits: &lb, ids: &ids, weights: &wts, n_experts: 16, k: 9, n_tokens: 1, renormalize: true }
        )
        .unwrap_err()
        .to_string()
        .contains("k in 1..="));
    assert!(k
        .moe_route(
            &mut rec,
            MoeRoute { logits: &lb, ids: &ids, weights: &wts, n_experts: 4, k: 5, n_tokens: 1, renormalize: true }
        )
        .is_err());
    // Routing stages at most 512 experts' logits in shared memory.
    let e = k
        .moe_route(
            &mut rec,
            MoeRoute { logits: &lb, ids: &ids, weights: &wts, n_experts: 600, k: 8, n_tokens: 1, renormalize: true },
        )
        .unwrap_err();
    assert!(e.to_string().contains("at most 512"), "{e}");
    // Three experts do not fit a buffer of two.
    let e3 = Matrix::new(&wb, WType::Q8_0Planar, 32, 64).experts(3);
    let e = k
        .moe_gate_up(&mut rec, MoeGateUp { gate: e3, up: e3, x: &lb, ids: &ids, k: 2, n_tokens: 1, h: &hb }, None)
        .unwrap_err();
    assert!(e.to_string().contains("'w'"), "{e}");
    // Gate and up of different shapes.
    let a = Matrix::new(&wb, WType::Q8_0Planar, 32, 64).experts(1);
    let b = Matrix::new(&wb, WType::Q8_0Planar, 16, 64).experts(1);
    assert!(k
        .moe_gate_up(&mut rec, MoeGateUp { gate: a, up: b, x: &lb, ids: &ids, k: 2, n_tokens: 1, h: &hb }, None)
        .is_err());
    // Grouping handles at most 1024 experts.
    assert!(k.moe_group(&mut rec, &ids, 4, 2000, &wts, &hb).unwrap_err().to_string().contains("1..=1024"));
    // Ragged columns.
    let r = Matrix::new(&wb, WType::Q8_0Planar, 32, 48).experts(1);
    assert!(k
        .moe_down(
            &mut rec,
            MoeDown { down: r, h: &hb, ids: &ids, weights: &wts, k: 1, n_tokens: 1, residual: None, y: &hb },
            None
        )
        .unwrap_err()
        .to_string()
        .contains("multiple of 32"));
    // More than 16 slots in the down projection.
    let d = Matrix::new(&wb, WType::Q8_0Planar, 32, 64).experts(1);
    assert!(k
        .moe_down(
            &mut rec,
            MoeDown { down: d, h: &hb, ids: &ids, weights: &wts, k: 17, n_tokens: 1, residual: None, y: &hb },
            None
        )
        .unwrap_err()
        .to_string()
        .contains("k in 1..=16"));
    drop(rec);
    assert_clean(g);
    // The fused int-dot routing + gate/up quantises at most 8192 columns in shared memory.
    let mut k2 = kernels();
    k2.set_matvec_path(MatvecPath::IntDot).unwrap();
    let g2 = k2.gpu();
    let wide_b = g2.buffer("w", Matrix::expert_stride(1, 8224), MemoryIntent::Weights).unwrap();
    let small = g2.buffer("small", 4096, MemoryIntent::Scratch).unwrap();
    let mut rec = g2.recorder(false).unwrap();
    let wide = Matrix::new(&wide_b, WType::Q8_0Planar, 1, 8224).experts(1);
    let e = k2
        .moe_route_gate_up(
            &mut rec,
            MoeRouteGateUp {
                logits: &small,
                gate: wide,
                up: wide,
                x: &small,
                ids: &small,
                weights: &small,
                k: 1,
                n_tokens: 1,
                renormalize: true,
                h: &small,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("8192"), "{e}");
    drop(rec);
    assert_clean(g2);
}

/// CPU-only SwiGLU expert `e` of stacked dequantised weights on one token: down(silu(gate·x) ⊙
/// up·x) in f64, with Q8_1 round trips of x and of h (rounded to f32) on the int-dot path.
#[allow(clippy::too_many_arguments)]
fn expert_ref(
    gate: &[f32],
    up: &[f32],
    down: &[f32],
    e: usize,
    inter: usize,
    hidden: usize,
    x: &[f32],
    intdot: bool,
) -> Vec<f64> {
    let xq = if intdot { r::q8_1_roundtrip(x) } else { x.to_vec() };
    let (a, b) = (e * inter * hidden, (e + 1) * inter * hidden);
    let gv = r::matvec(&gate[a..b], &xq, inter, hidden);
    let uv = r::matvec(&up[a..b], &xq, inter, hidden);
    let h: Vec<f32> = gv.iter().zip(&uv).map(|(&g, &u)| (r::silu(g) * u) as f32).collect();
    let hq = if intdot { r::q8_1_roundtrip(&h) } else { h };
    r::matvec(&down[a..b], &hq, hidden, inter)
}

#[test]
fn talker_moe_with_shared_expert_matches_f64() {
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        let mut k = kernels();
        k.set_matvec_path(path).unwrap();
        let intdot = path == MatvecPath::IntDot;
        let g = k.gpu();
        // Talker shape, scaled down: 24 experts top-6, hidden 128, expert inter 64, shared inter 96.
        let (ne, top, hid, int, int_s, nt) = (24usize, 6usize, 128usize, 64usize, 96usize, 3usize);
        let c = Case { experts: ne, top, hidden: hid, inter: int, tokens: nt };
        let cs = Case { experts: 1, ..c };
        let mut rng = Rng::new(400 + intdot as u64);
        let x = rng.vec(nt * hid, 1.0);
        let res = rng.vec(nt * hid, 4.0);
        let wsg = rng.vec(hid, 0.2);
        let logits: Vec<f32> = (0..nt).flat_map(|_| separated_logits(&mut rng, ne)).collect();
        let (gate_b, gate) = experts_q8(&mut rng, &c, int, hid);
        let (up_b, up) = experts_q8(&mut rng, &c, int, hid);
        let (down_b, down) = experts_q8(&mut rng, &c, hid, int);
        let (sg_b, sgate) = experts_q8(&mut rng, &cs, int_s, hid);
        let (su_b, sup) = experts_q8(&mut rng, &cs, int_s, hid);
        let (sd_b, sdown) = experts_q8(&mut rng, &cs, hid, int_s);

        let up_load = |name: &str, b: &[u8]| g.buffer_from(name, b, MemoryIntent::Weights).unwrap();
        let (gb, ub, db) = (up_load("gate_exps", &gate_b), up_load("up_exps", &up_b), up_load("down_exps", &down_b));
        let (sgb, sub, sdb) = (up_load("gate_shexp", &sg_b), up_load("up_shexp", &su_b), up_load("down_shexp", &sd_b));
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let wsgb = g.buffer_from("shared_expert_gate", &wsg, MemoryIntent::Weights).unwrap();
        let lb = g.buffer_from("logits", &logits, MemoryIntent::Upload).unwrap();
        let yb = g.buffer_from("y", &res, MemoryIntent::Readback).unwrap();
        let ids = g.buffer("ids", (nt * top) as u64 * 4, MemoryIntent::Scratch).unwrap();
        let wts = g.buffer("weights", (nt * top) as u64 * 4, MemoryIntent::Scratch).unwrap();
        let ids_s = g.buffer("ids_shexp", nt as u64 * 4, MemoryIntent::Readback).unwrap();
        let wts_s = g.buffer("weights_shexp", nt as u64 * 4, MemoryIntent::Readback).unwrap();
        let hb = g.buffer("h", (nt * top * int) as u64 * 4, MemoryIntent::Scratch).unwrap();
        let hsb = g.buffer("h_shexp", (nt * int_s) as u64 * 4, MemoryIntent::Scratch).unwrap();
        let xs = k.q8_1_scratch((nt * hid) as u64).unwrap();
        // One scratch serves both down projections (the recorder orders the reuse).
        let hs = k.q8_1_scratch((nt * top * int) as u64).unwrap();
        let pm = |b, rows: usize, cols: usize, n: usize| {
            Matrix::new(b, WType::Q8_0Planar, rows as u32, cols as u32).experts(n as u32)
        };

        let mut rec = g.recorder(false).unwrap();
        k.moe_route(
            &mut rec,
            MoeRoute {
                logits: &lb,
                ids: &ids,
                weights: &wts,
                n_experts: ne as u32,
                k: top as u32,
                n_tokens: nt as u32,
                renormalize: true,
            },
        )
        .unwrap();
        k.moe_shared_gate(
            &mut rec,
            MoeSharedGate {
                x: &xb,
                w_gate: &wsgb,
                ids: &ids_s,
                weights: &wts_s,
                hidden: hid as u32,
                n_tokens: nt as u32,
            },
        )
        .unwrap();
        k.moe_gate_up(
            &mut rec,
            MoeGateUp {
                gate: pm(&gb, int, hid, ne),
                up: pm(&ub, int, hid, ne),
                x: &xb,
                ids: &ids,
                k: top as u32,
                n_tokens: nt as u32,
                h: &hb,
            },
            Some(&xs),
        )
        .unwrap();
        k.moe_gate_up_prequantized(
            &mut rec,
            MoeGateUp {
                gate: pm(&sgb, int_s, hid, 1),
                up: pm(&sub, int_s, hid, 1),
                x: &xb,
                ids: &ids_s,
                k: 1,
                n_tokens: nt as u32,
                h: &hsb,
            },
            &xs,
        )
        .unwrap();
        k.moe_down(
            &mut rec,
            MoeDown {
                down: pm(&db, hid, int, ne),
                h: &hb,
                ids: &ids,
                weights: &wts,
                k: top as u32,
                n_tokens: nt as u32,
                residual: Some(&yb),
                y: &yb,
            },
            Some(&hs),
        )
        .unwrap();
        k.moe_down(
            &mut rec,
            MoeDown {
                down: pm(&sdb, hid, int_s, 1),
                h: &hsb,
                ids: &ids_s,
                weights: &wts_s,
                k: 1,
                n_tokens: nt as u32,
                residual: Some(&yb),
                y: &yb,
            },
            Some(&hs),
        )
        .unwrap();
        rec.submit().unwrap();

        let y: Vec<f32> = yb.read_vec().unwrap();
        let gate_s: Vec<f32> = wts_s.read_vec().unwrap();
        assert_eq!(ids_s.read_vec::<u32>().unwrap(), vec![0; nt]);
        let mut want = vec![0.0f64; nt * hid];
        let mut gate_want = vec![0.0f64; nt];
        for t in 0..nt {
            let xt = &x[t * hid..(t + 1) * hid];
            let (eids, w) = route_ref(&logits[t * ne..(t + 1) * ne], top, true);
            let s: f64 = wsg.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
            gate_want[t] = 1.0 / (1.0 + (-s).exp());
            let mut acc: Vec<f64> = res[t * hid..(t + 1) * hid].iter().map(|&v| v as f64).collect();
            for (j, &e) in eids.iter().enumerate() {
                for (a, v) in acc.iter_mut().zip(expert_ref(&gate, &up, &down, e as usize, int, hid, xt, intdot)) {
                    *a += w[j] * v;
                }
            }
            for (a, v) in acc.iter_mut().zip(expert_ref(&sgate, &sup, &sdown, 0, int_s, hid, xt, intdot)) {
                *a += gate_want[t] * v;
            }
            want[t * hid..(t + 1) * hid].copy_from_slice(&acc);
        }
        r::check_close("shared gate", &gate_s, &gate_want, 1e-7, 1e-6).unwrap();
        let e = r::rel_l2(&y, &want);
        eprintln!("talker MoE {path:?}: y rel L2 {e:.2e} vs the CPU reference with the same activations");
        assert!(e <= 1e-4, "{path:?}: y error {e:e}");
        assert_clean(g);
    }
}
