//! Server-sent events out of a job's channel: a stream that turns each [`Event`] into zero or
//! more SSE data lines through a per-endpoint mapper, and keeps the job's [`CancelGuard`] alive as
//! long as the client reads (a client that goes away drops the stream, and the guard cancels).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use super::errors::ApiError;
use super::slots::{CancelGuard, Event};

/// What an endpoint says for each event: the JSON payloads (or `[DONE]`, as a string) to send,
/// and whether the stream ends after them.
pub trait Mapper: Send + 'static {
    fn map(&mut self, ev: Event) -> (Vec<Line>, bool);
}

pub enum Line {
    Json(Value),
    Done,
}

struct State<M> {
    rx: UnboundedReceiver<Event>,
    _guard: CancelGuard,
    mapper: M,
    out: VecDeque<Line>,
    ended: bool,
}

fn stream<M: Mapper>(st: State<M>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(l) = st.out.pop_front() {
                let ev = match l {
                    Line::Json(v) => SseEvent::default().data(v.to_string()),
                    Line::Done => SseEvent::default().data("[DONE]"),
                };
                return Some((Ok(ev), st));
            }
            if st.ended {
                return None;
            }
            let ev = st.rx.recv().await.unwrap_or_else(|| {
                Event::Failed(ApiError::internal("the request's worker went away without an answer"))
            });
            let (lines, end) = st.mapper.map(ev);
            st.out.extend(lines);
            st.ended = end;
        }
    })
}

/// The `text/event-stream` response of a job.
pub fn respond<M: Mapper>(rx: UnboundedReceiver<Event>, guard: CancelGuard, mapper: M) -> Response {
    let st = State { rx, _guard: guard, mapper, out: VecDeque::new(), ended: false };
    Sse::new(stream(st)).keep_alive(KeepAlive::default()).into_response()
}
