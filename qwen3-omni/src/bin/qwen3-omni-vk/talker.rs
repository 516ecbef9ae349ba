//! `qwen3-omni-vk bench-talker`: speed of speech-code generation on the GPU — the Talker step, the
//! code predictor's 15 codes per frame, whole frames (one command buffer each) and the real-time
//! factor, with the bandwidth roofline. Works on synthetic GGUFs (`quantize --synthetic`): the
//! prompt is made of token ids, no tokenizer needed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use qwen3_omni::model_file::ModelFile;
use qwen3_omni::talker::{GpuTalker, TalkerSampling};

/// Audio per codec frame (12.5 frames per second).
const FRAME_SECONDS: f64 = 0.08;

#[derive(clap::Args, Debug)]
pub struct BenchTalkerArgs {
    /// Model file.
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Frames timed (each: 15 code-predictor codes + one Talker step).
    #[arg(short = 'n', long, default_value_t = 50)]
    pub frames: u32,
    /// Text tokens in the user turn of the prompt.
    #[arg(long, default_value_t = 32)]
    pub prompt_len: u32,
    /// Greedy codes (default: transformers' sampling, temperature 0.9 / top-k 50 for code 0 and
    /// top-k 50 / top-p 0.8 for the residual codes).
    #[arg(long)]
    pub greedy: bool,
    /// Streaming-read bandwidth of the device in GB/s, for the roofline (docs/perf.md).
    #[arg(long)]
    pub ceiling_gbs: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub device: Option<usize>,
}

