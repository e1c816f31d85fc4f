//! Static files from `static/`, embedded in the binary and served with cache-busting URLs:
//! `/static/css/app.css?v=<hash>` is cached for a year, since a new file gets a new hash.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use serde::Deserialize;

use super::{AppState, RoutePolicy, WebError};

#[derive(RustEmbed)]
#[folder = "../static/"]
struct StaticFiles;

/// Short content hashes of every embedded file, computed once.
static HASHES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    StaticFiles::iter()
        .filter_map(|path| {
            let file = StaticFiles::get(&path)?;
            let hash = hex::encode(&file.metadata.sha256_hash()[..6]);
            Some((path.into_owned(), hash))
        })
        .collect()
});

/// The URL of a static file, with its content hash as the version.
pub fn url(path: &str) -> String {
    match HASHES.get(path) {
        Some(hash) => format!("/static/{path}?v={hash}"),
        None => {
            tracing::warn!(path, "a page links to a static file that does not exist");
            format!("/static/{path}")
        }
    }
}

/// The sign-in page needs its stylesheet before anyone is signed in.
pub const POLICIES: &[RoutePolicy] = &[RoutePolicy::public(Method::GET, "/static/{*path}")];

pub fn router() -> Router<AppState> {
    Router::new().route("/static/{*path}", get(serve_static))
}

#[derive(Deserialize)]
struct Version {
    v: Option<String>,
}

async fn serve_static(
    Path(path): Path<String>,
    Query(version): Query<Version>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let file = StaticFiles::get(&path)
        .ok_or_else(|| WebError::NotFound(format!("no static file {path}")))?;
    let hash = HASHES.get(&path).cloned().unwrap_or_default();
    let etag = format!("\"{hash}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes())
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let cache = if version.v.as_deref() == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime.as_ref())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
