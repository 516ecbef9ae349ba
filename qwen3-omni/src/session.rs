//! The library-level engine: load a model ([`Model::load`], with a progress callback that can
//! cancel) and hold a multi-turn conversation with it ([`Session`]), the history kept in the
//! Thinker's KV cache. The CLI's `chat` and the C API (`capi`) are both thin layers over this.
//!
//! Cancellation: [`Session::cancel_handle`] gives an `Arc<AtomicBool>` that another thread (or a
//! callback) may set at any time; generation checks it before every step and between prefill
//! chunks, so it stops within one step. The reply so far stays in the history.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions, Profile};
use qwen3_omni_vk::EngineOptions;
use qwen3_omni_vk::{Kernels, SampleParams, SAMPLE_MAX_K};

use crate::audio::gpu::GpuAudioTower;
use crate::audio::MelExtractor;
use crate::chat::{render, ChatError, Item, Message, Role};
use crate::model_file::{ModelError, ModelFile};
use crate::thinker::gpu::{GenError, GpuThinker, PREFILL_CHUNK};
use crate::tokenizer::{Tokenizer, TokenizerError};

mod complete;
pub use complete::{Completion, Prefilled};

/// What can go wrong loading a model or generating.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Gen(#[from] GenError),
    #[error(transparent)]
    Gpu(#[from] qwen3_omni_vk::Error),
    #[error("{path}: no tokenizer.huggingface.json in the metadata (quantize with tokenizer.json beside config.json)")]
    NoTokenizer { path: PathBuf },
    #[error("loading was cancelled")]
    LoadCancelled,
    #[error("the prompt ({tokens} tokens, {used} already in the context) does not fit the context size {ctx}")]
    PromptTooLong { tokens: usize, used: u32, ctx: u32 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{path}: this model file has no AudioTower, so it takes no audio input")]
    NoAudioTower { path: PathBuf },
}

/// How to open the GPU and size the model's context.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Vulkan device index (see `qwen3-omni-vk devices`); `None`: the runtime's choice
    /// (`QWEN3VK_DEVICE`, else the best suitable device).
    pub device: Option<usize>,
    /// KV cache positions (clamped to the model's maximum).
    pub ctx_size: u32,
    /// Khronos validation layer on (tests).
    pub validation: bool,
    /// On-disk pipeline cache directory; `None`: none.
    pub pipeline_cache: Option<PathBuf>,
    /// Every other engine choice (its `gpu.device`, `gpu.validation` and `gpu.pipeline_cache` give
    /// way to the three fields above).
    pub engine: EngineOptions,
}

impl Default for LoadOptions {
    /// [`EngineOptions::default`]; a 4096-position context.
    fn default() -> Self {
        Self::from_engine(EngineOptions::default())
    }
}

impl LoadOptions {
    /// `engine`'s device, validation and pipeline cache; a 4096-position context.
    pub fn from_engine(engine: EngineOptions) -> Self {
        let g = &engine.gpu;
        LoadOptions {
            device: g.device,
            ctx_size: 4096,
            validation: g.validation,
            pipeline_cache: g.pipeline_cache.clone(),
            engine,
        }
    }
}

/// The stage a load is in, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStage {
    /// Mapping the file and reading the tokenizer.
    Open,
    /// Opening the GPU (pipelines are built lazily, on first use).
    Device,
    /// Uploading the Thinker's weights: `done` of `total` layers.
    Thinker,
    /// Uploading the AudioTower's weights (models with audio input).
    AudioTower,
}

/// A progress report: `done` of `total` units of `stage`.
#[derive(Debug, Clone, Copy)]
pub struct LoadProgress {
    pub stage: LoadStage,
    pub done: u32,
    pub total: u32,
}

