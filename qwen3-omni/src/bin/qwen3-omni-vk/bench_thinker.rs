//! `qwen3-omni-vk bench-thinker`: decode speed of the Thinker on the GPU at given context lengths,
//! with the per-kernel breakdown of one step and the bandwidth roofline. Works on synthetic GGUFs
//! (`quantize --synthetic`), which carry no tokenizer: token ids are fed directly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use qwen3_omni_vk::Kernels;

use qwen3_omni::model_file::ModelFile;
use qwen3_omni::thinker::gpu::GpuThinker;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model file.
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Context lengths to measure decode at (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "512,4096")]
    pub ctx: Vec<u32>,
    /// Decode steps timed at each context length.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub steps: u32,
    /// Prompt lengths to time the batched prefill at (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub prefill: Vec<u32>,
    /// Streaming-read bandwidth of the device in GB/s, for the roofline (docs/perf.md).
    #[arg(long)]
    pub ceiling_gbs: Option<f64>,
    #[arg(long)]
    pub device: Option<usize>,
    /// After the default, time the replayed decode under each of these `QWEN3VK_*` overrides
    /// (';' between variants, ',' between NAME=VALUE pairs; those that apply when a step is
    /// recorded, docs/gpu-runs.md), the whole list twice in turn so that clock drift shows.
    #[arg(long)]
    pub variants: Option<String>,
    /// Time sampled decoding (this temperature, top-k 40, top-p 0.95, seed 1) instead of greedy.
    #[arg(long = "temp", default_value_t = 0.0, allow_negative_numbers = true)]
    pub temp: f32,
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    let variants = a.variants.as_deref().map(parse_variants).transpose()?.unwrap_or_default();
    let m = ModelFile::open(&a.model)?;
    let gpu = crate::common::open_gpu(a.device)?;
    let k = crate::common::kernels(gpu.clone())?;
    let path = k.matvec_path();
    let max_ctx = (a.ctx.iter().copied().max().unwrap_or(512) + a.steps + 8)
        .max(a.prefill.iter().copied().max().unwrap_or(0) + 8);
    let t0 = std::time::Instant::now();
    let mut t = GpuThinker::load(k, &m, max_ctx, |_, _| {})?;
    outln!(
        "device: {} · model: {} · matvec path {path:?} · KV cache {} · loaded in {:.1} s",
        gpu.caps().name,
        a.model.display(),
        t.cache_type(),
        t0.elapsed().as_secs_f64()
    );
    let c = t.config.clone();
    let kv_row = t.cache_type().row_bytes((c.n_kv_heads * c.head_dim) as u64) * 2 * c.layers as u64;
    outln!(
        "KV cache: {} ({} bytes per position over all layers, K and V; {:.2} GB for the {} positions)",
        t.cache_type(),
        kv_row,
        kv_row as f64 * t.capacity() as f64 / 1e9,
        t.capacity()
    );
    let bytes = c.decode_bytes_per_token();
    outln!(
        "Thinker: {} layers, {} experts top-{}, hidden {}; weight bytes read per token {:.2} GB",
        c.layers,
        c.n_experts,
        c.top_k,
        c.hidden,
        bytes as f64 / 1e9
    );
    dispatch_floor(t.kernels())?;
    if crate::common::engine_options().gpu.clocks {
        clock_report(&mut t)?;
    }
    if a.temp > 0.0 {
        let p =
            qwen3_omni_vk::SampleParams { temperature: a.temp, top_k: 40, top_p: 0.95, seed: 1, ..Default::default() };
        t.set_sampling(p);
        outln!("sampling: temperature {}, top-k 40, top-p 0.95", a.temp);
    }
    let mut token = 1000u32;
    for &ctx in &a.ctx {
        // Timing does not depend on the cache's contents: start at position ctx directly.
        t.reset_to(0)?;
        t.set_len_for_benchmark(ctx);
        // Warm up for a fixed time so the GPU's clocks are up (an idle card starts slow); the
        // warm-up steps advance the position, so start again at ctx afterwards.
        let w0 = std::time::Instant::now();
        while w0.elapsed().as_secs_f64() < 1.5 {
            t.reset_to(0)?;
            t.set_len_for_benchmark(ctx);
            token = t.step(token % c.vocab, false)?.0;
        }
        t.reset_to(0)?;
        t.set_len_for_benchmark(ctx);
        let s = std::time::Instant::now();
        let (mut gpu_ns, mut rec_ns) = (0.0, 0.0);
        let mut shape = (0, 0);
        for _ in 0..a.steps {
            let (next, p) = t.step(token % c.vocab, false)?;
            token = next;
            shape = (p.dispatches, p.barriers);
            gpu_ns += p.total_ns.unwrap_or(0.0);
            rec_ns += t.last_record_ns();
        }
        let dt = s.elapsed().as_secs_f64() / a.steps as f64;
        let (gpu_us, rec_us) = (gpu_ns / 1e3 / a.steps as f64, rec_ns / 1e3 / a.steps as f64);
        let (_, p) = t.step(token % c.vocab, true)?;
        out!(
            "decode at context {ctx}: {:.1} tok/s ({:.0} µs/token wall = {rec_us:.0} µs recording on the CPU + {gpu_us:.0} µs on the GPU + readback; {} dispatches, {} barriers)",
            1.0 / dt,
            dt * 1e6,
            shape.0,
            shape.1
        );
        if gpu_us > 0.0 {
            out!("; GPU-only rate {:.0} tok/s", 1e6 / gpu_us);
        }
        out!("; KV cache read {:.0} MB/token", (kv_row * ctx as u64) as f64 / 1e6);
        if let Some(bw) = a.ceiling_gbs {
            let roof = bw * 1e9 / bytes as f64;
            out!("; roofline {roof:.0} tok/s → {:.0}% of it", 100.0 / dt / roof);
        }
        outln!();
        // The replayed path (what `generate` uses for greedy decoding): one recorded step, queued
        // two deep. A first call builds its pipelines; the second is timed from its first token to
        // its last (the one-token prefill before it excluded).
        let mut best = 0.0f64;
        for round in 0..2 {
            t.reset_to(0)?;
            t.set_len_for_benchmark(ctx);
            let mut stamps = Vec::with_capacity(a.steps as usize + 1);
            t.generate(&[token % c.vocab], a.steps as usize + 1, &[], |_| {
                stamps.push(std::time::Instant::now());
                true
            })?;
            if round == 1 && stamps.len() > 1 {
                let dt = (stamps[stamps.len() - 1] - stamps[0]).as_secs_f64() / (stamps.len() - 1) as f64;
                best = 1.0 / dt;
                outln!(
                    "  replayed decode at context {ctx}: {:.1} tok/s ({:.0} µs/token wall over {} tokens, second call)",
                    best,
                    dt * 1e6,
                    stamps.len() - 1
                );
            }
        }
        if let Some(bw) = a.ceiling_gbs {
            let roof = bw * 1e9 / bytes as f64;
            outln!("  replayed: {:.0}% of the {roof:.0} tok/s roofline", 100.0 * best / roof);
        }
        if !variants.is_empty() {
            time_variants(&mut t, &variants, ctx, a.steps, token % c.vocab)?;
        }
        let mut by: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
        for kt in &p.kernels {
            let e = by.entry(kt.name.as_str()).or_default();
            e.0 += kt.ns / 1e3;
            e.1 += 1;
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by(|a, b| b.1 .0.partial_cmp(&a.1 .0).unwrap());
        outln!("  per kernel in one profiled step (every dispatch serialised and timed; µs total / dispatches):");
        for (name, (us, n)) in v {
            outln!("    {name:<26} {us:9.1} µs  {n:4}×");
        }
    }
    // Batched prefill of a random prompt.
    for &n in &a.prefill {
        if n == 0 || n + 1 >= max_ctx {
            continue;
        }
        let prompt: Vec<u32> = (0..n).map(|i| (i * 7919 + 13) % c.vocab).collect();
        t.reset_to(0)?;
        let _ = t.prefill(&prompt)?; // warm-up (pipelines, clocks)
        t.reset_to(0)?;
        let s = std::time::Instant::now();
        let _ = t.prefill(&prompt)?;
        let dt = s.elapsed().as_secs_f64();
        outln!("prefill of {n} tokens: {:.0} tok/s ({:.1} ms)", n as f64 / dt, dt * 1e3);
    }
    Ok(())
}

