//! A reply: the generate params' defaults and `qwen3_omni_session_generate` (text streamed to
//! the text callback, speech to the PCM callback).

use std::sync::atomic::Ordering;

use super::args::{read_params, struct_size, zero_out};
use super::error::{guard, invalid, session_err, speech_err};
use super::registry::{self, SessionState, SpeechState};
use super::speech::load_speech;
use super::types::*;
use crate::session::StopReason;

/// Defaults: the session's max tokens, no callbacks.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub extern "C" fn qwen3_omni_generate_default_params() -> qwen3_omni_generate_params {
    qwen3_omni_generate_params {
        struct_size: struct_size::<qwen3_omni_generate_params>(),
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
/// the history. `params` and `result` may be NULL; `params->struct_size` must be this library's.
/// `*result` is written on every return: all zero (`stop_reason` `QWEN3_OMNI_STOP_NONE`) after
/// a failure. `max_tokens` 0 feeds the turn and generates nothing (`QWEN3_OMNI_STOP_MAX_TOKENS`;
/// the history then holds the turn with an empty reply).
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
        // Written on every return: zero (QWEN3_OMNI_STOP_NONE) unless the reply succeeds.
        // SAFETY: NULL or writable by contract; all-zero is a valid result.
        unsafe { zero_out(result, 1) };
        let s = registry::session(session as usize)?;
        let p = if params.is_null() {
            qwen3_omni_generate_default_params()
        } else {
            // SAFETY: non-NULL and readable by contract.
            unsafe { read_params(params, "params") }?
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
