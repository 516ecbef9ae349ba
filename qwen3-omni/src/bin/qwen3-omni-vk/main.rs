//! `qwen3-omni-vk`: the command-line front end. The commands live in this binary's modules (the
//! library, `qwen3_omni`, has no clap or anyhow): `chat` (text, and audio through `audio`), `speak`
//! with `speech_out` (speech output shared with `chat --audio-out`), the benches, and `common`
//! (helpers the commands share).

#[macro_use]
mod out;
mod audio;
mod bench_audio;
mod bench_code2wav;
mod bench_thinker;
mod chat;
mod check;
mod code2wav;
mod common;
mod memory_plan;
mod play;
mod serve;
mod signals;
mod speak;
mod speech_out;
mod talker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qwen3_omni_vk::vk_runtime;

/// Qwen3-Omni on raw Vulkan: audio in, text and speech out.
#[derive(Parser)]
#[command(name = "qwen3-omni-vk", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// KV cache element type of the Thinker and the Talker: f16 (default), q8_0 or f32 (exact).
    /// Read by every command that loads either (the code predictor's 16-position cache is f32).
    #[arg(long = "cache-type", global = true, value_name = "f16|q8_0|f32", value_parser = parse_cache_type)]
    cache_type: Option<qwen3_omni_vk::CacheType>,
}

/// `--cache-type`: llama.cpp's names.
fn parse_cache_type(s: &str) -> Result<qwen3_omni_vk::CacheType, String> {
    qwen3_omni_vk::CacheType::parse(s).ok_or_else(|| format!("{s:?} is not a KV cache type (f16, q8_0 or f32)"))
}

#[derive(Subcommand)]
enum Command {
    /// List every Vulkan device with its capabilities and say which one would be used.
    Devices {
        /// Also run a small self-check of the kernels on the chosen device.
        #[arg(long)]
        selftest: bool,
        /// Also print the memory plan of this model file on the chosen device: where every
        /// component's weights, KV caches and scratch go, bytes per heap (or why it does not fit).
        #[arg(short = 'm', long)]
        model: Option<std::path::PathBuf>,
        /// Context size (KV cache positions) the plan is made for.
        #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
        ctx_size: u32,
        /// Vulkan device index (default: the one that would be used).
        #[arg(long)]
        device: Option<usize>,
    },
    /// Chat with the model: text in, streamed text out.
    Chat(chat::ChatArgs),
    /// Transcribe a recording: text only on stdout.
    Transcribe(audio::TranscribeArgs),
    /// Time log-mel and the AudioTower on synthetic audio (synthetic full-size models welcome).
    BenchAudio(bench_audio::BenchAudioArgs),
    /// Time the Thinker's decode on the GPU (synthetic full-size models welcome).
    BenchThinker(bench_thinker::BenchArgs),
    /// Time Code2Wav's GPU decode: ms per second of audio, real-time factor, streaming latency.
    BenchCode2wav(bench_code2wav::BenchCode2WavArgs),
    /// Decode a file of codec frames (one frame of 16 codes per line) to a 24 kHz WAV file.
    Code2wav(code2wav::Code2WavArgs),
    /// Time the Talker and code predictor on the GPU: per step, per frame, real-time factor.
    BenchTalker(talker::BenchTalkerArgs),
    /// Read a text aloud into a 24 kHz WAV file (Talker + code predictor + Code2Wav, streamed).
    Speak(speak::SpeakArgs),
    /// Time speech generation end to end: request → first audio, real-time factor.
    BenchSpeech(speak::BenchSpeechArgs),
    /// Debugging: the Thinker answers, the Talker prints the speech codes of each 80 ms frame.
    TalkerCodes(talker::TalkerCodesArgs),
    /// Describe a GGUF file: header, metadata, tensor table, totals per type.
    Info(quantizer_cli::InfoArgs),
    /// Convert a safetensors checkpoint into one Q8_0 GGUF (or write a synthetic one).
    Quantize(quantizer_cli::QuantizeArgs),
    /// An OpenAI-compatible HTTP server: chat completions with speech, transcriptions, speech.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("QWEN3VK_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    // SIGINT/SIGTERM/SIGHUP from here on: unfinished output files are removed at any exit.
    if let Err(e) = signals::Signals::install() {
        eprintln!("error: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    // Every engine choice, read once (docs/gpu-runs.md, "Engine overrides").
    match qwen3_omni_vk::EngineOptions::from_env() {
        Ok(mut o) => {
            if let Some(t) = cli.cache_type {
                o.models.cache_type = t;
            }
            common::set_engine_options(o)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Devices { selftest, model, ctx_size, device } => {
            devices(selftest).and_then(|()| match model {
                // The global --cache-type (else the engine's default).
                Some(m) => memory_plan::run(&m, ctx_size, cli.cache_type, device),
                None => Ok(()),
            })
        }
        Command::Chat(args) => chat::run(&args),
        Command::Transcribe(args) => audio::run_transcribe(&args),
        Command::BenchAudio(args) => bench_audio::run(&args),
        Command::BenchThinker(args) => bench_thinker::run(&args),
        Command::BenchCode2wav(args) => bench_code2wav::run(&args),
        Command::Code2wav(args) => code2wav::run(&args),
        Command::BenchTalker(args) => talker::run(&args),
        Command::Speak(args) => speak::run_speak(&args),
        Command::BenchSpeech(args) => speak::run_bench(&args),
        Command::TalkerCodes(args) => talker::run_codes(&args),
        Command::Info(args) => quantizer_cli::run_info(&args),
        Command::Quantize(args) => quantizer_cli::run_quantize(&args),
        Command::Serve(args) => serve::run(&args),
    };
    // A failed stdout write decides the status: the command stopped because of it.
    if let Some(code) = out::exit_status() {
        return ExitCode::from(code);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A writer (`info`) that met a closed stdout pipe: quiet, like a program killed by SIGPIPE.
            if let Some(io) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::from(141);
                }
            }
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each said once: a cause whose text the message so far
/// already contains (a library error that quotes its source) is left out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for c in e.chain() {
        let t = c.to_string();
        if t.is_empty() || s.contains(&t) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&t);
    }
    s
}

fn devices(selftest: bool) -> anyhow::Result<()> {
    let o = common::engine_options();
    let (list, choice) = vk_runtime::list_devices(o.gpu.device)?;
    for d in &list {
        outln!("[{}] {}", d.index, d.caps);
        if let Some(why) = &d.unsuitable {
            outln!("  unsuitable: {why}");
        }
        outln!();
    }
    let chosen = choice?;
    let caps = &list[chosen].caps;
    outln!(
        "would use: [{chosen}] {} (Q8_0 matrix × vector path: {:?})",
        caps.name,
        qwen3_omni_vk::MatvecPath::choose_with(caps, o.kernels.matvec)
    );
    if selftest {
        let report = qwen3_omni_vk::selftest::run(o)?;
        outln!("{report}");
    }
    Ok(())
}