/// One `--variants` entry: `QWEN3VK_*` overrides (NAME, VALUE), checked.
type Variant = Vec<(String, String)>;

/// Parses `--variants` (see [`BenchArgs::variants`]) with the options parser
/// (`qwen3_omni_vk::options`); the defaults (no settings) come first. Names fixed at load are
/// refused: a loaded model cannot change them.
fn parse_variants(spec: &str) -> anyhow::Result<Vec<Variant>> {
    use qwen3_omni_vk::options::{lookup, parse_assignments, Applies};
    let mut variants = vec![Vec::new()];
    for v in spec.split(';').map(str::trim).filter(|v| !v.is_empty()) {
        let pairs = parse_assignments(v).map_err(|e| anyhow::anyhow!("--variants: {e}"))?;
        for (k, _) in &pairs {
            if lookup(k)?.applies == Applies::AtLoad {
                anyhow::bail!(
                    "--variants: {k} is fixed when the device opens or the model loads; set it in the environment"
                );
            }
        }
        variants.push(pairs);
    }
    Ok(variants)
}

/// Applies `o`'s recording-time choices to the loaded Thinker (its next recording uses them).
fn apply_options(t: &GpuThinker, o: &qwen3_omni_vk::EngineOptions) {
    let k = t.kernels();
    k.set_tuning(o.kernels.tuning);
    k.set_model_options(o.models);
    k.gpu().set_full_barriers(o.gpu.full_barriers);
}

