//! One slot's thread: loads its model (weights, KV cache, Talker and Code2Wav), warms every
//! pipeline up, then runs the queue's jobs one at a time. A panic inside a job is caught: the
//! request gets a 500 and the slot forgets its conversation and goes on.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use qwen3_omni::chat::{render, Message, Role};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::session::{Input, LoadOptions, Model, Session, SessionConfig, StopReason};
use qwen3_omni::speech::{Speaker, SpeechOptions, TurnSpeech};
use qwen3_omni::talker::TalkerSampling;
use tokio::sync::mpsc::UnboundedSender;

use super::errors::ApiError;
use super::slots::{ChatWork, Event, Job, SlotFlags, Slots, SpeechWork, Summary, Work};

/// What every slot loads.
pub struct SlotConfig {
    pub path: PathBuf,
    pub load: LoadOptions,
    /// The model file has a Talker and Code2Wav.
    pub speaks: bool,
    /// Most speech frames (80 ms) per reply.
    pub max_frames: u32,
}

struct SpeechState {
    file: ModelFile,
    ts: TurnSpeech,
}

struct Slot {
    session: Session,
    speech: Option<SpeechState>,
}

/// Starts slot `index`'s thread. A slot that cannot load ends the server (exit status 1).
pub fn spawn(index: usize, cfg: Arc<SlotConfig>, slots: Arc<Slots>) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("slot-{index}")).spawn(move || {
        if let Err(e) = slot_main(index, &cfg, &slots) {
            eprintln!("error: slot {index}: {}", crate::error_chain(&e));
            std::process::exit(1);
        }
    })?;
    Ok(())
}

fn slot_main(index: usize, cfg: &SlotConfig, slots: &Slots) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let model =
        Model::load(&cfg.path, &cfg.load, |_| true).with_context(|| format!("loading {}", cfg.path.display()))?;
    let speech = if cfg.speaks {
        let file = ModelFile::open(&cfg.path)?;
        let opts = SpeechOptions { max_frames: cfg.max_frames, ..SpeechOptions::default() };
        let sp = Speaker::load(model.new_kernels(), &file, model.ctx_size(), opts).context("loading the Talker")?;
        Some(SpeechState { file, ts: TurnSpeech::new(sp) })
    } else {
        None
    };
    let session = Session::new(model, SessionConfig::default())?;
    let flags = SlotFlags { thinker: session.cancel_handle(), talker: speech.as_ref().map(|s| s.ts.cancel_flag()) };
    let mut slot = Slot { session, speech };
    slot.warm_up().context("warming up")?;
    eprintln!("slot {index}: loaded and warm in {:.1} s", t0.elapsed().as_secs_f64());
    slots.slot_ready();
    loop {
        let job = slots.next_job(&flags);
        let (id, events) = (job.id, job.events.clone());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.run(job)));
        let ev = match r {
            Ok(Ok(s)) => {
                tracing::info!(
                    "slot {index}: request {id}: {} prompt tokens ({} cached), {} generated, {} speech frames ({} \
                     samples), finish {}{}",
                    s.prompt_tokens,
                    s.cached_tokens,
                    s.completion_tokens,
                    s.frames,
                    s.samples,
                    s.finish_reason,
                    if s.cancelled { ", cancelled" } else { "" }
                );
                Event::Done(s)
            }
            Ok(Err(e)) => Event::Failed(e),
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!("slot {index}: a job panicked: {what}");
                slot.recover();
                Event::Failed(ApiError::internal(format!("internal error: the request's worker failed ({what})")))
            }
        };
        // Idle again before the client hears the end (so /health after a reply says so).
        slots.job_done(id);
        let _ = events.send(ev);
    }
}

fn clock_seed() -> u64 {
    crate::common::clock_seed()
}

/// Tokens a reply may take beyond the stop-string hit (none: it ends there).
fn finish_reason(stop: StopReason, stop_hit: bool) -> &'static str {
    match stop {
        _ if stop_hit => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::EndOfTurn | StopReason::Cancelled => "stop",
    }
}

impl Slot {
    fn run(&mut self, job: Job) -> Result<Summary, ApiError> {
        let Job { work, cancel, events, .. } = job;
        if cancel.load(Ordering::SeqCst) {
            return Ok(Summary { cancelled: true, ..Summary::default() });
        }
        let mut s = match work {
            Work::Chat(w) => self.chat(w, &cancel, &events)?,
            Work::Speech(w) => self.speak(w, &cancel, &events)?,
        };
        s.cancelled = cancel.load(Ordering::SeqCst);
        Ok(s)
    }

