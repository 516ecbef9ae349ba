//! Speech out through the C API: the PCM callback gets the reply spoken while it streams (Talker
//! alongside the Thinker), 1920·T − 555 samples for T frames; voices; the Talker's settings;
//! cancel (from the callback and from another thread) stops the speech within a frame. Called
//! from Rust through the same `extern "C"` functions a C program links (lavapipe, validation on).

mod common;

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use qwen3_omni::capi::*;

/// One tiny GGUF (all four components) for the whole test binary.
fn model_path() -> &'static CString {
    static P: OnceLock<CString> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi-speech");
        let file = common::tiny_model_with_tokenizer_at(&dir);
        CString::new(file.to_str().unwrap()).unwrap()
    })
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(qwen3_omni_last_error()) }.to_string_lossy().into_owned()
}

fn expect(status: qwen3_omni_status, want: qwen3_omni_status, what: &str) {
    assert_eq!(status, want, "{what}: got {status} ({})", last_error());
    if want != QWEN3_OMNI_OK {
        assert!(!last_error().is_empty(), "{what}: no last_error text");
    }
}

fn load() -> *mut qwen3_omni_model {
    let mut p = qwen3_omni_model_default_params();
    p.ctx_size = 128;
    p.validation = true;
    p.pipeline_cache_dir = c"".as_ptr();
    let mut m = null_mut();
    expect(unsafe { qwen3_omni_model_load(model_path().as_ptr(), &p, &mut m) }, QWEN3_OMNI_OK, "load");
    m
}

fn new_session(m: *mut qwen3_omni_model, max_frames: u32) -> *mut qwen3_omni_session {
    let mut p = qwen3_omni_session_default_params();
    p.sampling.seed = 1;
    p.speech.seed = 7;
    p.speech.max_frames = max_frames;
    let mut s = null_mut();
    expect(unsafe { qwen3_omni_session_new(m, &p, &mut s) }, QWEN3_OMNI_OK, "session_new");
    s
}

fn finish(m: *mut qwen3_omni_model) {
    let mut info = std::mem::MaybeUninit::<qwen3_omni_model_info>::uninit();
    assert_eq!(unsafe { qwen3_omni_model_get_info(m, info.as_mut_ptr()) }, QWEN3_OMNI_OK);
    let info = unsafe { info.assume_init() };
    assert_eq!(info.validation_messages, 0, "validation messages");
    assert_eq!(unsafe { qwen3_omni_model_free(m) }, QWEN3_OMNI_OK);
}

/// What the PCM callback saw.
#[derive(Default)]
struct Heard {
    samples: Vec<f32>,
    chunks: usize,
    bad_rate: bool,
    /// Cancel the session (`session`) at this chunk (1-based); 0: never.
    cancel_at: usize,
    /// Return false at this chunk; 0: never.
    stop_at: usize,
    session: usize,
    /// Publish the sample count in `SHARED_SAMPLES` (for a thread that watches the speech).
    share: bool,
}

static SHARED_SAMPLES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe extern "C" fn on_pcm(samples: *const f32, n: usize, rate: i32, ud: *mut c_void) -> bool {
    let h = unsafe { &mut *(ud as *mut Heard) };
    h.samples.extend_from_slice(unsafe { std::slice::from_raw_parts(samples, n) });
    h.chunks += 1;
    h.bad_rate |= rate != QWEN3_OMNI_OUTPUT_SAMPLE_RATE;
    if h.share {
        SHARED_SAMPLES.store(h.samples.len(), std::sync::atomic::Ordering::SeqCst);
    }
    if h.chunks == h.cancel_at {
        assert_eq!(unsafe { qwen3_omni_session_cancel(h.session as *mut qwen3_omni_session) }, QWEN3_OMNI_OK);
    }
    h.chunks != h.stop_at
}

fn speak(
    s: *mut qwen3_omni_session,
    text: &std::ffi::CStr,
    max_tokens: i32,
    h: &mut Heard,
) -> qwen3_omni_generate_result {
    expect(unsafe { qwen3_omni_session_add_text(s, text.as_ptr()) }, QWEN3_OMNI_OK, "add_text");
    let mut gp = qwen3_omni_generate_default_params();
    gp.max_tokens = max_tokens;
    gp.pcm_callback = Some(on_pcm);
    gp.user_data = h as *mut Heard as *mut c_void;
    let mut r = qwen3_omni_generate_result::default();
    expect(unsafe { qwen3_omni_session_generate(s, &gp, &mut r) }, QWEN3_OMNI_OK, "generate with speech");
    r
}