/// Replayed decode speed (second `generate` call) at `ctx` under each of `variants`, the list
/// run twice.
fn time_variants(t: &mut GpuThinker, variants: &[Variant], ctx: u32, steps: u32, token: u32) -> anyhow::Result<()> {
    let base = crate::common::engine_options();
    let mut first_tokens: Option<Vec<u32>> = None;
    for pass in 0..2 {
        for pairs in variants {
            let mut o = base.clone();
            for (k, v) in pairs {
                o.set(k, v)?;
            }
            apply_options(t, &o);
            let mut rate = 0.0;
            let mut tokens = Vec::new();
            for _ in 0..2 {
                t.reset_to(0)?;
                t.set_len_for_benchmark(ctx);
                let mut stamps = Vec::with_capacity(steps as usize + 1);
                tokens.clear();
                t.generate(&[token], steps as usize + 1, &[], |tok| {
                    stamps.push(std::time::Instant::now());
                    tokens.push(tok);
                    true
                })?;
                if stamps.len() > 1 {
                    rate = (stamps.len() - 1) as f64 / (stamps[stamps.len() - 1] - stamps[0]).as_secs_f64();
                }
            }
            apply_options(t, base);
            let name: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let name = if name.is_empty() { "(defaults)".to_string() } else { name.join(" ") };
            // Same arithmetic should give the same tokens; a variant that differs has a race or
            // changed the summation order (near ties of random weights then flip).
            let same = match &first_tokens {
                None => {
                    first_tokens = Some(tokens.clone());
                    ""
                }
                Some(f) if *f == tokens => "",
                Some(_) => " (tokens differ from the first variant's)",
            };
            outln!("  variant pass {pass}, context {ctx}: {name}: {rate:.1} tok/s replayed{same}");
        }
    }
    Ok(())
}

/// `QWEN3VK_CLOCKS=1`: one decode step (after a warm-up of up to 64 tokens) with the `_clk` kernels'
/// per-workgroup clock marks (0 start, 1 after the prologue, 2 after the main loop, 3 end), summed
/// up per kernel over the middle layers: launch gap (first start − the previous dispatch's last
/// end), start spread, median phase times, span (last end − first start).
fn clock_report(t: &mut GpuThinker) -> anyhow::Result<()> {
    use qwen3_omni_vk::vk_runtime::MemoryIntent;
    if !t.kernels().gpu().caps().shader_clock {
        outln!("clock marks: the device has no VK_KHR_shader_clock");
        return Ok(());
    }
    const SLOT: u64 = 1024 * 8 * 8;
    let g = t.kernels().gpu().clone();
    t.reset_to(0)?;
    // A warm-up of up to 64 steps, leaving room for the two marked ones.
    for i in 0..64.min(t.capacity().saturating_sub(2)) {
        t.step(100 + i, false)?;
    }
    let mut names = Vec::new();
    let mut marks = Vec::new();
    for _ in 0..2 {
        // Twice: the second step runs with warm pipelines and clocks.
        let clock = g.buffer_from("clock marks", &vec![0u32; (SLOT / 4) as usize * 512], MemoryIntent::Scratch)?;
        names = t.clock_step(7, &clock, SLOT)?;
        marks = clock.read_vec::<u32>()?;
    }
    t.reset_to(0)?;
    let per = (SLOT / 4) as usize;
    let wgs = |d: usize| -> Vec<[u64; 4]> {
        let base = d * per;
        (0..1024)
            .map(|w| {
                std::array::from_fn(|i| {
                    let o = base + w * 16 + i * 2;
                    marks[o] as u64 | (marks[o + 1] as u64) << 32
                })
            })
            .filter(|m: &[u64; 4]| m[0] != 0)
            .collect()
    };
    let median = |mut v: Vec<u64>| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e3
    };
    // Per kernel: (count, gap, spread, prologue, main, epilogue, span) sums in µs.
    let mut rows: Vec<(String, [f64; 7])> = Vec::new();
    let mut prev_end: Option<u64> = None;
    let (lo, hi) = (names.len() / 4, names.len() * 3 / 4);
    let mut step_start = None;
    let mut step_end = 0u64;
    for (d, name) in names.iter().enumerate() {
        let w = wgs(d);
        if w.is_empty() {
            prev_end = None;
            continue;
        }
        let start = w.iter().map(|m| m[0]).min().unwrap_or(0);
        let last_start = w.iter().map(|m| m[0]).max().unwrap_or(0);
        let end = w.iter().map(|m| m[3].max(m[2]).max(m[1]).max(m[0])).max().unwrap_or(0);
        step_start.get_or_insert(start);
        step_end = step_end.max(end);
        let phase = |a: usize, b: usize| {
            median(w.iter().filter(|m| m[a] != 0 && m[b] != 0).map(|m| m[b].saturating_sub(m[a])).collect())
        };
        let gap = prev_end.map(|e| (start as f64 - e as f64) / 1e3).unwrap_or(f64::NAN);
        prev_end = Some(end);
        if d < lo || d >= hi {
            continue;
        }
        let v = [
            1.0,
            gap,
            (last_start - start) as f64 / 1e3,
            phase(0, 1),
            phase(1, 2),
            phase(2, 3),
            (end - start) as f64 / 1e3,
        ];
        match rows.iter_mut().find(|r| r.0 == *name) {
            Some(r) => r.1.iter_mut().zip(v).for_each(|(a, b)| *a += if b.is_nan() { 0.0 } else { b }),
            None => rows.push((name.clone(), v.map(|b| if b.is_nan() { 0.0 } else { b }))),
        }
    }
    outln!(
        "clock marks, one decode step ({:.0} µs from the first mark to the last), per kernel over dispatches {lo}..{hi} (mean µs):",
        step_end.saturating_sub(step_start.unwrap_or(0)) as f64 / 1e3
    );
    outln!(
        "    {:<40} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "kernel",
        "n",
        "gap",
        "spread",
        "prolog",
        "main",
        "epilog",
        "span"
    );
    for (name, v) in rows {
        let n = v[0];
        outln!(
            "    {:<40} {:>5} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
            name,
            n as u32,
            v[1] / n,
            v[2] / n,
            v[3] / n,
            v[4] / n,
            v[5] / n,
            v[6] / n
        );
    }
    Ok(())
}

