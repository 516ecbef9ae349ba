//! Bad calls into the C API return error codes and never crash: NULL model, freed session, wrong
//! sample rate, cancel twice, free twice, and more. Called from Rust through the same `extern "C"`
//! functions a C program links (lavapipe, validation on).

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use qwen3_omni::capi::*;

/// One tiny GGUF for the whole test binary, in a fixed directory of the target dir (no test can
/// remove a shared file when the others are done; reruns overwrite it).
fn model_path() -> &'static CString {
    static P: OnceLock<CString> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi-bad-calls");
        let file = common::tiny_model_with_tokenizer_at(&dir);
        CString::new(file.to_str().unwrap()).unwrap()
    })
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(qwen3_omni_last_error()) }.to_string_lossy().into_owned()
}

fn load() -> *mut qwen3_omni_model {
    let mut p = qwen3_omni_model_default_params();
    p.ctx_size = 128;
    p.validation = true;
    p.pipeline_cache_dir = c"".as_ptr();
    let mut m = null_mut();
    let s = unsafe { qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m) };
    assert_eq!(s, QWEN3_OMNI_OK, "{}", last_error());
    assert!(!m.is_null());
    m
}

fn new_session(m: *mut qwen3_omni_model) -> *mut qwen3_omni_session {
    let mut p = qwen3_omni_session_default_params();
    p.sampling.seed = 1;
    let mut s = null_mut();
    let st = unsafe { qwen3_omni_session_new(m, &p, &mut s) };
    assert_eq!(st, QWEN3_OMNI_OK, "{}", last_error());
    s
}

fn finish(m: *mut qwen3_omni_model) {
    let mut info = std::mem::MaybeUninit::<qwen3_omni_model_info>::uninit();
    assert_eq!(unsafe { qwen3_omni_model_get_info(m, info.as_mut_ptr()) }, QWEN3_OMNI_OK);
    let info = unsafe { info.assume_init() };
    assert_eq!(info.validation_messages, 0, "validation messages");
    assert_eq!(unsafe { qwen3_omni_model_free(m) }, QWEN3_OMNI_OK);
}

fn expect(status: qwen3_omni_status, want: qwen3_omni_status, what: &str) {
    assert_eq!(status, want, "{what}: got {status} ({})", last_error());
    if want != QWEN3_OMNI_OK {
        assert!(!last_error().is_empty(), "{what}: no last_error text");
    }
}