impl LoadProgress {
    /// Overall fraction in [0, 1] (the weights dominate).
    pub fn fraction(&self) -> f32 {
        let part = if self.total == 0 { 1.0 } else { self.done as f32 / self.total as f32 };
        match self.stage {
            LoadStage::Open => 0.05 * part,
            LoadStage::Device => 0.05 + 0.05 * part,
            LoadStage::Thinker => 0.1 + 0.8 * part,
            LoadStage::AudioTower if self.done >= self.total => 1.0,
            LoadStage::AudioTower => 0.9 + 0.1 * part,
        }
    }
}

/// The unwinding payload that carries a cancel out of the Thinker's weight loader, whose progress
/// callback cannot return a verdict; caught in [`Model::load`] (never escapes it).
struct LoadCancelled;

/// A loaded model: the file, its tokenizer, the Thinker on the GPU with its KV cache, and the
/// AudioTower when the file has one.
pub struct Model {
    pub file: ModelFile,
    pub tokenizer: Tokenizer,
    thinker: GpuThinker,
    audio: Option<GpuAudioTower>,
    path: PathBuf,
    ctx: u32,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).field("ctx", &self.ctx_size()).finish()
    }
}

impl Model {
    /// Loads `path` (a Q8_0 GGUF from `qwen3-omni-vk quantize`, tokenizer in its metadata). The
    /// progress callback is called at each stage and after every Thinker layer; returning false
    /// cancels the load ([`SessionError::LoadCancelled`]) and frees what was placed so far.
    pub fn load(
        path: &Path,
        opts: &LoadOptions,
        mut progress: impl FnMut(LoadProgress) -> bool,
    ) -> Result<Model, SessionError> {
        let mut report = |stage, done, total| {
            if progress(LoadProgress { stage, done, total }) {
                Ok(())
            } else {
                Err(SessionError::LoadCancelled)
            }
        };
        report(LoadStage::Open, 0, 1)?;
        let file = ModelFile::open(path)?;
        // Every component's config, before the device is opened (errors name the field).
        crate::config_check::check_model(&file)?;
        let json = file
            .gguf
            .header
            .get("tokenizer.huggingface.json")
            .and_then(|v| v.as_str())
            .ok_or_else(|| SessionError::NoTokenizer { path: path.to_path_buf() })?;
        let tokenizer = Tokenizer::from_json(json, path)?;
        report(LoadStage::Open, 1, 1)?;
        report(LoadStage::Device, 0, 1)?;
        let gpu = Gpu::new(&GpuOptions {
            validation: opts.validation,
            device: opts.device,
            pipeline_cache: opts.pipeline_cache.clone(),
            ..opts.engine.gpu.clone()
        })?;
        // The memory plan of the Thinker and the AudioTower, on the device's heaps and budgets as
        // they are now: a model that does not fit is refused here, before any buffer exists.
        let m = &opts.engine.models;
        let po = crate::memory_plan::PlanOptions::all(opts.ctx_size, m.cache_type).only(true, true, false, false);
        crate::memory_plan::plan_on(
            &gpu,
            &file,
            &crate::memory_plan::PlanOptions { router_fold: m.thinker.router_fold, ..po },
        )?;
        report(LoadStage::Device, 1, 1)?;
        let k = Kernels::from_engine(gpu, &opts.engine)?;
        // The weight loader reports per layer but cannot be told to stop: a cancel unwinds out of
        // it with a private payload (buffers placed so far are freed on the way) and is caught here.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            GpuThinker::load(k, &file, opts.ctx_size, |done, total| {
                if report(LoadStage::Thinker, done, total).is_err() {
                    std::panic::resume_unwind(Box::new(LoadCancelled));
                }
            })
        }));
        let thinker = match loaded {
            Ok(r) => r?,
            Err(payload) if payload.is::<LoadCancelled>() => return Err(SessionError::LoadCancelled),
            Err(payload) => std::panic::resume_unwind(payload),
        };
        // `GpuThinker::load` sizes its cache like this.
        let ctx = opts.ctx_size.clamp(1, thinker.config.max_positions);
        // The AudioTower where the file has its weights (its config was checked above).
        let audio = if file.gguf.header.tensors.iter().any(|t| t.name.starts_with("thinker.audio_tower.")) {
            let gpu = thinker.kernels().gpu().clone();
            let mut cancelled = false;
            let mut tower = GpuAudioTower::load(&gpu, &file, |done, total| {
                cancelled |= report(LoadStage::AudioTower, done, total).is_err();
            })?;
            tower.matmul = crate::audio::gpu::AudioMatmul::choose(gpu.caps(), &opts.engine.models.audio);
            if cancelled {
                return Err(SessionError::LoadCancelled);
            }
            Some(tower)
        } else {
            report(LoadStage::AudioTower, 1, 1)?;
            None
        };
        Ok(Model { file, tokenizer, thinker, audio, path: path.to_path_buf(), ctx })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn gpu(&self) -> &Gpu {
        self.thinker.kernels().gpu()
    }

    /// A new compute-library handle on the model's GPU with the options it was loaded with (for
    /// the speech models).
    pub fn new_kernels(&self) -> Kernels {
        self.thinker.kernels().sibling()
    }

    /// KV cache positions.
    pub fn ctx_size(&self) -> u32 {
        self.ctx
    }

    /// Whether the model takes audio input (its file has an AudioTower).
    pub fn has_audio_input(&self) -> bool {
        self.audio.is_some()
    }

    pub fn thinker(&self) -> &GpuThinker {
        &self.thinker
    }

    /// Direct access for tools and tests; a [`Session`] over this model assumes it alone moves
    /// the cache.
    pub fn thinker_mut(&mut self) -> &mut GpuThinker {
        &mut self.thinker
    }
}

