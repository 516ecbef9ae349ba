//! MoE decode timing on a real GPU (ignored; `--ignored` on the GPU machine).

mod common;

use qwen3_omni_vk::reference::Rng;
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{Kernels, Matrix, MatvecPath, WType};
use qwen3_omni_vk::{MoeDown, MoeDownGrouped, MoeGateUp, MoeGateUpGrouped, MoeRoute, MoeRouteGateUp};

/// Decode timing of the MoE block at the Thinker's and the Talker's shapes on a real GPU (no
/// validation layer). "chain": route → (quantise) → gate/up → down (+ residual) as one decode step
/// runs it, 16 steps in a batch (each waits for the last); "fused chain": routing fused into
/// gate/up, then down (two dispatches); the other lines time 16
/// independent dispatches of one kernel. The 16 steps route to disjoint experts, so weights come
/// from memory, not L2. Run: `cargo test --test moe_timing -- --ignored --nocapture moe_decode_timing`.
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
