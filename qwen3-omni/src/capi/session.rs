//! Session calls: default params, new, free, cancel, sampling, reset, context.

use std::sync::{Arc, Mutex};

use super::args::{check_size, read_params, str_arg, struct_size, zero_out};
use super::error::{guard, invalid, session_err};
use super::registry::{self, lock, CError, CResult, SessionHandle, SessionState};
use super::speech::speech_options;
use super::types::*;
use crate::session::{Sampling, Session, SessionConfig};

/// Defaults: greedy sampling, random seed, no system prompt, 256 tokens per reply; speech:
/// transformers' Talker sampling (temperature 0.9, top-k 50; code predictor top-k 50, top-p 0.8),
/// random seed, at most 1000 frames (80 s) per reply.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub extern "C" fn qwen3_omni_session_default_params() -> qwen3_omni_session_params {
    qwen3_omni_session_params {
        struct_size: struct_size::<qwen3_omni_session_params>(),
        sampling: qwen3_omni_sampling_params {
            struct_size: struct_size::<qwen3_omni_sampling_params>(),
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
/// `params` may be NULL (defaults); its `struct_size`, and its `sampling.struct_size`, must be
/// this library's. A model serves one session at a time: `QWEN3_OMNI_ERR_BUSY`
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
            unsafe { read_params(params, "params") }?
        };
        check_size::<qwen3_omni_sampling_params>(p.sampling.struct_size, "qwen3_omni_session_params.sampling")?;
        let sampling = sampling_from(&p.sampling)?;
        speech_options(&p.speech, "ethan")?;
        let system = if p.system_prompt.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated by contract.
            Some(unsafe { str_arg(p.system_prompt, "system_prompt") }?.to_string())
        };
        if p.max_tokens < 0 {
            return Err(invalid(format!("max_tokens {} must be ≥ 0 (0: replies generate nothing)", p.max_tokens)));
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

/// New sampling settings from the next reply on (`sampling->struct_size` must be this library's).
///
/// # Safety
/// `session` is any value (looked up); `sampling` is valid for reading its `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn qwen3_omni_session_set_sampling(
    session: *mut qwen3_omni_session,
    sampling: *const qwen3_omni_sampling_params,
) -> qwen3_omni_status {
    guard(|| {
        let s = registry::session(session as usize)?;
        // SAFETY: readable by contract (NULL rejected).
        let p = unsafe { read_params(sampling, "sampling") }?;
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

/// Context positions in use and in total (either pointer may be NULL; both are 0 on failure).
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
        // SAFETY: NULL or writable by contract.
        unsafe { (zero_out(used, 1), zero_out(size, 1)) };
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
