//! The C API (`include/qwen3_omni_vk.h`, generated from this file by cbindgen): embed the engine
//! in a C or C++ program through the static library, the way llama.h and whisper.h are used.
//!
//! # Shape
//! A model is loaded once (`qwen3_omni_model_load`), a session holds one conversation over it
//! (`qwen3_omni_session_new`): queue the user's message (`qwen3_omni_session_add_text`), then
//! `qwen3_omni_session_generate` streams the reply through a text callback. Each turn feeds only
//! the new tokens; earlier turns stay in the KV cache. Params structs come from
//! `*_default_params()` by value; change fields, then pass a pointer.
//!
//! # Status codes
//! Every fallible function returns `qwen3_omni_status`: 0 (`QWEN3_OMNI_OK`) on success, a
//! negative `QWEN3_OMNI_ERR_*` on failure, with a message from `qwen3_omni_last_error()` (per
//! thread). Bad handles (NULL, freed, freed twice, never made) give `QWEN3_OMNI_ERR_INVALID_HANDLE`;
//! handles are registry keys, not addresses, so a stale one is detected, never dereferenced. A
//! Rust panic inside the library is caught at the boundary and returned as
//! `QWEN3_OMNI_ERR_INTERNAL`; nothing unwinds into C.
//!
//! # Threads
//! * Functions may be called from any thread. A model and its session may move between threads.
//! * One call at a time per session: a call on a session while another thread is inside a call on
//!   the same session returns `QWEN3_OMNI_ERR_BUSY` instead of blocking, except
//!   `qwen3_omni_session_cancel`, which may be called at any time from any thread (and from inside
//!   the text callback) and stops the running generation within one decode step.
//! * A model serves one session at a time in this build (its KV cache lives with its weights);
//!   `qwen3_omni_session_new` on a model in use returns `QWEN3_OMNI_ERR_BUSY`.
//! * Freeing a model while its session lives is allowed: the GPU memory goes when both are freed.
//! * Freeing a session from another thread while it generates cancels the generation; the memory
//!   is released when that call returns.
//! * Cancel stops every stage: the Thinker within one decode step, the Talker (speech out) within
//!   one frame (80 ms of audio).
//! * Callbacks run on the calling thread (the log callback: on whichever thread logs) and must
//!   not unwind (no C++ exceptions, no longjmp) through the library.
//!
//! # Audio
//! Audio in: 16 kHz PCM or a WAV file, through the AudioTower, for model files that have one.
//! Speech out: with a `pcm_callback` in the generate params the reply is spoken while it streams
//! (the Talker runs alongside the Thinker, as `chat --audio-out` does) and 24 kHz mono float PCM
//! chunks reach the callback; `qwen3_omni_session_set_voice` picks the voice, the session params'
//! `speech` field the Talker's sampling. Both need a model file with a Talker and Code2Wav
//! (else `QWEN3_OMNI_ERR_NOT_AVAILABLE`). The Talker and Code2Wav are loaded by the first reply
//! that asks for speech.
#![allow(non_camel_case_types)]

mod log;
mod registry;

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use registry::{lock, CError, CResult, ModelHandle, SessionHandle, SessionState, SpeechState};

use crate::model_file::ModelFile;
use crate::session::{Input, LoadOptions, Model, Sampling, Session, SessionConfig, SessionError, StopReason};
use crate::speech::{Speaker, SpeechError, SpeechOptions, TurnSpeech};
use crate::talker::{TalkerConfig, TalkerSampling};
use crate::thinker::gpu::GenError;

/// A status code: 0 on success, negative on failure (see `qwen3_omni_last_error`).
pub type qwen3_omni_status = i32;

/// Success.
pub const QWEN3_OMNI_OK: qwen3_omni_status = 0;
/// An argument is NULL, out of range or malformed.
pub const QWEN3_OMNI_ERR_INVALID_ARGUMENT: qwen3_omni_status = -1;
/// A model or session handle is NULL, freed, or was never made.
pub const QWEN3_OMNI_ERR_INVALID_HANDLE: qwen3_omni_status = -2;
/// The session (or model) is in use by another call.
pub const QWEN3_OMNI_ERR_BUSY: qwen3_omni_status = -3;
/// The feature is not in this model file (audio in without an AudioTower, speech out without a
/// Talker and Code2Wav).
pub const QWEN3_OMNI_ERR_NOT_AVAILABLE: qwen3_omni_status = -4;
/// Loading was cancelled by the progress callback.
pub const QWEN3_OMNI_ERR_CANCELLED: qwen3_omni_status = -5;
/// The model file is missing, unreadable or malformed.
pub const QWEN3_OMNI_ERR_MODEL: qwen3_omni_status = -6;
/// The Vulkan device failed (no device, out of device memory, lost device).
pub const QWEN3_OMNI_ERR_DEVICE: qwen3_omni_status = -7;
/// The prompt does not fit the context.
pub const QWEN3_OMNI_ERR_CONTEXT_FULL: qwen3_omni_status = -8;
/// A bug: a panic inside the library, caught at the boundary.
pub const QWEN3_OMNI_ERR_INTERNAL: qwen3_omni_status = -9;

/// The model ended its turn.
pub const QWEN3_OMNI_STOP_END_OF_TURN: i32 = 0;
/// `max_tokens` reached.
pub const QWEN3_OMNI_STOP_MAX_TOKENS: i32 = 1;
/// `qwen3_omni_session_cancel` was called, or the text callback returned false.
pub const QWEN3_OMNI_STOP_CANCELLED: i32 = 2;
/// The context is full.
pub const QWEN3_OMNI_STOP_CONTEXT_FULL: i32 = 3;

/// Log levels, most severe first.
pub const QWEN3_OMNI_LOG_ERROR: i32 = 1;
pub const QWEN3_OMNI_LOG_WARN: i32 = 2;
pub const QWEN3_OMNI_LOG_INFO: i32 = 3;
pub const QWEN3_OMNI_LOG_DEBUG: i32 = 4;

/// Device kinds in `qwen3_omni_device_info`.
pub const QWEN3_OMNI_DEVICE_OTHER: i32 = 0;
pub const QWEN3_OMNI_DEVICE_INTEGRATED: i32 = 1;
pub const QWEN3_OMNI_DEVICE_DISCRETE: i32 = 2;
pub const QWEN3_OMNI_DEVICE_VIRTUAL: i32 = 3;
pub const QWEN3_OMNI_DEVICE_CPU: i32 = 4;

