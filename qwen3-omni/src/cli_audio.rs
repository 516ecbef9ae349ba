//! Audio on the command line: `chat -a FILE.wav [-p TEXT]` (a spoken or written question about a
//! recording, text answer), `transcribe -a FILE.wav` (text only on stdout), and `bench-audio`
//! (AudioTower and log-mel speed on synthetic audio, as real-time factors).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
use qwen3_omni_vk::Kernels;

use crate::audio::gpu::{AudioMatmul, GpuAudioTower};
use crate::audio::{load_wav, LoadOptions, MelExtractor};
use crate::chat::{render, Item, Message, Role};
use crate::cli_chat::ChatArgs;
use crate::model_file::ModelFile;
use crate::thinker::gpu::GpuThinker;
use crate::tokenizer::Tokenizer;

/// The default prompt of `transcribe`.
pub const TRANSCRIBE_PROMPT: &str = "Transcribe the audio into text.";

/// Arguments of `transcribe`.
#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// The recording (WAV: any rate, channels, 8/16/24/32-bit PCM or 32-bit float).
    #[arg(short = 'a', long, required_unless_present = "mic", conflicts_with = "mic")]
    pub audio: Option<PathBuf>,
    /// Record from the default microphone instead (Enter or silence stops; needs the `mic` feature).
    #[arg(long)]
    pub mic: bool,
    /// Model file (Q8_0 GGUF). Default: the tiny demo model (random weights: gibberish).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// The instruction given with the audio.
    #[arg(short = 'p', long, default_value = TRANSCRIBE_PROMPT)]
    pub prompt: String,
    /// Maximum new tokens.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    pub n_predict: usize,
    /// Vulkan device index.
    #[arg(long)]
    pub device: Option<usize>,
}

/// What one audio turn needs, whichever command asked.
struct AudioTurn<'a> {
    model: Option<&'a Path>,
    /// A WAV file, or None for the microphone.
    audio: Option<&'a Path>,
    system: Option<&'a str>,
    text: Option<&'a str>,
    n_predict: usize,
    device: Option<usize>,
    sampling: qwen3_omni_vk::SampleParams,
    /// Progress and speed lines on stderr.
    verbose: bool,
    /// `chat --audio-out`: speak the answer.
    speech: Option<&'a crate::cli_speak::ChatSpeechArgs>,
}

/// `chat -a FILE.wav [-p TEXT]`: one turn with the recording, then the answer streamed.
pub fn run_chat(a: &ChatArgs, audio: Option<&Path>) -> anyhow::Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    run_turn(&AudioTurn {
        model: a.model.as_deref(),
        audio,
        system: a.system.as_deref(),
        text: a.prompt.as_deref(),
        n_predict: a.n_predict,
        device: a.device,
        sampling: qwen3_omni_vk::SampleParams {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repeat_penalty,
            seed,
            ..Default::default()
        },
        verbose: true,
        speech: Some(&a.speech),
    })
}

/// `transcribe -a FILE.wav`: greedy, the text alone on stdout.
pub fn run_transcribe(a: &TranscribeArgs) -> anyhow::Result<()> {
    run_turn(&AudioTurn {
        model: a.model.as_deref(),
        audio: a.audio.as_deref(),
        system: None,
        text: Some(&a.prompt),
        n_predict: a.n_predict,
        device: a.device,
        sampling: qwen3_omni_vk::SampleParams::default(),
        verbose: false,
        speech: None,
    })
}

#[cfg(feature = "mic")]
fn record_mic() -> anyhow::Result<crate::audio::Audio16k> {
    Ok(crate::audio::mic::record(&Default::default())?)
}

#[cfg(not(feature = "mic"))]
fn record_mic() -> anyhow::Result<crate::audio::Audio16k> {
    bail!(
        "this build has no microphone support: rebuild with `cargo build --features mic` (Linux: needs libasound2-dev)"
    )
}

