//! `qwen3-omni-vk chat`: text in, streamed text out, on the GPU (sampling on the GPU too).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
use qwen3_omni_vk::Kernels;

use crate::chat::{render, Message, Role};
use crate::model_file::ModelFile;
use crate::thinker::gpu::GpuThinker;
use crate::tokenizer::Tokenizer;

/// Arguments of `chat` (llama.cpp's flag names).
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// Model file (Q8_0 GGUF from `qwen3-omni-vk quantize`). Default: the tiny demo model built
    /// from tests/fixtures/models/tiny-real-vocab (random weights: its text is gibberish).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// The user's message; without it, an interactive chat reads lines from stdin.
    #[arg(short = 'p', long)]
    pub prompt: Option<String>,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum new tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Context size (KV cache positions).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: u32,
    /// Vulkan device index (see `qwen3-omni-vk devices`).
    #[arg(long)]
    pub device: Option<usize>,
    /// Sampling temperature; 0 = greedy (the default: Qwen's evaluation setting for Instruct).
    #[arg(long = "temp", default_value_t = 0.0)]
    pub temp: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long = "top-k", default_value_t = 0)]
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    #[arg(long = "top-p", default_value_t = 1.0)]
    pub top_p: f32,
    /// Penalise tokens already in the context (1 = off; transformers' rule).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print per-kernel GPU time of one decode step to stderr.
    #[arg(long)]
    pub profile: bool,
    /// Speech output: --audio-out FILE.wav, --voice, --play, Talker sampling flags.
    #[command(flatten)]
    pub speech: crate::cli_speak::ChatSpeechArgs,
    /// A recording to ask about (WAV); -p then adds a written question after it.
    #[arg(short = 'a', long, conflicts_with = "mic")]
    pub audio: Option<PathBuf>,
    /// Ask by voice: record from the default microphone (Enter or silence stops; `mic` feature).
    #[arg(long)]
    pub mic: bool,
}

/// The demo model: converted once from the fixture checkpoint plus the fetched tokenizer.
pub(crate) fn demo_model() -> anyhow::Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = repo.join("models/demo.gguf");
    if out.exists() {
        return Ok(out);
    }
    let src = repo.join("tests/fixtures/models/tiny-real-vocab");
    let tok = repo.join("models/tokenizer/tokenizer.json");
    if !tok.exists() {
        bail!("{} is missing: run tools/fetch-tokenizer.sh (tools/setup-debian.sh does)", tok.display());
    }
    let stage = std::env::temp_dir().join(format!("qwen3vk-demo-{}", std::process::id()));
    std::fs::create_dir_all(&stage)?;
    for e in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".json") && !n.starts_with("manifest") || n.starts_with("model-") {
            std::fs::copy(e.path(), stage.join(&name))?;
        }
    }
    std::fs::copy(&tok, stage.join("tokenizer.json"))?;
    eprintln!("building the demo model {} from {}", out.display(), src.display());
    let opts = quantizer::convert::ConvertOptions {
        name: Some("qwen3-omni tiny demo (random weights)".into()),
        ..Default::default()
    };
    // Converted beside its final name, then renamed: a concurrent run never sees a partial file.
    let part = out.with_extension(format!("gguf.{}.part", std::process::id()));
    let r = quantizer::convert::convert(&stage, &part, &opts).map_err(anyhow::Error::from).and_then(|_| {
        std::fs::rename(&part, &out)?;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&stage);
    let _ = std::fs::remove_file(&part);
    r.with_context(|| format!("converting {}", src.display()))?;
    Ok(out)
}