/// Audio input sample rate (mono float PCM in [-1, 1]).
pub const QWEN3_OMNI_INPUT_SAMPLE_RATE: i32 = 16000;
/// Speech output sample rate (mono float PCM).
pub const QWEN3_OMNI_OUTPUT_SAMPLE_RATE: i32 = 24000;
/// `qwen3_omni_sampling_params.seed`: take the seed from the clock.
pub const QWEN3_OMNI_SEED_RANDOM: u64 = u64::MAX;
/// Length of the fixed name buffers in the info structs (including the terminating NUL).
pub const QWEN3_OMNI_NAME_MAX: usize = 256;

/// Loading progress in [0, 1]; return false to cancel the load.
pub type qwen3_omni_progress_callback = Option<unsafe extern "C" fn(progress: f32, user_data: *mut c_void) -> bool>;
/// A piece of the reply: `len` bytes of UTF-8 at `text` (NUL-terminated as well), completing token
/// `token` (-1 for the final flush). Return false to stop the reply. `text` is valid only during
/// the call.
pub type qwen3_omni_text_callback =
    Option<unsafe extern "C" fn(text: *const c_char, len: usize, token: i32, user_data: *mut c_void) -> bool>;
/// A chunk of speech: `n_samples` mono float samples at `sample_rate` Hz. Return false to stop.
pub type qwen3_omni_pcm_callback = Option<
    unsafe extern "C" fn(samples: *const f32, n_samples: usize, sample_rate: i32, user_data: *mut c_void) -> bool,
>;
/// A log line (no trailing newline) at `level` (`QWEN3_OMNI_LOG_*`).
pub type qwen3_omni_log_callback =
    Option<unsafe extern "C" fn(level: i32, text: *const c_char, user_data: *mut c_void)>;

/// A loaded model (opaque).
pub struct qwen3_omni_model {
    _private: (),
}

/// A conversation over a model (opaque).
pub struct qwen3_omni_session {
    _private: (),
}

/// How to load a model. Get one from `qwen3_omni_model_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_model_params {
    /// Vulkan device index from `qwen3_omni_device_list`; -1: the best suitable device (or the
    /// `QWEN3VK_DEVICE` environment variable).
    pub device: i32,
    /// KV cache positions (clamped to the model's maximum). Default 4096.
    pub ctx_size: u32,
    /// Khronos validation layer on (slow; for tests). Default: `QWEN3VK_VALIDATION`.
    pub validation: bool,
    /// Pipeline cache directory; NULL: the default (`QWEN3VK_PIPELINE_CACHE`, else
    /// `~/.cache/qwen3-omni-vk`); "": no on-disk cache.
    pub pipeline_cache_dir: *const c_char,
    /// Called during the load; may be NULL.
    pub progress_callback: qwen3_omni_progress_callback,
    pub progress_user_data: *mut c_void,
}

/// How tokens are chosen (on the GPU). Default: greedy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_sampling_params {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off; at most 1024.
    pub top_k: i32,
    /// Nucleus sampling in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Penalty > 0 on tokens already in the context; 1 = off.
    pub repeat_penalty: f32,
    /// `QWEN3_OMNI_SEED_RANDOM`: from the clock.
    pub seed: u64,
}

/// How the Talker speaks (speech out). Defaults: transformers' sampling settings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_speech_params {
    /// Talker (code 0) temperature; 0 = greedy Talker and code predictor (the other sampling
    /// fields then only keep `repeat_penalty`). Default 0.9.
    pub temperature: f32,
    /// Talker top-k, 0 = off, at most 1024. Default 50.
    pub top_k: i32,
    /// Talker nucleus sampling in (0, 1]. Default 1.
    pub top_p: f32,
    /// Talker repetition penalty > 0 on code 0. Default 1.05.
    pub repeat_penalty: f32,
    /// Code predictor temperature (> 0). Default 1.
    pub predictor_temperature: f32,
    /// Code predictor top-k, 0 = off, at most 1024. Default 50.
    pub predictor_top_k: i32,
    /// Code predictor nucleus sampling in (0, 1]. Default 0.8.
    pub predictor_top_p: f32,
    /// `QWEN3_OMNI_SEED_RANDOM`: from the clock.
    pub seed: u64,
    /// Most frames (80 ms each) per spoken reply, 1 to 10000. Default 1000.
    pub max_frames: u32,
}

/// A session's settings. Get one from `qwen3_omni_session_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_session_params {
    pub sampling: qwen3_omni_sampling_params,
    /// Speech output settings (used when a reply has a `pcm_callback`).
    pub speech: qwen3_omni_speech_params,
    /// System message (copied); NULL: none.
    pub system_prompt: *const c_char,
    /// Default maximum of new tokens per reply. Default 256.
    pub max_tokens: i32,
}

/// One reply's settings. Get one from `qwen3_omni_generate_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_generate_params {
    /// Maximum new tokens; -1: the session's `max_tokens`.
    pub max_tokens: i32,
    /// Streamed text; may be NULL.
    pub text_callback: qwen3_omni_text_callback,
    /// Streamed speech (24 kHz mono float); NULL: text only. Returning false stops the reply and
    /// its speech.
    pub pcm_callback: qwen3_omni_pcm_callback,
    /// Passed to both callbacks.
    pub user_data: *mut c_void,
}

/// What a reply did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct qwen3_omni_generate_result {
    /// Reply tokens delivered (without the end-of-turn token).
    pub n_tokens: i32,
    /// Tokens fed for this turn.
    pub n_prompt_tokens: i32,
    /// `QWEN3_OMNI_STOP_*`.
    pub stop_reason: i32,
    /// Milliseconds until the first reply token.
    pub prompt_ms: f64,
    /// Milliseconds from the first reply token to the end.
    pub generate_ms: f64,
    /// Speech out: codec frames spoken (80 ms each; 0 without a `pcm_callback`). A whole reply
    /// of T frames gives 1920·T − 555 samples.
    pub n_audio_frames: i32,
    /// Speech out: samples delivered to the `pcm_callback`, all chunks together.
    pub n_audio_samples: i64,
    /// Speech out: milliseconds from the start of the call to the first PCM chunk (-1: none).
    pub first_audio_ms: f64,
}

