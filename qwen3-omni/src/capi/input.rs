//! The user's message of the next turn: text, PCM and WAV files.

use std::ffi::c_char;

use super::args::str_arg;
use super::error::{guard, invalid};
use super::registry::{self, CError, CResult, SessionHandle};
use super::types::*;
use crate::session::Input;

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