/// How tokens are chosen (on the GPU). Defaults: greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off; at most [`SAMPLE_MAX_K`].
    pub top_k: u32,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// > 0; 1 = off.
    pub repeat_penalty: f32,
    /// `None`: from the clock.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, repeat_penalty: 1.0, seed: None }
    }
}

impl Sampling {
    /// Checks the ranges; names the offending field.
    pub fn validate(&self) -> Result<(), SessionError> {
        let bad = |what: String| Err(SessionError::InvalidArgument(what));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be finite and ≥ 0", self.temperature));
        }
        if self.top_k > SAMPLE_MAX_K {
            return bad(format!("top_k {} is over the supported {SAMPLE_MAX_K}", self.top_k));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(format!("repeat_penalty {} must be finite and > 0", self.repeat_penalty));
        }
        Ok(())
    }

    fn params(&self) -> SampleParams {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
        });
        SampleParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repeat_penalty,
            seed,
            ..Default::default()
        }
    }
}

/// A conversation's settings.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// A system message, rendered before the first user turn.
    pub system: Option<String>,
    pub sampling: Sampling,
}

/// One piece of a user message.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    /// Mono float PCM at 16 kHz.
    Audio(Vec<f32>),
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model ended its turn (`<|im_end|>`).
    EndOfTurn,
    /// `max_tokens` reached.
    MaxTokens,
    /// The cancel flag was set, or the delta callback returned false.
    Cancelled,
    /// The context is full.
    ContextFull,
}

/// One streamed piece of a reply.
#[derive(Debug, Clone, Copy)]
pub struct Delta<'a> {
    /// The token this text completes; `None` for the final flush of held-back bytes.
    pub token: Option<u32>,
    /// Newly completed text (may be empty: a token can end inside a UTF-8 character).
    pub text: &'a str,
}

/// A finished reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The reply's tokens as delivered (without `<|im_end|>`).
    pub tokens: Vec<u32>,
    /// Every token sampled this turn, in order: all but the last were fed to the Thinker (the
    /// last may be `<|im_end|>`, or one sampled after a cancel and never delivered).
    pub sampled: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
    /// Tokens fed for this turn (closing the previous turn, the new user message, the
    /// assistant header).
    pub prompt_tokens: usize,
    /// Seconds from the call to the first new token.
    pub prompt_secs: f64,
    /// Seconds from the first new token to the end.
    pub gen_secs: f64,
}

