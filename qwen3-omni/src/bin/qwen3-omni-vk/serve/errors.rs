//! Every failure as an OpenAI error object, `{"error": {"message", "type", "param", "code"}}`,
//! with its HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use qwen3_omni::session::SessionError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400 about the request as a whole (malformed JSON, say).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the offending field (`messages[1].content[0].input_audio.format`, say).
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        let param = param.into();
        let message = format!("{param}: {}", message.into());
        ApiError { param: Some(param), code: Some("invalid_value"), ..ApiError::invalid(message) }
    }

    /// 400: a field this server does not support (or not with that value).
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { code: Some("unsupported_value"), ..ApiError::param(param, message) }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or wrong API key: send `Authorization: Bearer KEY` with the key given to --api-key",
            )
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { code: Some("not_found"), ..ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message) }
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            code: Some("request_too_large"),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body is larger than the limit of {limit} bytes (--max-body-mb)"),
            )
        }
    }

    pub fn busy(slots: usize, queue: usize) -> ApiError {
        ApiError {
            code: Some("rate_limit_exceeded"),
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("all {slots} slots are busy and the queue of {queue} is full; retry later"),
            )
        }
    }

    pub fn loading() -> ApiError {
        ApiError {
            code: Some("model_loading"),
            retry_after: Some(2),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the model is still loading")
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// A library error of a request: bad input is the client's (400), the rest the server's (500).
    pub fn from_session(e: &SessionError) -> ApiError {
        match e {
            SessionError::PromptTooLong { tokens, used, ctx } => ApiError {
                param: Some("messages".into()),
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(format!(
                    "the prompt has {} tokens but the context holds {ctx} (one more position is needed for the \
                     reply; start the server with a larger -c)",
                    tokens + *used as usize
                ))
            },
            SessionError::InvalidArgument(m) => ApiError::invalid(m.clone()),
            SessionError::Chat(c) => ApiError::param("messages", c.to_string()),
            SessionError::NoAudioTower { .. } => ApiError::unsupported("messages", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!("request failed: {self}");
        }
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The body-reading rejections of axum (too large, cut short) as error objects.
pub fn body_rejection(status: StatusCode, text: String, limit: usize) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::new(status, "invalid_request_error", text)
    }
}
