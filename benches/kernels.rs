//! Kernel benchmarks at the Thinker's shapes, timed on the GPU with timestamp queries.
//!
//! Each case records a batch of dispatches over rotating copies of its inputs (together larger than
//! the L2 cache, so the figure is memory bandwidth, not cache), replays it, and reports GPU time per
//! dispatch. Matrix × vector cases report GB/s as a fraction of the streaming-read ceiling measured
//! in the same run; matrix × matrix reports int8 TOPS. `QWEN3VK_BENCH_TABLE=FILE` also writes a
//! markdown table. `QWEN3VK_BENCH_QUICK=1` runs fewer, smaller cases (CI smoke test).

use qwen3_omni_vk::RouterFold;
use qwen3_omni_vk::{MatvecHead, Rope};
use std::fmt::Write as _;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qwen3_omni_vk::reference::Rng;
use qwen3_omni_vk::vk_runtime::{Batch, Buffer, Gpu, MemoryIntent};
use qwen3_omni_vk::{CacheType, HeadOut, Kernels, Matrix, MatvecPath, WType};

/// Rotate inputs until they exceed this many bytes (H100/H200 L2: 50–60 MB).
const ROTATE_BYTES: u64 = 256 << 20;

struct Row {
    case: String,
    us: f64,
    bytes: u64,
    ops: f64,
}

fn quick() -> bool {
    std::env::var_os("QWEN3VK_BENCH_QUICK").is_some()
}

/// Median GPU nanoseconds per dispatch of a batch holding `per_batch` dispatches.
fn time_batch(batch: &mut Batch<'_>, per_batch: u32, reps: usize) -> f64 {
    // Warm up for a while so clocks are up before measuring.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(if reps > 1 { 200 } else { 0 }) {
        let _ = batch.submit().expect("warm-up");
    }
    let _ = batch.submit().expect("warm-up");
    let mut v: Vec<f64> =
        (0..reps).map(|_| batch.submit().expect("submit").total_ns.expect("timestamps") / per_batch as f64).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.next_u64() as u8).collect()
}

/// Q8_0 bytes with small, finite f16 scales (random bytes would give NaN/Inf scales).
fn random_q8_0(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut b = random_bytes(rows * cols / 32 * 34, seed);
    for blk in b.chunks_exact_mut(34) {
        let d = half::f16::from_f32(0.001 + (blk[2] as f32) * 1e-5).to_le_bytes();
        blk[0] = d[0];
        blk[1] = d[1];
    }
    b
}

fn copies_for(bytes: u64) -> usize {
    (ROTATE_BYTES.div_ceil(bytes.max(1)) as usize).clamp(1, 64)
}