    /// After a panic: forget the conversation (the cache may be half written).
    fn recover(&mut self) {
        if let Err(e) = self.session.reset() {
            tracing::error!("resetting the slot after a panic: {e}");
        }
        if let Some(sp) = self.speech.as_mut() {
            sp.ts.reset();
        }
    }

    /// One short reply with speech and, where the model has an AudioTower, one with audio in:
    /// every pipeline is built before the slot says it is ready.
    fn warm_up(&mut self) -> anyhow::Result<()> {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = AtomicBool::new(false);
        let voice = self.speech.as_ref().map(|s| s.ts.sp.talker.config.ids.speakers[0].0.clone());
        let frames = self.speech.as_ref().map(|s| s.ts.sp.opts.max_frames);
        if let Some(sp) = self.speech.as_mut() {
            sp.ts.sp.opts.max_frames = 2;
        }
        let text = |t: &str| vec![(Role::User, vec![Input::Text(t.into())])];
        let w = ChatWork {
            messages: text("Hello"),
            max_tokens: 3,
            sampling: Default::default(),
            stop: Vec::new(),
            voice: voice.clone(),
            panic: false,
        };
        self.chat(w, &cancel, &tx).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        if self.session.model().has_audio_input() {
            let audio = qwen3_omni::audio::synthetic_audio(1.0);
            let w = ChatWork {
                messages: vec![(Role::User, vec![Input::Audio(audio), Input::Text("What is this?".into())])],
                max_tokens: 2,
                sampling: Default::default(),
                stop: Vec::new(),
                voice,
                panic: false,
            };
            self.chat(w, &cancel, &tx).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        }
        if let (Some(sp), Some(f)) = (self.speech.as_mut(), frames) {
            sp.ts.sp.opts.max_frames = f;
            sp.ts.reset();
        }
        self.session.reset()?;
        Ok(())
    }

