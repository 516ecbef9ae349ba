//! The boundary of every export: errors and panics become a status code and the thread's last
//! error; the library's error types map onto `QWEN3_OMNI_ERR_*`.

use super::registry::{self, CError, CResult};
use super::types::*;
use crate::session::SessionError;
use crate::speech::SpeechError;
use crate::thinker::gpu::GenError;

/// Runs `f`, turning errors and panics into a status code and the thread's last error.
/// The panic hook (`panic.rs`) sees that this thread is inside a call, so the panic's message
/// goes to the log callback, not to stderr.
pub(super) fn guard(f: impl FnOnce() -> CResult<()>) -> qwen3_omni_status {
    let _in_call = super::panic::InCall::enter();
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

pub(super) fn invalid(msg: impl Into<String>) -> CError {
    CError::new(QWEN3_OMNI_ERR_INVALID_ARGUMENT, msg)
}

pub(super) fn speech_err(e: SpeechError) -> CError {
    let code = match &e {
        SpeechError::Gpu(_) | SpeechError::Model(crate::model_file::ModelError::Gpu(_)) => QWEN3_OMNI_ERR_DEVICE,
        SpeechError::Model(crate::model_file::ModelError::Memory(_)) => QWEN3_OMNI_ERR_DEVICE,
        SpeechError::Model(crate::model_file::ModelError::CacheType { .. }) => QWEN3_OMNI_ERR_INVALID_ARGUMENT,
        SpeechError::Model(_) | SpeechError::Groups { .. } => QWEN3_OMNI_ERR_MODEL,
        _ => QWEN3_OMNI_ERR_INTERNAL,
    };
    CError::new(code, format!("speech output: {e}"))
}

pub(super) fn session_err(e: SessionError) -> CError {
    let code = match &e {
        SessionError::Model(crate::model_file::ModelError::Gpu(_)) => QWEN3_OMNI_ERR_DEVICE,
        SessionError::Model(crate::model_file::ModelError::Memory(_)) => QWEN3_OMNI_ERR_DEVICE,
        SessionError::Model(crate::model_file::ModelError::CacheType { .. }) => QWEN3_OMNI_ERR_INVALID_ARGUMENT,
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