pub fn run(a: &BenchTalkerArgs) -> anyhow::Result<()> {
    let m = ModelFile::open(&a.model)?;
    let gpu = crate::common::open_gpu(a.device)?;
    let k = crate::common::kernels(gpu.clone())?;
    let path = k.matvec_path();
    let ctx = a.prompt_len + 16 + a.frames + 64;
    let t0 = std::time::Instant::now();
    let mut t = GpuTalker::load(k, &m, ctx, |_, _| {})?;
    outln!(
        "device: {} · model: {} · matvec path {path:?} · Talker loaded in {:.1} s",
        gpu.caps().name,
        a.model.display(),
        t0.elapsed().as_secs_f64()
    );
    let c = t.config.clone();
    let (step_b, cp_b) = (c.talker_bytes_per_step(), c.predictor_bytes_per_frame());
    outln!(
        "Talker: {} layers, {} experts top-{} + shared, hidden {}; code predictor: {} layers, {} groups; \
         weight bytes per frame {:.1} MB (Talker step {:.1} MB + code predictor {:.1} MB)",
        c.talker.layers,
        c.talker.n_experts,
        c.talker.top_k,
        c.talker.hidden,
        c.predictor.layers,
        c.groups,
        (step_b + cp_b) as f64 / 1e6,
        step_b as f64 / 1e6,
        cp_b as f64 / 1e6
    );
    let seed = a.seed.unwrap_or(1);
    t.set_sampling(if a.greedy { TalkerSampling::greedy() } else { TalkerSampling::sampled(seed) });
    let i = &c.ids;
    let body = (0..a.prompt_len).map(|j| (j * 7919 + 13) % 100_000);
    let ids: Vec<u32> = [i.im_start, i.user, 198]
        .into_iter()
        .chain(body)
        .chain([i.im_end, 198, i.im_start, i.assistant, 198])
        .collect();
    let hs = vec![0f32; ids.len() * c.thinker_hidden as usize];
    let text: Vec<u32> = (0..a.frames + 8).map(|j| (j * 104_729 + 7) % 100_000).collect();
    let start = |t: &mut GpuTalker| -> anyhow::Result<f64> {
        let s = std::time::Instant::now();
        t.start_from_thinker(&m, &ids, &hs, 1000, "ethan")?;
        let dt = s.elapsed().as_secs_f64();
        t.push_tokens(&m, &text)?;
        t.finish_text();
        Ok(dt)
    };
    start(&mut t)?; // warm-up: pipelines
    let dt = start(&mut t)?;
    let prompt_rows = t.len();
    t.set_batched_prefill(false);
    start(&mut t)?;
    let ds = start(&mut t)?;
    t.set_batched_prefill(true);
    outln!(
        "prompt of {prompt_rows} rows (projections + Talker prefill + first code 0): {:.1} ms (batched where the \
         int-dot path allows), {:.1} ms replaying the one-row step",
        dt * 1e3,
        ds * 1e3
    );
    // Warm up for a fixed time so the clocks are up; restart when a frame says EOS.
    let w0 = std::time::Instant::now();
    while w0.elapsed().as_secs_f64() < 1.5 {
        if t.next_frame()?.is_none() || t.len() + 2 >= t.ctx() {
            start(&mut t)?;
        }
    }
    // Frames replayed from one recorded command buffer (`run_frames`, what generation uses).
    start(&mut t)?;
    let (mut wall, mut n, mut restarts) = (0.0, 0u32, 0u32);
    while n < a.frames {
        let s = std::time::Instant::now();
        let want = (a.frames - n) as usize;
        let made = t.run_frames(want, |_| true)?;
        wall += s.elapsed().as_secs_f64();
        n += made as u32;
        if (made < want && n < a.frames) || t.len() + 2 >= t.ctx() {
            restarts += 1;
            start(&mut t)?;
        }
    }
    let frame_us = wall / n.max(1) as f64 * 1e6;
    out!(
        "frames (replayed): {frame_us:.0} µs per frame wall; real-time factor {:.3} (frame = {:.0} ms of audio){}",
        frame_us / 1e6 / FRAME_SECONDS,
        FRAME_SECONDS * 1e3,
        if restarts > 0 { format!("; {restarts} restarts at EOS") } else { String::new() }
    );
    if let Some(bw) = a.ceiling_gbs {
        let roof_us = (step_b + cp_b) as f64 / (bw * 1e9) * 1e6;
        out!("; roofline {roof_us:.0} µs per frame → {:.0}% of it", 100.0 * roof_us / frame_us.max(1e-9));
    }
    outln!();
    // Frames recorded one by one (`next_frame`): adds the recording time.
    start(&mut t)?;
    let (mut wall, mut gpu_ns, mut rec_ns, mut n) = (0.0, 0.0, 0.0, 0u32);
    while n < a.frames {
        let s = std::time::Instant::now();
        let f = t.next_frame()?;
        let dt = s.elapsed().as_secs_f64();
        if f.is_none() || t.len() + 2 >= t.ctx() {
            start(&mut t)?;
            continue;
        }
        wall += dt;
        gpu_ns += t.last_profile().and_then(|p| p.total_ns).unwrap_or(0.0);
        rec_ns += t.last_record_ns();
        n += 1;
    }
    let k = n.max(1) as f64;
    outln!(
        "frames (recorded per frame): {:.0} µs per frame wall = {:.0} µs recording on the CPU + {:.0} µs on the GPU + submit/readback",
        wall / k * 1e6,
        rec_ns / 1e3 / k,
        gpu_ns / 1e3 / k
    );
    let p = t.bench_parts(a.frames)?;
    let roof = |bytes: u64| a.ceiling_gbs.map(|bw| bytes as f64 / (bw * 1e9) * 1e6);
    let pct = |r: Option<f64>, us: f64| {
        r.map(|r| format!(", roofline {r:.0} µs → {:.0}%", 100.0 * r / us)).unwrap_or_default()
    };
    outln!(
        "Talker step (replayed, {} dispatches, {} barriers): {:.0} µs GPU, {:.0} µs wall{}",
        p.talker_dispatches,
        p.talker_barriers,
        p.talker_gpu_us,
        p.talker_wall_us,
        pct(roof(step_b), p.talker_gpu_us)
    );
    outln!(
        "code predictor per frame (16 passes, 15 codes sampled on the GPU, one command buffer, {} dispatches, {} barriers): {:.0} µs GPU, {:.0} µs wall{}",
        p.predictor_dispatches,
        p.predictor_barriers,
        p.predictor_gpu_us,
        p.predictor_wall_us,
        pct(roof(cp_b), p.predictor_gpu_us)
    );
    outln!("recording one frame's command buffer: {:.0} µs CPU", p.record_us);
    // One profiled frame: every dispatch serialised and timed.
    if t.next_frame_profiled()?.is_some() {
        if let Some(prof) = t.last_profile() {
            let mut by: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
            for kt in &prof.kernels {
                let e = by.entry(kt.name.as_str()).or_default();
                e.0 += kt.ns / 1e3;
                e.1 += 1;
            }
            let mut v: Vec<_> = by.into_iter().collect();
            v.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
            outln!("  per kernel in one profiled frame (every dispatch serialised and timed; µs total / dispatches):");
            for (name, (us, n)) in v {
                outln!("    {name:<30} {us:9.1} µs  {n:4}×");
            }
        }
    }
    Ok(())
}

