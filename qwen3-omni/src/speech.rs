//! Speech out (spec §6.6, §7.6, §8(c)): a [`Speaker`] owns the Talker (with its code predictor) and
//! Code2Wav and turns a Thinker reply into 24 kHz audio while the reply is still being generated.
//!
//! * [`Speaker::start`] as soon as the Thinker's first generated token g0 exists (the Talker prompt
//!   of spec §6.2 needs only the prompt and g0);
//! * [`Speaker::on_token`] with each further Thinker token: the Talker runs as many frames as the
//!   text known so far allows, and every frame goes through Code2Wav at once;
//! * [`Speaker::finish`] when the Thinker stops: tts_eos, then tts_pad, until codec EOS or the frame
//!   cap.
//!
//! PCM reaches the caller's `on_pcm` callback as it is made. [`Decode::Stream`] (the default) decodes
//! every frame incrementally: the first samples come after one frame and the concatenation of all
//! chunks is exactly one full Code2Wav decode of the codes (Code2Wav is causal, spec §7.5).
//! [`Decode::HfChunked`] reproduces transformers' `chunked_decode(300, 25)` instead (555 samples
//! dropped per chunk boundary, chunks emitted every 300 frames).
//!
//! Which tokens are spoken follows transformers (spec §6.2, §11.5): g1 … g_last before
//! `<|im_end|>`, and when the Thinker stops for another reason (its length cap, a cancel) the last
//! generated token is not spoken. So a token is handed to the Talker once the next one exists, or at
//! once when the Thinker's cap is known ([`Speaker::set_thinker_limit`]) and the token is not the one
//! reaching it.
//!
//! A [`Speaker`] can be cancelled from another thread through [`Speaker::cancel_flag`] (checked
//! between frames).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use qwen3_omni_vk::Kernels;

use crate::code2wav::{Code2Wav, Code2WavError};
use crate::model_file::{ModelError, ModelFile};
use crate::talker::{GpuTalker, TalkerError, TalkerSampling};
use crate::thinker::gpu::GpuThinker;

/// How frames become audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Incremental decode, exactly equal to one full decode: the first chunk after one frame, then
    /// one every `frames` frames.
    Stream { frames: usize },
    /// transformers' `chunked_decode(chunk, left_context)` (300/25 in `generate`): a chunk every
    /// `chunk` frames, each decoded alone with `left_context` frames before it.
    HfChunked { chunk: usize, left_context: usize },
}

/// A Code2Wav window costs about the same whatever its length up to a few frames (13–18 ms on an
/// H200, docs/perf.md): after the first frame, decode 4 at a time.
impl Default for Decode {
    fn default() -> Self {
        Decode::Stream { frames: 4 }
    }
}

impl Decode {
    /// transformers' 300/25 chunking.
    pub fn hf() -> Self {
        Decode::HfChunked { chunk: crate::code2wav::HF_CHUNK_FRAMES, left_context: crate::code2wav::HF_LEFT_CONTEXT }
    }
}

/// Settings of a [`Speaker`].
#[derive(Debug, Clone)]
pub struct SpeechOptions {
    /// "ethan" (default), "chelsie", "aiden".
    pub voice: String,
    pub sampling: TalkerSampling,
    /// Most frames (80 ms each) per reply.
    pub max_frames: u32,
    pub decode: Decode,
    /// While the Thinker still streams, wait until this many frames' worth of text is known and run
    /// them with one recorded Talker frame replayed (the first frame runs at once). 1 = a frame per
    /// Thinker token, each recorded anew.
    pub talker_batch: usize,
}

impl Default for SpeechOptions {
    fn default() -> Self {
        SpeechOptions {
            voice: "ethan".into(),
            sampling: TalkerSampling::sampled(0),
            max_frames: 1000,
            decode: Decode::default(),
            talker_batch: 4,
        }
    }
}

