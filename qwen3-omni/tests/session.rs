//! The library-level session on lavapipe (validation on): cancel (from the delta callback, from
//! another thread, during loading), multi-turn history in the KV cache, bad arguments.

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;

use qwen3_omni::chat::{audio_token_count, Item};
use qwen3_omni::chat::{render, Message, Role};
use qwen3_omni::session::{
    Input, LoadOptions, LoadStage, Model, Sampling, Session, SessionConfig, SessionError, StopReason,
};

fn opts(ctx: u32) -> LoadOptions {
    LoadOptions { ctx_size: ctx, validation: true, pipeline_cache: None, ..LoadOptions::default() }
}

#[test]
fn cancel_stops_within_one_step_and_session_stays_usable() {
    let (dir, file) = common::tiny_model_with_tokenizer("session-cancel");
    let model = Model::load(&file, &opts(256), |_| true).unwrap();
    let mut s = Session::new(model, SessionConfig::default()).unwrap();

    // Cancel from the delta callback after 2 tokens: exactly those 2 are delivered.
    let cancel = s.cancel_handle();
    let mut seen = Vec::new();
    let r = s
        .generate("What is the capital of France?", 50, |d| {
            if let Some(t) = d.token {
                seen.push(t);
                if seen.len() == 2 {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            true
        })
        .unwrap();
    assert_eq!(r.stop, StopReason::Cancelled);
    assert_eq!(r.tokens, seen, "delivered tokens");
    assert_eq!(r.tokens.len(), 2);
    let used = s.context_used();

    // Cancel twice (and while idle): harmless; the next reply clears the flag and runs.
    s.cancel();
    s.cancel();
    let r2 = s.generate("And of Germany?", 3, |_| true).unwrap();
    assert_eq!(r2.stop, StopReason::MaxTokens);
    assert_eq!(r2.tokens.len(), 3);
    assert!(s.context_used() > used);

    // Cancel from another thread: the callback waits until the other thread has set the flag, so
    // the very next step sees it.
    let handle = s.cancel_handle();
    let (tx, rx) = mpsc::channel::<()>();
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let th = std::thread::spawn(move || {
        rx.recv().unwrap();
        handle.store(true, Ordering::SeqCst);
        ack_tx.send(()).unwrap();
    });
    let mut n = 0;
    let r3 = s
        .generate("Tell me more.", 50, |d| {
            if d.token.is_some() {
                n += 1;
                if n == 1 {
                    tx.send(()).unwrap();
                    ack_rx.recv().unwrap();
                }
            }
            true
        })
        .unwrap();
    th.join().unwrap();
    assert_eq!((r3.stop, r3.tokens.len()), (StopReason::Cancelled, 1));

    // The delta callback returning false stops too.
    let r4 = s.generate("Short answer please.", 50, |d| d.token.is_none()).unwrap();
    assert_eq!((r4.stop, r4.tokens.len()), (StopReason::Cancelled, 1));

    let model = s.into_model();
    common::assert_clean(model.gpu());
    drop(model);
    let _ = std::fs::remove_dir_all(dir);
}

/// Turn 2 of a session (history in the cache, turn 1 cut by max tokens) gives the same greedy
/// tokens as feeding the whole conversation at once to a fresh cache.
#[test]
fn multi_turn_history_matches_one_shot_prompt() {
    let (dir, file) = common::tiny_model_with_tokenizer("session-turns");
    let model = Model::load(&file, &opts(256), |_| true).unwrap();
    let system = "You are terse.".to_string();
    let mut s = Session::new(model, SessionConfig { system: Some(system.clone()), ..Default::default() }).unwrap();
    let r1 = s.generate("Hello there", 4, |_| true).unwrap();
    assert_eq!(r1.stop, StopReason::MaxTokens);
    let r2 = s.generate("What next?", 5, |_| true).unwrap();
    let mut model = s.into_model();

    let tok = &model.tokenizer;
    let im_end = tok.special_ids().im_end;
    let mut ids = render(tok, &[Message::text(Role::System, system), Message::text(Role::User, "Hello there")], true)
        .unwrap()
        .ids;
    assert_eq!(r1.prompt_tokens, ids.len());
    assert_eq!(r1.text, tok.decode(&r1.tokens, true));
    ids.extend(&r1.tokens);
    ids.push(im_end);
    ids.extend(tok.encode("\n").unwrap());
    ids.extend(render(tok, &[Message::text(Role::User, "What next?")], true).unwrap().ids);
    let t = model.thinker_mut();
    t.reset().unwrap();
    let want = t.generate(&ids, 5, &[im_end], |_| true).unwrap();
    assert_eq!(r2.tokens, want, "turn 2 with the history in the cache vs one prompt");
    common::assert_clean(model.gpu());
    drop(model);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn load_cancel_bad_arguments_and_full_context() {
    let (dir, file) = common::tiny_model_with_tokenizer("session-bad");
    // Cancel at the first Thinker layer.
    let mut stages = Vec::new();
    let e = Model::load(&file, &opts(32), |p| {
        stages.push(p.stage);
        assert!((0.0..=1.0).contains(&p.fraction()));
        p.stage != LoadStage::Thinker
    })
    .unwrap_err();
    assert!(matches!(e, SessionError::LoadCancelled), "{e}");
    assert!(stages.contains(&LoadStage::Device));

    // A missing file names it.
    let e = Model::load(&dir.join("nope.gguf"), &opts(32), |_| true).unwrap_err();
    assert!(e.to_string().contains("nope.gguf"), "{e}");

    let model = Model::load(&file, &opts(32), |_| true).unwrap();
    let bad = Sampling { top_p: 0.0, ..Default::default() };
    let e = Session::new(model, SessionConfig { sampling: bad, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("top_p"), "{e}");

    let model = Model::load(&file, &opts(32), |_| true).unwrap();
    let mut s = Session::new(model, SessionConfig::default()).unwrap();
    assert!(s.set_sampling(Sampling { temperature: f32::NAN, ..Default::default() }).is_err());
    // A prompt over the context says so and leaves the session as it was.
    let long = "word ".repeat(100);
    let e = s.generate(&long, 4, |_| true).unwrap_err();
    assert!(matches!(e, SessionError::PromptTooLong { ctx: 32, .. }), "{e}");
    assert_eq!(s.context_used(), 0);
    // Generation that reaches the end of the context stops there.
    let r = s.generate("hi", 1000, |_| true).unwrap();
    assert_eq!(r.stop, StopReason::ContextFull);
    assert_eq!(s.context_used(), 31, "the last position stays free");
    // Sampled (temperature) generation with a seed is reproducible after a reset.
    let samp = Sampling { temperature: 0.9, top_k: 40, top_p: 0.95, seed: Some(7), ..Default::default() };
    let mut run = || {
        s.reset().unwrap();
        s.set_sampling(samp).unwrap();
        s.generate("hi", 6, |_| true).unwrap().tokens
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    let model = s.into_model();
    common::assert_clean(model.gpu());
    drop(model);
    let _ = std::fs::remove_dir_all(dir);
}

/// A turn with audio (16 kHz PCM through the AudioTower) and text, then a text turn: the prompt
/// holds exactly the audio placeholders of the mel frames.
#[test]
fn audio_turn_then_text_turn() {
    let (dir, file) = common::tiny_model_with_tokenizer("session-audio");
    let model = Model::load(&file, &opts(512), |_| true).unwrap();
    assert!(model.has_audio_input());
    let mut s = Session::new(model, SessionConfig::default()).unwrap();
    let pcm: Vec<f32> = (0..24000).map(|i| ((i as f32) * 0.031).sin() * 0.2).collect();
    let inputs = [Input::Audio(pcm.clone()), Input::Text("What is this sound?".into())];
    let r1 = s.generate_inputs(&inputs, 3, |_| true).unwrap();
    assert_eq!(r1.tokens.len(), 3);
    let frames = qwen3_omni::audio::MelExtractor::new(128).compute(&pcm).frames;
    let msg = Message::new(Role::User, vec![Item::audio_frames(frames), Item::text("What is this sound?")]);
    let want_ids = render(&s.model().tokenizer, &[msg], true).unwrap().ids;
    assert_eq!(r1.prompt_tokens, want_ids.len());
    let pad = s.model().tokenizer.special_ids().audio_pad;
    assert_eq!(want_ids.iter().filter(|&&t| t == pad).count(), audio_token_count(frames));
    let r2 = s.generate("And now?", 3, |_| true).unwrap();
    assert_eq!(r2.tokens.len(), 3);
    // NaN or infinite PCM is refused naming the input and the sample, leaving the context as it was.
    let used = s.context_used();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut p = pcm.clone();
        p[777] = bad;
        let inputs = [Input::Audio(pcm.clone()), Input::Text("And this?".into()), Input::Audio(p)];
        let e = s.generate_inputs(&inputs, 2, |_| true).unwrap_err();
        let ok = matches!(&e, SessionError::InvalidArgument(m) if m.contains("audio input 2: sample 777"));
        assert!(ok, "{bad}: {e}");
        assert_eq!(s.context_used(), used, "{bad}");
    }
    // Audio items without their samples are refused, not silently dropped.
    let e =
        s.generate_messages(&[Message::new(Role::User, vec![Item::audio_frames(frames)])], 2, |_| true).unwrap_err();
    assert!(matches!(e, SessionError::InvalidArgument(_)), "{e}");
    let model = s.into_model();
    common::assert_clean(model.gpu());
    drop(model);
    let _ = std::fs::remove_dir_all(dir);
}

/// `Session::complete` (the server's stateless requests): a follow-up conversation reuses the
/// cache's longest common prefix and prefills only the rest, and its greedy reply is exactly what a
/// fresh session computing the whole prompt gives; a changed earlier turn reuses only up to the
/// change; audio is never reused.
#[test]
fn complete_reuses_the_common_prefix_and_agrees_with_a_fresh_prompt() {
    let (dir, file) = common::tiny_model_with_tokenizer("session-complete");
    let msg = |r: Role, t: &str| (r, vec![Input::Text(t.to_string())]);
    let mut s = Session::new(Model::load(&file, &opts(256), |_| true).unwrap(), SessionConfig::default()).unwrap();
    let first = vec![msg(Role::System, "Be brief."), msg(Role::User, "What is the capital of France?")];
    let c1 = s.complete(&first, 5, |_| {}, |_| true).unwrap();
    assert_eq!(c1.cached_tokens, 0);
    assert_eq!(c1.reply.prompt_tokens, c1.prompt_tokens);
    let mut second = first.clone();
    second.push(msg(Role::Assistant, &c1.reply.text));
    second.push(msg(Role::User, "And of Germany?"));
    let mut seen = None;
    let c2 = s.complete(&second, 5, |p| seen = Some((p.ids.len(), p.cached)), |_| true).unwrap();
    assert_eq!(seen, Some((c2.prompt_tokens, c2.cached_tokens)));
    assert!(c2.cached_tokens >= c1.prompt_tokens, "{} cached of {}", c2.cached_tokens, c2.prompt_tokens);
    assert_eq!(c2.reply.prompt_tokens, c2.prompt_tokens - c2.cached_tokens, "only the rest is prefilled");
    assert_eq!(s.cached_ids().len() as u32, s.context_used());

    // A fresh session on the whole second prompt: the same greedy reply.
    let model = s.into_model();
    let mut fresh = Session::new(model, SessionConfig::default()).unwrap();
    let f = fresh.complete(&second, 5, |_| {}, |_| true).unwrap();
    assert_eq!(f.cached_tokens, 0);
    assert_eq!(f.reply.tokens, c2.reply.tokens, "reused cache and fresh prefill disagree");

    // A different system message: only `<|im_start|>system\n` and what matches after it is reused.
    let mut other = second.clone();
    other[0] = msg(Role::System, "Be verbose.");
    let o = fresh.complete(&other, 2, |_| {}, |_| true).unwrap();
    assert!(o.cached_tokens > 0 && o.cached_tokens < 8, "{}", o.cached_tokens);

    // Audio: reuse stops before its first position, however often it is sent.
    let audio =
        vec![(Role::User, vec![Input::Audio(qwen3_omni::audio::synthetic_audio(0.5)), Input::Text("?".into())])];
    let a1 = fresh.complete(&audio, 2, |_| {}, |_| true).unwrap();
    let a2 = fresh.complete(&audio, 2, |_| {}, |_| true).unwrap();
    assert!(a2.cached_tokens <= 4, "audio reused: {} of {}", a2.cached_tokens, a1.prompt_tokens);
    assert_eq!(a1.reply.tokens, a2.reply.tokens);
    drop(fresh);
    let _ = std::fs::remove_dir_all(dir);
}
