//! The C API's types: status and other constants, callback types, opaque handles, and the
//! `#[repr(C)]` params, result and info structs (`include/qwen3_omni_vk.h` declares them in this
//! order).

use std::ffi::{c_char, c_void};

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

/// No reply: the call failed (every field of its `qwen3_omni_generate_result` is 0).
pub const QWEN3_OMNI_STOP_NONE: i32 = 0;
/// The model ended its turn.
pub const QWEN3_OMNI_STOP_END_OF_TURN: i32 = 1;
/// `max_tokens` reached (also at once, with no token, for `max_tokens` 0).
pub const QWEN3_OMNI_STOP_MAX_TOKENS: i32 = 2;
/// `qwen3_omni_session_cancel` was called, or the text callback returned false.
pub const QWEN3_OMNI_STOP_CANCELLED: i32 = 3;
/// The context is full.
pub const QWEN3_OMNI_STOP_CONTEXT_FULL: i32 = 4;

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
    /// `sizeof(qwen3_omni_model_params)`, filled in by `qwen3_omni_model_default_params()`. Any
    /// other value (0, garbage, the size from another version of this header) is refused with
    /// `QWEN3_OMNI_ERR_INVALID_ARGUMENT` before another field is read (docs/capi.md, "ABI").
    pub struct_size: u32,
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
    /// The Thinker's and the Talker's KV cache element type: `QWEN3_OMNI_CACHE_F16` (the default,
    /// 0), `QWEN3_OMNI_CACHE_F32` (exact) or `QWEN3_OMNI_CACHE_Q8_0` (not implemented yet: refused).
    pub cache_type: i32,
}

/// KV cache element type: f16 (the default).
pub const QWEN3_OMNI_CACHE_F16: i32 = 0;
/// KV cache element type: f32 (the exact path).
pub const QWEN3_OMNI_CACHE_F32: i32 = 1;
/// KV cache element type: ggml's Q8_0 (32 int8 and one f16 scale per block).
pub const QWEN3_OMNI_CACHE_Q8_0: i32 = 2;

/// How tokens are chosen (on the GPU). Default: greedy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_sampling_params {
    /// `sizeof(qwen3_omni_sampling_params)`, filled in by `qwen3_omni_session_default_params()`
    /// (its `sampling` field); checked by `qwen3_omni_session_set_sampling` and
    /// `qwen3_omni_session_new` like every `struct_size`.
    pub struct_size: u32,
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
    /// `sizeof(qwen3_omni_session_params)`, filled in by `qwen3_omni_session_default_params()`;
    /// any other value is refused (`QWEN3_OMNI_ERR_INVALID_ARGUMENT`). The nested `speech` has
    /// no size of its own: this one covers it.
    pub struct_size: u32,
    pub sampling: qwen3_omni_sampling_params,
    /// Speech output settings (used when a reply has a `pcm_callback`).
    pub speech: qwen3_omni_speech_params,
    /// System message (copied); NULL: none.
    pub system_prompt: *const c_char,
    /// Default maximum of new tokens per reply, ≥ 0 (0: a reply feeds the turn and generates
    /// nothing). Default 256.
    pub max_tokens: i32,
}

/// One reply's settings. Get one from `qwen3_omni_generate_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qwen3_omni_generate_params {
    /// `sizeof(qwen3_omni_generate_params)`, filled in by `qwen3_omni_generate_default_params()`;
    /// any other value is refused (`QWEN3_OMNI_ERR_INVALID_ARGUMENT`).
    pub struct_size: u32,
    /// Maximum new tokens, ≥ 0 (0: feed the turn, generate nothing, stop reason
    /// `QWEN3_OMNI_STOP_MAX_TOKENS`); -1: the session's `max_tokens`; other negative values are
    /// refused.
    pub max_tokens: i32,
    /// Streamed text; may be NULL.
    pub text_callback: qwen3_omni_text_callback,
    /// Streamed speech (24 kHz mono float); NULL: text only. Returning false stops the reply and
    /// its speech.
    pub pcm_callback: qwen3_omni_pcm_callback,
    /// Passed to both callbacks.
    pub user_data: *mut c_void,
}

/// What a reply did. Written on every return of `qwen3_omni_session_generate`: after a failure
/// every field is 0 (`stop_reason` `QWEN3_OMNI_STOP_NONE`).
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
    /// Speech out: milliseconds from the start of the call to the first PCM chunk (-1: none in
    /// a reply; 0 after a failure, as every field).
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
