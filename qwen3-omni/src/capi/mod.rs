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
//! `QWEN3_OMNI_ERR_INTERNAL`; nothing unwinds into C, and nothing is printed: the panic's
//! message goes to the log callback, if one is set (a panic hook, installed by the first call,
//! that passes panics outside library calls on to the hook the process had before).
//!
//! # ABI
//! Every params struct a function reads (model, session, sampling, generate) starts with
//! `uint32_t struct_size`, which its `*_default_params()` fills with `sizeof`; a function given
//! any other size (0, garbage, an older or newer header's) refuses it with
//! `QWEN3_OMNI_ERR_INVALID_ARGUMENT` and names both sizes. Every output (handle, result, info,
//! count) is written on every return; after a failure it is zero (NULL, `QWEN3_OMNI_STOP_NONE`;
//! the default device index -1).
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

// cbindgen reads the submodules in the order they are declared here, so the declarations that
// export something keep the order of include/qwen3_omni_vk.h (blank lines stop rustfmt sorting).

// Constants, callback types, handles, params and info structs.
mod types;

// version, last_error, status_string, log_set, device_list.
mod library;

// model_default_params, model_load, model_free, model_get_info.
mod model;

// session_default_params, session_new/free/cancel/set_sampling/reset/context.
mod session;

// session_add_text, session_add_audio, session_add_audio_file.
mod input;

// session_set_voice (and loading the Talker and Code2Wav).
mod speech;

// generate_default_params, session_generate.
mod generate;

// Internals, no exports.
mod args;
mod error;
mod log;
mod panic;
mod registry;

pub use error::boundary_for_tests;
pub use generate::*;
pub use input::*;
pub use library::*;
pub use model::*;
pub use session::*;
pub use speech::*;
pub use types::*;
