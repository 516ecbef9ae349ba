//! `POST /v1/audio/speech` (text read aloud: WAV or raw PCM, or SSE `speech.audio.delta` events)
//! and `POST /v1/audio/transcriptions` (a multipart upload, transcribed).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::audio::{b64, decode, pcm16, OutFormat};
use super::chat::body;
use super::errors::ApiError;
use super::schema::{parse_json, parse_speech};
use super::slots::{CancelGuard, ChatWork, Event, Summary, Work};
use super::sse::{self, Line, Mapper};
use super::AppState;
use qwen3_omni::chat::Role;
use qwen3_omni::session::{Input, Sampling};

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(|e| e.into_response())
}

/// Collects a job's PCM until it is done.
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Result<(String, Vec<f32>, Summary), ApiError> {
    let (mut text, mut pcm) = (String::new(), Vec::new());
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Pcm(p)) => pcm.extend_from_slice(&p),
            Some(Event::Done(s)) => return Ok((text, pcm, s)),
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(ApiError::internal("the request's worker went away without an answer")),
        }
    }
}

pub async fn speech(State(st): State<Arc<AppState>>, b: Result<Bytes, BytesRejection>) -> Response {
    respond(run_speech(st, b).await)
}

async fn run_speech(st: Arc<AppState>, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(&st, b)?;
    if !st.slots.all_ready() {
        return Err(ApiError::loading());
    }
    let req = parse_speech(&parse_json(&b)?, &st.limits())?;
    let (mut rx, guard) = st.slots.submit(Work::Speech(req.work))?;
    if req.sse {
        return Ok(sse::respond(rx, guard, SpeechEvents));
    }
    match req.format {
        // Raw PCM streams as it is made.
        OutFormat::Pcm16 => {
            let s = futures_util::stream::unfold((rx, guard), |(mut rx, guard): (_, CancelGuard)| async move {
                match rx.recv().await {
                    Some(Event::Pcm(p)) => Some((Ok::<_, std::io::Error>(Bytes::from(pcm16(&p))), (rx, guard))),
                    Some(Event::Failed(e)) => Some((Err(std::io::Error::other(e.message)), (rx, guard))),
                    Some(Event::Text(_)) => Some((Ok(Bytes::new()), (rx, guard))),
                    Some(Event::Done(_)) | None => None,
                }
            });
            Ok(([(header::CONTENT_TYPE, OutFormat::Pcm16.content_type())], Body::from_stream(s)).into_response())
        }
        // A WAV file's header holds its length: sent whole.
        OutFormat::Wav => {
            let (_, pcm, _) = collect(&mut rx).await?;
            drop(guard);
            Ok(([(header::CONTENT_TYPE, OutFormat::Wav.content_type())], OutFormat::Wav.encode(&pcm)).into_response())
        }
    }
}

/// OpenAI's speech SSE: `speech.audio.delta` events of base64 16-bit PCM, then
/// `speech.audio.done` with the usage.
struct SpeechEvents;

impl Mapper for SpeechEvents {
    fn map(&mut self, ev: Event) -> (Vec<Line>, bool) {
        match ev {
            Event::Pcm(p) => (vec![Line::Json(json!({"type": "speech.audio.delta", "audio": b64(&pcm16(&p))}))], false),
            Event::Text(_) => (Vec::new(), false),
            Event::Done(s) => (
                vec![Line::Json(json!({
                    "type": "speech.audio.done",
                    "usage": {
                        "input_tokens": s.prompt_tokens,
                        "output_tokens": s.frames,
                        "total_tokens": s.prompt_tokens + s.frames,
                    },
                }))],
                true,
            ),
            Event::Failed(e) => (vec![Line::Json(e.body())], true),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum TextFormat {
    Json,
    Text,
    Verbose,
}

pub async fn transcriptions(
    State(st): State<Arc<AppState>>,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    respond(run_transcription(st, mp).await)
}

fn multipart_err(st: &AppState, e: axum::extract::multipart::MultipartError) -> ApiError {
    super::errors::body_rejection(e.status(), format!("reading the multipart body: {}", e.body_text()), st.body_limit)
}

async fn run_transcription(
    st: Arc<AppState>,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut mp =
        mp.map_err(|e| ApiError::invalid(format!("a multipart/form-data body is needed: {}", e.body_text())))?;
    let (mut file, mut format, mut prompt) = (None, TextFormat::Json, None);
    while let Some(f) = mp.next_field().await.map_err(|e| multipart_err(&st, e))? {
        let name = f.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => file = Some(f.bytes().await.map_err(|e| multipart_err(&st, e))?),
            "response_format" => {
                let v = f.text().await.map_err(|e| multipart_err(&st, e))?;
                format = match v.as_str() {
                    "json" => TextFormat::Json,
                    "text" => TextFormat::Text,
                    "verbose_json" => TextFormat::Verbose,
                    "srt" | "vtt" => {
                        return Err(ApiError::unsupported(
                            "response_format",
                            format!("{v} is not supported (json, text, verbose_json)"),
                        ))
                    }
                    o => {
                        return Err(ApiError::param(
                            "response_format",
                            format!("unknown format {o:?} (json, text, verbose_json)"),
                        ))
                    }
                };
            }
            "prompt" => prompt = Some(f.text().await.map_err(|e| multipart_err(&st, e))?),
            "stream" => {
                if f.text().await.map_err(|e| multipart_err(&st, e))?.trim() == "true" {
                    return Err(ApiError::unsupported("stream", "streamed transcriptions are not supported"));
                }
            }
            // model, language, temperature, timestamp_granularities[]: accepted, not used.
            _ => {
                let _ = f.bytes().await.map_err(|e| multipart_err(&st, e))?;
            }
        }
    }
    let file = file.ok_or_else(|| ApiError::param("file", "is required (a multipart field named file)"))?;
    if !st.slots.all_ready() {
        return Err(ApiError::loading());
    }
    if !st.audio_in {
        return Err(ApiError::unsupported("file", "this model file has no AudioTower: no audio input"));
    }
    let audio = tokio::task::spawn_blocking(move || decode(&file, "file"))
        .await
        .map_err(|e| ApiError::internal(format!("reading the audio: {e}")))??;
    let seconds = audio.len() as f64 / 16_000.0;
    let mut instruction = crate::audio::TRANSCRIBE_PROMPT.to_string();
    if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
        instruction = format!("{instruction} Context: {p}");
    }
    let work = ChatWork {
        messages: vec![(Role::User, vec![Input::Audio(audio), Input::Text(instruction)])],
        max_tokens: st.default_max_tokens,
        sampling: Sampling::default(),
        stop: Vec::new(),
        voice: None,
        panic: false,
    };
    let (mut rx, guard) = st.slots.submit(Work::Chat(work))?;
    let (text, _, s) = collect(&mut rx).await?;
    drop(guard);
    Ok(match format {
        TextFormat::Text => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        TextFormat::Json => axum::Json(json!({"text": text, "usage": {"type": "tokens", "input_tokens": s.prompt_tokens, "output_tokens": s.completion_tokens, "total_tokens": s.prompt_tokens + s.completion_tokens}})).into_response(),
        TextFormat::Verbose => axum::Json(json!({
            "task": "transcribe",
            "language": "unknown",
            "duration": seconds,
            "text": text,
            "segments": [],
        }))
        .into_response(),
    })
}
