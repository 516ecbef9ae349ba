//! Speech-out commands: `speak` (read a text aloud), the `chat --audio-out` hook ([`ChatSpeech`])
//! and `bench-speech` (request → first audio, real-time factor of Thinker + Talker + code
//! predictor + Code2Wav streamed; synthetic full-size GGUFs welcome).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
use qwen3_omni_vk::Kernels;

use crate::chat::{render, Message, Role};
use crate::code2wav::wav::{WavFormat, WavWriter, SAMPLE_RATE};
use crate::model_file::ModelFile;
use crate::speech::{Decode, Speaker, SpeechOptions, SpeechSummary, TurnSpeech};
use crate::talker::TalkerSampling;
use crate::thinker::gpu::GpuThinker;
use crate::tokenizer::Tokenizer;

/// Voice and sampling of speech output (shared by `speak` and `chat --audio-out`).
#[derive(clap::Args, Debug, Clone)]
pub struct VoiceArgs {
    /// Voice: ethan (default), chelsie, aiden.
    #[arg(long, default_value = "ethan")]
    pub voice: String,
    /// Code-0 (Talker) temperature.
    #[arg(long, default_value_t = 0.9)]
    pub talker_temp: f32,
    /// Code-0 (Talker) top-k (0 = off).
    #[arg(long, default_value_t = 50)]
    pub talker_top_k: u32,
    /// Code-predictor (residual codes) top-k (0 = off).
    #[arg(long, default_value_t = 50)]
    pub cp_top_k: u32,
    /// Code-predictor (residual codes) top-p (1 = off).
    #[arg(long, default_value_t = 0.8)]
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

