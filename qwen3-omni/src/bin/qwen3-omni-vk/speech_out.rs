//! Speech output shared by `speak`, `bench-speech` and `chat --audio-out`: the voice and Talker
//! sampling flags ([`VoiceArgs`]), where the audio goes ([`AudioSink`]: a WAV file and/or the sound
//! card), and the `chat` hook ([`ChatSpeech`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use qwen3_omni::code2wav::wav::{WavFormat, WavWriter, SAMPLE_RATE};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::speech::{Decode, Speaker, SpeechOptions, SpeechSummary, TurnSpeech};
use qwen3_omni::talker::TalkerSampling;
use qwen3_omni::thinker::gpu::GpuThinker;
use qwen3_omni_vk::vk_runtime::Gpu;

use crate::play::Player;

/// Voice and sampling of speech output (shared by `speak` and `chat --audio-out`).
#[derive(clap::Args, Debug, Clone)]
pub struct VoiceArgs {
    /// Voice: ethan (default), chelsie, aiden.
    #[arg(long, default_value = "ethan")]
    pub voice: String,
    /// Code-0 (Talker) temperature.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub talker_temp: f32,
    /// Code-0 (Talker) top-k (0 = off).
    #[arg(long, default_value_t = 50)]
    pub talker_top_k: u32,
    /// Code-predictor (residual codes) top-k (0 = off).
    #[arg(long, default_value_t = 50)]
    pub cp_top_k: u32,
    /// Code-predictor (residual codes) top-p (1 = off).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub cp_top_p: f32,
    /// Greedy Talker and code predictor (transformers' talker_do_sample=False; the 1.05
    /// repetition penalty on code 0 stays).
    #[arg(long = "greedy", alias = "talker-greedy")]
    pub greedy: bool,
    /// Most codec frames (80 ms each) per reply.
    #[arg(long, default_value_t = 1500)]
    pub max_frames: u32,
    /// Decode like transformers' chunked_decode(300, 25) (chunks every 300 frames, 555 samples
    /// lost per boundary) instead of the exact streaming decode.
    #[arg(long)]
    pub hf_chunked: bool,
    /// Frames per streamed Code2Wav chunk after the first (which comes after one frame).
    #[arg(long, default_value_t = 4)]
    pub stream_frames: usize,
    /// While the reply streams, run the Talker in batches of this many frames (one recording each).
    #[arg(long, default_value_t = 4)]
    pub talker_batch: usize,
    /// Write 16-bit PCM instead of 32-bit float.
    #[arg(long)]
    pub pcm16: bool,
    /// Play the audio while it is generated (needs the `play` cargo feature).
    #[arg(long)]
    pub play: bool,
}

impl VoiceArgs {
    pub fn options(&self, seed: u64) -> SpeechOptions {
        let sampling = if self.greedy {
            TalkerSampling::greedy()
        } else {
            let mut s = TalkerSampling::sampled(seed);
            s.code0.temperature = self.talker_temp;
            s.code0.top_k = self.talker_top_k;
            s.predictor.top_k = self.cp_top_k;
            s.predictor.top_p = self.cp_top_p;
            s
        };
        let decode = if self.hf_chunked { Decode::hf() } else { Decode::Stream { frames: self.stream_frames.max(1) } };
        SpeechOptions {
            voice: self.voice.to_lowercase(),
            sampling,
            max_frames: self.max_frames,
            decode,
            talker_batch: self.talker_batch,
        }
    }

    pub fn format(&self) -> WavFormat {
        if self.pcm16 {
            WavFormat::Pcm16
        } else {
            WavFormat::F32
        }
    }
}

/// Where audio goes: a WAV file written as it arrives (atomically) and/or the sound card.
pub struct AudioSink {
    wav: Option<WavWriter>,
    player: Option<Player>,
    err: Option<std::io::Error>,
}

impl AudioSink {
    pub fn new(out: Option<&Path>, format: WavFormat, play: bool) -> anyhow::Result<AudioSink> {
        let wav = out.map(|p| WavWriter::create(p, SAMPLE_RATE, format)).transpose()?;
        let player = if play { Some(Player::new(SAMPLE_RATE)?) } else { None };
        Ok(AudioSink { wav, player, err: None })
    }

    pub fn push(&mut self, pcm: &[f32]) {
        if let (Some(w), None) = (self.wav.as_mut(), &self.err) {
            if let Err(e) = w.write(pcm) {
                self.err = Some(e);
            }
        }
        if let Some(p) = &self.player {
            p.push(pcm);
        }
    }

    /// Completes the file (an earlier write error is returned and nothing is left at the path);
    /// waits for playback to end.
    pub fn finish(self) -> anyhow::Result<()> {
        if let Some(e) = self.err {
            return Err(e.into());
        }
        if let Some(w) = self.wav {
            w.finish()?;
        }
        if let Some(p) = self.player {
            p.drain();
        }
        Ok(())
    }
}

