//! Audio in on the command line: one turn with a recording (`chat -a FILE.wav [-p TEXT]`, a
//! spoken or written question about it, text answer, optionally spoken) and `transcribe -a
//! FILE.wav` (text only on stdout).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;
use qwen3_omni::audio::gpu::GpuAudioTower;
use qwen3_omni::audio::{load_wav, LoadOptions, MelExtractor};
use qwen3_omni::chat::{render, Item, Message, Role};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::thinker::gpu::GpuThinker;

use crate::common::{demo_model, tokenizer_of};
use crate::speech_out::{ChatSpeech, ChatSpeechArgs};

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
pub struct AudioTurn<'a> {
    pub model: Option<&'a Path>,
    /// A WAV file, or None for the microphone.
    pub audio: Option<&'a Path>,
    pub system: Option<&'a str>,
    pub text: Option<&'a str>,
    pub n_predict: usize,
    pub device: Option<usize>,
    pub sampling: qwen3_omni_vk::SampleParams,
    /// Progress and speed lines on stderr.
    pub verbose: bool,
    /// `chat --audio-out`: speak the answer.
    pub speech: Option<&'a ChatSpeechArgs>,
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
fn record_mic() -> anyhow::Result<qwen3_omni::audio::Audio16k> {
    Ok(qwen3_omni::audio::mic::record(&Default::default())?)
}

#[cfg(not(feature = "mic"))]
fn record_mic() -> anyhow::Result<qwen3_omni::audio::Audio16k> {
    bail!(
        "this build has no microphone support: rebuild with `cargo build --features mic` (Linux: needs libasound2-dev)"
    )
}

pub fn run_turn(a: &AudioTurn<'_>) -> anyhow::Result<()> {
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
        None => demo_model()?,
    };
    let m = ModelFile::open(&path)?;
    let tok = tokenizer_of(&m, &path)?;
    let gpu = crate::common::open_gpu(a.device)?;
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
    let k = crate::common::kernels(gpu.clone())?;
    let t0 = std::time::Instant::now();
    let mut tower = GpuAudioTower::load(&gpu, &m, |_, _| {})?;
    tower.matmul = qwen3_omni::audio::gpu::AudioMatmul::choose(gpu.caps(), &k.model_options().audio);
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
        Some(sa) => ChatSpeech::with_limit(sa, &gpu, &m, ctx, a.sampling.seed, Some(a.n_predict))?,
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