/// A whole reply of T frames is one causal Code2Wav decode: 1920·T − 555 samples.
fn whole(frames: i32) -> usize {
    1920 * frames as usize - 555
}

#[test]
fn pcm_callback_streams_the_spoken_reply_over_turns() {
    let m = load();
    let s = new_session(m, 12);
    unsafe {
        let mut h = Heard::default();
        let r = speak(s, c"Say hello.", 6, &mut h);
        assert!(r.n_tokens > 0);
        assert!(r.n_audio_frames > 0, "no frames ({} tokens, stop {})", r.n_tokens, r.stop_reason);
        assert!(r.n_audio_frames <= 12);
        assert_eq!(h.samples.len(), whole(r.n_audio_frames), "{} frames", r.n_audio_frames);
        assert_eq!(r.n_audio_samples as usize, h.samples.len());
        assert!(h.chunks >= 2, "streamed in chunks ({})", h.chunks);
        assert!(!h.bad_rate);
        assert!(h.samples.iter().all(|x| x.is_finite()));
        assert!(r.first_audio_ms >= 0.0);
        // A text-only turn in between (followed silently), then a spoken turn in another voice:
        // the history stays in the cache for both.
        expect(qwen3_omni_session_add_text(s, c"And?".as_ptr()), QWEN3_OMNI_OK, "add_text");
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = 3;
        let mut r2 = qwen3_omni_generate_result::default();
        expect(qwen3_omni_session_generate(s, &gp, &mut r2), QWEN3_OMNI_OK, "text-only turn");
        assert_eq!(r2.n_audio_frames, 0);
        assert_eq!(r2.n_audio_samples, 0);
        assert_eq!(r2.first_audio_ms, -1.0);
        // max_tokens 0 with a PCM callback: no token, so nothing to speak.
        let mut h0 = Heard::default();
        let r0 = speak(s, c"Quiet.", 0, &mut h0);
        assert_eq!((r0.n_tokens, r0.stop_reason), (0, QWEN3_OMNI_STOP_MAX_TOKENS));
        assert_eq!((r0.n_audio_frames, r0.n_audio_samples, h0.chunks), (0, 0, 0));
        assert_eq!(r0.first_audio_ms, -1.0);
        expect(qwen3_omni_session_set_voice(s, c"Chelsie".as_ptr()), QWEN3_OMNI_OK, "voice");
        let mut h3 = Heard::default();
        let r3 = speak(s, c"Once more.", 5, &mut h3);
        assert!(r3.n_prompt_tokens < 20, "only the new turn is fed ({})", r3.n_prompt_tokens);
        assert!(r3.n_audio_frames > 0);
        assert_eq!(h3.samples.len(), whole(r3.n_audio_frames));
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

#[test]
fn voices_and_speech_settings_are_checked() {
    let m = load();
    // Bad Talker settings are refused when the session is made.
    let mut p = qwen3_omni_session_default_params();
    let mut s = null_mut();
    p.speech.max_frames = 0;
    expect(unsafe { qwen3_omni_session_new(m, &p, &mut s) }, QWEN3_OMNI_ERR_INVALID_ARGUMENT, "max_frames 0");
    assert!(last_error().contains("max_frames"), "{}", last_error());
    p = qwen3_omni_session_default_params();
    p.speech.predictor_top_p = 0.0;
    expect(unsafe { qwen3_omni_session_new(m, &p, &mut s) }, QWEN3_OMNI_ERR_INVALID_ARGUMENT, "predictor_top_p");
    p = qwen3_omni_session_default_params();
    p.speech.top_k = 5000;
    expect(unsafe { qwen3_omni_session_new(m, &p, &mut s) }, QWEN3_OMNI_ERR_INVALID_ARGUMENT, "top_k");
    p = qwen3_omni_session_default_params();
    p.speech.temperature = f32::NAN;
    expect(unsafe { qwen3_omni_session_new(m, &p, &mut s) }, QWEN3_OMNI_ERR_INVALID_ARGUMENT, "temperature");
    assert!(s.is_null());
    // A greedy Talker (temperature 0).
    p = qwen3_omni_session_default_params();
    p.speech.temperature = 0.0;
    p.speech.max_frames = 4;
    expect(unsafe { qwen3_omni_session_new(m, &p, &mut s) }, QWEN3_OMNI_OK, "greedy Talker");
    unsafe {
        expect(qwen3_omni_session_set_voice(s, c"nobody".as_ptr()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "unknown voice");
        let e = last_error();
        assert!(e.contains("nobody") && e.contains("ethan") && e.contains("chelsie"), "{e}");
        expect(qwen3_omni_session_set_voice(s, c"".as_ptr()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "empty voice");
        expect(qwen3_omni_session_set_voice(s, null()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "NULL voice");
        expect(
            qwen3_omni_session_set_voice(null_mut(), c"ethan".as_ptr()),
            QWEN3_OMNI_ERR_INVALID_HANDLE,
            "NULL session",
        );
        for v in [c"ethan", c"Chelsie", c"AIDEN"] {
            expect(qwen3_omni_session_set_voice(s, v.as_ptr()), QWEN3_OMNI_OK, "known voice");
        }
        // The greedy Talker speaks in the voice set last.
        let mut h = Heard::default();
        let r = speak(s, c"Hi.", 4, &mut h);
        assert!(r.n_audio_frames > 0 && r.n_audio_frames <= 4);
        assert_eq!(h.samples.len(), whole(r.n_audio_frames));
        // After the Talker is loaded, the voice is checked against it.
        expect(qwen3_omni_session_set_voice(s, c"nobody".as_ptr()), QWEN3_OMNI_ERR_INVALID_ARGUMENT, "unknown voice");
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

#[test]
fn cancel_stops_the_speech_within_a_frame() {
    let m = load();
    let s = new_session(m, 2000);
    unsafe {
        // Cancel from inside the PCM callback at the first chunk (one frame made): at most the
        // frame in flight follows, and what was made is flushed (a whole decode of its frames).
        let mut h = Heard { cancel_at: 1, session: s as usize, ..Heard::default() };
        let r = speak(s, c"Tell me a long story.", 30, &mut h);
        assert_eq!(r.stop_reason, QWEN3_OMNI_STOP_CANCELLED);
        assert!((1..=2).contains(&r.n_audio_frames), "{} frames after the cancel", r.n_audio_frames);
        assert_eq!(h.samples.len(), whole(r.n_audio_frames));
        // The callback returning false stops the same way.
        let mut h = Heard { stop_at: 1, ..Heard::default() };
        let r = speak(s, c"Again.", 30, &mut h);
        assert_eq!(r.stop_reason, QWEN3_OMNI_STOP_CANCELLED);
        assert!((1..=2).contains(&r.n_audio_frames), "{} frames after the stop", r.n_audio_frames);
        // Cancel from another thread while the Talker speaks on alone (the Thinker's reply ended at
        // max_tokens = 2; max_frames is 2000): the thread waits for 10 frames' worth of audio.
        expect(qwen3_omni_session_reset(s), QWEN3_OMNI_OK, "reset");
        let id = s as usize;
        SHARED_SAMPLES.store(0, std::sync::atomic::Ordering::SeqCst);
        let th = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let mut seen = 0;
            while t0.elapsed().as_secs() < 120 {
                seen = SHARED_SAMPLES.load(std::sync::atomic::Ordering::SeqCst);
                if seen >= whole(10) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            (qwen3_omni_session_cancel(id as *mut qwen3_omni_session), seen)
        });
        let mut h = Heard { share: true, ..Heard::default() };
        let r = speak(s, c"Speak.", 2, &mut h);
        let (status, seen) = th.join().unwrap();
        assert_eq!(status, QWEN3_OMNI_OK);
        assert_eq!(h.samples.len(), whole(r.n_audio_frames));
        // Frames made when the cancel came: those heard plus at most 3 waiting for their chunk
        // (every 4 frames); then at most the frame in flight.
        let heard = (seen + 555) / 1920;
        assert!(
            (r.n_audio_frames as usize) <= heard + 3 + 1,
            "{} frames after a cancel at {heard} heard frames",
            r.n_audio_frames
        );
        assert_eq!(r.stop_reason, QWEN3_OMNI_STOP_CANCELLED);
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}

/// A copy of `src` without the Talker's and Code2Wav's tensors (their metadata stays: the loaders
/// find the tensors missing).
fn without_speech(src: &std::path::Path, dst: &std::path::Path) {
    use quantizer::gguf::{GgufFile, GgufWriter, TensorSpec};
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    w.set_alignment(f.header.alignment as u32).unwrap();
    for (k, v) in &f.header.metadata {
        w.set(k, v.clone());
    }
    let keep: Vec<_> = f
        .header
        .tensors
        .iter()
        .filter(|t| !t.name.starts_with("talker.") && !t.name.starts_with("code2wav."))
        .collect();
    assert!(keep.len() < f.header.tensors.len(), "the fixture has speech tensors");
    for t in &keep {
        w.add_tensor(TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ty: t.ty }).unwrap();
    }
    let mut out = w.begin(std::io::BufWriter::new(std::fs::File::create(dst).unwrap())).unwrap();
    for t in &keep {
        out.write_tensor(f.tensor_data(t)).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn a_model_without_a_talker_says_not_available() {
    let src = std::path::PathBuf::from(model_path().to_str().unwrap());
    let path = src.with_file_name("no-talker.gguf");
    without_speech(&src, &path);
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut p = qwen3_omni_model_default_params();
    p.ctx_size = 64;
    p.validation = true;
    p.pipeline_cache_dir = c"".as_ptr();
    let mut m = null_mut();
    expect(unsafe { qwen3_omni_model_load(cpath.as_ptr(), &p, &mut m) }, QWEN3_OMNI_OK, "load without a Talker");
    let s = new_session(m, 4);
    unsafe {
        expect(qwen3_omni_session_set_voice(s, c"ethan".as_ptr()), QWEN3_OMNI_ERR_NOT_AVAILABLE, "voice");
        assert!(last_error().contains("no Talker"), "{}", last_error());
        let mut h = Heard::default();
        expect(qwen3_omni_session_add_text(s, c"Hi.".as_ptr()), QWEN3_OMNI_OK, "add_text");
        let mut gp = qwen3_omni_generate_default_params();
        gp.max_tokens = 2;
        gp.pcm_callback = Some(on_pcm);
        gp.user_data = &mut h as *mut Heard as *mut c_void;
        expect(qwen3_omni_session_generate(s, &gp, null_mut()), QWEN3_OMNI_ERR_NOT_AVAILABLE, "pcm callback");
        assert!(last_error().contains("no Talker") && last_error().contains("no-talker.gguf"), "{}", last_error());
        assert!(h.samples.is_empty());
        // Text still works (the queued message was kept).
        gp.pcm_callback = None;
        let mut r = qwen3_omni_generate_result::default();
        expect(qwen3_omni_session_generate(s, &gp, &mut r), QWEN3_OMNI_OK, "text only");
        assert_eq!(r.n_tokens, 2);
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
    let _ = std::fs::remove_file(path);
}

#[test]
fn an_audio_question_gets_a_spoken_answer() {
    let m = load();
    let s = new_session(m, 6);
    unsafe {
        // The prompt has audio positions: the Talker needs the Thinker's hidden states for them and
        // starts when the reply is complete (as chat -a --audio-out without the early start).
        let wav = common::fixtures().join("audio/privet_mir_16k_mono.wav");
        let wav = CString::new(wav.to_str().unwrap()).unwrap();
        expect(qwen3_omni_session_add_audio_file(s, wav.as_ptr()), QWEN3_OMNI_OK, "wav");
        let mut h = Heard::default();
        let r = speak(s, c"What was said?", 4, &mut h);
        assert!(r.n_prompt_tokens > 20, "{}", r.n_prompt_tokens);
        assert!(r.n_audio_frames > 0 && r.n_audio_frames <= 6, "{} frames", r.n_audio_frames);
        assert_eq!(h.samples.len(), whole(r.n_audio_frames));
        // A spoken text turn after it.
        let mut h = Heard::default();
        let r = speak(s, c"And then?", 3, &mut h);
        assert!(r.n_audio_frames > 0);
        assert_eq!(h.samples.len(), whole(r.n_audio_frames));
        expect(qwen3_omni_session_free(s), QWEN3_OMNI_OK, "free");
    }
    finish(m);
}