pub fn summary_line(s: &SpeechSummary, extra: &str) -> String {
    let audio = s.samples as f64 / SAMPLE_RATE as f64;
    format!(
        "[speech: {} frames, {:.2} s of audio in {:.2} s (real-time factor {:.3}), first audio after {}, stopped: {:?}{extra}]",
        s.frames,
        audio,
        s.total_s,
        s.total_s / audio.max(1e-9),
        s.first_chunk_s.map(|t| format!("{:.0} ms", t * 1e3)).unwrap_or_else(|| "—".into()),
        s.stop
    )
}

/// `chat --audio-out`: flags added to `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatSpeechArgs {
    /// Speak the replies into this WAV file while they stream (a second reply of an interactive
    /// chat goes to NAME-2.wav, and so on).
    #[arg(long)]
    pub audio_out: Option<PathBuf>,
    #[command(flatten)]
    pub voice: VoiceArgs,
}

impl ChatSpeechArgs {
    pub fn enabled(&self) -> bool {
        self.audio_out.is_some() || self.voice.play
    }
}

/// The `chat` hook: a [`TurnSpeech`] whose audio goes to a file and/or the sound card. Call
/// [`ChatSpeech::begin`] with the ids about to be fed, [`ChatSpeech::token`] from `on_token`,
/// [`ChatSpeech::end`] after `generate`.
pub struct ChatSpeech {
    args: ChatSpeechArgs,
    ts: TurnSpeech,
    sink: Option<AudioSink>,
    turn: u32,
}

impl ChatSpeech {
    /// None when `--audio-out` / `--play` are not given. `max_new`: the Thinker's limit per reply,
    /// when known (lower first-audio latency: see [`Speaker::set_thinker_limit`]).
    pub fn with_limit(
        args: &ChatSpeechArgs,
        gpu: &Gpu,
        m: &ModelFile,
        ctx: u32,
        seed: u64,
        max_new: Option<usize>,
    ) -> anyhow::Result<Option<ChatSpeech>> {
        if !args.enabled() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let mut sp = Speaker::load(crate::common::kernels(gpu.clone())?, m, ctx, args.voice.options(seed))?;
        sp.set_thinker_limit(max_new);
        eprintln!("Talker and Code2Wav loaded in {:.1} s", t0.elapsed().as_secs_f64());
        Ok(Some(ChatSpeech { args: args.clone(), ts: TurnSpeech::new(sp), sink: None, turn: 0 }))
    }

    fn open_sink(&mut self) -> anyhow::Result<()> {
        self.turn += 1;
        let out = self.args.audio_out.as_ref().map(|p| numbered(p, self.turn));
        self.sink = Some(AudioSink::new(out.as_deref(), self.args.voice.format(), self.args.voice.play)?);
        Ok(())
    }

    /// A new turn: `ids` are about to be fed to the Thinker, whose context holds `thinker_len`
    /// positions.
    pub fn begin(&mut self, ids: &[u32], thinker_len: u32) -> anyhow::Result<()> {
        self.ts.begin(ids, thinker_len);
        self.open_sink()
    }

    /// See [`TurnSpeech::begin_after_prefill`].
    pub fn begin_after_prefill(&mut self, ids: &[u32], thinker: &GpuThinker) -> anyhow::Result<()> {
        self.ts.begin_after_prefill(ids, thinker)?;
        self.open_sink()
    }

    /// A token from the Thinker's `on_token`; false (stop generating) after an error, which
    /// [`ChatSpeech::end`] returns.
    pub fn token(&mut self, m: &ModelFile, id: u32) -> bool {
        let sink = self.sink.as_mut().expect("begin() first");
        self.ts.token(m, id, &mut |p| sink.push(p))
    }

    /// Set it (from any thread, a Ctrl-C) to stop the speech before its next 80 ms frame.
    pub fn cancel_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.ts.cancel_flag()
    }

    /// After `generate` returned `out`: finishes the speech and the file. `stopped`: the reply was
    /// stopped (Ctrl-C), so is its speech (the audio so far is kept).
    pub fn end(&mut self, m: &ModelFile, thinker: &GpuThinker, out: &[u32], stopped: bool) -> anyhow::Result<()> {
        let mut sink = self.sink.take().expect("begin() first");
        let s = self.ts.end(m, thinker, out, stopped, &mut |p| sink.push(p)).context("speech output")?;
        let Some(s) = s else {
            eprintln!("[speech: nothing to say]");
            return Ok(());
        };
        sink.finish()?;
        let file = self.args.audio_out.as_ref().map(|p| format!(" → {}", numbered(p, self.turn).display()));
        eprintln!("{}", summary_line(&s, &file.unwrap_or_default()));
        Ok(())
    }
}

/// `out.wav` for the first reply, `out-2.wav` for the second, …
fn numbered(p: &Path, turn: u32) -> PathBuf {
    if turn <= 1 {
        return p.to_path_buf();
    }
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    p.with_file_name(format!("{stem}-{turn}{ext}"))
}
