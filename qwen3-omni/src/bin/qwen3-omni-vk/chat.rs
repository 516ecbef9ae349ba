//! `qwen3-omni-vk chat`: text in, streamed text out, on the GPU (sampling on the GPU too).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use qwen3_omni::chat::{Message, Role};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::session::{LoadOptions, LoadStage, Model, Sampling, Session, SessionConfig, StopReason};

use crate::audio::{run_turn, AudioTurn};
use crate::common::{clock_seed, demo_model};
use crate::signals::Signals;
use crate::speech_out::{ChatSpeech, ChatSpeechArgs};

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
    #[arg(long = "temp", default_value_t = 0.0, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long = "top-k", default_value_t = 0)]
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    #[arg(long = "top-p", default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Penalise tokens already in the context (1 = off; transformers' rule).
    #[arg(long = "repeat-penalty", default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print per-kernel GPU time of one decode step to stderr.
    #[arg(long)]
    pub profile: bool,
    /// Speech output: --audio-out FILE.wav, --voice, --play, Talker sampling flags.
    #[command(flatten)]
    pub speech: ChatSpeechArgs,
    /// A recording to ask about (WAV); -p then adds a written question after it.
    #[arg(short = 'a', long, conflicts_with = "mic")]
    pub audio: Option<PathBuf>,
    /// Ask by voice: record from the default microphone (Enter or silence stops; `mic` feature).
    #[arg(long)]
    pub mic: bool,
}

/// Every flag `chat` takes, checked before anything loads.
fn check_flags(a: &ChatArgs) -> anyhow::Result<()> {
    crate::check::thinker_sampling(a.temp, a.top_k, a.top_p, a.repeat_penalty)?;
    crate::check::ctx_size(a.ctx_size)?;
    if a.speech.enabled() {
        a.speech.voice.check()?;
    }
    if let Some(p) = &a.speech.audio_out {
        crate::check::output("--audio-out", p)?;
    }
    Ok(())
}

/// Ctrl-C (see `signals`): while the model works (loading, a reply, its speech) the first press
/// stops the work, the reply so far kept, and a second ends the program; while waiting for input a
/// press ends the program (status 130).
pub fn run(a: &ChatArgs) -> anyhow::Result<()> {
    check_flags(a)?;
    if a.audio.is_some() || a.mic {
        return run_audio(a, a.audio.as_deref());
    }
    let path = match &a.model {
        Some(p) => p.clone(),
        None => demo_model()?,
    };
    // The model file's own checks (and --voice against its speakers) before the long load.
    let m = ModelFile::open(&path)?;
    if a.speech.enabled() {
        a.speech.voice.check_voice(&m, &path)?;
    }
    let signals = Signals::get();
    let load_stop = Arc::new(AtomicBool::new(false));
    let load_guard = signals.stop_on_press(load_stop.clone());
    let engine = crate::common::engine_options().clone();
    let opts = LoadOptions {
        device: a.device.or(engine.gpu.device),
        ctx_size: a.ctx_size,
        ..LoadOptions::from_engine(engine)
    };
    let t0 = std::time::Instant::now();
    signals.working();
    let model = Model::load(&path, &opts, |p| {
        if p.stage == LoadStage::Thinker {
            eprint!("\rloading the Thinker: layer {}/{}", p.done, p.total);
            let _ = std::io::stderr().flush();
        }
        !load_stop.load(Ordering::SeqCst)
    });
    signals.idle();
    drop(load_guard);
    let model = model?;
    eprintln!(" ({:.1} s)", t0.elapsed().as_secs_f64());
    eprintln!("device: {} · model: {}", model.gpu().caps().name, path.display());
    let seed = a.seed.unwrap_or_else(clock_seed);
    let sampling = Sampling {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        repeat_penalty: a.repeat_penalty,
        seed: Some(seed),
    };
    // Speech output (--audio-out / --play): the Talker follows each turn's ids and the Thinker's
    // hidden states. It reads the model file through its own memory map (no second copy).
    let gpu = model.gpu().clone();
    let mut speech = ChatSpeech::with_limit(&a.speech, &gpu, &m, a.ctx_size, seed, Some(a.n_predict))?;
    let mut session = Session::new(model, SessionConfig { system: a.system.clone(), sampling })?;
    // A press stops the reply (the session's cancel flag) and its speech (the Talker's, checked
    // before every frame, also after the text has ended).
    let _reply_guard = signals.stop_on_press(session.cancel_handle());
    let _speech_guard = speech.as_ref().map(|s| signals.stop_on_press(s.cancel_flag()));
    let mut turn = |session: &mut Session, text: &str| -> anyhow::Result<()> {
        let user = vec![Message::text(Role::User, text.to_string())];
        if let Some(s) = speech.as_mut() {
            s.begin(&session.turn_ids(&user)?, session.context_used())?;
        }
        signals.working();
        let reply = session.generate_messages(&user, a.n_predict, |d| {
            // A closed or full stdout stops the reply (main reports it).
            if !out!("{}", d.text) {
                return false;
            }
            match (d.token, speech.as_mut()) {
                (Some(id), Some(s)) => s.token(&m, id),
                _ => true,
            }
        });
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                signals.idle();
                return Err(e.into());
            }
        };
        outln!();
        let stopped = (reply.stop == StopReason::Cancelled || signals.pressed()) && !crate::out::failed();
        let spoken = match speech.as_mut() {
            Some(s) => s.end(&m, session.model().thinker(), &reply.sampled, stopped),
            None => Ok(()),
        };
        // A press during the speech (the text done) stopped it too.
        let stopped = stopped || signals.pressed();
        signals.idle();
        spoken?;
        if stopped {
            eprintln!("[stopped]");
        }
        if a.n_predict == 0 {
            // -n 0: nothing generated; the turn's prompt is kept in the context for the next one.
            eprintln!("[{} prompt tokens, 0 generated (-n 0)]", reply.prompt_tokens);
        } else {
            eprintln!(
                "[{} prompt tokens, {} generated; {:.1} tok/s prompt, {:.1} tok/s generation]",
                reply.prompt_tokens,
                reply.tokens.len() + usize::from(reply.stop == StopReason::EndOfTurn),
                reply.prompt_tok_s(),
                reply.gen_tok_s()
            );
        }
        if a.profile {
            if let Some(p) = session.profile_step()? {
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
        }
        Ok(())
    };
    if let Some(p) = &a.prompt {
        return turn(&mut session, p);
    }
    eprintln!("interactive chat: type a message, an empty line or Ctrl-D ends; Ctrl-C stops a reply");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            break;
        }
        turn(&mut session, &line)?;
        if crate::out::failed() {
            break;
        }
    }
    Ok(())
}

/// `chat -a FILE.wav [-p TEXT]`: one turn with the recording, then the answer streamed.
fn run_audio(a: &ChatArgs, audio: Option<&Path>) -> anyhow::Result<()> {
    let seed = a.seed.unwrap_or_else(clock_seed);
    run_turn(&AudioTurn {
        model: a.model.as_deref(),
        audio,
        system: a.system.as_deref(),
        text: a.prompt.as_deref(),
        n_predict: a.n_predict,
        ctx: Some(a.ctx_size),
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
