//! `qwen3-omni-vk code2wav`: decode a file of codec frames to a WAV file (debugging and parity
//! checks without the Talker). The codes file holds one frame per line: `num_quantizers` integers
//! (16 for the real model) separated by spaces or commas; `#` starts a comment.

use std::path::PathBuf;

use anyhow::Context;

use qwen3_omni::code2wav::cpu::CpuCode2Wav;
use qwen3_omni::code2wav::gpu::GpuCode2Wav;
use qwen3_omni::code2wav::parse_codes;
use qwen3_omni::code2wav::wav::{WavFormat, WavWriter, SAMPLE_RATE};
use qwen3_omni::model_file::ModelFile;

#[derive(clap::Args, Debug)]
pub struct Code2WavArgs {
    /// Model file.
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Codes file: one frame per line.
    #[arg(long)]
    pub codes: PathBuf,
    /// Output WAV (24 kHz mono), written atomically.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Write 16-bit PCM instead of 32-bit float.
    #[arg(long)]
    pub pcm16: bool,
    /// Decode as a stream in windows of this many frames (same samples as one full decode).
    #[arg(long)]
    pub stream: Option<u32>,
    /// transformers' chunked decode instead: CHUNK,LEFT_CONTEXT frames (`generate` uses 300,25;
    /// 555 samples are lost at every chunk boundary).
    #[arg(long, value_delimiter = ',', value_name = "CHUNK,LEFT_CONTEXT")]
    pub hf_chunked: Option<Vec<usize>>,
    /// Use the f32 CPU oracle instead of the GPU (slow at full size).
    #[arg(long)]
    pub cpu: bool,
    #[arg(long)]
    pub device: Option<usize>,
}

pub fn run(a: &Code2WavArgs) -> anyhow::Result<()> {
    if let Some(v) = &a.hf_chunked {
        if v.len() != 2 || v[0] == 0 {
            anyhow::bail!("--hf-chunked takes CHUNK,LEFT_CONTEXT (e.g. 300,25), got {v:?}");
        }
    }
    let m = ModelFile::open(&a.model)?;
    let text = std::fs::read_to_string(&a.codes).with_context(|| format!("reading {}", a.codes.display()))?;
    let cfg = qwen3_omni::code2wav::Code2WavConfig::from_model(&m)?;
    let codes = parse_codes(&text, cfg.num_quantizers as usize).with_context(|| format!("in {}", a.codes.display()))?;
    let frames = codes.len() / cfg.num_quantizers as usize;
    let fmt = if a.pcm16 { WavFormat::Pcm16 } else { WavFormat::F32 };
    let mut w = WavWriter::create(&a.output, SAMPLE_RATE, fmt)?;
    let t0 = std::time::Instant::now();
    if a.cpu {
        let c = CpuCode2Wav::load(&m)?;
        let wav = match &a.hf_chunked {
            Some(v) => c.chunked_decode(&codes, v[0], v[1])?,
            None => c.decode(&codes)?,
        };
        w.write(&wav)?;
    } else {
        let gpu = crate::common::open_gpu(a.device)?;
        let mut c = GpuCode2Wav::load(crate::common::kernels(gpu)?, &m, a.stream.unwrap_or(256))?;
        match (&a.hf_chunked, a.stream) {
            (Some(v), _) => w.write(&c.chunked_decode(&codes, v[0], v[1])?)?,
            (None, Some(win)) => {
                let q = cfg.num_quantizers as usize;
                let mut st = c.stream()?;
                for window in codes.chunks(win.max(1) as usize * q) {
                    w.write(&st.push(window)?)?;
                }
                w.write(&st.finish())?;
            }
            (None, None) => w.write(&c.decode(&codes)?)?,
        }
    }
    let n = w.len();
    w.finish()?;
    eprintln!(
        "{frames} frames → {n} samples ({:.2} s at 24 kHz) in {:.2} s → {}",
        n as f64 / SAMPLE_RATE as f64,
        t0.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(())
}
