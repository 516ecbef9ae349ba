//! `qwen3-omni-vk bench-code2wav`: Code2Wav decode speed on the GPU (synthetic full-size GGUFs
//! welcome): a full decode of N frames (ms per second of audio, real-time factor, achieved
//! GFLOP/s), streaming latency (time to the first samples, per-window cost), and the per-kernel
//! breakdown of one profiled command buffer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use qwen3_omni::code2wav::gpu::GpuCode2Wav;
use qwen3_omni::code2wav::wav::{write_wav, WavFormat, SAMPLE_RATE};
use qwen3_omni::model_file::ModelFile;

#[derive(clap::Args, Debug)]
pub struct BenchCode2WavArgs {
    /// Model file.
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Code frames (80 ms each) in the timed full decode.
    #[arg(long, default_value_t = 100)]
    pub frames: u32,
    /// Frames per command buffer (default: all of --frames in one).
    #[arg(long)]
    pub chunk_frames: Option<u32>,
    /// Frames per window in the streaming measurement.
    #[arg(long, default_value_t = 1)]
    pub window: u32,
    /// Timed repetitions of the full decode.
    #[arg(long, default_value_t = 5)]
    pub reps: u32,
    /// Also write the decoded audio (random codes: noise-like) to this WAV file.
    #[arg(long)]
    pub wav: Option<PathBuf>,
    #[arg(long)]
    pub device: Option<usize>,
}

pub fn run(a: &BenchCode2WavArgs) -> anyhow::Result<()> {
    let m = ModelFile::open(&a.model)?;
    let gpu = crate::common::open_gpu(a.device)?;
    let k = crate::common::kernels(gpu.clone())?;
    let frames = a.frames.max(1);
    let chunk = a.chunk_frames.unwrap_or(frames).max(1);
    let t0 = std::time::Instant::now();
    let mut c2w = GpuCode2Wav::load(k, &m, chunk.max(a.window))?;
    let c = c2w.config.clone();
    outln!(
        "device: {} · model: {} · loaded in {:.1} s · Code2Wav hidden {}, {} layers, decoder {} ch, rates {:?}, {} samples/frame",
        gpu.caps().name,
        a.model.display(),
        t0.elapsed().as_secs_f64(),
        c.hidden,
        c.layers,
        c.decoder_dim,
        c.upsample_rates,
        c.samples_per_frame()
    );
    let (mut wmb, mut smb) = (0u64, 0u64);
    for a in gpu.live_allocations() {
        if a.intent == "weights" {
            wmb += a.size;
        } else {
            smb += a.size;
        }
    }
    outln!(
        "device memory: {:.0} MB weights (Linears planar Q8_0, convs f32), {:.0} MB activations and state for {} frames per command buffer",
        wmb as f64 / 1e6,
        smb as f64 / 1e6,
        c2w.max_frames()
    );
    let q = c.num_quantizers as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let codes: Vec<u32> = (0..frames as usize * q)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % c.codebook_size as u64) as u32
        })
        .collect();

    // Warm-up (pipelines, clocks), then timed full decodes.
    let w0 = std::time::Instant::now();
    while w0.elapsed().as_secs_f64() < 1.5 {
        c2w.decode(&codes)?;
    }
    let mut best = f64::MAX;
    let (mut wall_sum, mut gpu_sum) = (0.0, 0.0);
    let mut wav = Vec::new();
    for _ in 0..a.reps.max(1) {
        let s = std::time::Instant::now();
        wav = c2w.decode(&codes)?;
        let dt = s.elapsed().as_secs_f64();
        best = best.min(dt);
        wall_sum += dt;
        gpu_sum += c2w.gpu_time().0 / 1e9;
    }
    let reps = a.reps.max(1) as f64;
    let audio_s = wav.len() as f64 / SAMPLE_RATE as f64;
    let (wall, gpu_t) = (wall_sum / reps, gpu_sum / reps);
    let flops = 2.0 * c.macs_per_frame() as f64 * frames as f64;
    outln!(
        "full decode of {frames} frames ({audio_s:.2} s of audio, {} command buffer(s)): {:.2} ms wall (best {:.2}), {:.2} ms GPU",
        c2w.gpu_time().1,
        wall * 1e3,
        best * 1e3,
        gpu_t * 1e3
    );
    outln!(
        "  {:.2} ms per second of audio (wall), real-time factor {:.4} (wall) / {:.4} (GPU); {:.1} GFLOP → {:.0} GFLOP/s",
        wall * 1e3 / audio_s,
        wall / audio_s,
        gpu_t / audio_s,
        flops / 1e9,
        flops / wall / 1e9
    );

    // Streaming: windows of `window` frames; the first one's latency and the steady cost.
    let win = a.window.max(1) as usize;
    let stream_frames = (frames as usize).max(win);
    let mut lat_first = 0.0;
    let mut first_len = 0;
    let mut per = Vec::new();
    let s_all = std::time::Instant::now();
    {
        let mut st = c2w.stream()?;
        for (i, w) in codes[..stream_frames.min(codes.len() / q) * q].chunks(win * q).enumerate() {
            let s = std::time::Instant::now();
            let out = st.push(w)?;
            let dt = s.elapsed().as_secs_f64();
            if i == 0 {
                lat_first = dt;
                first_len = out.len();
            } else {
                per.push(dt);
            }
        }
    }
    let total_stream = s_all.elapsed().as_secs_f64();
    let mean = if per.is_empty() { lat_first } else { per.iter().sum::<f64>() / per.len() as f64 };
    outln!(
        "streaming in windows of {win} frame(s): first {first_len} samples ({:.1} ms of audio) after {:.2} ms; then {:.2} ms per window ({:.1} ms of audio) → real-time factor {:.4}",
        first_len as f64 / SAMPLE_RATE as f64 * 1e3,
        lat_first * 1e3,
        mean * 1e3,
        win as f64 * c.samples_per_frame() as f64 / SAMPLE_RATE as f64 * 1e3,
        total_stream / audio_s
    );

    // Per-kernel breakdown of one profiled chunk.
    c2w.set_profile(true);
    c2w.decode(&codes[..chunk.min(frames) as usize * q])?;
    c2w.set_profile(false);
    if let Some(p) = c2w.last_profile() {
        let mut by: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
        for kt in &p.kernels {
            let e = by.entry(kt.name.as_str()).or_default();
            e.0 += kt.ns / 1e3;
            e.1 += 1;
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by(|a, b| b.1 .0.partial_cmp(&a.1 .0).unwrap());
        outln!(
            "  per kernel in one profiled command buffer of {} frames ({} dispatches, serialised; µs total / dispatches):",
            chunk.min(frames),
            p.dispatches
        );
        for (name, (us, n)) in v {
            outln!("    {name:<22} {us:10.1} µs  {n:4}×");
        }
    }
    if let Some(path) = &a.wav {
        write_wav(path, &wav, SAMPLE_RATE, WavFormat::F32)?;
        outln!("wrote {} ({} samples)", path.display(), wav.len());
    }
    Ok(())
}