impl Reply {
    /// Prompt tokens per second.
    pub fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_secs.max(1e-9)
    }
    /// Generated tokens per second (the first token comes from the prompt's pass).
    pub fn gen_tok_s(&self) -> f64 {
        self.tokens.len().saturating_sub(1) as f64 / self.gen_secs.max(1e-9)
    }
}

/// A multi-turn conversation over one [`Model`]: each turn feeds only the new tokens; earlier
/// turns stay in the KV cache.
pub struct Session {
    model: Model,
    cfg: SessionConfig,
    cancel: Arc<AtomicBool>,
    /// A delivered reply token that was sampled but never fed (the last one of a reply that did
    /// not end with `<|im_end|>`): fed at the start of the next turn so the history holds
    /// exactly what the user saw.
    pending: Vec<u32>,
    /// Whether the cache holds a conversation (the next turn must close the previous one).
    started: bool,
    /// The ids at the cache's positions 0..len (what [`Session::complete`] reuses the longest
    /// common prefix of); emptied when it cannot be known (then nothing is reused).
    fed: Vec<u32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model", &self.model).field("used", &self.context_used()).finish()
    }
}

impl Session {
    /// Starts a conversation (the model's cache is forgotten). Invalid sampling settings drop the
    /// model: check them first with [`Sampling::validate`] when that matters.
    pub fn new(mut model: Model, cfg: SessionConfig) -> Result<Session, SessionError> {
        cfg.sampling.validate()?;
        model.thinker.reset()?;
        model.thinker.set_sampling(cfg.sampling.params());
        Ok(Session {
            model,
            cfg,
            cancel: Arc::new(AtomicBool::new(false)),
            pending: Vec::new(),
            started: false,
            fed: Vec::new(),
        })
    }