fn bench(c: &mut Criterion) {
    // The engine overrides (QWEN3VK_MV_WG, QWEN3VK_MATVEC, …; docs/gpu-runs.md) apply here too.
    let o = qwen3_omni_vk::EngineOptions::from_env().unwrap_or_else(|e| panic!("{e}"));
    let gpu = Gpu::new(&o.gpu).expect("a Vulkan device");
    let caps = gpu.caps().clone();
    let mut k = Kernels::from_engine(gpu.clone(), &o).expect("the compute library on this device");
    let mut rows_out: Vec<Row> = Vec::new();
    let reps = if quick() { 3 } else { 20 };
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));

    // Streaming ceilings: read and copy of 1 GiB (64 MiB in quick mode).
    let sbytes: u64 = if quick() { 64 << 20 } else { 1 << 30 };
    let src = gpu.buffer_from("stream src", &random_bytes(sbytes as usize, 1), MemoryIntent::Scratch).unwrap();
    let dst = gpu.buffer("stream dst", sbytes, MemoryIntent::Scratch).unwrap();
    let mut ceiling = 0.0;
    // Bring the GPU's clocks up before the first measurement (an idle card starts slow).
    {
        let mut rec = gpu.recorder(false).unwrap();
        k.stream_read(&mut rec, &src, &dst, sbytes).unwrap();
        let mut warm = rec.finish().unwrap();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(if quick() { 10 } else { 1500 }) {
            warm.submit().unwrap();
        }
    }
    for (name, copy) in [("stream_read", false), ("stream_copy", true)] {
        let mut rec = gpu.recorder(false).unwrap();
        for _ in 0..4 {
            if copy {
                k.stream_copy(&mut rec, &src, &dst, sbytes).unwrap();
            } else {
                k.stream_read(&mut rec, &src, &dst, sbytes).unwrap();
            }
        }
        let mut batch = rec.finish().unwrap();
        let ns = time_batch(&mut batch, 4, reps);
        let moved = if copy { 2 * sbytes } else { sbytes };
        if !copy {
            ceiling = moved as f64 / ns;
        }
        rows_out.push(Row { case: format!("{name} {} MiB", sbytes >> 20), us: ns / 1e3, bytes: moved, ops: 0.0 });
        g.throughput(Throughput::Bytes(moved));
        g.bench_function(name, |b| {
            b.iter_custom(|it| Duration::from_nanos((time_batch(&mut batch, 4, 1) * it as f64) as u64))
        });
    }
    // The matrix cases follow; `src`/`dst` stay for a second ceiling measurement at the end.

    // Matrix × vector at the Thinker's shapes (rows = out features, cols = in features).
    let mut shapes: Vec<(u32, u32)> =
        vec![(4096, 2048), (512, 2048), (2048, 4096), (768, 2048), (2048, 768), (152064, 2048), (14336, 4096)];
    if quick() {
        shapes = vec![(512, 2048), (768, 2048)];
    }
    // QWEN3VK_BENCH_SHAPES=ROWSxCOLS,... restricts the matrix × vector shapes (tuning sweeps).
    if let Ok(v) = std::env::var("QWEN3VK_BENCH_SHAPES") {
        shapes = v
            .split(',')
            .filter_map(|p| p.split_once('x').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?))))
            .collect();
    }
    let mv_only = std::env::var_os("QWEN3VK_BENCH_MV_ONLY").is_some();
    let mut paths = vec![(MatvecPath::Float, "float")];
    if caps.int_dot {
        paths.push((MatvecPath::IntDot, "intdot"));
    }
    let default_path = MatvecPath::choose_with(&caps, o.kernels.matvec);
    for &(m, kk) in &shapes {
        let bytes = WType::Q8_0Planar.row_bytes(kk as u64) * m as u64;
        let n = copies_for(bytes);
        let ws: Vec<Buffer> = (0..n)
            .map(|i| {
                let b = random_q8_0(m as usize, kk as usize, i as u64);
                let b = qwen3_omni_vk::layout::repack_q8_0_planar(&b, m as usize, kk as usize).unwrap();
                gpu.buffer_from(&format!("w{i}"), &b, MemoryIntent::Weights).unwrap()
            })
            .collect();
        let x = gpu.buffer_from("x", &Rng::new(9).vec(kk as usize, 1.0), MemoryIntent::Scratch).unwrap();
        // One output per dispatch: no write-after-write barrier, so the figure is the kernel's
        // bandwidth (a dependent chain adds each dispatch's ramp-up and drain).
        let ys: Vec<Buffer> =
            (0..n.max(8)).map(|i| gpu.buffer(&format!("y{i}"), m as u64 * 4, MemoryIntent::Scratch).unwrap()).collect();
        let s = k.q8_1_scratch(kk as u64).unwrap();
        for &(p, pname) in &paths {
            k.set_matvec_path(p).unwrap();
            let mut rec = gpu.recorder(false).unwrap();
            let per = n.max(8);
            // Quantise x once (int-dot path), as a layer does for the matrices sharing an input.
            k.quantize_q8_1(&mut rec, &x, kk as u64, &s).unwrap();
            for i in 0..per {
                k.matvec_prequantized(&mut rec, Matrix::new(&ws[i % n], WType::Q8_0Planar, m, kk), &x, &ys[i], &s)
                    .unwrap();
            }
            let mut batch = rec.finish().unwrap();
            // The one quantisation is counted in the total (it is ~1 µs against ≥ 8 matrices).
            let ns = time_batch(&mut batch, per as u32, reps);
            let mark = if p == default_path { " (default)" } else { "" };
            let case = format!("mv_q8_0p {m}×{kk} {pname}{mark}");
            rows_out.push(Row { case: case.clone(), us: ns / 1e3, bytes, ops: 0.0 });
            g.throughput(Throughput::Bytes(bytes));
            g.bench_function(&case, |b| {
                b.iter_custom(|it| Duration::from_nanos((time_batch(&mut batch, per as u32, 1) * it as f64) as u64))
            });
        }
    }
    k.set_matvec_path(default_path).unwrap();

    // The decode step's fused kernels at the Thinker's shapes (default path), as independent
    // dispatches like the rows above: the fused-prologue matrix × vector (each workgroup does the
    // RMSNorm / Q8_1 quantisation of x itself), with the residual add, the q head kernel (a
    // workgroup per head: norm + RoPE epilogue) and the folded router (f32 R, `router_fold.comp`).
    if !mv_only {
        let (h, qd, hd) = if quick() { (512u32, 1024u32, 128u32) } else { (2048u32, 4096u32, 128u32) };
        let vec_in = |name: &str, n: u32, seed: u64| {
            gpu.buffer_from(name, &Rng::new(seed).vec(n as usize, 1.0), MemoryIntent::Scratch).unwrap()
        };
        let (x, nw, hw) = (vec_in("x", qd, 9), vec_in("norm w", qd, 10), vec_in("head norm w", hd, 11));
        let pos = gpu.buffer_from("pos", &[100u32; 3], MemoryIntent::Upload).unwrap();
        let len = gpu.buffer_from("cache length", &[100u32], MemoryIntent::Upload).unwrap();
        let per = 8usize;
        let ys: Vec<Buffer> =
            (0..per).map(|i| gpu.buffer(&format!("yd{i}"), qd as u64 * 4, MemoryIntent::Scratch).unwrap()).collect();
        for (case, m, kk) in
            [("mv fused RMSNorm", qd, h), ("mv fused + residual", h, qd), ("mv_head (norm + RoPE)", qd, h)]
        {
            let bytes = WType::Q8_0Planar.row_bytes(kk as u64) * m as u64;
            let n = copies_for(bytes);
            let ws: Vec<Buffer> = (0..n)
                .map(|i| {
                    let b = random_q8_0(m as usize, kk as usize, 50 + i as u64);
                    let b = qwen3_omni_vk::layout::repack_q8_0_planar(&b, m as usize, kk as usize).unwrap();
                    gpu.buffer_from(&format!("wd{i}"), &b, MemoryIntent::Weights).unwrap()
                })
                .collect();
            let mut rec = gpu.recorder(false).unwrap();
            for (i, y) in ys.iter().enumerate() {
                let w = Matrix::new(&ws[i % n], WType::Q8_0Planar, m, kk);
                match case {
                    "mv fused RMSNorm" => k.matvec_fused(&mut rec, w, &x, Some((&nw, 1e-6)), None, y),
                    "mv fused + residual" => k.matvec_fused(&mut rec, w, &x, None, Some(&nw), y),
                    _ => k.matvec_head(
                        &mut rec,
                        MatvecHead {
                            w,
                            x: &x,
                            norm: (&nw, 1e-6),
                            out: HeadOut::Query,
                            hw: &hw,
                            pos: &pos,
                            cache_len: &len,
                            y,
                            max_len: 512,
                            cache_type: CacheType::F32,
                            head_dim: hd,
                        },
                        Rope { theta: 1e6, mrope_section: [24, 20, 20] },
                    ),
                }
                .unwrap();
            }
            let mut batch = rec.finish().unwrap();
            let ns = time_batch(&mut batch, per as u32, reps);
            rows_out.push(Row { case: format!("{case} {m}×{kk}"), us: ns / 1e3, bytes, ops: 0.0 });
        }
        let experts = 128u32;
        let fold = vec_in("router fold", experts * (h + qd), 12);
        let u = gpu.buffer("router logits", experts as u64 * 4, MemoryIntent::Scratch).unwrap();
        let mut rec = gpu.recorder(false).unwrap();
        for _ in 0..per {
            k.moe_router_fold(&mut rec, RouterFold { r: &fold, rows: experts, x: &x, k1: h, a: &x, k2: qd, u: &u })
                .unwrap();
        }
        let mut batch = rec.finish().unwrap();
        let ns = time_batch(&mut batch, per as u32, reps);
        let bytes = experts as u64 * (h + qd) as u64 * 4;
        rows_out.push(Row { case: format!("router_fold {experts}×({h}+{qd}) f32"), us: ns / 1e3, bytes, ops: 0.0 });
    }

    // f32 / f16 matrix × vector (the small float tensors: routers, projections).
    for (wt, name) in [(WType::F32, "mv_f32"), (WType::F16, "mv_f16")] {
        if mv_only {
            break;
        }
        let (m, kk) = if quick() { (128u32, 2048u32) } else { (2048u32, 2048u32) };
        let bytes = wt.row_bytes(kk as u64) * m as u64;
        let n = copies_for(bytes);
        let ws: Vec<Buffer> = (0..n)
            .map(|i| {
                gpu.buffer_from(
                    &format!("wf{i}"),
                    &Rng::new(i as u64).vec(bytes as usize / 4, 1.0),
                    MemoryIntent::Weights,
                )
                .unwrap()
            })
            .collect();
        let x = gpu.buffer_from("x", &Rng::new(9).vec(kk as usize, 1.0), MemoryIntent::Scratch).unwrap();
        let y = gpu.buffer("y", m as u64 * 4, MemoryIntent::Scratch).unwrap();
        let mut rec = gpu.recorder(false).unwrap();
        let per = n.max(8);
        for i in 0..per {
            k.matvec(&mut rec, Matrix::new(&ws[i % n], wt, m, kk), &x, &y, None).unwrap();
        }
        let mut batch = rec.finish().unwrap();
        let ns = time_batch(&mut batch, per as u32, reps);
        rows_out.push(Row { case: format!("{name} {m}×{kk}"), us: ns / 1e3, bytes, ops: 0.0 });
    }

    // Matrix × matrix (prefill), 512 tokens.
    if caps.int_dot && !mv_only {
        let tokens: u32 = if quick() { 64 } else { 512 };
        let mm_shapes: Vec<(u32, u32)> =
            if quick() { vec![(512, 2048)] } else { vec![(4096, 2048), (2048, 4096), (768, 2048), (14336, 4096)] };
        for (m, kk) in mm_shapes {
            let w = qwen3_omni_vk::layout::repack_q8_0_planar(
                &random_q8_0(m as usize, kk as usize, 3),
                m as usize,
                kk as usize,
            )
            .unwrap();
            let w = gpu.buffer_from("w", &w, MemoryIntent::Weights).unwrap();
            let x = gpu.buffer_from("x", &Rng::new(4).vec((tokens * kk) as usize, 1.0), MemoryIntent::Scratch).unwrap();
            let y = gpu.buffer("y", tokens as u64 * m as u64 * 4, MemoryIntent::Scratch).unwrap();
            let s = k.q8_1_scratch(tokens as u64 * kk as u64).unwrap();
            let mut rec = gpu.recorder(true).unwrap();
            for _ in 0..4 {
                k.matmul_q8_0(&mut rec, Matrix::new(&w, WType::Q8_0Planar, m, kk), &x, tokens, &y, &s).unwrap();
            }
            let mut batch = rec.finish().unwrap();
            let _ = batch.submit().unwrap();
            let mut times: Vec<f64> = (0..reps)
                .map(|_| {
                    let p = batch.submit().unwrap();
                    p.kernels.iter().filter(|t| t.name == "mm_q8_0p_q8_1").map(|t| t.ns).sum::<f64>() / 4.0
                })
                .collect();
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let ns = times[times.len() / 2];
            let ops = 2.0 * m as f64 * kk as f64 * tokens as f64;
            rows_out.push(Row {
                case: format!("mm_q8_0p_q8_1 {m}×{kk} × {tokens} tokens"),
                us: ns / 1e3,
                bytes: 0,
                ops,
            });
        }
    }
    g.finish();
    {
        let mut rec = gpu.recorder(false).unwrap();
        for _ in 0..4 {
            k.stream_read(&mut rec, &src, &dst, sbytes).unwrap();
        }
        let mut batch = rec.finish().unwrap();
        let ns = time_batch(&mut batch, 4, reps);
        rows_out.push(Row {
            case: format!("stream_read {} MiB (again, at the end)", sbytes >> 20),
            us: ns / 1e3,
            bytes: sbytes,
            ops: 0.0,
        });
        // The ceiling is the better of the two read measurements.
        ceiling = f64::max(ceiling, sbytes as f64 / ns);
    }
    drop((src, dst));

    let mut t = String::new();
    writeln!(
        t,
        "\nDevice: {} ({}), streaming-read ceiling {:.0} GB/s, matvec WG {} ROWS {}\n",
        caps.name,
        caps.driver_info,
        ceiling,
        std::env::var("QWEN3VK_MV_WG").unwrap_or("128".into()),
        std::env::var("QWEN3VK_MV_ROWS").unwrap_or("2".into())
    )
    .ok();
    writeln!(t, "| case | GPU µs | GB/s | of read ceiling | int8 TOPS |").ok();
    writeln!(t, "| --- | ---: | ---: | ---: | ---: |").ok();
    for r in &rows_out {
        let gbs = r.bytes as f64 / (r.us * 1e3);
        let (gb, frac) = if r.bytes > 0 {
            (format!("{gbs:.0}"), format!("{:.0}%", 100.0 * gbs / ceiling))
        } else {
            ("".into(), "".into())
        };
        let tops = if r.ops > 0.0 { format!("{:.1}", r.ops / (r.us * 1e6)) } else { String::new() };
        writeln!(t, "| {} | {:.1} | {gb} | {frac} | {tops} |", r.case, r.us).ok();
    }
    println!("{t}");
    if let Ok(path) = std::env::var("QWEN3VK_BENCH_TABLE") {
        let _ = std::fs::write(path, &t);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
