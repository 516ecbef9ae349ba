//! Speech output: the voice, the Talker's sampling from the C params, loading the Talker and
//! Code2Wav for a session.

use std::ffi::c_char;

use super::args::str_arg;
use super::error::{guard, invalid, speech_err};
use super::registry::{self, CError, CResult, SessionState, SpeechState};
use super::types::*;
use crate::model_file::ModelFile;
use crate::speech::{Speaker, SpeechOptions, TurnSpeech};
use crate::talker::{TalkerConfig, TalkerSampling};

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

/// Opens the model file again (its own memory map) and checks it has what speech output needs.
fn speech_file(path: &std::path::Path) -> CResult<(ModelFile, TalkerConfig)> {
    let file = ModelFile::open(path).map_err(|e| CError::new(QWEN3_OMNI_ERR_MODEL, e.to_string()))?;
    if let Some(why) = crate::speech::speech_missing(&file, path) {
        return Err(CError::new(QWEN3_OMNI_ERR_NOT_AVAILABLE, why));
    }
    let talker = TalkerConfig::from_model(&file).map_err(|e| CError::new(QWEN3_OMNI_ERR_MODEL, e.to_string()))?;
    Ok((file, talker))
}

pub(super) fn speech_options(p: &qwen3_omni_speech_params, voice: &str) -> CResult<SpeechOptions> {
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

/// Loads the Talker and Code2Wav for a session's speech output.
pub(super) fn load_speech(st: &SessionState) -> CResult<SpeechState> {
    let sess = st.session.as_ref().ok_or_else(|| invalid("the session is being freed"))?;
    let model = sess.model();
    let (file, _) = speech_file(model.path())?;
    let opts = speech_options(&st.speech_params, &st.voice)?;
    let t0 = std::time::Instant::now();
    let k = model.new_kernels();
    let sp = Speaker::load(k, &file, model.ctx_size(), opts).map_err(speech_err)?;
    tracing::info!("Talker and Code2Wav loaded in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(SpeechState { file, ts: TurnSpeech::new(sp) })
}