/// One Vulkan device.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_device_info {
    pub index: i32,
    /// NUL-terminated.
    pub name: [c_char; QWEN3_OMNI_NAME_MAX],
    /// `QWEN3_OMNI_DEVICE_*`.
    pub kind: i32,
    /// Whether the engine can run on it.
    pub suitable: bool,
    /// Size of the largest device-local memory heap, bytes.
    pub device_local_bytes: u64,
    pub subgroup_size: u32,
    /// Integer dot products (the Q8_0 int8 path) are supported.
    pub int_dot: bool,
}

/// What a loaded model is.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_model_info {
    /// NUL-terminated.
    pub device_name: [c_char; QWEN3_OMNI_NAME_MAX],
    pub ctx_size: u32,
    pub vocab_size: u32,
    pub n_layers: u32,
    /// Vulkan validation errors and warnings so far (0 unless loaded with `validation`).
    pub validation_messages: u64,
}

// ---------------------------------------------------------------------------------------------
// Boundary helpers

/// Runs `f`, turning errors and panics into a status code and the thread's last error.
fn guard(f: impl FnOnce() -> CResult<()>) -> qwen3_omni_status {
    registry::set_last_error("");
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => QWEN3_OMNI_OK,
        Ok(Err(e)) => {
            registry::set_last_error(&e.msg);
            e.code
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            registry::set_last_error(&format!("internal error (a bug; please report it): {what}"));
            QWEN3_OMNI_ERR_INTERNAL
        }
    }
}

/// Runs `f` behind the same boundary as every export (tests check that a panic becomes
/// `QWEN3_OMNI_ERR_INTERNAL` with a message). Not part of the C API.
#[doc(hidden)]
pub fn boundary_for_tests(f: impl FnOnce()) -> qwen3_omni_status {
    guard(|| {
        f();
        Ok(())
    })
}

fn invalid(msg: impl Into<String>) -> CError {
    CError::new(QWEN3_OMNI_ERR_INVALID_ARGUMENT, msg)
}

fn speech_err(e: SpeechError) -> CError {
    let code = match &e {
        SpeechError::Gpu(_) | SpeechError::Model(crate::model_file::ModelError::Gpu(_)) => QWEN3_OMNI_ERR_DEVICE,
        SpeechError::Model(crate::model_file::ModelError::TooBig { .. }) => QWEN3_OMNI_ERR_DEVICE,
        SpeechError::Model(_) | SpeechError::Groups { .. } => QWEN3_OMNI_ERR_MODEL,
        _ => QWEN3_OMNI_ERR_INTERNAL,
    };
    CError::new(code, format!("speech output: {e}"))
}

/// Opens the model file again (its own memory map) and checks it has what speech output needs.
fn speech_file(path: &std::path::Path) -> CResult<(ModelFile, TalkerConfig)> {
    let file = ModelFile::open(path).map_err(|e| CError::new(QWEN3_OMNI_ERR_MODEL, e.to_string()))?;
    let missing = |what: &str, e: crate::model_file::ModelError| {
        CError::new(
            QWEN3_OMNI_ERR_NOT_AVAILABLE,
            format!("{}: this model file has no {what}, so it cannot speak ({e})", path.display()),
        )
    };
    let talker = TalkerConfig::from_model(&file).map_err(|e| missing("Talker", e))?;
    crate::code2wav::Code2WavConfig::from_model(&file).map_err(|e| missing("Code2Wav", e))?;
    // A config without the weights (a Thinker-only conversion keeps the config's sections).
    for (what, prefix) in [("Talker", "talker."), ("Code2Wav", "code2wav.")] {
        if !file.gguf.header.tensors.iter().any(|t| t.name.starts_with(prefix)) {
            return Err(CError::new(
                QWEN3_OMNI_ERR_NOT_AVAILABLE,
                format!("{}: this model file has no {what}, so it cannot speak (no {prefix}* tensors)", path.display()),
            ));
        }
    }
    Ok((file, talker))
}

fn speech_options(p: &qwen3_omni_speech_params, voice: &str) -> CResult<SpeechOptions> {
    let check_k = |k: i32, what: &str| {
        if (0..=1024).contains(&k) {
            Ok(k as u32)
        } else {
            Err(invalid(format!("speech.{what} {k} must be in 0..=1024")))
        }
    };
    let check_p = |x: f32, what: &str| {
        if x > 0.0 && x <= 1.0 {
            Ok(x)
        } else {
            Err(invalid(format!("speech.{what} {x} must be in (0, 1]")))
        }
    };
    if !(p.temperature.is_finite() && p.temperature >= 0.0) {
        return Err(invalid(format!("speech.temperature {} must be ≥ 0", p.temperature)));
    }
    if !(p.repeat_penalty.is_finite() && p.repeat_penalty > 0.0) {
        return Err(invalid(format!("speech.repeat_penalty {} must be > 0", p.repeat_penalty)));
    }
    if !(p.predictor_temperature.is_finite() && p.predictor_temperature > 0.0) {
        return Err(invalid(format!("speech.predictor_temperature {} must be > 0", p.predictor_temperature)));
    }
    let (top_k, top_p) = (check_k(p.top_k, "top_k")?, check_p(p.top_p, "top_p")?);
    let (cp_k, cp_p) = (check_k(p.predictor_top_k, "predictor_top_k")?, check_p(p.predictor_top_p, "predictor_top_p")?);
    if !(1..=10000).contains(&p.max_frames) {
        return Err(invalid(format!("speech.max_frames {} must be in 1..=10000", p.max_frames)));
    }
    let seed = if p.seed == QWEN3_OMNI_SEED_RANDOM {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    } else {
        p.seed
    };
    let sampling = if p.temperature == 0.0 {
        let mut s = TalkerSampling::greedy();
        s.code0.repetition_penalty = p.repeat_penalty;
        s
    } else {
        let mut s = TalkerSampling::sampled(seed);
        (s.code0.temperature, s.code0.top_k, s.code0.top_p) = (p.temperature, top_k, top_p);
        s.code0.repetition_penalty = p.repeat_penalty;
        (s.predictor.temperature, s.predictor.top_k, s.predictor.top_p) = (p.predictor_temperature, cp_k, cp_p);
        s
    };
    Ok(SpeechOptions { voice: voice.to_string(), sampling, max_frames: p.max_frames, ..SpeechOptions::default() })
}