    fn speaker_for<'a>(
        speech: &'a mut Option<SpeechState>,
        voice: &str,
        seed: Option<u64>,
    ) -> Result<&'a mut SpeechState, ApiError> {
        let sp = speech
            .as_mut()
            .ok_or_else(|| ApiError::unsupported("modalities", "this model file has no Talker and Code2Wav"))?;
        sp.ts.sp.opts.voice = voice.to_string();
        sp.ts.sp.opts.sampling = TalkerSampling::sampled(seed.unwrap_or_else(clock_seed));
        Ok(sp)
    }

    fn chat(&mut self, w: ChatWork, cancel: &AtomicBool, tx: &UnboundedSender<Event>) -> Result<Summary, ApiError> {
        if w.panic {
            panic!("the test panic marker was sent (--test-panic-marker)");
        }
        self.session.set_sampling(w.sampling).map_err(|e| ApiError::from_session(&e))?;
        let speech = match &w.voice {
            Some(v) => {
                let sp = Self::speaker_for(&mut self.speech, v, w.sampling.seed)?;
                sp.ts.sp.set_thinker_limit(Some(w.max_tokens));
                Some(sp)
            }
            None => None,
        };
        let talker_flag = speech.as_ref().map(|s| s.ts.cancel_flag());
        let mut samples = 0usize;
        let mut on_pcm = |pcm: &[f32]| {
            if cancel.load(Ordering::SeqCst) {
                if let Some(f) = &talker_flag {
                    f.store(true, Ordering::SeqCst);
                }
            }
            samples += pcm.len();
            let _ = tx.send(Event::Pcm(pcm.to_vec()));
        };
        let follower = RefCell::new(speech);
        let mut stopper = StopText::new(&w.stop);
        let mut stop_hit = false;
        let result = self.session.complete(
            &w.messages,
            w.max_tokens,
            |p| {
                if let Some(sp) = follower.borrow_mut().as_mut() {
                    // The Talker's context is the whole prompt (its own history is not reused).
                    sp.ts.reset();
                    sp.ts.begin(p.ids, 0);
                }
            },
            |d| {
                if cancel.load(Ordering::SeqCst) || stop_hit {
                    return false;
                }
                let (out, hit) = stopper.push(d.text);
                if !out.is_empty() {
                    let _ = tx.send(Event::Text(out));
                }
                if hit {
                    stop_hit = true;
                    return false;
                }
                if let (Some(id), Some(sp)) = (d.token, follower.borrow_mut().as_mut()) {
                    let SpeechState { file, ts } = &mut **sp;
                    if !ts.token(file, id, &mut on_pcm) {
                        return false;
                    }
                }
                true
            },
        );
        let c = result.map_err(|e| ApiError::from_session(&e))?;
        if !stop_hit {
            let rest = stopper.finish();
            if !rest.is_empty() {
                let _ = tx.send(Event::Text(rest));
            }
        }
        let mut frames = 0;
        if let Some(sp) = follower.into_inner() {
            let cut = cancel.load(Ordering::SeqCst);
            let thinker = self.session.model().thinker();
            let s = sp
                .ts
                .end(&sp.file, thinker, &c.reply.sampled, cut, &mut on_pcm)
                .map_err(|e| ApiError::internal(format!("speech output: {e}")))?;
            frames = s.map_or(0, |s| s.frames);
        }
        Ok(Summary {
            prompt_tokens: c.prompt_tokens,
            cached_tokens: c.cached_tokens,
            completion_tokens: c.reply.tokens.len(),
            finish_reason: finish_reason(c.reply.stop, stop_hit),
            text: stopper.text,
            samples,
            frames,
            cancelled: false,
        })
    }

    /// Reads a text aloud as `speak` does: the text is the user turn the Talker sees and the reply
    /// it voices (the Thinker does not run).
    fn speak(&mut self, w: SpeechWork, cancel: &AtomicBool, tx: &UnboundedSender<Event>) -> Result<Summary, ApiError> {
        let text = w.text.trim().to_string();
        let tok = &self.session.model().tokenizer;
        let ids = render(tok, &[Message::text(Role::User, text.clone())], true)
            .map_err(|e| ApiError::param("input", e.to_string()))?
            .ids;
        let reply = tok.encode(&text).map_err(|e| ApiError::param("input", e.to_string()))?;
        let ctx = self.session.context_size() as usize;
        if ids.len() > ctx {
            return Err(ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::param("input", format!("the text has {} tokens but the context holds {ctx}", ids.len()))
            });
        }
        let Some(&g0) = reply.first() else {
            return Err(ApiError::param("input", "the text to speak is empty"));
        };
        let sp = Self::speaker_for(&mut self.speech, &w.voice, w.seed)?;
        let flag = sp.ts.cancel_flag();
        // The Talker's conversation history no longer matches the Thinker's.
        sp.ts.reset();
        let mut samples = 0usize;
        let mut on_pcm = |pcm: &[f32]| {
            if cancel.load(Ordering::SeqCst) {
                flag.store(true, Ordering::SeqCst);
            }
            samples += pcm.len();
            let _ = tx.send(Event::Pcm(pcm.to_vec()));
        };
        let err = |e: qwen3_omni::speech::SpeechError| ApiError::internal(format!("speech: {e}"));
        sp.ts.sp.start(&sp.file, &ids, None, g0).map_err(err)?;
        if cancel.load(Ordering::SeqCst) {
            sp.ts.cancel_flag().store(true, Ordering::SeqCst);
        }
        sp.ts.sp.push_text(&sp.file, &reply[1..], &mut on_pcm).map_err(err)?;
        let s = sp.ts.sp.finish(&mut on_pcm).map_err(err)?;
        Ok(Summary {
            prompt_tokens: ids.len(),
            completion_tokens: s.frames,
            finish_reason: "stop",
            text,
            samples,
            frames: s.frames,
            ..Summary::default()
        })
    }
}

/// Stop strings over streamed text: text that could be the start of a stop string is held back
/// until the next piece shows whether it is; at a match the text before it is the reply's end.
pub struct StopText {
    stops: Vec<String>,
    held: String,
    /// Everything passed on so far.
    pub text: String,
}

impl StopText {
    pub fn new(stops: &[String]) -> StopText {
        StopText {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            text: String::new(),
        }
    }

    /// The text that can be passed on now, and whether a stop string was hit.
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..pos].to_string();
            self.held.clear();
            self.text.push_str(&out);
            return (out, true);
        }
        // The longest end of the held text that begins some stop string stays held.
        let mut keep = 0;
        for s in &self.stops {
            for (k, _) in s.char_indices().skip(1) {
                if k > keep && self.held.ends_with(&s[..k]) {
                    keep = k;
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        self.text.push_str(&out);
        (out, false)
    }

    /// The text still held back (the reply ended without a stop string).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        self.text.push_str(&rest);
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::StopText;

    #[test]
    fn stop_strings_across_pieces() {
        let mut s = StopText::new(&["END".into(), "\n\n".into()]);
        assert_eq!(s.push("abc E"), ("abc ".into(), false));
        assert_eq!(s.push("N"), ("".into(), false));
        assert_eq!(s.push("x"), ("ENx".into(), false));
        assert_eq!(s.push("yE"), ("y".into(), false));
        assert_eq!(s.push("NDzz"), ("".into(), true));
        assert_eq!(s.text, "abc ENxy");
        let mut s = StopText::new(&["é!".into()]);
        assert_eq!(s.push("aé"), ("a".into(), false));
        assert_eq!(s.finish(), "é");
    }
}