/// Arguments of `talker-codes` (a debugging path to speech codes; Code2Wav turns them into audio).
#[derive(clap::Args, Debug)]
pub struct TalkerCodesArgs {
    /// Model file (with a tokenizer in its metadata).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// The user's message: the Thinker answers it, the Talker voices the answer.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Maximum Thinker tokens.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// Maximum codec frames (80 ms each).
    #[arg(long, default_value_t = 1000)]
    pub max_frames: u32,
    /// Voice: ethan (default), chelsie, aiden.
    #[arg(long, default_value = "ethan")]
    pub voice: String,
    /// Greedy Talker and code predictor (default: transformers' sampling settings).
    #[arg(long)]
    pub greedy: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub device: Option<usize>,
}

/// Thinker (greedy) → Talker → one line of `groups` codes per frame on stdout.
pub fn run_codes(a: &TalkerCodesArgs) -> anyhow::Result<()> {
    use anyhow::Context;

    use qwen3_omni::chat::{render, Message, Role};
    use qwen3_omni::thinker::gpu::GpuThinker;
    use qwen3_omni::tokenizer::Tokenizer;

    let m = ModelFile::open(&a.model)?;
    let json = m
        .gguf
        .header
        .get("tokenizer.huggingface.json")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{}: no tokenizer.huggingface.json in the metadata", a.model.display()))?;
    let tok = Tokenizer::from_json(json, &a.model)?;
    let gpu = crate::common::open_gpu(a.device)?;
    let ids = render(&tok, &[Message::text(Role::User, a.prompt.clone())], true)?.ids;
    let ctx = ids.len() as u32 + a.n_predict as u32 + 8;
    let mut thinker = GpuThinker::load(crate::common::kernels(gpu.clone())?, &m, ctx, |_, _| {})?;
    let im_end = tok.special_ids().im_end;
    let s = std::time::Instant::now();
    let out = thinker.generate(&ids, a.n_predict, &[im_end], |_| true)?;
    let (_, hs, _) = thinker.hidden_states()?;
    drop(thinker);
    // transformers speaks the tokens before <|im_end|>; at the length cap, all but the last.
    let spoken: Vec<u32> = match out.iter().position(|&t| t == im_end) {
        Some(e) => out[..e].to_vec(),
        None => out[..out.len().saturating_sub(1)].to_vec(),
    };
    eprintln!("Thinker: {} tokens in {:.2} s: {:?}", out.len(), s.elapsed().as_secs_f64(), tok.decode(&spoken, true));
    if spoken.is_empty() {
        anyhow::bail!("the Thinker produced no text to speak");
    }
    let ctx = ids.len() as u32 + 16 + a.max_frames + 1;
    let mut t = GpuTalker::load(crate::common::kernels(gpu)?, &m, ctx, |_, _| {})?;
    let seed = a.seed.unwrap_or(0);
    t.set_sampling(if a.greedy { TalkerSampling::greedy() } else { TalkerSampling::sampled(seed) });
    let th = t.config.thinker_hidden as usize;
    let s = std::time::Instant::now();
    t.start_from_thinker(&m, &ids, &hs[..ids.len() * th], spoken[0], &a.voice)?;
    t.push_spoken(&m, &spoken)?;
    let mut n = 0;
    while n < a.max_frames {
        let Some(f) = t.next_frame()? else { break };
        outln!("{}", f.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" "));
        n += 1;
    }
    let dt = s.elapsed().as_secs_f64();
    eprintln!(
        "Talker: {n} frames ({:.2} s of audio) in {dt:.2} s{}",
        n as f64 * FRAME_SECONDS,
        if t.pending_code0() == t.config.ids.codec_eos { ", ended at codec EOS" } else { ", stopped at --max-frames" }
    );
    Ok(())
}