    /// Ends the conversation and gives the model back.
    pub fn into_model(self) -> Model {
        self.model
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The flag [`Session::generate`] checks before every step: set it (from any thread, or from
    /// the delta callback) to stop the current reply. Each `generate` clears it when it starts.
    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Stops the current reply within one step (same as setting [`Session::cancel_handle`]).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// New sampling settings, from the next reply on (the seed's random stream restarts).
    pub fn set_sampling(&mut self, s: Sampling) -> Result<(), SessionError> {
        s.validate()?;
        self.cfg.sampling = s;
        self.model.thinker.set_sampling(s.params());
        Ok(())
    }

    /// Sets the system message; it takes effect after the next [`Session::reset`] (or now, if
    /// nothing has been said yet).
    pub fn set_system(&mut self, system: Option<String>) {
        self.cfg.system = system;
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) -> Result<(), SessionError> {
        self.model.thinker.reset()?;
        self.pending.clear();
        self.started = false;
        self.fed.clear();
        Ok(())
    }

    /// Positions of the context in use.
    pub fn context_used(&self) -> u32 {
        self.model.thinker.len()
    }

    pub fn context_size(&self) -> u32 {
        self.model.ctx_size()
    }

    /// The token ids the next turn feeds for `user` (text messages): the previous turn's close,
    /// the user message and the assistant header (what a speech follower needs before the turn).
    pub fn turn_ids(&self, user: &[Message]) -> Result<Vec<u32>, SessionError> {
        let tok = &self.model.tokenizer;
        let mut msgs = Vec::new();
        if !self.started {
            if let Some(s) = &self.cfg.system {
                msgs.push(Message::text(Role::System, s.clone()));
            }
        }
        msgs.extend_from_slice(user);
        let body = render(tok, &msgs, true)?.ids;
        if !self.started {
            return Ok(body);
        }
        // The previous reply's last token was sampled but not fed: close that turn.
        let mut ids = self.pending.clone();
        ids.push(tok.special_ids().im_end);
        ids.extend(tok.encode("\n")?);
        ids.extend(body);
        Ok(ids)
    }

    /// Answers one user message (text): feeds the turn, then streams the reply through
    /// `on_delta` (return false to stop) until `<|im_end|>`, `max_tokens`, a full context, or a
    /// cancel. A cancelled reply stays in the history as far as it was delivered.
    pub fn generate(
        &mut self,
        user_text: &str,
        max_tokens: usize,
        on_delta: impl FnMut(Delta<'_>) -> bool,
    ) -> Result<Reply, SessionError> {
        self.generate_messages(&[Message::text(Role::User, user_text.to_string())], max_tokens, on_delta)
    }

    /// [`Session::generate`] for prepared user messages (text items only: audio goes through
    /// [`Session::generate_inputs`], which has the samples).
    pub fn generate_messages(
        &mut self,
        user: &[Message],
        max_tokens: usize,
        on_delta: impl FnMut(Delta<'_>) -> bool,
    ) -> Result<Reply, SessionError> {
        if user.iter().any(|m| m.items.iter().any(|i| !matches!(i, Item::Text(_)))) {
            return Err(SessionError::InvalidArgument(
                "audio items need their samples: use Session::generate_inputs".into(),
            ));
        }
        self.turn(user, None, max_tokens, |_, _| {}, on_delta)
    }

    /// Answers one user message made of text and 16 kHz audio pieces, in order: the audio goes
    /// through the AudioTower and its embeddings replace the message's audio placeholders.
    pub fn generate_inputs(
        &mut self,
        inputs: &[Input],
        max_tokens: usize,
        on_delta: impl FnMut(Delta<'_>) -> bool,
    ) -> Result<Reply, SessionError> {
        self.generate_inputs_observed(inputs, max_tokens, |_, _| {}, on_delta)
    }

    /// [`Session::generate_inputs`] telling `on_turn` the turn's ids (audio placeholders included)
    /// and the context length before them, just before they are fed (what a speech follower such
    /// as [`crate::speech::TurnSpeech::begin`] needs).
    pub fn generate_inputs_observed(
        &mut self,
        inputs: &[Input],
        max_tokens: usize,
        on_turn: impl FnOnce(&[u32], u32),
        on_delta: impl FnMut(Delta<'_>) -> bool,
    ) -> Result<Reply, SessionError> {
        let (items, mels) = Self::items_and_mels(inputs)?;
        let audio = self.audio_embeddings(&mels)?;
        self.turn(&[Message::new(Role::User, items)], audio, max_tokens, on_turn, on_delta)
    }

    /// The AudioTower's embeddings of `mels`, joined into one buffer of rows for the prefill
    /// (None without audio).
    fn audio_embeddings(
        &mut self,
        mels: &[crate::audio::LogMel],
    ) -> Result<Option<(qwen3_omni_vk::vk_runtime::Buffer, u32)>, SessionError> {
        if mels.is_empty() {
            return Ok(None);
        }
        let Model { thinker, audio, path, .. } = &mut self.model;
        let tower = audio.as_mut().ok_or_else(|| SessionError::NoAudioTower { path: path.clone() })?;
        let k = thinker.kernels();
        let mut embeds = Vec::with_capacity(mels.len());
        for mel in mels {
            embeds.push(tower.forward(k, &mel.data, mel.frames as u32)?);
        }
        // One buffer of rows for the prefill: the single embedding as it is, several joined.
        let rows: u32 = embeds.iter().map(|e| e.tokens).sum();
        let buf = if embeds.len() == 1 {
            embeds.pop().map(|e| e.buf)
        } else {
            let mut all = Vec::new();
            for e in &embeds {
                all.extend(e.read()?);
            }
            Some(k.gpu().buffer_from("audio embeddings", &all, qwen3_omni_vk::vk_runtime::MemoryIntent::Upload)?)
        };
        Ok(buf.map(|b| (b, rows)))
    }

    /// Mel features of the 16 kHz audio pieces of `inputs` (checked: samples, finite), and the
    /// message items they stand for.
    fn items_and_mels(inputs: &[Input]) -> Result<(Vec<Item>, Vec<crate::audio::LogMel>), SessionError> {
        let mut items = Vec::new();
        let mut mels = Vec::new();
        for i in inputs {
            match i {
                Input::Text(t) => items.push(Item::text(t.clone())),
                Input::Audio(pcm) => {
                    if pcm.is_empty() {
                        return Err(SessionError::InvalidArgument("an audio input has no samples".into()));
                    }
                    if let Some((i, v)) = crate::audio::first_non_finite(pcm) {
                        return Err(SessionError::InvalidArgument(format!(
                            "audio input {}: sample {i} is {v}; audio samples must be finite numbers",
                            mels.len() + 1
                        )));
                    }
                    let mel = MelExtractor::new(128).compute(pcm);
                    items.push(Item::audio_frames(mel.frames));
                    mels.push(mel);
                }
            }
        }
        Ok((items, mels))
    }

    fn turn(
        &mut self,
        user: &[Message],
        audio: Option<(qwen3_omni_vk::vk_runtime::Buffer, u32)>,
        max_tokens: usize,
        on_turn: impl FnOnce(&[u32], u32),
        mut on_delta: impl FnMut(Delta<'_>) -> bool,
    ) -> Result<Reply, SessionError> {
        self.cancel.store(false, Ordering::SeqCst);
        let start = Instant::now();
        let ids = self.turn_ids(user)?;
        let t0 = self.model.thinker.len();
        let ctx = self.context_size();
        if t0 as usize + ids.len() + 1 > ctx as usize {
            return Err(SessionError::PromptTooLong { tokens: ids.len(), used: t0, ctx });
        }
        on_turn(&ids, t0);
        let result = self.run_turn(&ids, audio.as_ref().map(|(b, r)| (b, *r)), max_tokens, &mut on_delta, start);
        self.track_fed(t0, &ids, &result);
        if result.is_err() || matches!(result, Ok(None)) {
            // A failed turn, or one cancelled before its reply began, leaves no trace: the cache
            // and the pending token are as before.
            let rolled_back = self.model.thinker.reset_to(t0);
            if let (Ok(_), Err(e)) = (&result, rolled_back) {
                return Err(e.into());
            }
        }
        match result? {
            Some(r) => Ok(r),
            None => Ok(Reply {
                tokens: Vec::new(),
                sampled: Vec::new(),
                text: String::new(),
                stop: StopReason::Cancelled,
                prompt_tokens: ids.len(),
                prompt_secs: start.elapsed().as_secs_f64(),
                gen_secs: 0.0,
            }),
        }
    }

    /// Keeps [`Session::fed`] in step after a turn that fed `ids` from position `t0`: the prompt
    /// and every sampled token but the last were fed; a failed or empty turn is rolled back to
    /// `t0`. Anything else that does not add up forgets the ids (nothing is reused then).
    fn track_fed(&mut self, t0: u32, ids: &[u32], result: &Result<Option<Reply>, SessionError>) {
        if self.fed.len() != t0 as usize {
            self.fed.clear();
            return;
        }
        match result {
            Ok(Some(r)) => {
                self.fed.extend_from_slice(ids);
                self.fed.extend_from_slice(&r.sampled[..r.sampled.len().saturating_sub(1)]);
                if self.fed.len() != self.model.thinker.len() as usize {
                    self.fed.clear();
                }
            }
            _ => self.fed.truncate(t0 as usize),
        }
    }

    /// Feeds `ids` and generates; `None` when cancelled before the first reply token (the caller
    /// rolls the cache back).
    fn run_turn(
        &mut self,
        ids: &[u32],
        audio: Option<(&qwen3_omni_vk::vk_runtime::Buffer, u32)>,
        max_tokens: usize,
        on_delta: &mut dyn FnMut(Delta<'_>) -> bool,
        start: Instant,
    ) -> Result<Option<Reply>, SessionError> {
        let cancel = self.cancel.clone();
        let cancelled = || cancel.load(Ordering::SeqCst);
        let ctx = self.model.ctx;
        let Model { thinker, tokenizer, .. } = &mut self.model;
        let im_end = tokenizer.special_ids().im_end;
        let audio_pad = tokenizer.special_ids().audio_pad;
        // Long text prompts: all but the last chunk through `prefill`, checking the cancel flag in
        // between; `generate` takes the rest (the whole prompt when it fits one chunk). A prompt
        // with audio goes whole through `prefill_with_audio`.
        let chunk = PREFILL_CHUNK as usize;
        let head = if audio.is_some() { 0 } else { (ids.len().saturating_sub(1) / chunk) * chunk };
        for part in ids[..head].chunks(chunk) {
            if cancelled() {
                return Ok(None);
            }
            thinker.prefill(part)?;
        }
        if cancelled() {
            return Ok(None);
        }
        // Room for the reply: every token but the last is fed back, and the last position is kept
        // free (GpuThinker::generate's two-in-flight path reads the token sampled at position p
        // from the history at p + 1, which must exist).
        let room = (ctx as usize).saturating_sub(thinker.len() as usize + ids.len() - head);
        let max_new = max_tokens.min(room);
        let mut dec = tokenizer.stream_decoder(true);
        let mut text = String::new();
        let mut delivered = 0usize;
        let mut user_stop = false;
        let mut was_cancelled = false;
        let mut gen_start = None;
        let mut on_token = |id: u32| {
            gen_start.get_or_insert_with(Instant::now);
            if cancelled() {
                was_cancelled = true;
                return false;
            }
            let piece = dec.push(id);
            text.push_str(&piece);
            delivered += 1;
            if !on_delta(Delta { token: Some(id), text: &piece }) {
                user_stop = true;
                return false;
            }
            true
        };
        let out = match audio {
            None => thinker.generate(&ids[head..], max_new, &[im_end], &mut on_token)?,
            Some((buf, rows)) => {
                // The same contract as `generate`: every token but the last is fed.
                let first = thinker.prefill_with_audio(ids, buf, rows, audio_pad)?;
                let mut out = Vec::new();
                if max_new > 0 {
                    out.push(first);
                    if first != im_end && on_token(first) && max_new > 1 {
                        out.extend(thinker.generate(&[first], max_new - 1, &[im_end], &mut on_token)?);
                    }
                }
                out
            }
        };
        let tail = dec.finish();
        if !tail.is_empty() {
            text.push_str(&tail);
            on_delta(Delta { token: None, text: &tail });
        }
        let prompt_secs = gen_start.map(|g| g.duration_since(start).as_secs_f64()).unwrap_or(0.0);
        let gen_secs = gen_start.map(|g| g.elapsed().as_secs_f64()).unwrap_or(0.0);
        let ended = out.last() == Some(&im_end);
        let stop = if ended {
            StopReason::EndOfTurn
        } else if was_cancelled || user_stop {
            StopReason::Cancelled
        } else if out.len() >= max_tokens {
            StopReason::MaxTokens
        } else {
            StopReason::ContextFull
        };
        // Every token of `out` but the last was fed; the last is pending unless it ended the turn
        // or was never delivered (cancelled before it was shown).
        let tokens: Vec<u32> = out[..delivered].to_vec();
        self.pending.clear();
        if !ended && delivered == out.len() {
            if let Some(&last) = out.last() {
                self.pending.push(last);
            }
        }
        self.started = true;
        Ok(Some(Reply { tokens, sampled: out, text, stop, prompt_tokens: ids.len(), prompt_secs, gen_secs }))
    }

    /// Times one decode step per kernel at the current position, then forgets it (`--profile`).
    pub fn profile_step(&mut self) -> Result<Option<Profile>, SessionError> {
        let ctx = self.model.ctx;
        let t = &mut self.model.thinker;
        if t.len() >= ctx {
            return Ok(None);
        }
        let im_end = self.model.tokenizer.special_ids().im_end;
        let len = t.len();
        let (_, p) = t.step(im_end, true)?;
        t.reset_to(len)?;
        Ok(Some(p))
    }
}