fn session_err(e: SessionError) -> CError {
    let code = match &e {
        SessionError::Model(crate::model_file::ModelError::Gpu(_)) => QWEN3_OMNI_ERR_DEVICE,
        SessionError::Model(crate::model_file::ModelError::TooBig { .. }) => QWEN3_OMNI_ERR_DEVICE,
        SessionError::Model(_) | SessionError::Tokenizer(_) | SessionError::NoTokenizer { .. } => QWEN3_OMNI_ERR_MODEL,
        SessionError::Chat(_) | SessionError::InvalidArgument(_) => QWEN3_OMNI_ERR_INVALID_ARGUMENT,
        SessionError::Gen(GenError::ContextFull { .. }) | SessionError::PromptTooLong { .. } => {
            QWEN3_OMNI_ERR_CONTEXT_FULL
        }
        SessionError::Gen(GenError::BadToken { .. }) => QWEN3_OMNI_ERR_INTERNAL,
        SessionError::Gen(GenError::AudioMismatch { .. } | GenError::EmptyPrompt) => QWEN3_OMNI_ERR_INVALID_ARGUMENT,
        SessionError::Gen(GenError::Gpu(_)) | SessionError::Gpu(_) => QWEN3_OMNI_ERR_DEVICE,
        SessionError::LoadCancelled => QWEN3_OMNI_ERR_CANCELLED,
        SessionError::NoAudioTower { .. } => QWEN3_OMNI_ERR_NOT_AVAILABLE,
    };
    CError::new(code, e.to_string())
}

/// A borrowed UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// # Safety
/// `p` is NULL or valid for reading one `T`.
unsafe fn read_arg<T: Copy>(p: *const T, what: &str) -> CResult<T> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and valid by the caller's contract; read_unaligned tolerates packing.
    Ok(unsafe { p.read_unaligned() })
}

/// # Safety
/// `p` is NULL or valid for writing one `T`.
unsafe fn write_out<T>(p: *mut T, v: T, what: &str) -> CResult<()> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and writable by the caller's contract.
    unsafe { p.write_unaligned(v) };
    Ok(())
}

fn copy_name(dst: &mut [c_char; QWEN3_OMNI_NAME_MAX], s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(QWEN3_OMNI_NAME_MAX - 1);
    for (d, &c) in dst.iter_mut().zip(&b[..n]) {
        *d = c as c_char;
    }
    dst[n] = 0;
}