pub fn run(a: &ChatArgs) -> anyhow::Result<()> {
    if a.audio.is_some() || a.mic {
        return crate::cli_audio::run_chat(a, a.audio.as_deref());
    }
    let path = match &a.model {
        Some(p) => p.clone(),
        None => demo_model()?,
    };
    let m = ModelFile::open(&path)?;
    let json = m.gguf.header.get("tokenizer.huggingface.json").and_then(|v| v.as_str()).with_context(|| {
        format!(
            "{}: no tokenizer.huggingface.json in the metadata (quantize with tokenizer.json beside config.json)",
            path.display()
        )
    })?;
    let tok = Tokenizer::from_json(json, &path)?;
    let gpu = Gpu::new(&GpuOptions { device: a.device, ..GpuOptions::default() })?;
    eprintln!("device: {} · model: {}", gpu.caps().name, path.display());
    let k = Kernels::new(gpu.clone());
    let t0 = std::time::Instant::now();
    let mut t = GpuThinker::load(k, &m, a.ctx_size, |done, total| {
        eprint!("\rloading the Thinker: layer {done}/{total}");
        let _ = std::io::stderr().flush();
    })?;
    eprintln!(" ({:.1} s)", t0.elapsed().as_secs_f64());
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    t.set_sampling(qwen3_omni_vk::SampleParams {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repeat_penalty,
        seed,
        ..Default::default()
    });
    let mut speech =
        crate::cli_speak::ChatSpeech::with_limit(&a.speech, &gpu, &m, a.ctx_size, seed, Some(a.n_predict))?;
    let im_end = tok.special_ids().im_end;
    let mut first = true;
    let mut turn = |t: &mut GpuThinker, text: &str, first: bool| -> anyhow::Result<()> {
        let mut msgs = Vec::new();
        if first {
            if let Some(s) = &a.system {
                msgs.push(Message::text(Role::System, s.clone()));
            }
        }
        msgs.push(Message::text(Role::User, text.to_string()));
        let mut ids = render(&tok, &msgs, true)?.ids;
        if !first {
            // The previous reply's <|im_end|> was sampled but never fed; close that turn.
            let mut close = vec![im_end];
            close.extend(tok.encode("\n")?);
            close.extend(ids);
            ids = close;
        }
        if t.len() as usize + ids.len() + 1 > a.ctx_size as usize {
            bail!(
                "the prompt ({} tokens, {} already in the context) does not fit --ctx-size {}",
                ids.len(),
                t.len(),
                a.ctx_size
            );
        }
        let mut dec = tok.stream_decoder(true);
        let start = std::time::Instant::now();
        let prompt_len = ids.len();
        let mut gen_start = None;
        if let Some(s) = speech.as_mut() {
            s.begin(&ids, t.len())?;
        }
        let out = t.generate(&ids, a.n_predict, &[im_end], |id| {
            gen_start.get_or_insert_with(std::time::Instant::now);
            if id != im_end {
                print!("{}", dec.push(id));
                let _ = std::io::stdout().flush();
            }
            speech.as_mut().is_none_or(|s| s.token(&m, id))
        })?;
        println!("{}", dec.finish());
        if let Some(s) = speech.as_mut() {
            s.end(&m, t, &out)?;
        }
        let total = start.elapsed().as_secs_f64();
        let gen = gen_start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
        eprintln!(
            "[{prompt_len} prompt tokens, {} generated; {:.1} tok/s prompt, {:.1} tok/s generation]",
            out.len(),
            prompt_len as f64 / (total - gen).max(1e-9),
            out.len().saturating_sub(1) as f64 / gen.max(1e-9)
        );
        if a.profile && t.len() < a.ctx_size {
            let (_, p) = t.step(im_end, true)?;
            t.reset_to(t.len() - 1)?;
            eprintln!("one decode step, per kernel (GPU µs):");
            for k in &p.kernels {
                eprintln!("  {:<24} {:8.1}", k.name, k.ns / 1e3);
            }
            eprintln!(
                "  total {:.1} µs over {} dispatches, {} barriers",
                p.total_ns.unwrap_or(0.0) / 1e3,
                p.dispatches,
                p.barriers
            );
        }
        Ok(())
    };
    if let Some(p) = &a.prompt {
        return turn(&mut t, p, true);
    }
    eprintln!("interactive chat: type a message, an empty line or Ctrl-D ends");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            break;
        }
        turn(&mut t, &line, first)?;
        first = false;
    }
    Ok(())
}
