//! `speak` (read a text aloud into a WAV file and/or the sound card) and `bench-speech` (request →
//! first audio, real-time factor of Thinker + Talker + code predictor + Code2Wav streamed;
//! synthetic full-size GGUFs welcome).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use qwen3_omni::chat::{render, Message, Role};
use qwen3_omni::code2wav::wav::SAMPLE_RATE;
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::speech::Speaker;
use qwen3_omni::thinker::gpu::GpuThinker;

use crate::common::{clock_seed, demo_model, tokenizer_of};
use crate::speech_out::{summary_line, AudioSink, VoiceArgs};

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
    a.voice.check()?;
    if let Some(o) = &a.output {
        crate::check::output("-o/--output", o)?;
    }
    let path = match &a.model {
        Some(p) => p.clone(),
        None => demo_model()?,
    };
    let m = ModelFile::open(&path)?;
    a.voice.check_voice(&m, &path)?;
    let tok = tokenizer_of(&m, &path)?;
    let text = a.prompt.trim();
    if text.is_empty() {
        bail!("-p: the text to speak is empty");
    }
    let ids = render(&tok, &[Message::text(Role::User, text.to_string())], true)?.ids;
    let reply = tok.encode(text)?;
    let gpu = crate::common::open_gpu(a.device)?;
    eprintln!("device: {} · model: {}", gpu.caps().name, path.display());
    let t0 = Instant::now();
    let mut sp = Speaker::load(
        crate::common::kernels(gpu)?,
        &m,
        ids.len() as u32,
        a.voice.options(a.seed.unwrap_or_else(clock_seed)),
    )?;
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
    let gpu = crate::common::open_gpu(a.device)?;
    let t0 = Instant::now();
    let ctx = a.prompt_len + 8 + a.tokens;
    let mut thinker = if a.no_thinker {
        None
    } else {
        Some(GpuThinker::load(crate::common::kernels(gpu.clone())?, &m, ctx, |_, _| {})?)
    };
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
    let mut sp =
        Speaker::load(crate::common::kernels(gpu.clone())?, &m, a.prompt_len + 8, voice.options(a.seed.unwrap_or(1)))?;
    sp.set_thinker_limit(Some(a.tokens as usize));
    outln!(
        "device: {} · model: {} · {}Talker + Code2Wav loaded in {:.1} s",
        gpu.caps().name,
        a.model.display(),
        if a.no_thinker { "(no Thinker) " } else { "Thinker + " },
        t0.elapsed().as_secs_f64()
    );
    outln!(
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
        outln!(
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