fn sampling_from(p: &qwen3_omni_sampling_params) -> CResult<Sampling> {
    if p.top_k < 0 {
        return Err(invalid(format!("top_k {} must be ≥ 0", p.top_k)));
    }
    let s = Sampling {
        temperature: p.temperature,
        top_k: p.top_k as u32,
        top_p: p.top_p,
        repeat_penalty: p.repeat_penalty,
        seed: if p.seed == QWEN3_OMNI_SEED_RANDOM { None } else { Some(p.seed) },
    };
    s.validate().map_err(session_err)?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Library

/// The library version, e.g. "0.1.0" (static string).
///
/// # Safety
/// None: no arguments. The returned string is never freed.
#[no_mangle]
pub extern "C" fn qwen3_omni_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on this thread ("" after a successful one). Valid until
/// the next library call on this thread.
///
/// # Safety
/// None: no arguments. Do not free the returned string.
#[no_mangle]
pub extern "C" fn qwen3_omni_last_error() -> *const c_char {
    registry::last_error_ptr()
}

/// The name of a status code, e.g. "QWEN3_OMNI_ERR_BUSY" (static string).
///
/// # Safety
/// None: any value is accepted. Do not free the returned string.
#[no_mangle]
pub extern "C" fn qwen3_omni_status_string(status: qwen3_omni_status) -> *const c_char {
    let s: &'static str = match status {
        QWEN3_OMNI_OK => "QWEN3_OMNI_OK\0",
        QWEN3_OMNI_ERR_INVALID_ARGUMENT => "QWEN3_OMNI_ERR_INVALID_ARGUMENT\0",
        QWEN3_OMNI_ERR_INVALID_HANDLE => "QWEN3_OMNI_ERR_INVALID_HANDLE\0",
        QWEN3_OMNI_ERR_BUSY => "QWEN3_OMNI_ERR_BUSY\0",
        QWEN3_OMNI_ERR_NOT_AVAILABLE => "QWEN3_OMNI_ERR_NOT_AVAILABLE\0",
        QWEN3_OMNI_ERR_CANCELLED => "QWEN3_OMNI_ERR_CANCELLED\0",
        QWEN3_OMNI_ERR_MODEL => "QWEN3_OMNI_ERR_MODEL\0",
        QWEN3_OMNI_ERR_DEVICE => "QWEN3_OMNI_ERR_DEVICE\0",
        QWEN3_OMNI_ERR_CONTEXT_FULL => "QWEN3_OMNI_ERR_CONTEXT_FULL\0",
        QWEN3_OMNI_ERR_INTERNAL => "QWEN3_OMNI_ERR_INTERNAL\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}

/// Sends the library's log lines at `max_level` (`QWEN3_OMNI_LOG_*`) and more severe to
/// `callback` (NULL: stop logging). Without a callback the library logs nothing. Fails with
/// `QWEN3_OMNI_ERR_NOT_AVAILABLE` when the process already has a Rust `tracing` subscriber.
///
/// # Safety
/// `callback`, if not NULL, must be safe to call from any thread with `user_data` until it is
/// replaced by another `qwen3_omni_log_set`.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_log_set(
    callback: qwen3_omni_log_callback,
    max_level: i32,
    user_data: *mut c_void,
) -> qwen3_omni_status {
    guard(|| {
        if !(QWEN3_OMNI_LOG_ERROR..=QWEN3_OMNI_LOG_DEBUG).contains(&max_level) && callback.is_some() {
            return Err(invalid(format!("log level {max_level} is not one of QWEN3_OMNI_LOG_*")));
        }
        log::set(callback, max_level, user_data).map_err(|e| CError::new(QWEN3_OMNI_ERR_NOT_AVAILABLE, e))
    })
}

/// Lists the Vulkan devices: writes up to `capacity` entries to `devices` (may be NULL when
/// `capacity` is 0), the number of devices to `*n_devices`, and the index the library would
/// choose (-1: none suitable) to `*default_device` (may be NULL).
///
/// # Safety
/// `devices` is NULL or valid for writing `capacity` entries; `n_devices` is valid for writing;
/// `default_device` is NULL or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_device_list(
    devices: *mut qwen3_omni_device_info,
    capacity: usize,
    n_devices: *mut usize,
    default_device: *mut i32,
) -> qwen3_omni_status {
    guard(|| {
        if devices.is_null() && capacity > 0 {
            return Err(invalid("devices is NULL but capacity is not 0"));
        }
        if n_devices.is_null() {
            return Err(invalid("n_devices is NULL"));
        }
        let (list, choice) =
            qwen3_omni_vk::vk_runtime::list_devices().map_err(|e| CError::new(QWEN3_OMNI_ERR_DEVICE, e.to_string()))?;
        for (i, d) in list.iter().take(capacity).enumerate() {
            let c = &d.caps;
            let mut info = qwen3_omni_device_info {
                index: d.index as i32,
                name: [0; QWEN3_OMNI_NAME_MAX],
                kind: match c.kind {
                    qwen3_omni_vk::vk_runtime::DeviceKind::Discrete => QWEN3_OMNI_DEVICE_DISCRETE,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Integrated => QWEN3_OMNI_DEVICE_INTEGRATED,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Virtual => QWEN3_OMNI_DEVICE_VIRTUAL,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Cpu => QWEN3_OMNI_DEVICE_CPU,
                    qwen3_omni_vk::vk_runtime::DeviceKind::Other => QWEN3_OMNI_DEVICE_OTHER,
                },
                suitable: d.unsuitable.is_none(),
                device_local_bytes: c.heaps.iter().filter(|h| h.device_local).map(|h| h.size).max().unwrap_or(0),
                subgroup_size: c.subgroup_size,
                int_dot: c.int_dot,
            };
            copy_name(&mut info.name, &c.name);
            // SAFETY: i < capacity and `devices` holds `capacity` entries (caller's contract).
            unsafe { devices.add(i).write_unaligned(info) };
        }
        // SAFETY: checked non-NULL above; writable by contract.
        unsafe { n_devices.write_unaligned(list.len()) };
        if !default_device.is_null() {
            // SAFETY: non-NULL, writable by contract.
            unsafe { default_device.write_unaligned(choice.map(|i| i as i32).unwrap_or(-1)) };
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Model

/// Defaults: best device, 4096 positions, validation and pipeline cache from the environment, no
/// progress callback.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub extern "C" fn qwen3_omni_model_default_params() -> qwen3_omni_model_params {
    qwen3_omni_model_params {
        device: -1,
        ctx_size: 4096,
        validation: qwen3_omni_vk::vk_runtime::env_flag("QWEN3VK_VALIDATION"),
        pipeline_cache_dir: std::ptr::null(),
        progress_callback: None,
        progress_user_data: std::ptr::null_mut(),
    }
}

/// Loads a Q8_0 GGUF written by `qwen3-omni-vk quantize` onto the GPU and writes the new handle to
/// `*model` (NULL on failure). `params` may be NULL (defaults). Returns `QWEN3_OMNI_ERR_CANCELLED`
/// when the progress callback returned false.
///
/// # Safety
/// `path` is a NUL-terminated UTF-8 path; `params` is NULL or points to a params struct whose
/// `pipeline_cache_dir` is NULL or NUL-terminated; `model` is valid for writing a pointer. The
/// progress callback, if any, is called on this thread during the call.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_model_load(
    path: *const c_char,
    params: *const qwen3_omni_model_params,
    model: *mut *mut qwen3_omni_model,
) -> qwen3_omni_status {
    guard(|| {
        if model.is_null() {
            return Err(invalid("model (the output pointer) is NULL"));
        }
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { model.write_unaligned(std::ptr::null_mut()) };
        // SAFETY: NUL-terminated by contract.
        let path = PathBuf::from(unsafe { str_arg(path, "path") }?);
        let p = if params.is_null() {
            qwen3_omni_model_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract.
            unsafe { read_arg(params, "params") }?
        };
        if p.device < -1 {
            return Err(invalid(format!("device {} must be -1 (automatic) or an index", p.device)));
        }
        if p.ctx_size == 0 {
            return Err(invalid("ctx_size must be > 0"));
        }
        let defaults = LoadOptions::default();
        let pipeline_cache = if p.pipeline_cache_dir.is_null() {
            defaults.pipeline_cache
        } else {
            // SAFETY: non-NULL and NUL-terminated by contract.
            match unsafe { str_arg(p.pipeline_cache_dir, "pipeline_cache_dir") }? {
                "" => None,
                d => Some(PathBuf::from(d)),
            }
        };
        let opts = LoadOptions {
            device: if p.device < 0 { defaults.device } else { Some(p.device as usize) },
            ctx_size: p.ctx_size,
            validation: p.validation,
            pipeline_cache,
        };
        tracing::info!("loading {}", path.display());
        let t0 = std::time::Instant::now();
        let loaded = Model::load(&path, &opts, |pr| match p.progress_callback {
            // SAFETY: the caller promised a callback valid for this call with its user data.
            Some(cb) => unsafe { cb(pr.fraction(), p.progress_user_data) },
            None => true,
        })
        .map_err(session_err)?;
        let c = &loaded.thinker().config;
        let (vocab, layers) = (c.vocab, c.layers);
        let gpu = loaded.gpu().clone();
        let device_name = gpu.caps().name.clone();
        tracing::info!("loaded on {device_name} in {:.1} s", t0.elapsed().as_secs_f64());
        let ctx_size = loaded.ctx_size();
        let mut reg = registry::registry();
        let id = reg.new_id();
        reg.models.insert(
            id,
            Arc::new(ModelHandle { id, model: Mutex::new(Some(loaded)), gpu, device_name, ctx_size, vocab, layers }),
        );
        // SAFETY: checked non-NULL above.
        unsafe { model.write_unaligned(id as *mut qwen3_omni_model) };
        Ok(())
    })
}

/// Frees a model. Its session, if one is open, keeps working; the GPU memory is released when
/// both are freed. Freeing NULL or a freed model returns `QWEN3_OMNI_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `model` is any value; it is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_model_free(model: *mut qwen3_omni_model) -> qwen3_omni_status {
    guard(|| {
        let id = model as usize;
        registry::model(id)?;
        let h = registry::registry().models.remove(&id);
        // Dropped outside the registry lock (a model drop waits for the GPU).
        drop(h);
        Ok(())
    })
}

/// Describes a loaded model.
///
/// # Safety
/// `model` is any value (looked up, never dereferenced); `info` is valid for writing.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_model_get_info(
    model: *const qwen3_omni_model,
    info: *mut qwen3_omni_model_info,
) -> qwen3_omni_status {
    guard(|| {
        let m = registry::model(model as usize)?;
        let mut out = qwen3_omni_model_info {
            device_name: [0; QWEN3_OMNI_NAME_MAX],
            ctx_size: m.ctx_size,
            vocab_size: m.vocab,
            n_layers: m.layers,
            validation_messages: m.gpu.validation().map(|v| v.total()).unwrap_or(0),
        };
        copy_name(&mut out.device_name, &m.device_name);
        // SAFETY: writable by contract (NULL is rejected).
        unsafe { write_out(info, out, "info") }
    })
}