    fn format(&self) -> WavFormat {
        if self.pcm16 {
            WavFormat::Pcm16
        } else {
            WavFormat::F32
        }
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn tokenizer_of(m: &ModelFile, path: &Path) -> anyhow::Result<Tokenizer> {
    let json = m.gguf.header.get("tokenizer.huggingface.json").and_then(|v| v.as_str()).with_context(|| {
        format!(
            "{}: no tokenizer.huggingface.json in the metadata (quantize with tokenizer.json beside config.json)",
            path.display()
        )
    })?;
    Ok(Tokenizer::from_json(json, path)?)
}

/// Where audio goes: a WAV file written as it arrives (atomically) and/or the sound card.
pub struct AudioSink {
    wav: Option<WavWriter>,
    player: Option<crate::play::Player>,
    err: Option<std::io::Error>,
}

impl AudioSink {
    pub fn new(out: Option<&Path>, format: WavFormat, play: bool) -> anyhow::Result<AudioSink> {
        let wav = out.map(|p| WavWriter::create(p, SAMPLE_RATE, format)).transpose()?;
        let player = if play { Some(crate::play::Player::new(SAMPLE_RATE)?) } else { None };
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

fn summary_line(s: &SpeechSummary, extra: &str) -> String {
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

/// Arguments of `speak`.
#[derive(clap::Args, Debug)]
pub struct SpeakArgs {
    /// Model file (Q8_0 GGUF with all components). Default: the tiny demo model (random weights:
    /// the audio is noise of the right length).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// The text to read aloud.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Output WAV file (24 kHz mono).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Random seed of the Talker and code predictor (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub device: Option<usize>,
    #[command(flatten)]
    pub voice: VoiceArgs,
}

/// `speak`: the text is spoken as the assistant's reply. The Talker's context (spec §6.2) is the
/// user turn `<|im_start|>user\n{text}<|im_end|>\n` — the text itself, so the Talker sees what it
/// is reading — then the assistant block with the text's first token as g0 and the rest fed as the
/// reply's trailing tokens, then tts_eos. The Thinker does not run (only its embeddings are read).
pub fn run_speak(a: &SpeakArgs) -> anyhow::Result<()> {
    if a.output.is_none() && !a.voice.play {
        bail!("nothing to do: give -o FILE.wav and/or --play");
    }
    let path = match &a.model {
        Some(p) => p.clone(),
        None => crate::cli_chat::demo_model()?,
    };
    let m = ModelFile::open(&path)?;
    let tok = tokenizer_of(&m, &path)?;
    let text = a.prompt.trim();
    if text.is_empty() {
        bail!("-p: the text to speak is empty");
    }
    let ids = render(&tok, &[Message::text(Role::User, text.to_string())], true)?.ids;
    let reply = tok.encode(text)?;
    let gpu = Gpu::new(&GpuOptions { device: a.device, ..GpuOptions::default() })?;
    eprintln!("device: {} · model: {}", gpu.caps().name, path.display());
    let t0 = Instant::now();
    let mut sp =
        Speaker::load(Kernels::new(gpu), &m, ids.len() as u32, a.voice.options(a.seed.unwrap_or_else(clock_seed)))?;
    eprintln!("Talker and Code2Wav loaded in {:.1} s; speaking {} tokens", t0.elapsed().as_secs_f64(), reply.len());
    let mut sink = AudioSink::new(a.output.as_deref(), a.voice.format(), a.voice.play)?;
    sp.start(&m, &ids, None, reply[0])?;
    sp.push_text(&m, &reply[1..], &mut |p| sink.push(p))?;
    let s = sp.finish(&mut |p| sink.push(p))?;
    if s.frames == 0 {
        bail!("the Talker said nothing (codec EOS before the first frame); no file written");
    }
    sink.finish()?;
    let out = a.output.as_ref().map(|p| format!(" → {}", p.display())).unwrap_or_default();
    eprintln!("{}", summary_line(&s, &out));
    Ok(())
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
    /// None when `--audio-out` / `--play` are not given.
    pub fn new(
        args: &ChatSpeechArgs,
        gpu: &Gpu,
        m: &ModelFile,
        ctx: u32,
        seed: u64,
    ) -> anyhow::Result<Option<ChatSpeech>> {
        Self::with_limit(args, gpu, m, ctx, seed, None)
    }

    /// As [`ChatSpeech::new`], knowing the Thinker's `max_new` per reply (lower first-audio latency:
    /// see [`Speaker::set_thinker_limit`]).
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
        let mut sp = Speaker::load(Kernels::new(gpu.clone()), m, ctx, args.voice.options(seed))?;
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

    /// After `generate` returned `out`: finishes the speech and the file.
    pub fn end(&mut self, m: &ModelFile, thinker: &GpuThinker, out: &[u32]) -> anyhow::Result<()> {
        let mut sink = self.sink.take().expect("begin() first");
        let s = self.ts.end(m, thinker, out, false, &mut |p| sink.push(p)).context("speech output")?;
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

/// Arguments of `bench-speech`.
#[derive(clap::Args, Debug)]
pub struct BenchSpeechArgs {
    /// Model file with all components (synthetic GGUFs welcome: the prompt is token ids).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Codec frames generated per run (80 ms each; synthetic weights rarely say codec EOS, so this
    /// is the length).
    #[arg(short = 'n', long, default_value_t = 100)]
    pub frames: u32,
    /// Thinker tokens generated per run (the Talker reads one per frame, then tts_eos / tts_pad).
    #[arg(long, default_value_t = 64)]
    pub tokens: u32,
    /// Text tokens in the user turn.
    #[arg(long, default_value_t = 32)]
    pub prompt_len: u32,
    /// Timed runs (after one warm-up run).
    #[arg(long, default_value_t = 2)]
    pub runs: u32,
    /// Greedy Talker and code predictor (default: transformers' sampling settings).
    #[arg(long)]
    pub greedy: bool,
    /// Frames per Code2Wav chunk after the first.
    #[arg(long, default_value_t = 4)]
    pub stream_frames: usize,
    /// transformers' 300/25 chunked decode instead of streaming.
    #[arg(long)]
    pub hf_chunked: bool,
    /// Talker frames per recording while the Thinker streams (1 = record every frame).
    #[arg(long, default_value_t = 4)]
    pub talker_batch: usize,
    /// Leave the Thinker out: fixed token ids are fed as if generated instantly (Talker + code
    /// predictor + Code2Wav alone; also for devices whose limits the full Thinker exceeds).
    #[arg(long)]
    pub no_thinker: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub device: Option<usize>,
}

/// Request → Thinker prefill → g0 → Talker prefill → frames (alongside the Thinker) → Code2Wav
/// streamed; times the first audio chunk and the whole, per run.
pub fn run_bench(a: &BenchSpeechArgs) -> anyhow::Result<()> {
    let m = ModelFile::open(&a.model)?;
    let gpu = Gpu::new(&GpuOptions { device: a.device, ..GpuOptions::default() })?;
    let t0 = Instant::now();
    let ctx = a.prompt_len + 8 + a.tokens;
    let mut thinker =
        if a.no_thinker { None } else { Some(GpuThinker::load(Kernels::new(gpu.clone()), &m, ctx, |_, _| {})?) };
    let voice = VoiceArgs {
        voice: "ethan".into(),
        talker_temp: 0.9,
        talker_top_k: 50,
        cp_top_k: 50,
        cp_top_p: 0.8,
        greedy: a.greedy,
        max_frames: a.frames,
        hf_chunked: a.hf_chunked,
        stream_frames: a.stream_frames,
        talker_batch: a.talker_batch,
        pcm16: false,
        play: false,
    };
    let mut sp = Speaker::load(Kernels::new(gpu.clone()), &m, a.prompt_len + 8, voice.options(a.seed.unwrap_or(1)))?;
    sp.set_thinker_limit(Some(a.tokens as usize));
    println!(
        "device: {} · model: {} · {}Talker + Code2Wav loaded in {:.1} s",
        gpu.caps().name,
        a.model.display(),
        if a.no_thinker { "(no Thinker) " } else { "Thinker + " },
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{} frames per run, {} Thinker tokens, prompt of {} tokens, {} sampling, {}",
        a.frames,
        a.tokens,
        a.prompt_len + 8,
        if a.greedy { "greedy" } else { "transformers'" },
        if a.hf_chunked {
            "300/25 chunked decode".to_string()
        } else {
            format!("streamed decode ({} frames per chunk)", a.stream_frames.max(1))
        }
    );
    let i = sp.talker.config.ids.clone();
    let body = (0..a.prompt_len).map(|j| (j * 7919 + 13) % 100_000);
    let ids: Vec<u32> = [i.im_start, i.user, 198]
        .into_iter()
        .chain(body)
        .chain([i.im_end, 198, i.im_start, i.assistant, 198])
        .collect();
    let fake: Vec<u32> = (0..a.tokens.max(1)).map(|j| (j * 104_729 + 7) % 100_000).collect();
    for run in 0..=a.runs {
        let req = Instant::now();
        let (mut first, mut samples, mut err, mut g0_at) = (None, 0usize, None, None);
        let mut started = false;
        let mut on_pcm = |p: &[f32]| {
            first.get_or_insert_with(|| req.elapsed().as_secs_f64());
            samples += p.len();
        };
        let mut on_token = |id: u32| {
            // Synthetic weights may say <|im_end|> anywhere: speak every token.
            let id = if id == i.im_end { 198 } else { id };
            let r = if started {
                sp.on_token(&m, id, &mut on_pcm)
            } else {
                started = true;
                let g0 = req.elapsed().as_secs_f64();
                let r = sp.start(&m, &ids, None, id);
                g0_at = Some((g0, req.elapsed().as_secs_f64() - g0));
                r
            };
            match r {
                Ok(()) => true,
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        };
        let out = match thinker.as_mut() {
            Some(t) => {
                t.reset()?;
                t.generate(&ids, a.tokens as usize, &[], on_token)?
            }
            None => {
                fake.iter().take_while(|&&id| on_token(id)).count();
                fake.clone()
            }
        };
        if let Some(e) = err {
            return Err(e.into());
        }
        let thinker_s = req.elapsed().as_secs_f64();
        let frames_with_thinker = sp.codes().len();
        let s = sp.finish(&mut on_pcm)?;
        let total = req.elapsed().as_secs_f64();
        let audio = samples as f64 / SAMPLE_RATE as f64;
        let label = if run == 0 { "warm-up".to_string() } else { format!("run {run}") };
        println!(
            "{label}: request → first audio {:.0} ms (Thinker prefill + g0 {:.0} ms, Talker prompt + prefill {:.0} ms); {} frames = {:.2} s of audio in \
             {:.2} s → real-time factor {:.3} ({:.1} ms per frame); Thinker {} tokens done after {:.2} s with {} frames \
             made alongside; stop {:?}",
            first.unwrap_or(f64::NAN) * 1e3,
            g0_at.map_or(f64::NAN, |g| g.0) * 1e3,
            g0_at.map_or(f64::NAN, |g| g.1) * 1e3,
            s.frames,
            audio,
            total,
            total / audio.max(1e-9),
            total / s.frames.max(1) as f64 * 1e3,
            out.len(),
            thinker_s,
            frames_with_thinker,
            s.stop
        );
    }
    Ok(())
}
