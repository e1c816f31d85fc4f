//! `WebError`, the only error a handler returns, and the layer that renders every error response
//! the same way: an HTML page for the console, `{"error": {"code", "message"}}` under `/api/`.
//!
//! A handler's error carries its status, a stable code and a user-safe message as a response
//! extension; [`render_errors`] sees the request path and picks the body. Errors raised by layers
//! (body too large, timeout, unknown method) get the same treatment. Internal errors are logged
//! once, inside the request span, and shown only as an opaque message.

use std::any::Any;

use askama::Template;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::page::PageContext;
use crate::auth::Principal;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sign in to continue")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for WebError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => Self::NotFound("not found".into()),
            sqlx::Error::PoolTimedOut => Self::Unavailable("the database is not answering".into()),
            other => Self::Internal(other.into()),
        }
    }
}

/// The status, code and message an error response carries until [`render_errors`] formats it.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl WebError {
    pub fn info(&self) -> ErrorInfo {
        let (status, code) = match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match self {
            Self::Internal(_) => "something went wrong on our side; it has been logged".to_string(),
            other => other.to_string(),
        };
        ErrorInfo {
            status,
            code,
            message,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Self::Internal(err) = &self {
            tracing::error!(error = ?err, "request failed");
        }
        let info = self.info();
        let mut response = info.status.into_response();
        response.extensions_mut().insert(info);
        response
    }
}

/// The fallback for paths no route matches.
pub async fn not_found() -> WebError {
    WebError::NotFound("there is no page at this address".into())
}

/// Turns a panic inside a handler into a plain 500 that [`render_errors`] formats.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = detail, "a handler panicked");
    WebError::Internal(anyhow::anyhow!("panic: {detail}")).into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: PageContext,
    status: u16,
    reason: String,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ErrorInfo,
}

/// Formats every error response: JSON under `/api/`, an HTML page elsewhere.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let mut info = match response.extensions().get::<ErrorInfo>() {
        Some(info) => info.clone(),
        None if (status.is_client_error() || status.is_server_error())
            && !is_formatted(&response) =>
        {
            from_status(status)
        }
        None => return response,
    };
    let is_plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    let (mut parts, body) = response.into_parts();
    // An extractor's rejection (a JSON body that does not parse, a bad query string) says in
    // plain text exactly what was wrong: keep that as the message.
    if is_plain_text && status.is_client_error() {
        if let Ok(bytes) = axum::body::to_bytes(body, 4096).await {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            if !text.is_empty() {
                info.message = text;
            }
        }
    }
    parts.extensions.remove::<ErrorInfo>();
    let principal = parts.extensions.get::<Principal>();
    let body = if is_api {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Body::from(serde_json::to_vec(&ErrorBody { error: &info }).unwrap_or_default())
    } else {
        let title = info.status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            ctx: match principal {
                Some(principal) => PageContext::for_principal(principal, title),
                None => PageContext::new(title),
            },
            status: info.status.as_u16(),
            reason: info
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            message: info.message.clone(),
        };
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        match page.render() {
            Ok(html) => Body::from(html),
            Err(err) => {
                tracing::error!(%err, "rendering the error page failed");
                Body::from(Html(info.message).0)
            }
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

/// A response a handler built on purpose with its own body (JSON or HTML), such as `/readyz`.
fn is_formatted(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        })
}

fn from_status(status: StatusCode) -> ErrorInfo {
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than this server accepts",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long and was stopped"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this address does not accept that method",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the request body has the wrong content type",
        ),
        StatusCode::NOT_FOUND => ("not_found", "there is nothing at this address"),
        StatusCode::UNPROCESSABLE_ENTITY => {
            ("unprocessable", "the request body could not be understood")
        }
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        s if s.is_server_error() => (
            "internal",
            "something went wrong on our side; it has been logged",
        ),
        _ => ("error", "the request failed"),
    };
    ErrorInfo {
        status,
        code,
        message: message.to_string(),
    }
}
