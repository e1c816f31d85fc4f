//! JSON responses for the API that are also safe if a browser ever sniffs them as HTML: `<`, `>`
//! and `&` inside strings are written as `\u003c`, `\u003e` and `\u0026` (still the same JSON
//! value), so attacker-controlled names and labels never appear as markup.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::WebError;

/// A JSON body with markup characters escaped.
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_string(&self.0) {
            Ok(text) => {
                // These characters only occur inside JSON strings, where the escapes are valid.
                let text = text
                    .replace('<', "\\u003c")
                    .replace('>', "\\u003e")
                    .replace('&', "\\u0026");
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    text,
                )
                    .into_response()
            }
            Err(err) => WebError::Internal(err.into()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn markup_in_strings_is_escaped_and_the_value_unchanged() {
        let value = serde_json::json!({"label": "<script>alert(1)</script> & more"});
        let response = ApiJson(value.clone()).into_response();
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains('<') && !text.contains('&'), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