#[test]
fn null_model_and_null_pointers_are_errors() {
    let mut s = null_mut();
    unsafe {
        expect(qwen3_omni_session_new(null_mut(), null(), &mut s), QWEN3_OMNI_ERR_INVALID_HANDLE, "session_new(NULL)");
        assert!(s.is_null());
        expect(qwen3_omni_model_free(null_mut()), QWEN3_OMNI_ERR_INVALID_HANDLE, "model_free(NULL)");
        let mut info = std::mem::MaybeUninit::uninit();
        expect(qwen3_omni_model_get_info(null(), info.as_mut_ptr()), QWEN3_OMNI_ERR_INVALID_HANDLE, "get_info(NULL)");
        // A made-up handle is looked up, never dereferenced.
        let bogus = 0xdead_beef_usize as *mut qwen3_omni_model;
        expect(qwen3_omni_session_new(bogus, null(), &mut s), QWEN3_OMNI_ERR_INVALID_HANDLE, "bogus model");
        expect(qwen3_omni_session_cancel(null_mut()), QWEN3_OMNI_ERR_INVALID_HANDLE, "cancel(NULL)");
        expect(qwen3_omni_session_free(null_mut()), QWEN3_OMNI_ERR_INVALID_HANDLE, "session_free(NULL)");
        expect(qwen3_omni_session_generate(null_mut(), null(), null_mut()), QWEN3_OMNI_ERR_INVALID_HANDLE, "generate");
        let mut m = null_mut();
        expect(qwen3_omni_model_load(null(), null(), &mut m), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "load(NULL path)");
        assert!(last_error().contains("path"), "{}", last_error());
        expect(qwen3_omni_model_load(c"x.gguf".as_ptr(), null(), null_mut()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "out");
        expect(
            qwen3_omni_model_load(c"/nonexistent/m.gguf".as_ptr(), null(), &mut m),
            QWEN3_OMNI_ERR_MODEL,
            "missing file",
        );
        assert!(last_error().contains("/nonexistent/m.gguf"), "{}", last_error());
        assert!(m.is_null());
        expect(qwen3_omni_device_list(null_mut(), 4, null_mut(), null_mut()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "list");
        expect(qwen3_omni_log_set(None, 0, null_mut()), QWEN3_OMNI_OK, "log off");
        // A successful call clears the error text.
        assert_eq!(last_error(), "");
        assert_eq!(
            CStr::from_ptr(qwen3_omni_status_string(QWEN3_OMNI_ERR_BUSY)).to_str().unwrap(),
            "QWEN3_OMNI_ERR_BUSY"
        );
    }
}

#[test]
fn freed_session_and_free_twice_are_errors() {
    let m = load();
    let s = new_session(m);
    unsafe {
        // One session per model in this build.
        let mut s2 = null_mut();
        expect(qwen3_omni_session_new(m, null(), &mut s2), QWEN3_OMNI_ERR_BUSY, "second session");
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_ERR_INVALID_HANDLE, "free twice");
        expect(qwen3_omni_session_add_text(s, c"hi".as_ptr()), QWEN3_OMNI_ERR_INVALID_HANDLE, "add_text on freed");
        expect(qwen3_omni_session_generate(s, null(), null_mut()), QWEN3_OMNI_ERR_INVALID_HANDLE, "generate on freed");
        expect(qwen3_omni_session_cancel(s), QWEN3_OMNI_ERR_INVALID_HANDLE, "cancel on freed");
        expect(qwen3_omni_session_reset(s), QWEN3_OMNI_ERR_INVALID_HANDLE, "reset on freed");
        // The model came back: a new session works.
        let s3 = new_session(m);
        expect(qwen3_omni_session_add_text(s3, c"hi".as_ptr()), QWEN3_OMNI_OK, "add_text");
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = 2;
        let mut r = qwen3_omni_generate_result::default();
        expect(qwen3_omni_session_generate(s3, &gp, &mut r), QWEN3_OMNI_OK, "generate");
        assert_eq!((r.n_tokens, r.stop_reason), (2, QWEN3_OMNI_STOP_MAX_TOKENS));
        // Freeing the model first is allowed; the session keeps it alive until it is freed.
        expect(qwen3_omni_model_free(m), QWEN3_OMNI_OK, "model free with a live session");
        expect(qwen3_omni_model_free(m), QWEN3_OMNI_ERR_INVALID_HANDLE, "model free twice");
        expect(qwen3_omni_session_add_text(s3, c"more".as_ptr()), QWEN3_OMNI_OK, "add_text after model free");
        expect(qwen3_omni_session_generate(s3, &gp, &mut r), QWEN3_OMNI_OK, "generate after model free");
        expect(qwen3_omni_session_free(s3), QWEN3_OMNI_OK, "free");
    }
}

#[test]
fn audio_in_works_and_bad_audio_calls_are_errors() {
    let m = load();
    let s = new_session(m);
    let pcm = vec![0.0f32; 1600];
    unsafe {
        expect(
            qwen3_omni_session_add_audio(s, pcm.as_ptr(), pcm.len(), 44100),
            QWEN3_OMNI_ERR_INVALID_ARGUMENT,
            "rate",
        );
        assert!(last_error().contains("44100"), "{}", last_error());
        expect(qwen3_omni_session_add_audio(s, null(), 10, 16000), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "NULL samples");
        expect(qwen3_omni_session_add_audio(s, pcm.as_ptr(), 0, 16000), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "0 samples");
        expect(
            qwen3_omni_session_add_audio_file(s, c"/nonexistent.wav".as_ptr()),
            QWEN3_OMNI_ERR_INVALID_ARGUMENT,
            "wav",
        );
        let nan = [f32::NAN; 4];
        expect(qwen3_omni_session_add_audio(s, nan.as_ptr(), 4, 16000), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "NaN samples");
        let not_wav = CString::new(model_path().to_str().unwrap()).unwrap();
        expect(qwen3_omni_session_add_audio_file(s, not_wav.as_ptr()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "not a WAV");
        // Audio in: a WAV (44.1 kHz stereo, resampled) and raw 16 kHz PCM, then a question.
        let wav = common::fixtures().join("audio/privet_mir_44k_stereo.wav");
        let wav = CString::new(wav.to_str().unwrap()).unwrap();
        expect(qwen3_omni_session_add_audio_file(s, wav.as_ptr()), QWEN3_OMNI_OK, "wav");
        expect(qwen3_omni_session_add_audio(s, pcm.as_ptr(), pcm.len(), 16000), QWEN3_OMNI_OK, "pcm");
        expect(qwen3_omni_session_add_text(s, c"What was said?".as_ptr()), QWEN3_OMNI_OK, "text");
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = 3;
        let mut r = qwen3_omni_generate_result::default();
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate with audio");
        assert_eq!(r.n_tokens, 3);
        assert!(r.n_prompt_tokens > 20, "{} prompt tokens (audio placeholders included)", r.n_prompt_tokens);
        // A text turn after the audio turn (the audio stays in the cache).
        expect(qwen3_omni_session_add_text(s, c"And then?".as_ptr()), QWEN3_OMNI_OK, "text");
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate after audio");
        assert!(r.n_prompt_tokens < 20, "{}", r.n_prompt_tokens);
        expect(qwen3_omni_session_set_voice(s, c"Ethan".as_ptr()), QWEN3_OMNI_OK, "voice");
        expect(qwen3_omni_session_set_voice(s, null()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "NULL voice");
        expect(qwen3_omni_session_set_voice(s, c"nobody".as_ptr()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "unknown voice");
        // Bad sampling and generation settings.
        let mut sp = qwen3_omni_session_default_params().sampling;
        sp.top_p = 1.5;
        expect(qwen3_omni_session_set_sampling(s, &sp), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "top_p");
        sp.top_p = 1.0;
        sp.top_k = -3;
        expect(qwen3_omni_session_set_sampling(s, &sp), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "top_k");
        expect(qwen3_omni_session_set_sampling(s, null()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "NULL sampling");
        gp = qwen3_omni_generate_default_params();
        gp.max_tokens = -5;
        expect(qwen3_omni_session_generate(s, &gp, null_mut()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "max_tokens");
        // A prompt over the context.
        expect(qwen3_omni_session_reset(s), QWEN3_OMNI_OK, "reset");
        let long = CString::new("word ".repeat(400)).unwrap();
        expect(qwen3_omni_session_add_text(s, long.as_ptr()), QWEN3_OMNI_OK, "add long");
        expect(qwen3_omni_session_generate(s, null(), null_mut()), QWEN3_OMNI_ERR_CONTEXT_FULL, "too long");
        expect(qwen3_omni_session_reset(s), QWEN3_OMNI_OK, "reset");
        expect(qwen3_omni_session_generate(s, null(), null_mut()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "nothing queued");
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

struct Counter {
    session: *mut qwen3_omni_session,
    tokens: usize,
    text: String,
}

unsafe extern "C" fn cancel_after_two(text: *const c_char, len: usize, token: i32, ud: *mut c_void) -> bool {
    let c = unsafe { &mut *(ud as *mut Counter) };
    let bytes = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
    c.text.push_str(std::str::from_utf8(bytes).unwrap());
    assert_eq!(unsafe { *text.add(len) }, 0, "NUL-terminated");
    if token >= 0 {
        c.tokens += 1;
        if c.tokens == 2 {
            // Twice, from inside the callback: both fine.
            assert_eq!(unsafe { qwen3_omni_session_cancel(c.session) }, QWEN3_OMNI_OK);
            assert_eq!(unsafe { qwen3_omni_session_cancel(c.session) }, QWEN3_OMNI_OK);
            // Other calls on the session meanwhile are refused, not blocked.
            assert_eq!(unsafe { qwen3_omni_session_add_text(c.session, c"x".as_ptr()) }, QWEN3_OMNI_ERR_BUSY);
        }
    }
    true
}

#[test]
fn cancel_twice_is_harmless_and_stops_within_one_step() {
    let m = load();
    let s = new_session(m);
    unsafe {
        expect(qwen3_omni_session_cancel(s), QWEN3_OMNI_OK, "cancel while idle");
        expect(qwen3_omni_session_cancel(s), QWEN3_OMNI_OK, "cancel twice");
        let mut c = Counter { session: s, tokens: 0, text: String::new() };
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = 40;
        gp.text_callback = Some(cancel_after_two);
        gp.user_data = (&mut c as *mut Counter).cast();
        let mut r = qwen3_omni_generate_result::default();
        expect(qwen3_omni_session_add_text(s, c"Count to ten.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate");
        assert_eq!((r.n_tokens, r.stop_reason), (2, QWEN3_OMNI_STOP_CANCELLED));
        assert_eq!(c.tokens, 2);
        // Still usable: the next reply starts uncancelled.
        let mut gp2 = qwen3_omni_generate_default_params();
        gp2.max_tokens = 3;
        expect(qwen3_omni_session_add_text(s, c"Go on.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        expect(qwen3_omni_session_generate(s, &gp2, &mut r), QWEN3_OMNI_OK, "generate again");
        assert_eq!((r.n_tokens, r.stop_reason), (3, QWEN3_OMNI_STOP_MAX_TOKENS));
        // Cancel from another thread while generating: it stops long before max_tokens.
        let handle = s as usize;
        expect(qwen3_omni_session_add_text(s, c"Once more.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        let th = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            qwen3_omni_session_cancel(handle as *mut qwen3_omni_session)
        });
        gp2.max_tokens = 100_000;
        expect(qwen3_omni_session_generate(s, &gp2, &mut r), QWEN3_OMNI_OK, "generate, cancelled");
        assert_eq!(th.join().unwrap(), QWEN3_OMNI_OK);
        assert!(matches!(r.stop_reason, QWEN3_OMNI_STOP_CANCELLED | QWEN3_OMNI_STOP_CONTEXT_FULL), "{}", r.stop_reason);
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

unsafe extern "C" fn count_pieces(_: *const c_char, _: usize, _: i32, ud: *mut c_void) -> bool {
    unsafe { *(ud as *mut usize) += 1 };
    true
}

/// `max_tokens` 0 (the session's or the reply's) feeds the turn and generates nothing: no token,
/// no text callback, stop reason MAX_TOKENS; the next turn goes on from the empty reply. Negative
/// values other than the reply's -1 (the session's value) are refused.
#[test]
fn max_tokens_zero_generates_nothing() {
    let m = load();
    unsafe {
        let mut p = qwen3_omni_session_default_params();
        let mut s = null_mut();
        for bad in [-1, -2, i32::MIN] {
            p.max_tokens = bad;
            expect(qwen3_omni_session_new(m, &p, &mut s), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "session max_tokens < 0");
            assert!(last_error().contains("max_tokens"), "{}", last_error());
        }
        p.max_tokens = 0;
        expect(qwen3_omni_session_new(m, &p, &mut s), QWEN3_OMNI_OK, "session max_tokens 0");
        let mut pieces = 0usize;
        let mut gp = qwen3_omni_generate_default_params();
        gp.text_callback = Some(count_pieces);
        gp.user_data = (&mut pieces as *mut usize).cast();
        let mut r = qwen3_omni_generate_result::default();
        let (mut used, mut used_before) = (0u32, 0u32);
        // The session's 0 (generate's -1), then the reply's own 0.
        for (turn, max_tokens) in [(c"Hello.", -1), (c"Hello again.", 0)] {
            gp.max_tokens = max_tokens;
            expect(qwen3_omni_session_add_text(s, turn.as_ptr()), QWEN3_OMNI_OK, "add_text");
            expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate, max_tokens 0");
            assert_eq!((r.n_tokens, r.stop_reason), (0, QWEN3_OMNI_STOP_MAX_TOKENS), "max_tokens {max_tokens}");
            assert_eq!(pieces, 0, "the text callback ran for an empty reply");
            assert!(r.n_prompt_tokens > 0);
            expect(qwen3_omni_session_context(s, &mut used, null_mut()), QWEN3_OMNI_OK, "context");
            assert_eq!(used, used_before + r.n_prompt_tokens as u32, "the turn is fed, nothing more");
            used_before = used;
        }
        for bad in [-2, -100, i32::MIN] {
            gp.max_tokens = bad;
            expect(qwen3_omni_session_add_text(s, c"x".as_ptr()), QWEN3_OMNI_OK, "add_text");
            expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "max_tokens < -1");
        }
        // The conversation goes on after the empty replies.
        gp.max_tokens = 3;
        expect(qwen3_omni_session_add_text(s, c"Now say something.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate after");
        assert_eq!((r.n_tokens, r.stop_reason), (3, QWEN3_OMNI_STOP_MAX_TOKENS));
        assert!(pieces >= 3);
        // A turn with audio too (the AudioTower runs; the first token is never taken).
        pieces = 0;
        gp.max_tokens = 0;
        expect(qwen3_omni_session_reset(s), QWEN3_OMNI_OK, "reset");
        let pcm = vec![0.01f32; 3200];
        expect(qwen3_omni_session_add_audio(s, pcm.as_ptr(), pcm.len(), 16000), QWEN3_OMNI_OK, "audio");
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate audio, max_tokens 0");
        assert_eq!((r.n_tokens, r.stop_reason, pieces), (0, QWEN3_OMNI_STOP_MAX_TOKENS, 0));
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

#[test]
fn a_panic_inside_becomes_an_error_code() {
    let s = boundary_for_tests(|| panic!("boom at the boundary"));
    assert_eq!(s, QWEN3_OMNI_ERR_INTERNAL);
    assert!(last_error().contains("boom at the boundary"), "{}", last_error());
    assert_eq!(boundary_for_tests(|| {}), QWEN3_OMNI_OK);
}

#[test]
fn free_from_another_thread_while_generating() {
    let m = load();
    let s = new_session(m);
    unsafe {
        expect(qwen3_omni_session_add_text(s, c"Talk for a while.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        let handle = s as usize;
        let th = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            qwen3_omni_session_free(handle as *mut qwen3_omni_session)
        });
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = 100_000;
        let mut r = qwen3_omni_generate_result::default();
        // The free cancels the running generation, which then returns normally.
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "generate, freed meanwhile");
        assert_eq!(th.join().unwrap(), QWEN3_OMNI_OK);
        expect(qwen3_omni_session_cancel(s), QWEN3_OMNI_ERR_INVALID_HANDLE, "cancel after free");
        // The model came back when the generating call let go of the session.
        let s2 = new_session(m);
        expect(qwen3_omni_session_free(s2), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

unsafe extern "C" fn collect_log(level: i32, text: *const c_char, ud: *mut c_void) {
    let lines = unsafe { &*(ud as *const std::sync::Mutex<Vec<(i32, String)>>) };
    let t = unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned();
    lines.lock().unwrap().push((level, t));
}

unsafe extern "C" fn stop_loading(progress: f32, ud: *mut c_void) -> bool {
    unsafe { *(ud as *mut u32) += 1 };
    progress < 0.2
}

#[test]
fn load_cancelled_by_progress_callback() {
    // The log callback sees the library's lines (a static: it may be called from any thread).
    static LINES: std::sync::Mutex<Vec<(i32, String)>> = std::sync::Mutex::new(Vec::new());
    unsafe {
        expect(qwen3_omni_log_set(Some(collect_log), 99, null_mut()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "level");
        let ud = &LINES as *const _ as *mut c_void;
        expect(qwen3_omni_log_set(Some(collect_log), QWEN3_OMNI_LOG_INFO, ud), QWEN3_OMNI_OK, "log_set");
    }
    let mut calls = 0u32;
    let mut p = qwen3_omni_model_default_params();
    p.ctx_size = 64;
    p.pipeline_cache_dir = c"".as_ptr();
    p.progress_callback = Some(stop_loading);
    p.progress_user_data = (&mut calls as *mut u32).cast();
    let mut m = null_mut();
    unsafe {
        expect(qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m), QWEN3_OMNI_ERR_CANCELLED, "cancelled load");
    }
    assert!(m.is_null());
    assert!(calls >= 3, "{calls} progress calls");
    let logged = LINES.lock().unwrap().clone();
    assert!(
        logged.iter().any(|(l, t)| *l == QWEN3_OMNI_LOG_INFO && t.contains("loading") && t.contains("tiny.gguf")),
        "{logged:?}"
    );
    unsafe { expect(qwen3_omni_log_set(None, 0, null_mut()), QWEN3_OMNI_OK, "log off") };
    // Device choice: an index that does not exist is a device error; below -1 is invalid.
    p.progress_callback = None;
    p.device = 99;
    unsafe {
        expect(qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m), QWEN3_OMNI_ERR_DEVICE, "device 99");
    }
    p.device = -2;
    unsafe {
        expect(qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "device -2");
    }
    p.device = -1;
    p.ctx_size = 0;
    unsafe {
        expect(qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "ctx 0");
    }
    // A cache type that is no QWEN3_OMNI_CACHE_* value, and q8_0 (not implemented yet): refused.
    p.ctx_size = 64;
    for t in [7, -1, QWEN3_OMNI_CACHE_Q8_0] {
        p.cache_type = t;
        unsafe {
            let what = format!("cache_type {t}");
            expect(qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m), QWEN3_OMNI_ERR_INVALID_ARGUMENT, &what);
        }
    }
}
