//! Audio in on the command line: one turn with a recording (`chat -a FILE.wav [-p TEXT]`, a
//! spoken or written question about it, text answer, optionally spoken) and `transcribe -a
//! FILE.wav` (text only on stdout).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qwen3_omni::audio::gpu::GpuAudioTower;
use qwen3_omni::audio::{load_wav, LoadOptions, MelExtractor};
use qwen3_omni::chat::{render, Item, Message, Role};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::thinker::gpu::GpuThinker;
use qwen3_omni::thinker::ThinkerConfig;

use crate::common::{demo_model, tokenizer_of};
use crate::signals::Signals;
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
    /// Context size (KV cache positions). Default: just what the recording, the prompt and
    /// `-n` need (up to the model's limit).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<u32>,
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
    /// `-c`: the context; None sizes it to the turn (prompt + `n_predict`).
    pub ctx: Option<u32>,
    pub device: Option<usize>,
    pub sampling: qwen3_omni_vk::SampleParams,
    /// Progress and speed lines on stderr.
    pub verbose: bool,
    /// `chat --audio-out`: speak the answer.
    pub speech: Option<&'a ChatSpeechArgs>,
}

/// `transcribe -a FILE.wav`: greedy, the text alone on stdout.
pub fn run_transcribe(a: &TranscribeArgs) -> anyhow::Result<()> {
    if let Some(c) = a.ctx_size {
        crate::check::ctx_size(c)?;
    }
    run_turn(&AudioTurn {
        model: a.model.as_deref(),
        audio: a.audio.as_deref(),
        system: None,
        text: Some(&a.prompt),
        n_predict: a.n_predict,
        ctx: a.ctx_size,
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

/// A spinner on stderr for one stage (a terminal only; hidden otherwise and when not verbose).
fn stage(verbose: bool, what: &str) -> ProgressBar {
    let target = if verbose && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// A turn ended by Ctrl-C between stages (not an error: `run_turn` says "[stopped]").
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by Ctrl-C")
    }
}

impl std::error::Error for Stopped {}

/// Ends a stage; [`Stopped`] when Ctrl-C was pressed during it.
fn stage_done(pb: ProgressBar, signals: &Signals) -> anyhow::Result<()> {
    pb.finish_and_clear();
    if signals.pressed() {
        return Err(Stopped.into());
    }
    Ok(())
}

/// One audio turn. Order: the recording (a bad file fails first), the model file's configs, the
/// prompt and its fit in the context (`-c`; before any GPU work), then the AudioTower, the
/// prefill and the reply, each stage with a spinner and each stoppable by Ctrl-C (the first press
/// ends the turn at the next stage or token, a second exits).
pub fn run_turn(a: &AudioTurn<'_>) -> anyhow::Result<()> {
    let signals = Signals::get();
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = signals.stop_on_press(stop.clone());
    signals.working();
    let r = turn(a, signals, &stop);
    signals.idle();
    match r {
        Err(e) if e.downcast_ref::<Stopped>().is_some() => {
            eprintln!("[stopped]");
            Ok(())
        }
        r => r,
    }
}

fn turn(a: &AudioTurn<'_>, signals: &Signals, stop: &AtomicBool) -> anyhow::Result<()> {
    let t_load = std::time::Instant::now();
    let (wav, label) = match a.audio {
        Some(p) => {
            let pb = stage(a.verbose, &format!("reading {}", p.display()));
            let w = load_wav(p, &LoadOptions::default());
            stage_done(pb, signals)?;
            (w?, p.display().to_string())
        }
        None => (record_mic()?, "microphone".to_string()),
    };
    let pb = stage(a.verbose, &format!("log-mel of {:.1} s", wav.seconds()));
    let mel = MelExtractor::new(128).compute(&wav.samples);
    stage_done(pb, signals)?;
    let mel_s = t_load.elapsed().as_secs_f64();
    let path = match a.model {
        Some(p) => p.to_path_buf(),
        None => demo_model()?,
    };
    let m = ModelFile::open(&path)?;
    let tok = tokenizer_of(&m, &path)?;
    let cfg = ThinkerConfig::from_model(&m)?;
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
    // The context: -c as given (refused above the model's limit), or sized to the turn.
    let ctx = match a.ctx {
        Some(c) if c > cfg.max_positions => {
            bail!("-c/--ctx-size {c}: the model has {} positions", cfg.max_positions)
        }
        Some(c) => c,
        None => (prompt.ids.len() + a.n_predict + 8).min(cfg.max_positions as usize) as u32,
    };
    if prompt.ids.len() >= ctx as usize {
        bail!(
            "{label}: the prompt ({} tokens, {n_audio} of them audio: {:.1} s) does not fit the context of {ctx} \
             positions{}",
            prompt.ids.len(),
            wav.seconds(),
            if a.ctx.is_some() { " (-c); give a larger -c or a shorter recording" } else { "; cut the recording" }
        );
    }
    // Generation stops when the context is full.
    let n_predict = a.n_predict.min(ctx as usize - prompt.ids.len());
    let gpu = crate::common::open_gpu(a.device)?;
    if a.verbose {
        eprintln!("device: {} · model: {}", gpu.caps().name, path.display());
        eprintln!(
            "audio: {label} ({} Hz, {} ch, {:.2} s) → {} mel frames, {n_audio} audio tokens; context {ctx}",
            wav.source_rate,
            wav.source_channels,
            wav.seconds(),
            mel.frames
        );
    }
    let k = crate::common::kernels(gpu.clone())?;
    let t0 = std::time::Instant::now();
    let pb = stage(a.verbose, "loading the AudioTower");
    let tower = GpuAudioTower::load(&gpu, &m, |_, _| {});
    stage_done(pb, signals)?;
    let mut tower = tower?;
    tower.matmul = qwen3_omni::audio::gpu::AudioMatmul::choose(gpu.caps(), &k.model_options().audio);
    let pb = stage(a.verbose, "loading the Thinker");
    let t = GpuThinker::load(k, &m, ctx, |done, total| {
        pb.set_message(format!("loading the Thinker: layer {done}/{total}"))
    });
    stage_done(pb, signals)?;
    let mut t = t?;
    if a.verbose {
        eprintln!("loaded in {:.1} s", t0.elapsed().as_secs_f64());
    }
    let t1 = std::time::Instant::now();
    let pb = stage(a.verbose, &format!("AudioTower: {:.1} s of audio", wav.seconds()));
    let emb = tower.forward(t.kernels(), &mel.data, mel.frames as u32);
    stage_done(pb, signals)?;
    let emb = emb?;
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
    let stops = [im_end, tok.special_ids().endoftext];
    let t2 = std::time::Instant::now();
    let pb = stage(a.verbose, &format!("prefill: {} tokens", prompt.ids.len()));
    let first = t.prefill_with_audio(&prompt.ids, &emb.buf, emb.tokens, tok.special_ids().audio_pad);
    stage_done(pb, signals)?;
    let first = first?;
    let prefill_s = t2.elapsed().as_secs_f64();
    drop(emb);
    if n_predict == 0 {
        // -n 0: the prompt is fed, nothing is generated.
        if a.verbose {
            eprintln!("[{} prompt tokens ({n_audio} audio), 0 generated (-n 0)]", prompt.ids.len());
        }
        return Ok(());
    }
    // Speech out: the Talker starts from the prompt's hidden states (audio positions) and `first`.
    let mut speech = match a.speech {
        Some(sa) => ChatSpeech::with_limit(sa, &gpu, &m, ctx, a.sampling.seed, Some(n_predict))?,
        None => None,
    };
    let _speech_guard = speech.as_ref().map(|s| signals.stop_on_press(s.cancel_flag()));
    if let Some(s) = speech.as_mut() {
        s.begin_after_prefill(&prompt.ids, &t)?;
    }
    let mut dec = tok.stream_decoder(true);
    let mut out = vec![first];
    let mut emit = |id: u32| {
        if !stops.contains(&id) && !out!("{}", dec.push(id)) {
            return false; // stdout is closed or full (main reports it)
        }
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        // Any stop token ends the spoken text as <|im_end|> does.
        speech.as_mut().is_none_or(|s| s.token(&m, if stops.contains(&id) { im_end } else { id }))
    };
    let t3 = std::time::Instant::now();
    if emit(first) && !stops.contains(&first) && n_predict > 1 {
        // `first` is fed at the next position; generation continues with replayed decode steps.
        let rest = t.generate(&[first], n_predict - 1, &stops, emit)?;
        out.extend(rest);
    }
    outln!("{}", dec.finish());
    let stopped = signals.pressed();
    if let Some(s) = speech.as_mut() {
        let spoken: Vec<u32> = out.iter().map(|&id| if stops.contains(&id) { im_end } else { id }).collect();
        s.end(&m, &t, &spoken, stopped)?;
    }
    if stopped {
        eprintln!("[stopped]");
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