// ---------------------------------------------------------------------------------------------
// Session

/// Defaults: greedy sampling, random seed, no system prompt, 256 tokens per reply; speech:
/// transformers' Talker sampling (temperature 0.9, top-k 50; code predictor top-k 50, top-p 0.8),
/// random seed, at most 1000 frames (80 s) per reply.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub extern "C" fn qwen3_omni_session_default_params() -> qwen3_omni_session_params {
    qwen3_omni_session_params {
        sampling: qwen3_omni_sampling_params {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            seed: QWEN3_OMNI_SEED_RANDOM,
        },
        speech: qwen3_omni_speech_params {
            temperature: 0.9,
            top_k: 50,
            top_p: 1.0,
            repeat_penalty: 1.05,
            predictor_temperature: 1.0,
            predictor_top_k: 50,
            predictor_top_p: 0.8,
            seed: QWEN3_OMNI_SEED_RANDOM,
            max_frames: 1000,
        },
        system_prompt: std::ptr::null(),
        max_tokens: 256,
    }
}

/// Opens a conversation over `model` and writes its handle to `*session` (NULL on failure).
/// `params` may be NULL (defaults). A model serves one session at a time: `QWEN3_OMNI_ERR_BUSY`
/// while another is open.
///
/// # Safety
/// `model` is any value (looked up, never dereferenced); `params` is NULL or points to a params
/// struct whose `system_prompt` is NULL or NUL-terminated; `session` is valid for writing.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_new(
    model: *mut qwen3_omni_model,
    params: *const qwen3_omni_session_params,
    session: *mut *mut qwen3_omni_session,
) -> qwen3_omni_status {
    guard(|| {
        if session.is_null() {
            return Err(invalid("session (the output pointer) is NULL"));
        }
        // SAFETY: checked non-NULL; writable by contract.
        unsafe { session.write_unaligned(std::ptr::null_mut()) };
        let m = registry::model(model as usize)?;
        let p = if params.is_null() {
            qwen3_omni_session_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract.
            unsafe { read_arg(params, "params") }?
        };
        let sampling = sampling_from(&p.sampling)?;
        speech_options(&p.speech, "ethan")?;
        let system = if p.system_prompt.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated by contract.
            Some(unsafe { str_arg(p.system_prompt, "system_prompt") }?.to_string())
        };
        if p.max_tokens < 0 {
            return Err(invalid(format!("max_tokens {} must be ≥ 0", p.max_tokens)));
        }
        let taken = lock(&m.model).take();
        let Some(loaded) = taken else {
            return Err(CError::new(
                QWEN3_OMNI_ERR_BUSY,
                "the model is in use by another session (one session per model in this build)",
            ));
        };
        let s = Session::new(loaded, SessionConfig { system, sampling }).map_err(session_err)?;
        let mut reg = registry::registry();
        let id = reg.new_id();
        let h = SessionHandle {
            model_id: m.id,
            cancel: s.cancel_handle(),
            speech_cancel: std::sync::OnceLock::new(),
            inner: Mutex::new(SessionState {
                session: Some(s),
                queued: Vec::new(),
                max_tokens: p.max_tokens as usize,
                speech: None,
                voice: "ethan".into(),
                speech_params: p.speech,
            }),
        };
        reg.sessions.insert(id, Arc::new(h));
        // SAFETY: checked non-NULL above.
        unsafe { session.write_unaligned(id as *mut qwen3_omni_session) };
        Ok(())
    })
}

/// Ends a conversation (a generation running on another thread is cancelled first) and gives the
/// model back for another session. Freeing NULL or a freed session returns
/// `QWEN3_OMNI_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `session` is any value; it is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_free(session: *mut qwen3_omni_session) -> qwen3_omni_status {
    guard(|| {
        let id = session as usize;
        registry::session(id)?;
        registry::free_session(id)
    })
}

/// Stops the session's running generation within one decode step, and its speech within one
/// frame (the reply so far is kept in the history). Callable from any thread at any time, also from inside the text callback;
/// cancelling when nothing runs, or twice, is harmless and returns `QWEN3_OMNI_OK`. Each
/// `qwen3_omni_session_generate` starts uncancelled.
///
/// # Safety
/// `session` is any value; it is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_cancel(session: *mut qwen3_omni_session) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        s.cancel_all();
        Ok(())
    })
}

/// New sampling settings from the next reply on.
///
/// # Safety
/// `session` is any value (looked up); `sampling` is valid for reading.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_set_sampling(
    session: *mut qwen3_omni_session,
    sampling: *const qwen3_omni_sampling_params,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        // SAFETY: readable by contract (NULL rejected).
        let p = unsafe { read_arg(sampling, "sampling") }?;
        let sampling = sampling_from(&p)?;
        let mut st = registry::try_state(&s)?;
        let sess = st.session.as_mut().ok_or_else(|| invalid("the session is being freed"))?;
        sess.set_sampling(sampling).map_err(session_err)
    })
}

/// Forgets the conversation (the system prompt stays) and any queued input.
///
/// # Safety
/// `session` is any value; it is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_reset(session: *mut qwen3_omni_session) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        let mut st = registry::try_state(&s)?;
        st.queued.clear();
        if let Some(sp) = st.speech.as_mut() {
            sp.ts.reset();
        }
        let sess = st.session.as_mut().ok_or_else(|| invalid("the session is being freed"))?;
        sess.reset().map_err(session_err)
    })
}

/// Context positions in use and in total (either pointer may be NULL).
///
/// # Safety
/// `session` is any value (looked up); `used` and `size` are NULL or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_context(
    session: *mut qwen3_omni_session,
    used: *mut u32,
    size: *mut u32,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        let st = registry::try_state(&s)?;
        let sess = st.session.as_ref().ok_or_else(|| invalid("the session is being freed"))?;
        if !used.is_null() {
            // SAFETY: non-NULL, writable by contract.
            unsafe { used.write_unaligned(sess.context_used()) };
        }
        if !size.is_null() {
            // SAFETY: non-NULL, writable by contract.
            unsafe { size.write_unaligned(sess.context_size()) };
        }
        Ok(())
    })
}