/// The cost of a dependent dispatch on this device, apart from any work: a chain of 400 element-wise
/// adds on 2048 floats (each reads what the previous wrote, so each waits behind a barrier), and a
/// chain of 400 fused RMSNorm + 2048×2048 planar Q8_0 matrix × vector (the decode step's typical
/// stage). Decode time is about (stages per token) × this.
fn dispatch_floor(k: &Kernels) -> anyhow::Result<()> {
    use qwen3_omni_vk::vk_runtime::MemoryIntent;
    use qwen3_omni_vk::{Matrix, WType};
    let g = k.gpu();
    let n = 2048u64;
    let a = g.buffer("floor a", n * 4, MemoryIntent::Scratch)?;
    let b = g.buffer("floor b", n * 4, MemoryIntent::Scratch)?;
    let nw = g.buffer_from("floor norm", &vec![1.0f32; n as usize], MemoryIntent::Scratch)?;
    let mut rng = qwen3_omni_vk::reference::Rng::new(5);
    let (q, _) = qwen3_omni_vk::reference::quantize_matrix_q8_0(&rng.vec((n * n) as usize, 0.02), n as usize);
    let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&q, n as usize, n as usize).map_err(anyhow::Error::msg)?;
    let w = g.buffer_from("floor w", &planar, MemoryIntent::Weights)?;
    g.buffer_from("floor init", &vec![0.5f32; n as usize], MemoryIntent::Scratch)?;
    let time = |batch: &mut qwen3_omni_vk::vk_runtime::Batch<'_>| -> anyhow::Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..(if g.caps().name.contains("llvmpipe") { 1 } else { 20 }) {
            best = best.min(batch.submit()?.total_ns.unwrap_or(0.0));
        }
        Ok(best / 400.0 / 1e3)
    };
    let mut rec = g.recorder(false)?;
    for _ in 0..400 {
        k.add(&mut rec, &a, &b, &a, n, n)?;
    }
    let mut batch = rec.finish()?;
    let add_us = time(&mut batch)?;
    drop(batch);
    let mut rec = g.recorder(false)?;
    let m = Matrix::new(&w, WType::Q8_0Planar, n as u32, n as u32);
    for i in 0..400 {
        let (x, y) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        k.matvec_fused(&mut rec, m, x, Some((&nw, 1e-6)), None, y)?;
    }
    let mut batch = rec.finish()?;
    let mv_us = time(&mut batch)?;
    outln!(
        "dependent-dispatch floor: {add_us:.2} µs per chained add (2048 floats), {mv_us:.2} µs per chained RMSNorm + 2048×2048 Q8_0 matvec (8.4 MB: {:.0} GB/s)",
        n as f64 * n as f64 * 1.0625 / (mv_us * 1e3)
    );
    Ok(())
}
