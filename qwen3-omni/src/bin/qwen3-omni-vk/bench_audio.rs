//! `bench-audio`: log-mel and AudioTower speed on synthetic audio, as real-time factors.

use std::path::PathBuf;

use anyhow::bail;
use qwen3_omni::audio::gpu::{AudioMatmul, GpuAudioTower};
use qwen3_omni::audio::{synthetic_audio, MelExtractor};
use qwen3_omni::model_file::ModelFile;

/// Arguments of `bench-audio`.
#[derive(clap::Args, Debug)]
pub struct BenchAudioArgs {
    /// Model file (a synthetic full-size GGUF from `quantize --synthetic` is fine; only the
    /// AudioTower is loaded).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Audio lengths to time, in seconds (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "30,300")]
    pub seconds: Vec<f64>,
    /// Timed repetitions per length (after one warm-up).
    #[arg(short = 'n', long, default_value_t = 3)]
    pub reps: u32,
    /// Also time every dispatch once and print the per-kernel breakdown.
    #[arg(long)]
    pub profile: bool,
    #[arg(long)]
    pub device: Option<usize>,
}

/// `bench-audio`: log-mel (CPU) and AudioTower (GPU) time per audio length, as real-time factors
/// (seconds of audio per second of compute).
pub fn run(a: &BenchAudioArgs) -> anyhow::Result<()> {
    let m = ModelFile::open(&a.model)?;
    let gpu = crate::common::open_gpu(a.device)?;
    let k = crate::common::kernels(gpu.clone())?;
    let t0 = std::time::Instant::now();
    let mut tower = GpuAudioTower::load(&gpu, &m, |_, _| {})?;
    tower.matmul = AudioMatmul::choose(gpu.caps(), &crate::common::engine_options().models.audio);
    let c = tower.config.clone();
    outln!(
        "device: {} · model: {} · AudioTower {} layers, d_model {}, {} heads, ffn {}, out {} · {:.2} GB on the device, loaded in {:.1} s",
        gpu.caps().name,
        a.model.display(),
        c.layers,
        c.d_model,
        c.heads,
        c.ffn,
        c.out_dim,
        GpuAudioTower::device_bytes(&c) as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );
    let mel_x = MelExtractor::new(c.n_mels as usize);
    for &secs in &a.seconds {
        if secs.is_nan() || secs <= 0.0 {
            bail!("--seconds {secs}: lengths must be positive");
        }
        let x = synthetic_audio(secs);
        let _ = mel_x.compute(&x[..x.len().min(16_000)]);
        let s = std::time::Instant::now();
        let mel = mel_x.compute(&x);
        let mel_s = s.elapsed().as_secs_f64();
        outln!(
            "{secs:.0} s of audio: {} mel frames · log-mel (CPU) {:.1} ms = {:.0}× real time",
            mel.frames,
            mel_s * 1e3,
            secs / mel_s
        );
        let modes: Vec<AudioMatmul> =
            if gpu.caps().int_dot { vec![AudioMatmul::Float, AudioMatmul::IntDot] } else { vec![AudioMatmul::Float] };
        for &mode in &modes {
            tower.matmul = mode;
            tower.profile = false;
            let warm = tower.forward(&k, &mel.data, mel.frames as u32)?; // pipelines, clocks, scratch
            let tokens = warm.tokens;
            drop(warm);
            let (mut wall, mut gpu_s) = (f64::MAX, f64::MAX);
            for _ in 0..a.reps.max(1) {
                let s = std::time::Instant::now();
                let e = tower.forward(&k, &mel.data, mel.frames as u32)?;
                wall = wall.min(s.elapsed().as_secs_f64());
                gpu_s = gpu_s.min(tower.stats.gpu_ns / 1e9);
                drop(e);
            }
            outln!(
                "  AudioTower, {mode:?} linears: {tokens} tokens in {} command buffers, {:.1} ms wall ({:.1} ms GPU) = \
                 {:.0}× real time (RTF {:.4})",
                tower.stats.groups,
                wall * 1e3,
                gpu_s * 1e3,
                secs / wall,
                wall / secs
            );
            if a.profile {
                tower.profile = true;
                tower.forward(&k, &mel.data, mel.frames as u32)?;
                let mut v: Vec<_> = tower.stats.kernels.iter().collect();
                v.sort_by(|x, y| y.1 .0.partial_cmp(&x.1 .0).unwrap_or(std::cmp::Ordering::Equal));
                outln!("    per kernel (every dispatch serialised and timed; ms total / dispatches):");
                for (name, (ns, n)) in v {
                    outln!("      {name:<26} {:9.2} ms  {n:5}×", ns / 1e6);
                }
                tower.profile = false;
            }
        }
        tower.matmul = AudioMatmul::choose(gpu.caps(), &crate::common::engine_options().models.audio);
    }
    Ok(())
}
