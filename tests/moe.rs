//! Mixture-of-experts kernels (routing, gate/up, down with the weighted sum and residual fused)
//! against an f64 CPU reference of the whole MoE block, on random (never zero) data with ragged
//! sizes, with the validation layer on.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{Kernels, Matrix, MatvecPath, WType};
use qwen3_omni_vk::{
    MoeDown, MoeDownGrouped, MoeGateUp, MoeGateUpGrouped, MoeRoute, MoeRouteGateUp, MoeSharedGate, RouterFold,
};

/// Reference routing of one token: softmax in f64 over the f32 logits, top-k by (logit desc, index
/// asc), optionally renormalised. Returns (ids, weights).
fn route_ref(logits: &[f32], k: usize, renorm: bool) -> (Vec<u32>, Vec<f64>) {
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
fn separated_logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    perm.iter().map(|&p| p as f32 * 0.05 - 2.0 + 0.01 * rng.uniform()).collect()
}

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

/// One MoE block configuration.
#[derive(Clone, Copy, Debug)]
struct Case {
    experts: usize,
    top: usize,
    hidden: usize,
    inter: usize,
    tokens: usize,
}

/// Expert weights `[experts, rows, cols]`: stacked planar bytes and dequantised values.
fn experts_q8(rng: &mut Rng, c: &Case, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let (bytes, deq) = r::quantize_matrix_q8_0(&rng.vec(c.experts * rows * cols, 1.0), cols);
    (Matrix::repack_experts_q8_0_planar(&bytes, c.experts, rows, cols).unwrap(), deq)
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

/// Decode timing of the MoE block at the Thinker's and the Talker's shapes on a real GPU (no
/// validation layer). "chain": route → (quantise) → gate/up → down (+ residual) as one decode step
/// runs it, 16 steps in a batch (each waits for the last); "fused chain": routing fused into
/// gate/up, then down (two dispatches); the other lines time 16
/// independent dispatches of one kernel. The 16 steps route to disjoint experts, so weights come
/// from memory, not L2. Run: `cargo test --test moe -- --ignored --nocapture moe_decode_timing`.
#[test]
#[ignore = "timing on a real GPU"]
fn moe_decode_timing() {
    use qwen3_omni_vk::vk_runtime::{Batch, Gpu, GpuOptions};
    let gpu = Gpu::new(&GpuOptions::default()).expect("a Vulkan device");
    eprintln!("device: {}", gpu.caps().name);
    let mut k = Kernels::new(gpu.clone());
    let g = k.gpu().clone();
    fn time(b: &mut Batch<'_>, per: usize) -> f64 {
        for _ in 0..10 {
            b.submit().unwrap();
        }
        let mut v: Vec<f64> = (0..20).map(|_| b.submit().unwrap().total_ns.unwrap() / per as f64).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
    {
        let sbytes = 1u64 << 30;
        let src = g.buffer("src", sbytes, MemoryIntent::Scratch).unwrap();
        let sink = g.buffer("sink", sbytes, MemoryIntent::Scratch).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.stream_read(&mut rec, &src, &sink, sbytes).unwrap();
        let ns = time(&mut rec.finish().unwrap(), 1);
        eprintln!("stream_read 1 GiB: {:.0} GB/s", sbytes as f64 / ns);
    }
    const NB: usize = 16;
    for (label, ne, top, hid, int) in
        [("thinker", 128usize, 8usize, 2048usize, 768usize), ("talker", 128, 6, 1024, 384)]
    {
        let mut rng = Rng::new(500);
        let mut stack = |rows: usize, cols: usize| {
            let stride = Matrix::expert_stride(rows as u32, cols as u32) as usize;
            let l = qwen3_omni_vk::layout::PlanarLayout::new(rows as u64, cols as u64);
            let mut b: Vec<u8> = (0..ne * stride / 8).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
            for e in 0..ne {
                let d = &mut b[e * stride + l.d_offset as usize..e * stride + l.total() as usize];
                for (i, h) in d.chunks_exact_mut(2).enumerate() {
                    h.copy_from_slice(&half::f16::from_f32(0.001 + (i % 97) as f32 * 1e-5).to_le_bytes());
                }
            }
            g.buffer_from("experts", &b, MemoryIntent::Weights).unwrap()
        };
        let (gb, ub, db) = (stack(int, hid), stack(int, hid), stack(hid, int));
        let gm = Matrix::new(&gb, WType::Q8_0Planar, int as u32, hid as u32).experts(ne as u32);
        let um = Matrix::new(&ub, WType::Q8_0Planar, int as u32, hid as u32).experts(ne as u32);
        let dm = Matrix::new(&db, WType::Q8_0Planar, hid as u32, int as u32).experts(ne as u32);
        let bytes_gu = (2 * top * int * hid) as f64 * 34.0 / 32.0;
        let bytes_d = (top * int * hid) as f64 * 34.0 / 32.0;
        // Step b routes to experts top·b .. top·b + top (mod ne).
        struct Step {
            l: qwen3_omni_vk::vk_runtime::Buffer,
            x: qwen3_omni_vk::vk_runtime::Buffer,
            y: qwen3_omni_vk::vk_runtime::Buffer,
            ids: qwen3_omni_vk::vk_runtime::Buffer,
            w: qwen3_omni_vk::vk_runtime::Buffer,
            h: qwen3_omni_vk::vk_runtime::Buffer,
            xs: qwen3_omni_vk::Q8_1Scratch,
            hs: qwen3_omni_vk::Q8_1Scratch,
        }
        let steps: Vec<Step> = (0..NB)
            .map(|b| {
                let mut l = vec![0.0f32; ne];
                for j in 0..top {
                    l[(top * b + j) % ne] = 5.0 - j as f32 * 0.1;
                }
                Step {
                    l: g.buffer_from("logits", &l, MemoryIntent::Upload).unwrap(),
                    x: g.buffer_from("x", &rng.vec(hid, 1.0), MemoryIntent::Upload).unwrap(),
                    y: g.buffer_from("y", &rng.vec(hid, 1.0), MemoryIntent::Scratch).unwrap(),
                    ids: g.buffer("ids", (top * 4) as u64, MemoryIntent::Scratch).unwrap(),
                    w: g.buffer("weights", (top * 4) as u64, MemoryIntent::Scratch).unwrap(),
                    h: g.buffer("h", (top * int * 4) as u64, MemoryIntent::Scratch).unwrap(),
                    xs: k.q8_1_scratch(hid as u64).unwrap(),
                    hs: k.q8_1_scratch((top * int) as u64).unwrap(),
                }
            })
            .collect();
        let (ids, w, h) = (&steps[0].ids, &steps[0].w, &steps[0].h);
        for path in [MatvecPath::IntDot, MatvecPath::Float] {
            k.set_matvec_path(path).unwrap();
            let intdot = path == MatvecPath::IntDot;
            eprintln!("{label} E={ne} top-{top} hidden {hid} inter {int}, {path:?}:");
            // Chain: shared ids/weights/h make each step wait for the last.
            let mut rec = g.recorder(false).unwrap();
            for s in &steps {
                k.moe_route(
                    &mut rec,
                    MoeRoute {
                        logits: &s.l,
                        ids,
                        weights: w,
                        n_experts: ne as u32,
                        k: top as u32,
                        n_tokens: 1,
                        renormalize: true,
                    },
                )
                .unwrap();
                k.moe_gate_up(
                    &mut rec,
                    MoeGateUp { gate: gm, up: um, x: &s.x, ids, k: top as u32, n_tokens: 1, h },
                    Some(&s.xs),
                )
                .unwrap();
                k.moe_down(
                    &mut rec,
                    MoeDown { down: dm, h, ids, weights: w, k: top as u32, n_tokens: 1, residual: Some(&s.y), y: &s.y },
                    Some(&s.hs),
                )
                .unwrap();
            }
            let n = rec.dispatches() as usize / NB;
            eprintln!(
                "  chain (one decode step's MoE, {n} dispatches): {:.2} µs",
                time(&mut rec.finish().unwrap(), NB) / 1e3
            );
            let mut rec = g.recorder(false).unwrap();
            for s in &steps {
                k.moe_route_gate_up(
                    &mut rec,
                    MoeRouteGateUp {
                        logits: &s.l,
                        gate: gm,
                        up: um,
                        x: &s.x,
                        ids,
                        weights: w,
                        k: top as u32,
                        n_tokens: 1,
                        renormalize: true,
                        h,
                    },
                )
                .unwrap();
                k.moe_down(
                    &mut rec,
                    MoeDown { down: dm, h, ids, weights: w, k: top as u32, n_tokens: 1, residual: Some(&s.y), y: &s.y },
                    Some(&s.hs),
                )
                .unwrap();
            }
            let n = rec.dispatches() as usize / NB;
            eprintln!(
                "  fused chain (route in gate/up, {n} dispatches): {:.2} µs",
                time(&mut rec.finish().unwrap(), NB) / 1e3
            );
            if intdot {
                // Int-dot gate/up with the float down projection (h not quantised).
                let mut rec = g.recorder(false).unwrap();
                for s in &steps {
                    k.moe_route(
                        &mut rec,
                        MoeRoute {
                            logits: &s.l,
                            ids,
                            weights: w,
                            n_experts: ne as u32,
                            k: top as u32,
                            n_tokens: 1,
                            renormalize: true,
                        },
                    )
                    .unwrap();
                    k.moe_gate_up(
                        &mut rec,
                        MoeGateUp { gate: gm, up: um, x: &s.x, ids, k: top as u32, n_tokens: 1, h },
                        Some(&s.xs),
                    )
                    .unwrap();
                    k.moe_down_float(
                        &mut rec,
                        MoeDown {
                            down: dm,
                            h,
                            ids,
                            weights: w,
                            k: top as u32,
                            n_tokens: 1,
                            residual: Some(&s.y),
                            y: &s.y,
                        },
                    )
                    .unwrap();
                }
                let n = rec.dispatches() as usize / NB;
                eprintln!("  chain, float down ({n} dispatches): {:.2} µs", time(&mut rec.finish().unwrap(), NB) / 1e3);
                let mut rec = g.recorder(false).unwrap();
                for s in &steps {
                    k.moe_route_gate_up(
                        &mut rec,
                        MoeRouteGateUp {
                            logits: &s.l,
                            gate: gm,
                            up: um,
                            x: &s.x,
                            ids,
                            weights: w,
                            k: top as u32,
                            n_tokens: 1,
                            renormalize: true,
                            h,
                        },
                    )
                    .unwrap();
                    k.moe_down_float(
                        &mut rec,
                        MoeDown {
                            down: dm,
                            h,
                            ids,
                            weights: w,
                            k: top as u32,
                            n_tokens: 1,
                            residual: Some(&s.y),
                            y: &s.y,
                        },
                    )
                    .unwrap();
                }
                let n = rec.dispatches() as usize / NB;
                eprintln!(
                    "  fused chain, float down ({n} dispatches): {:.2} µs",
                    time(&mut rec.finish().unwrap(), NB) / 1e3
                );
            }
            let mut rec = g.recorder(false).unwrap();
            for s in &steps {
                k.moe_route_gate_up(
                    &mut rec,
                    MoeRouteGateUp {
                        logits: &s.l,
                        gate: gm,
                        up: um,
                        x: &s.x,
                        ids: &s.ids,
                        weights: &s.w,
                        k: top as u32,
                        n_tokens: 1,
                        renormalize: true,
                        h: &s.h,
                    },
                )
                .unwrap();
            }
            let ns = time(&mut rec.finish().unwrap(), NB);
            eprintln!("  moe_route_gate_up: {:.2} µs, {:.0} GB/s", ns / 1e3, bytes_gu / ns);
            // Independent dispatches of each kernel.
            let mut rec = g.recorder(false).unwrap();
            for s in &steps {
                k.moe_route(
                    &mut rec,
                    MoeRoute {
                        logits: &s.l,
                        ids: &s.ids,
                        weights: &s.w,
                        n_experts: ne as u32,
                        k: top as u32,
                        n_tokens: 1,
                        renormalize: true,
                    },
                )
                .unwrap();
            }
            eprintln!("  moe_route: {:.2} µs", time(&mut rec.finish().unwrap(), NB) / 1e3);
            if intdot {
                let mut rec = g.recorder(false).unwrap();
                for s in &steps {
                    k.quantize_q8_1(&mut rec, &s.x, hid as u64, &s.xs).unwrap();
                }
                eprintln!("  quantize_q8_1 ({hid}): {:.2} µs", time(&mut rec.finish().unwrap(), NB) / 1e3);
            }
            let mut rec = g.recorder(false).unwrap();
            for s in &steps {
                k.moe_gate_up_prequantized(
                    &mut rec,
                    MoeGateUp { gate: gm, up: um, x: &s.x, ids: &s.ids, k: top as u32, n_tokens: 1, h: &s.h },
                    &s.xs,
                )
                .unwrap();
            }
            let ns = time(&mut rec.finish().unwrap(), NB);
            eprintln!("  moe_gate_up: {:.2} µs, {:.0} GB/s", ns / 1e3, bytes_gu / ns);
            let mut rec = g.recorder(false).unwrap();
            for s in &steps {
                k.moe_down(
                    &mut rec,
                    MoeDown {
                        down: dm,
                        h: &s.h,
                        ids: &s.ids,
                        weights: &s.w,
                        k: top as u32,
                        n_tokens: 1,
                        residual: Some(&s.y),
                        y: &s.y,
                    },
                    Some(&s.hs),
                )
                .unwrap();
            }
            let ns = time(&mut rec.finish().unwrap(), NB);
            eprintln!("  moe_down: {:.2} µs, {:.0} GB/s", ns / 1e3, bytes_d / ns);
        }
        // Prefill: 512 tokens with random routings, split (per-pair) against grouped kernels.
        let nt = 512usize;
        let logits = g.buffer_from("logits", &rng.vec(nt * ne, 3.0), MemoryIntent::Upload).unwrap();
        let x = g.buffer_from("x", &rng.vec(nt * hid, 1.0), MemoryIntent::Upload).unwrap();
        let y = g.buffer_from("y", &rng.vec(nt * hid, 1.0), MemoryIntent::Scratch).unwrap();
        let ids = g.buffer("ids", (nt * top * 4) as u64, MemoryIntent::Scratch).unwrap();
        let w = g.buffer("weights", (nt * top * 4) as u64, MemoryIntent::Scratch).unwrap();
        let h = g.buffer("h", (nt * top * int * 4) as u64, MemoryIntent::Scratch).unwrap();
        let o = g.buffer("o", (nt * top * hid * 4) as u64, MemoryIntent::Scratch).unwrap();
        let offsets = g.buffer("offsets", (ne as u64 + 1) * 4, MemoryIntent::Scratch).unwrap();
        let order = g.buffer("order", (nt * top * 4) as u64, MemoryIntent::Scratch).unwrap();
        let xs = k.q8_1_scratch((nt * hid) as u64).unwrap();
        let hs = k.q8_1_scratch((nt * top * int) as u64).unwrap();
        for path in [MatvecPath::IntDot, MatvecPath::Float] {
            k.set_matvec_path(path).unwrap();
            for grouped in [false, true] {
                let mut rec = g.recorder(false).unwrap();
                k.moe_route(
                    &mut rec,
                    MoeRoute {
                        logits: &logits,
                        ids: &ids,
                        weights: &w,
                        n_experts: ne as u32,
                        k: top as u32,
                        n_tokens: nt as u32,
                        renormalize: true,
                    },
                )
                .unwrap();
                if grouped {
                    k.moe_group(&mut rec, &ids, (nt * top) as u32, ne as u32, &offsets, &order).unwrap();
                    k.moe_gate_up_grouped(
                        &mut rec,
                        MoeGateUpGrouped {
                            gate: gm,
                            up: um,
                            x: &x,
                            k: top as u32,
                            n_tokens: nt as u32,
                            offsets: &offsets,
                            order: &order,
                            h: &h,
                        },
                        Some(&xs),
                    )
                    .unwrap();
                    k.moe_down_grouped(
                        &mut rec,
                        MoeDownGrouped {
                            down: dm,
                            h: &h,
                            weights: &w,
                            k: top as u32,
                            n_tokens: nt as u32,
                            offsets: &offsets,
                            order: &order,
                            o: &o,
                            residual: Some(&y),
                            y: &y,
                        },
                        Some(&hs),
                    )
                    .unwrap();
                } else {
                    k.moe_gate_up(
                        &mut rec,
                        MoeGateUp { gate: gm, up: um, x: &x, ids: &ids, k: top as u32, n_tokens: nt as u32, h: &h },
                        Some(&xs),
                    )
                    .unwrap();
                    k.moe_down(
                        &mut rec,
                        MoeDown {
                            down: dm,
                            h: &h,
                            ids: &ids,
                            weights: &w,
                            k: top as u32,
                            n_tokens: nt as u32,
                            residual: Some(&y),
                            y: &y,
                        },
                        Some(&hs),
                    )
                    .unwrap();
                }
                let mut b = rec.finish().unwrap();
                let mut v: Vec<f64> = (0..5).map(|_| b.submit().unwrap().total_ns.unwrap()).collect();
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let us = v[2] / 1e3;
                let what = if grouped { "grouped" } else { "per pair" };
                eprintln!(
                    "{label} prefill {nt} tokens, {path:?}, {what}: {us:.0} µs ({:.0} tokens/s for this layer's MoE)",
                    nt as f64 / us * 1e6
                );
            }
        }
    }
}

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
