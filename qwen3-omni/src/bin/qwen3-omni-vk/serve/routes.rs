//! The router: endpoints, the API key check, body limit, CORS, request tracing, and a last guard
//! that turns a panic in a handler into a 500 error object.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::errors::ApiError;
use super::{chat, speech, AppState};

pub fn router(st: Arc<AppState>, cors: &[String]) -> Router {
    let v1 = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/audio/speech", post(speech::speech))
        .route("/v1/audio/transcriptions", post(speech::transcriptions))
        .route_layer(axum::middleware::from_fn_with_state(st.clone(), auth));
    let mut app = Router::new()
        .route("/health", get(health))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such endpoint (see docs/server.md)") })
        .layer(DefaultBodyLimit::max(st.body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("internal error: the request's handler failed").into_response()
        }));
    if !cors.is_empty() {
        let origin = if cors.iter().any(|c| c == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(cors.iter().filter_map(|c| HeaderValue::from_str(c).ok()))
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers(Any),
        );
    }
    app.with_state(st)
}

/// `Authorization: Bearer KEY` when the server has a key (compared in constant time).
async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let (a, b) = (given.as_bytes(), key.as_bytes());
        let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if !same {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// 503 while the slots load and warm up, then 200 with their load.
async fn health(State(st): State<Arc<AppState>>) -> Response {
    let l = st.slots.load();
    let body = json!({
        "status": if st.slots.all_ready() { "ok" } else { "loading" },
        "slots_total": st.slots.parallel,
        "slots_ready": l.ready,
        "slots_busy": l.busy,
        "queued": l.queued,
        "queue_capacity": st.slots.queue_cap,
        "served": st.slots.served.load(std::sync::atomic::Ordering::SeqCst),
    });
    let code = if st.slots.all_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

fn model_object(st: &AppState) -> serde_json::Value {
    json!({"id": st.model_id, "object": "model", "created": st.created, "owned_by": "qwen3-omni-vk"})
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    axum::Json(json!({"object": "list", "data": [model_object(&st)]})).into_response()
}

async fn model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if id == st.model_id {
        axum::Json(model_object(&st)).into_response()
    } else {
        ApiError::not_found(format!("no model {id:?} (this server has {:?})", st.model_id)).into_response()
    }
}
