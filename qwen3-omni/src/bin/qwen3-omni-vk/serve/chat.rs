//! `POST /v1/chat/completions`: text and speech out, whole or streamed (SSE).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::audio::{b64, pcm16};
use super::errors::{body_rejection, ApiError};
use super::schema::{parse_chat, parse_json, usage};
use super::slots::{Event, Summary, Work};
use super::sse::{self, Line, Mapper};
use super::transcripts::{new_id, now_s};
use super::AppState;

/// A request body, or the error object of why it could not be read (413 past the limit).
pub fn body(st: &AppState, b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| body_rejection(r.status(), r.body_text(), st.body_limit))
}

pub async fn completions(State(st): State<Arc<AppState>>, b: Result<Bytes, BytesRejection>) -> Response {
    match run(st, b).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(st: Arc<AppState>, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(&st, b)?;
    if !st.slots.all_ready() {
        return Err(ApiError::loading());
    }
    // Base64 and WAV decoding, resampling: off the async threads.
    let st2 = st.clone();
    let req = tokio::task::spawn_blocking(move || parse_chat(&parse_json(&b)?, &st2.limits()))
        .await
        .map_err(|e| ApiError::internal(format!("reading the request: {e}")))??;
    let (stream, include_usage, format) = (req.stream, req.include_usage, req.audio_format);
    let (mut rx, guard) = st.slots.submit(Work::Chat(req.work))?;
    let id = new_id("chatcmpl-");
    let created = now_s();
    if stream {
        let audio_id = format.map(|_| new_id("audio_"));
        let m = ChatChunks { st: st.clone(), id, created, include_usage, audio_id, began: false };
        return Ok(sse::respond(rx, guard, m));
    }
    let (mut text, mut pcm) = (String::new(), Vec::new());
    let s = loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Pcm(p)) => pcm.extend_from_slice(&p),
            Some(Event::Done(s)) => break s,
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(ApiError::internal("the request's worker went away without an answer")),
        }
    };
    drop(guard);
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(f) = format {
        let aid = new_id("audio_");
        let expires_at = st.transcripts.put(&aid, &text);
        message["audio"] =
            json!({"id": aid, "data": b64(&f.encode(&pcm)), "expires_at": expires_at, "transcript": text});
    }
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": st.model_id,
        "choices": [{"index": 0, "message": message, "finish_reason": s.finish_reason, "logprobs": null}],
        "usage": usage(&s),
    });
    Ok(axum::Json(body).into_response())
}

/// The chunks of a streamed reply (`chat.completion.chunk`): the role first, then text pieces as
/// `delta.content` and speech as `delta.audio.data` (base64 24 kHz 16-bit PCM) as they are made,
/// the audio's id and transcript, the `finish_reason`, the usage when asked for, `[DONE]`.
struct ChatChunks {
    st: Arc<AppState>,
    id: String,
    created: u64,
    include_usage: bool,
    audio_id: Option<String>,
    began: bool,
}

impl ChatChunks {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Line {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.st.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        Line::Json(c)
    }

    fn end(&self, s: &Summary) -> Vec<Line> {
        let mut v = Vec::new();
        if let Some(aid) = &self.audio_id {
            let expires_at = self.st.transcripts.put(aid, &s.text);
            v.push(self.chunk(json!({"audio": {"id": aid, "expires_at": expires_at, "transcript": s.text}}), None));
        }
        v.push(self.chunk(json!({}), Some(s.finish_reason)));
        if self.include_usage {
            v.push(Line::Json(json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.st.model_id,
                "choices": [],
                "usage": usage(s),
            })));
        }
        v.push(Line::Done);
        v
    }
}

impl Mapper for ChatChunks {
    fn map(&mut self, ev: Event) -> (Vec<Line>, bool) {
        let mut v = Vec::new();
        if !self.began {
            self.began = true;
            v.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let end = match ev {
            Event::Text(t) => {
                v.push(self.chunk(json!({"content": t}), None));
                false
            }
            Event::Pcm(p) => {
                if let Some(aid) = &self.audio_id {
                    v.push(self.chunk(json!({"audio": {"id": aid, "data": b64(&pcm16(&p))}}), None));
                }
                false
            }
            Event::Done(s) => {
                v.extend(self.end(&s));
                true
            }
            Event::Failed(e) => {
                v.push(Line::Json(e.body()));
                v.push(Line::Done);
                true
            }
        };
        (v, end)
    }
}