/// Appends text to the user message of the next turn.
///
/// # Safety
/// `session` is any value (looked up); `text` is a NUL-terminated UTF-8 string.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_add_text(
    session: *mut qwen3_omni_session,
    text: *const c_char,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        // SAFETY: NUL-terminated by contract (NULL rejected).
        let t = unsafe { str_arg(text, "text") }?;
        let mut st = registry::try_state(&s)?;
        st.queued.push(Input::Text(t.to_string()));
        Ok(())
    })
}

/// Appends audio (mono float PCM in [-1, 1] at `QWEN3_OMNI_INPUT_SAMPLE_RATE`, copied) to the user
/// message of the next turn; the AudioTower runs in `qwen3_omni_session_generate`. A sample rate
/// other than 16000 is `QWEN3_OMNI_ERR_INVALID_ARGUMENT` (resample first); a model file without an
/// AudioTower gives `QWEN3_OMNI_ERR_NOT_AVAILABLE`.
///
/// # Safety
/// `session` is any value (looked up); `samples` is valid for reading `n_samples` floats.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_add_audio(
    session: *mut qwen3_omni_session,
    samples: *const f32,
    n_samples: usize,
    sample_rate: i32,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        if samples.is_null() {
            return Err(invalid("samples is NULL"));
        }
        if n_samples == 0 {
            return Err(invalid("n_samples is 0"));
        }
        if sample_rate != QWEN3_OMNI_INPUT_SAMPLE_RATE {
            return Err(invalid(format!(
                "sample rate {sample_rate} Hz: audio input must be {QWEN3_OMNI_INPUT_SAMPLE_RATE} Hz mono (resample first)"
            )));
        }
        // SAFETY: non-NULL and valid for `n_samples` floats by the caller's contract.
        let pcm = unsafe { std::slice::from_raw_parts(samples, n_samples) };
        if let Some(i) = pcm.iter().position(|x| !x.is_finite()) {
            return Err(invalid(format!("sample {i} is not a finite number")));
        }
        queue_audio(&s, pcm.to_vec())
    })
}

/// Appends a WAV file's audio (any rate and channel count: mixed to mono and resampled to 16 kHz)
/// to the user message of the next turn. A missing or malformed file is
/// `QWEN3_OMNI_ERR_INVALID_ARGUMENT`; a model without an AudioTower `QWEN3_OMNI_ERR_NOT_AVAILABLE`.
///
/// # Safety
/// `session` is any value (looked up); `path` is a NUL-terminated UTF-8 path.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_add_audio_file(
    session: *mut qwen3_omni_session,
    path: *const c_char,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        // SAFETY: NUL-terminated by contract (NULL rejected).
        let p = unsafe { str_arg(path, "path") }?;
        if !std::path::Path::new(p).is_file() {
            return Err(invalid(format!("{p}: no such file")));
        }
        let wav = crate::audio::load_wav(p, &Default::default()).map_err(|e| invalid(e.to_string()))?;
        queue_audio(&s, wav.samples)
    })
}

fn queue_audio(s: &SessionHandle, pcm: Vec<f32>) -> CResult<()> {
    let mut st = registry::try_state(s)?;
    let sess = st.session.as_ref().ok_or_else(|| invalid("the session is being freed"))?;
    if !sess.model().has_audio_input() {
        return Err(CError::new(
            QWEN3_OMNI_ERR_NOT_AVAILABLE,
            format!("{}: this model file has no AudioTower, so it takes no audio input", sess.model().path().display()),
        ));
    }
    st.queued.push(Input::Audio(pcm));
    Ok(())
}

/// Chooses the voice of the speech output from the next reply on: "ethan" (the default),
/// "chelsie" or "aiden" (case-insensitive; the names the model file lists). An unknown name is
/// `QWEN3_OMNI_ERR_INVALID_ARGUMENT` (the message lists the known ones); a model file without a
/// Talker and Code2Wav `QWEN3_OMNI_ERR_NOT_AVAILABLE`.
///
/// # Safety
/// `session` is any value (looked up); `voice` is a NUL-terminated UTF-8 string.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_set_voice(
    session: *mut qwen3_omni_session,
    voice: *const c_char,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        // SAFETY: NUL-terminated by contract (NULL rejected).
        let v = unsafe { str_arg(voice, "voice") }?;
        if v.trim().is_empty() {
            return Err(invalid("voice is empty"));
        }
        let mut st = registry::try_state(&s)?;
        let known = match &st.speech {
            Some(sp) => sp.ts.sp.talker.config.speaker(v).map(|_| ()),
            None => {
                let sess = st.session.as_ref().ok_or_else(|| invalid("the session is being freed"))?;
                speech_file(sess.model().path())?.1.speaker(v).map(|_| ())
            }
        };
        known.map_err(invalid)?;
        st.voice = v.to_lowercase();
        Ok(())
    })
}

/// Defaults: the session's max tokens, no callbacks.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub extern "C" fn qwen3_omni_generate_default_params() -> qwen3_omni_generate_params {
    qwen3_omni_generate_params {
        max_tokens: -1,
        text_callback: None,
        pcm_callback: None,
        user_data: std::ptr::null_mut(),
    }
}