fn run_turn(a: &AudioTurn<'_>) -> anyhow::Result<()> {
    // The recording first: a bad file fails before the model is loaded.
    let t_load = std::time::Instant::now();
    let (wav, label) = match a.audio {
        Some(p) => (load_wav(p, &LoadOptions::default())?, p.display().to_string()),
        None => (record_mic()?, "microphone".to_string()),
    };
    let mel = MelExtractor::new(128).compute(&wav.samples);
    let mel_s = t_load.elapsed().as_secs_f64();
    let path = match a.model {
        Some(p) => p.to_path_buf(),
        None => crate::cli_chat::demo_model()?,
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
    if a.verbose {
        eprintln!("device: {} · model: {}", gpu.caps().name, path.display());
        eprintln!(
            "audio: {label} ({} Hz, {} ch, {:.2} s) → {} mel frames",
            wav.source_rate,
            wav.source_channels,
            wav.seconds(),
            mel.frames
        );
    }
    let mut msgs = Vec::new();
    if let Some(s) = a.system {
        msgs.push(Message::text(Role::System, s));
    }
    let mut items = vec![Item::audio_frames(mel.frames)];
    if let Some(t) = a.text {
        items.push(Item::text(t));
    }
    msgs.push(Message::new(Role::User, items));
    let prompt = render(&tok, &msgs, true)?;
    let n_audio = prompt.audio_spans.iter().map(|s| s.len()).sum::<usize>();
    let ctx = (prompt.ids.len() + a.n_predict + 8).min(u32::MAX as usize) as u32;
    let k = Kernels::new(gpu.clone());
    let t0 = std::time::Instant::now();
    let mut tower = GpuAudioTower::load(&gpu, &m, |_, _| {})?;
    let mut t = GpuThinker::load(k, &m, ctx, |done, total| {
        if a.verbose {
            eprint!("\rloading the Thinker: layer {done}/{total}");
            let _ = std::io::stderr().flush();
        }
    })?;
    if ctx > t.config.max_positions {
        bail!(
            "{label}: the prompt ({} tokens, {n_audio} of them audio) and {} new tokens exceed the model's {} positions",
            prompt.ids.len(),
            a.n_predict,
            t.config.max_positions
        );
    }
    if a.verbose {
        eprintln!(" ({:.1} s)", t0.elapsed().as_secs_f64());
    }
    let t1 = std::time::Instant::now();
    let emb = tower.forward(t.kernels(), &mel.data, mel.frames as u32)?;
    let tower_s = t1.elapsed().as_secs_f64();
    if emb.tokens as usize != n_audio || emb.dim != t.config.hidden {
        bail!(
            "the AudioTower gave {} rows of {} but the prompt has {n_audio} audio positions of {}",
            emb.tokens,
            emb.dim,
            t.config.hidden
        );
    }
    t.set_sampling(a.sampling);
    let im_end = tok.special_ids().im_end;
    let stop = [im_end, tok.special_ids().endoftext];
    let t2 = std::time::Instant::now();
    let first = t.prefill_with_audio(&prompt.ids, &emb.buf, emb.tokens, tok.special_ids().audio_pad)?;
    let prefill_s = t2.elapsed().as_secs_f64();
    drop(emb);
    // Speech out: the Talker starts from the prompt's hidden states (audio positions) and `first`.
    let mut speech = match a.speech {
        Some(sa) => crate::cli_speak::ChatSpeech::with_limit(sa, &gpu, &m, ctx, a.sampling.seed, Some(a.n_predict))?,
        None => None,
    };
    if let Some(s) = speech.as_mut() {
        s.begin_after_prefill(&prompt.ids, &t)?;
    }
    let mut dec = tok.stream_decoder(true);
    let mut out = vec![first];
    let mut emit = |id: u32| {
        if !stop.contains(&id) {
            print!("{}", dec.push(id));
            let _ = std::io::stdout().flush();
        }
        // Any stop token ends the spoken text as <|im_end|> does.
        speech.as_mut().is_none_or(|s| s.token(&m, if stop.contains(&id) { im_end } else { id }))
    };
    if !emit(first) {
        bail!("speech output failed to start");
    }
    let t3 = std::time::Instant::now();
    if !stop.contains(&first) && a.n_predict > 1 {
        // `first` is fed at the next position; generation continues with replayed decode steps.
        let rest = t.generate(&[first], a.n_predict - 1, &stop, emit)?;
        out.extend(rest);
    }
    println!("{}", dec.finish());
    if let Some(s) = speech.as_mut() {
        let spoken: Vec<u32> = out.iter().map(|&id| if stop.contains(&id) { im_end } else { id }).collect();
        s.end(&m, &t, &spoken)?;
    }
    if a.verbose {
        let gen_s = t3.elapsed().as_secs_f64();
        eprintln!(
            "[{} prompt tokens ({n_audio} audio), {} generated; mel {:.0} ms, AudioTower {:.0} ms, prefill {:.0} ms, \
             {:.1} tok/s generation]",
            prompt.ids.len(),
            out.len(),
            mel_s * 1e3,
            tower_s * 1e3,
            prefill_s * 1e3,
            out.len().saturating_sub(1) as f64 / gen_s.max(1e-9)
        );
    }
    Ok(())
}

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

/// A deterministic test signal: a slow chirp over tones and a little noise, in [−1, 1].
pub fn synthetic_audio(seconds: f64) -> Vec<f32> {
    let n = (seconds * 16_000.0) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            let f = 150.0 + 50.0 * (t * 0.37).sin() + 3000.0 * ((t * 0.05).fract());
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            (0.4 * (2.0 * std::f64::consts::PI * f * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.05 * noise) as f32
        })
        .collect()
}

/// `bench-audio`: log-mel (CPU) and AudioTower (GPU) time per audio length, as real-time factors
/// (seconds of audio per second of compute).
pub fn run_bench(a: &BenchAudioArgs) -> anyhow::Result<()> {
    let m = ModelFile::open(&a.model)?;
    let gpu = Gpu::new(&GpuOptions { device: a.device, ..GpuOptions::default() })?;
    let k = Kernels::new(gpu.clone());
    let t0 = std::time::Instant::now();
    let mut tower = GpuAudioTower::load(&gpu, &m, |_, _| {})?;
    let c = tower.config.clone();
    println!(
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
        println!(
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
            println!(
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
                println!("    per kernel (every dispatch serialised and timed; ms total / dispatches):");
                for (name, (ns, n)) in v {
                    println!("      {name:<26} {:9.2} ms  {n:5}×", ns / 1e6);
                }
                tower.profile = false;
            }
        }
        tower.matmul = AudioMatmul::choose(gpu.caps());
    }
    Ok(())
}