/// Errors of speech generation.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error(transparent)]
    Talker(#[from] TalkerError),
    #[error(transparent)]
    Code2Wav(#[from] Code2WavError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gpu(#[from] qwen3_omni_vk::Error),
    #[error("the Talker has {talker} code groups per frame but Code2Wav takes {code2wav}")]
    Groups { talker: u32, code2wav: u32 },
    #[error("the prompt has audio/image/video positions: the Thinker's hidden states for them are needed")]
    NeedHidden,
    #[error("no reply started: call start() first")]
    NotStarted,
    #[error(transparent)]
    Gen(#[from] crate::thinker::gpu::GenError),
    #[error("speech output: {0}")]
    Turn(String),
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    CodecEos,
    MaxFrames,
    Cancelled,
}

/// What one spoken reply produced.
#[derive(Debug, Clone)]
pub struct SpeechSummary {
    pub frames: usize,
    pub samples: usize,
    pub stop: StopReason,
    /// Seconds from `start` to the first PCM chunk (None: no audio).
    pub first_chunk_s: Option<f64>,
    /// Seconds from `start` to the end of `finish`.
    pub total_s: f64,
}

/// Why a model file cannot speak: it lacks the Talker's or Code2Wav's config, or their weights
/// (a Thinker-only conversion keeps the configs). `None` when it can.
pub fn speech_missing(file: &ModelFile, path: &std::path::Path) -> Option<String> {
    let missing = |what: &str, e: &dyn std::fmt::Display| {
        Some(format!("{}: this model file has no {what}, so it cannot speak ({e})", path.display()))
    };
    if let Err(e) = crate::talker::TalkerConfig::from_model(file) {
        return missing("Talker", &e);
    }
    if let Err(e) = crate::code2wav::Code2WavConfig::from_model(file) {
        return missing("Code2Wav", &e);
    }
    for (what, prefix) in [("Talker", "talker."), ("Code2Wav", "code2wav.")] {
        if !file.gguf.header.tensors.iter().any(|t| t.name.starts_with(prefix)) {
            return missing(what, &format!("no {prefix}* tensors"));
        }
    }
    None
}

/// The Talker, code predictor and Code2Wav of one model, speaking one reply at a time.
pub struct Speaker {
    pub talker: GpuTalker,
    pub code2wav: Code2Wav,
    pub opts: SpeechOptions,
    cancel: Arc<AtomicBool>,
    /// A Thinker token held back until the next one shows it is not the last (see the module doc).
    held: Option<u32>,
    /// The Thinker's `max_new` when known: then only the token that hits it is held back.
    thinker_limit: Option<usize>,
    /// Thinker tokens seen this reply (g0 included).
    seen: usize,
    /// Trailing text tokens pushed to the Talker, and whether the text is complete.
    pushed: usize,
    text_done: bool,
    started: bool,
    done: Option<StopReason>,
    st: Audio,
}

/// The frames of the current reply and where their audio stands.
struct Audio {
    /// Every frame, `groups` codes each.
    codes: Vec<Vec<u32>>,
    /// Frames not yet handed to Code2Wav.
    pending: usize,
    /// HfChunked: the first frame not yet emitted.
    hf_start: usize,
    samples: usize,
    t0: Instant,
    first_chunk: Option<f64>,
}

/// Code2Wav frames per command buffer in streaming (the streamed pushes are small).
const C2W_MAX_FRAMES: u32 = 64;

impl Speaker {
    /// Loads the Talker (context for a user turn of up to `max_prompt` tokens plus
    /// `opts.max_frames` frames) and Code2Wav from `m`.
    pub fn load(k: Kernels, m: &ModelFile, max_prompt: u32, opts: SpeechOptions) -> Result<Speaker, SpeechError> {
        // Both configs and their pairing first: a malformed file is refused before any GPU work.
        let (tc, cc) = (crate::talker::TalkerConfig::from_model(m)?, crate::code2wav::Code2WavConfig::from_model(m)?);
        crate::config_check::check_speech_pair(&tc, &cc).map_err(|e| e.into_model(m))?;
        let ctx = max_prompt + 16 + opts.max_frames + 2;
        // Both speech components planned on the memory left, before either allocates.
        let po = crate::memory_plan::PlanOptions::all(ctx, k.model_options().cache_type);
        crate::memory_plan::plan_on(
            k.gpu(),
            m,
            &crate::memory_plan::PlanOptions { talker_ctx: ctx, ..po.only(false, false, true, true) },
        )?;
        let mut k2 = k.sibling();
        k2.set_matvec_path(k.matvec_path())?;
        let talker = GpuTalker::load(k, m, ctx, |_, _| {})?;
        let code2wav = Code2Wav::load(k2, m, C2W_MAX_FRAMES)?;
        if talker.config.groups != code2wav.config.num_quantizers {
            return Err(SpeechError::Groups { talker: talker.config.groups, code2wav: code2wav.config.num_quantizers });
        }
        Ok(Speaker {
            talker,
            code2wav,
            opts,
            cancel: Arc::new(AtomicBool::new(false)),
            held: None,
            thinker_limit: None,
            seen: 0,
            pushed: 0,
            text_done: false,
            started: false,
            done: None,
            st: Audio { codes: Vec::new(), pending: 0, hf_start: 0, samples: 0, t0: Instant::now(), first_chunk: None },
        })
    }

    /// Set it (from any thread) to stop generation before the next frame; `start` clears it.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The frames of the current (or last) reply.
    pub fn codes(&self) -> &[Vec<u32>] {
        &self.st.codes
    }

    /// Samples emitted for the current reply.
    pub fn samples(&self) -> usize {
        self.st.samples
    }

    /// Starts a reply: the Talker prompt (spec §6.2) from the Thinker's prompt `ids` and its first
    /// generated token `g0`, then its prefill. `hs_accept` (`[ids.len(), thinker_hidden]`, the
    /// Thinker's hidden states after its accept layer) is needed only when the prompt has
    /// audio/image/video positions; a text prompt may pass `None`.
    pub fn start(&mut self, m: &ModelFile, ids: &[u32], hs_accept: Option<&[f32]>, g0: u32) -> Result<(), SpeechError> {
        let th = self.talker.config.thinker_hidden as usize;
        let zeros;
        let hs = match hs_accept {
            Some(h) => h,
            None => {
                if ids.iter().any(|id| self.talker.config.ids.multimodal.contains(id)) {
                    return Err(SpeechError::NeedHidden);
                }
                zeros = vec![0f32; ids.len() * th];
                &zeros
            }
        };
        self.cancel.store(false, Ordering::Relaxed);
        self.st =
            Audio { codes: Vec::new(), pending: 0, hf_start: 0, samples: 0, t0: Instant::now(), first_chunk: None };
        (self.held, self.done, self.pushed, self.text_done, self.seen) = (None, None, 0, false, 1);
        self.talker.set_sampling(self.opts.sampling);
        self.code2wav.reset()?;
        self.started = false;
        self.talker.start_from_thinker(m, ids, hs, g0, &self.opts.voice)?;
        self.started = true;
        Ok(())
    }

    /// The Thinker's next generated token (after g0). A stop token (`<|im_end|>`) ends the text:
    /// call [`Speaker::finish`] next. Runs the frames the text now allows, streaming their audio.
    pub fn on_token(&mut self, m: &ModelFile, id: u32, on_pcm: &mut dyn FnMut(&[f32])) -> Result<(), SpeechError> {
        if !self.started {
            return Err(SpeechError::NotStarted);
        }
        if id == self.talker.config.ids.im_end {
            if let Some(h) = self.held.take() {
                self.push(m, &[h])?;
            }
            self.talker.finish_text();
            self.text_done = true;
        } else if self.thinker_limit.is_some_and(|n| self.seen + 1 < n) {
            // Not the Thinker's last token (it stops at its cap after `n`): speak it at once.
            if let Some(h) = self.held.take() {
                self.push(m, &[h])?;
            }
            self.push(m, &[id])?;
        } else if let Some(h) = self.held.replace(id) {
            self.push(m, &[h])?;
        }
        self.seen += 1;
        self.run(on_pcm)
    }

    /// Tells the Speaker the Thinker's `max_new` (its length cap, g0 included) for the replies
    /// that follow: a token is then spoken as soon as it arrives, except the one that reaches the
    /// cap (transformers never speaks it). Without it (None, the default) each token waits for
    /// the next, costing one Thinker step of latency.
    pub fn set_thinker_limit(&mut self, max_new: Option<usize>) {
        self.thinker_limit = max_new;
    }

    /// Pushes a whole known text (`spoken` = g1, g2, … — g0 went to `start`) at once.
    pub fn push_text(
        &mut self,
        m: &ModelFile,
        spoken: &[u32],
        on_pcm: &mut dyn FnMut(&[f32]),
    ) -> Result<(), SpeechError> {
        if !self.started {
            return Err(SpeechError::NotStarted);
        }
        if let Some(h) = self.held.take() {
            self.push(m, &[h])?;
        }
        self.push(m, spoken)?;
        self.run(on_pcm)
    }

    fn push(&mut self, m: &ModelFile, ids: &[u32]) -> Result<(), SpeechError> {
        self.talker.push_tokens(m, ids)?;
        self.pushed += ids.len();
        Ok(())
    }

    /// Ends the text (a token still held back is dropped, as transformers does at the Thinker's
    /// length cap), runs the Talker through tts_eos / tts_pad until codec EOS, the frame cap or a
    /// cancel, and emits the rest of the audio.
    pub fn finish(&mut self, on_pcm: &mut dyn FnMut(&[f32])) -> Result<SpeechSummary, SpeechError> {
        if !self.started {
            return Err(SpeechError::NotStarted);
        }
        self.held = None;
        self.talker.finish_text();
        self.text_done = true;
        self.run(on_pcm)?;
        self.st.flush(&mut self.code2wav, self.opts.decode, true, on_pcm)?;
        let stop = self.done.unwrap_or(StopReason::CodecEos);
        self.started = false;
        Ok(SpeechSummary {
            frames: self.st.codes.len(),
            samples: self.st.samples,
            stop,
            first_chunk_s: self.st.first_chunk,
            total_s: self.st.t0.elapsed().as_secs_f64(),
        })
    }

    /// Talker frames while the text allows, each streamed through Code2Wav as soon as its chunk
    /// is due (one recorded Talker frame replayed for all frames of one call).
    fn run(&mut self, on_pcm: &mut dyn FnMut(&[f32])) -> Result<(), SpeechError> {
        loop {
            if self.done.is_some() {
                return Ok(());
            }
            if self.cancel.load(Ordering::Relaxed) {
                self.done = Some(StopReason::Cancelled);
                return Ok(());
            }
            if self.st.codes.len() >= self.opts.max_frames as usize {
                self.done = Some(StopReason::MaxFrames);
                return Ok(());
            }
            if self.talker.pending_code0() == self.talker.config.ids.codec_eos {
                self.done = Some(StopReason::CodecEos);
                return Ok(());
            }
            if !self.talker.ready() {
                return Ok(());
            }
            let known = self.pushed.saturating_sub(self.st.codes.len());
            if !self.text_done && self.st.first_chunk.is_some() && known < self.opts.talker_batch.max(1) {
                return Ok(()); // wait for more text: fewer recordings
            }
            let room = self.opts.max_frames as usize - self.st.codes.len();
            let (cancel, st, c2w, decode) = (&self.cancel, &mut self.st, &mut self.code2wav, self.opts.decode);
            let mut err = None;
            let made = self.talker.run_frames(room, |f| {
                st.codes.push(f.to_vec());
                st.pending += 1;
                if let Err(e) = st.flush(c2w, decode, false, on_pcm) {
                    err = Some(e);
                    return false;
                }
                !cancel.load(Ordering::Relaxed)
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            if made == 0 {
                return Ok(());
            }
        }
    }
}

impl Audio {
    /// Hands the frames whose chunk is due to Code2Wav (all of them when `last`).
    fn flush(
        &mut self,
        c2w: &mut Code2Wav,
        decode: Decode,
        last: bool,
        on_pcm: &mut dyn FnMut(&[f32]),
    ) -> Result<(), SpeechError> {
        match decode {
            Decode::Stream { frames } => {
                // The first chunk after one frame, then every `frames` frames.
                let due = if self.first_chunk.is_none() { 1 } else { frames.max(1) };
                if self.pending == 0 || (!last && self.pending < due) {
                    return Ok(());
                }
                let from = self.codes.len() - self.pending;
                let flat: Vec<u32> = self.codes[from..].concat();
                self.pending = 0;
                let pcm = c2w.push(&flat)?;
                self.emit(&pcm, on_pcm);
            }
            Decode::HfChunked { chunk, left_context } => {
                let chunk = chunk.max(1);
                while self.codes.len() - self.hf_start >= chunk || (last && self.codes.len() > self.hf_start) {
                    let end = (self.hf_start + chunk).min(self.codes.len());
                    let ctx = left_context.min(self.hf_start);
                    let flat: Vec<u32> = self.codes[self.hf_start - ctx..end].concat();
                    let wav = c2w.decode(&flat)?;
                    let spf = c2w.config.samples_per_frame() as usize;
                    let pcm = wav[(ctx * spf).min(wav.len())..].to_vec();
                    self.hf_start = end;
                    self.emit(&pcm, on_pcm);
                }
                self.pending = self.codes.len() - self.hf_start;
            }
        }
        Ok(())
    }

    fn emit(&mut self, pcm: &[f32], on_pcm: &mut dyn FnMut(&[f32])) {
        if pcm.is_empty() {
            return;
        }
        if self.first_chunk.is_none() {
            self.first_chunk = Some(self.t0.elapsed().as_secs_f64());
        }
        self.samples += pcm.len();
        on_pcm(pcm);
    }
}

/// A [`Speaker`] following a conversation's turns (chat `--audio-out` and the C API's
/// `pcm_callback` share it): the Talker starts at the Thinker's first token and runs alongside it
/// (from the Thinker's `on_token` callback). Call [`TurnSpeech::begin`] with the ids about to be
/// fed, [`TurnSpeech::token`] from `on_token`, [`TurnSpeech::end`] after `generate`.
pub struct TurnSpeech {
    pub sp: Speaker,
    /// Every id fed to the Thinker so far (its context), then the new prompt.
    history: Vec<u32>,
    prompt_end: usize,
    /// The context has audio/image/video positions: the Talker starts after the reply (it needs
    /// the Thinker's hidden states, which cannot be read while the Thinker generates).
    deferred: bool,
    /// The prompt's hidden states when the turn began after the prefill.
    hidden: Option<Vec<f32>>,
    started: bool,
    err: Option<SpeechError>,
}

impl TurnSpeech {
    pub fn new(sp: Speaker) -> TurnSpeech {
        TurnSpeech { sp, history: Vec::new(), prompt_end: 0, deferred: false, hidden: None, started: false, err: None }
    }

    /// The Speaker's cancel flag ([`Speaker::cancel_flag`]).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.sp.cancel_flag()
    }

    /// Forgets the conversation (the Thinker's context was reset).
    pub fn reset(&mut self) {
        self.history.clear();
        self.prompt_end = 0;
    }

    /// A new turn: `ids` are about to be fed to the Thinker, whose context holds `thinker_len`
    /// positions.
    pub fn begin(&mut self, ids: &[u32], thinker_len: u32) {
        if self.history.len() != thinker_len as usize {
            // Out of step (a reset conversation, say): speak from this turn alone.
            if !self.history.is_empty() {
                tracing::warn!("speech: {} ids tracked, the Thinker holds {thinker_len}", self.history.len());
            }
            self.history.clear();
        }
        self.history.extend_from_slice(ids);
        self.prompt_end = self.history.len();
        // Audio/image/video positions anywhere in the context (an earlier turn's too) need the
        // Thinker's hidden states, readable only once it stops.
        let mm = self.sp.talker.config.ids.multimodal;
        self.deferred = self.history.iter().any(|id| mm.contains(id));
        self.hidden = None;
        self.started = false;
        self.err = None;
    }

    /// A turn whose prompt the Thinker has just prefilled (`GpuThinker::prefill` or
    /// `prefill_with_audio`, nothing generated yet): the Talker can start at once from the prompt's
    /// hidden states, audio positions included. Then [`TurnSpeech::token`] from the first token.
    pub fn begin_after_prefill(&mut self, ids: &[u32], thinker: &GpuThinker) -> Result<(), SpeechError> {
        let len = thinker.len() as usize;
        if len < ids.len() {
            return Err(SpeechError::Turn(format!(
                "the Thinker holds {len} positions, fewer than the prompt's {}",
                ids.len()
            )));
        }
        self.begin(&[], 0);
        self.history = ids.to_vec();
        self.prompt_end = ids.len();
        self.deferred = false;
        let (_, hs, _) = thinker.hidden_states()?;
        let th = self.sp.talker.config.thinker_hidden as usize;
        let start = (len - ids.len()) * th;
        self.hidden = Some(hs[start..start + ids.len() * th].to_vec());
        Ok(())
    }

    /// A token from the Thinker's `on_token`; false (stop generating) after an error, which
    /// [`TurnSpeech::end`] returns.
    pub fn token(&mut self, m: &ModelFile, id: u32, on_pcm: &mut dyn FnMut(&[f32])) -> bool {
        if self.err.is_some() {
            return false;
        }
        if self.deferred || (!self.started && id == self.sp.talker.config.ids.im_end) {
            return true; // later, or an empty reply: nothing to say
        }
        let r = if self.started {
            self.sp.on_token(m, id, on_pcm)
        } else {
            self.started = true;
            self.sp.start(m, &self.history[..self.prompt_end], self.hidden.as_deref(), id)
        };
        if let Err(e) = r {
            self.err = Some(e);
            return false;
        }
        true
    }

    /// After `generate` returned `out` (`Reply::sampled`): finishes the speech. `stop`: the reply
    /// was cancelled, so the speech stops too (the audio made so far is flushed, no more frames
    /// run). None when nothing was spoken.
    pub fn end(
        &mut self,
        m: &ModelFile,
        thinker: &GpuThinker,
        out: &[u32],
        stop: bool,
        on_pcm: &mut dyn FnMut(&[f32]),
    ) -> Result<Option<SpeechSummary>, SpeechError> {
        // The Thinker's context now: the prompt and every generated token but the last.
        self.history.extend_from_slice(&out[..out.len().saturating_sub(1)]);
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        let im_end = self.sp.talker.config.ids.im_end;
        if self.deferred && !stop && !out.is_empty() && out[0] != im_end {
            let (_, hs, _) = thinker.hidden_states()?;
            let th = self.sp.talker.config.thinker_hidden as usize;
            let ids = &self.history[..self.prompt_end];
            if hs.len() < ids.len() * th {
                return Err(SpeechError::Turn("the Thinker's hidden states do not cover the prompt".into()));
            }
            let spoken: Vec<u32> = match out.iter().position(|&g| g == im_end) {
                Some(e) => out[..e].to_vec(),
                None => out[..out.len() - 1].to_vec(),
            };
            if spoken.is_empty() {
                return Ok(None);
            }
            self.sp.start(m, ids, Some(&hs[..ids.len() * th]), spoken[0])?;
            self.started = true;
            self.sp.push_text(m, &spoken[1..], on_pcm)?;
        }
        if !self.started {
            return Ok(None);
        }
        self.started = false;
        if stop {
            self.sp.cancel_flag().store(true, Ordering::SeqCst);
        }
        Ok(Some(self.sp.finish(on_pcm)?))
    }
}