/// Answers the queued user message (text and audio from `qwen3_omni_session_add_*`, in order):
/// runs the AudioTower on its audio, feeds the turn and
/// streams the reply through `params->text_callback` until the end of the turn, `max_tokens`, a
/// full context, or a cancel. With `params->pcm_callback` the reply is also spoken while it
/// streams (24 kHz mono float chunks; the Talker and Code2Wav are loaded by the first such call,
/// `QWEN3_OMNI_ERR_NOT_AVAILABLE` when the model file has none); the Talker goes on after the
/// Thinker stops until codec EOS, `speech.max_frames` or a cancel. A cancelled reply returns
/// `QWEN3_OMNI_OK` with `stop_reason` `QWEN3_OMNI_STOP_CANCELLED` and stays in the history as far
/// as it was delivered. On an error before the reply the turn is dropped (the history is as
/// before, the queued message is kept); an error of the speech after the reply keeps the reply in
/// the history. `params` and `result` may be NULL.
///
/// # Safety
/// `session` is any value (looked up); `params` is NULL or readable; `result` is NULL or
/// writable; the callbacks, if any, are called on this thread during the call with
/// `params->user_data`, and must not unwind.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_generate(
    session: *mut qwen3_omni_session,
    params: *const qwen3_omni_generate_params,
    result: *mut qwen3_omni_generate_result,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        let p = if params.is_null() {
            qwen3_omni_generate_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract.
            unsafe { read_arg(params, "params") }?
        };
        if p.max_tokens < -1 {
            return Err(invalid(format!("max_tokens {} must be -1 (session default) or ≥ 0", p.max_tokens)));
        }
        let mut st = registry::try_state(&s)?;
        if st.queued.is_empty() {
            return Err(invalid(
                "nothing to answer: add the user's text or audio (qwen3_omni_session_add_text / _add_audio) first",
            ));
        }
        let max_tokens = if p.max_tokens < 0 { st.max_tokens } else { p.max_tokens as usize };
        let inputs = st.queued.clone();
        if p.pcm_callback.is_some() && st.speech.is_none() {
            st.speech = Some(load_speech(&st)?);
        }
        if let Some(sp) = &st.speech {
            let _ = s.speech_cancel.set(sp.ts.sp.cancel_flag());
        }
        let SessionState { session: sess, speech, voice, queued, .. } = &mut *st;
        let sess = sess.as_mut().ok_or_else(|| invalid("the session is being freed"))?;
        // Speech follows every turn once loaded (the Talker's context is the whole conversation);
        // a turn without a PCM callback is followed silently.
        let speech = speech.as_mut();
        let speaking = p.pcm_callback.is_some();
        let t_call = std::time::Instant::now();
        let (mut samples, mut first_audio) = (0i64, None::<f64>);
        let speech_cancel = speech.as_ref().map(|sp| sp.ts.sp.cancel_flag());
        let session_cancel = s.cancel.clone();
        let mut on_pcm = |pcm: &[f32]| {
            let Some(cb) = p.pcm_callback else { return };
            first_audio.get_or_insert_with(|| t_call.elapsed().as_secs_f64() * 1e3);
            samples += pcm.len() as i64;
            // SAFETY: the caller promised a callback valid during this call with its user data;
            // `pcm` is valid for `pcm.len()` floats during the call.
            let go = unsafe { cb(pcm.as_ptr(), pcm.len(), QWEN3_OMNI_OUTPUT_SAMPLE_RATE, p.user_data) };
            if !go {
                session_cancel.store(true, Ordering::SeqCst);
                if let Some(c) = &speech_cancel {
                    c.store(true, Ordering::SeqCst);
                }
            }
        };
        let follower = std::cell::RefCell::new(speech);
        if let Some(sp) = follower.borrow_mut().as_mut() {
            sp.ts.sp.opts.voice = voice.clone();
            sp.ts.sp.set_thinker_limit(Some(max_tokens));
        }
        let mut buf = Vec::new();
        let reply = sess
            .generate_inputs_observed(
                &inputs,
                max_tokens,
                |ids, len| {
                    if let Some(sp) = follower.borrow_mut().as_mut() {
                        sp.ts.begin(ids, len);
                    }
                },
                |d| {
                    if let (true, Some(id), Some(sp)) = (speaking, d.token, follower.borrow_mut().as_mut()) {
                        let SpeechState { file, ts } = &mut **sp;
                        if !ts.token(file, id, &mut on_pcm) {
                            return false;
                        }
                    }
                    let Some(cb) = p.text_callback else { return true };
                    buf.clear();
                    buf.extend_from_slice(d.text.as_bytes());
                    buf.push(0);
                    let token = d.token.map(|t| t as i32).unwrap_or(-1);
                    // SAFETY: the caller promised a callback valid during this call with its user
                    // data; `buf` is NUL-terminated and outlives the call.
                    unsafe { cb(buf.as_ptr().cast(), d.text.len(), token, p.user_data) }
                },
            )
            .map_err(session_err)?;
        queued.clear();
        let mut stop = reply.stop;
        let mut frames = 0;
        if let Some(sp) = follower.into_inner() {
            let SpeechState { file, ts } = sp;
            let cut = !speaking || reply.stop == StopReason::Cancelled || session_cancel.load(Ordering::SeqCst);
            let summary = ts.end(file, sess.model().thinker(), &reply.sampled, cut, &mut on_pcm).map_err(speech_err)?;
            if let Some(sum) = summary.filter(|_| speaking) {
                frames = sum.frames as i32;
                if sum.stop == crate::speech::StopReason::Cancelled {
                    stop = StopReason::Cancelled;
                }
            }
        }
        if !result.is_null() {
            let r = qwen3_omni_generate_result {
                n_tokens: reply.tokens.len() as i32,
                n_prompt_tokens: reply.prompt_tokens as i32,
                stop_reason: match stop {
                    StopReason::EndOfTurn => QWEN3_OMNI_STOP_END_OF_TURN,
                    StopReason::MaxTokens => QWEN3_OMNI_STOP_MAX_TOKENS,
                    StopReason::Cancelled => QWEN3_OMNI_STOP_CANCELLED,
                    StopReason::ContextFull => QWEN3_OMNI_STOP_CONTEXT_FULL,
                },
                prompt_ms: reply.prompt_secs * 1e3,
                generate_ms: reply.gen_secs * 1e3,
                n_audio_frames: frames,
                n_audio_samples: samples,
                first_audio_ms: first_audio.unwrap_or(-1.0),
            };
            // SAFETY: non-NULL and writable by contract.
            unsafe { result.write_unaligned(r) };
        }
        Ok(())
    })
}

/// Loads the Talker and Code2Wav for a session's speech output.
fn load_speech(st: &SessionState) -> CResult<SpeechState> {
    let sess = st.session.as_ref().ok_or_else(|| invalid("the session is being freed"))?;
    let model = sess.model();
    let (file, _) = speech_file(model.path())?;
    let opts = speech_options(&st.speech_params, &st.voice)?;
    let t0 = std::time::Instant::now();
    let k = qwen3_omni_vk::Kernels::new(model.gpu().clone());
    let sp = Speaker::load(k, &file, model.ctx_size(), opts).map_err(speech_err)?;
    tracing::info!("Talker and Code2Wav loaded in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(SpeechState { file, ts: TurnSpeech::new(sp) })
}
