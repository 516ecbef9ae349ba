//! Handle bookkeeping behind the C API: every handle the API gives out is a key in a registry,
//! never the address of Rust memory, so a NULL, freed, foreign or doubly freed handle is found
//! out by a map lookup instead of being dereferenced. Keys are never reused in a process.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use qwen3_omni_vk::vk_runtime::Gpu;

use crate::session::{Input, Model, Session};

/// What an API call failed with: a status code and the text `qwen3_omni_last_error` returns.
#[derive(Debug)]
pub(crate) struct CError {
    pub code: i32,
    pub msg: String,
}

impl CError {
    pub fn new(code: i32, msg: impl Into<String>) -> CError {
        CError { code, msg: msg.into() }
    }
}

pub(crate) type CResult<T> = Result<T, CError>;

/// A loaded model. Its [`Model`] (weights and KV cache) is lent to at most one session at a time.
pub(crate) struct ModelHandle {
    pub id: usize,
    pub model: Mutex<Option<Model>>,
    pub gpu: Gpu,
    pub device_name: String,
    pub ctx_size: u32,
    pub vocab: u32,
    pub layers: u32,
}

/// A conversation. `cancel` is reachable without the lock, so any thread may stop a generation
/// that holds it.
pub(crate) struct SessionHandle {
    pub model_id: usize,
    pub cancel: Arc<AtomicBool>,
    /// The Speaker's cancel flag, once speech output has been loaded (set together with `cancel`).
    pub speech_cancel: std::sync::OnceLock<Arc<AtomicBool>>,
    pub inner: Mutex<SessionState>,
}

impl SessionHandle {
    /// Stops every stage: the Thinker within one step, the Talker within one frame.
    pub fn cancel_all(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(c) = self.speech_cancel.get() {
            c.store(true, Ordering::SeqCst);
        }
    }
}

pub(crate) struct SessionState {
    /// `None` only while being torn down.
    pub session: Option<Session>,
    /// The user message being assembled by `add_text` and `add_audio`.
    pub queued: Vec<Input>,
    pub max_tokens: usize,
    /// Speech output, loaded by the first reply with a PCM callback.
    pub speech: Option<SpeechState>,
    /// The voice of the speech output (lower case, checked against the model).
    pub voice: String,
    pub speech_params: super::qwen3_omni_speech_params,
}

/// The Talker and Code2Wav of a session, following its turns.
pub(crate) struct SpeechState {
    pub file: crate::model_file::ModelFile,
    pub ts: crate::speech::TurnSpeech,
}

impl Drop for SessionHandle {
    /// Gives the model back to its handle if that still exists (else the model is freed here).
    fn drop(&mut self) {
        let state = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = state.session.take() {
            let model = s.into_model();
            let home = registry().models.get(&self.model_id).cloned();
            if let Some(m) = home {
                *lock(&m.model) = Some(model);
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    next: usize,
    pub models: HashMap<usize, Arc<ModelHandle>>,
    pub sessions: HashMap<usize, Arc<SessionHandle>>,
}

impl Registry {
    /// A fresh key: non-zero, pointer-aligned, never reused.
    pub fn new_id(&mut self) -> usize {
        self.next += 1;
        self.next << 4
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// Locks ignoring poison: every critical section here leaves the maps consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    lock(&REGISTRY)
}

pub(crate) fn model(id: usize) -> CResult<Arc<ModelHandle>> {
    if id == 0 {
        return Err(CError::new(super::QWEN3_OMNI_ERR_INVALID_HANDLE, "the model handle is NULL"));
    }
    registry().models.get(&id).cloned().ok_or_else(|| {
        CError::new(
            super::QWEN3_OMNI_ERR_INVALID_HANDLE,
            format!("model handle {id:#x} is not live (freed or never made)"),
        )
    })
}

pub(crate) fn session(id: usize) -> CResult<Arc<SessionHandle>> {
    if id == 0 {
        return Err(CError::new(super::QWEN3_OMNI_ERR_INVALID_HANDLE, "the session handle is NULL"));
    }
    registry().sessions.get(&id).cloned().ok_or_else(|| {
        CError::new(
            super::QWEN3_OMNI_ERR_INVALID_HANDLE,
            format!("session handle {id:#x} is not live (freed or never made)"),
        )
    })
}

/// The session's state, or BUSY when another thread is inside a call on it.
pub(crate) fn try_state(s: &SessionHandle) -> CResult<MutexGuard<'_, SessionState>> {
    match s.inner.try_lock() {
        Ok(g) => Ok(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => Err(CError::new(
            super::QWEN3_OMNI_ERR_BUSY,
            "the session is in use by another call (only qwen3_omni_session_cancel may run concurrently)",
        )),
    }
}

/// Removes a session from the registry and stops its generation; the handle is destroyed when the
/// last call using it returns.
pub(crate) fn free_session(id: usize) -> CResult<()> {
    let h = registry().sessions.remove(&id);
    match h {
        Some(h) => {
            h.cancel_all();
            drop(h); // outside the registry lock: the drop gives the model back through it
            Ok(())
        }
        None => Err(CError::new(
            super::QWEN3_OMNI_ERR_INVALID_HANDLE,
            format!("session handle {id:#x} is not live (already freed or never made)"),
        )),
    }
}

thread_local! {
    static LAST_ERROR: std::cell::RefCell<CString> = std::cell::RefCell::new(CString::default());
}

pub(crate) fn set_last_error(msg: &str) {
    // Interior NULs (from a file name, say) would cut the text: show them as spaces.
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

pub(crate) fn last_error_ptr() -> *const std::ffi::c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
