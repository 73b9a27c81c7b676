//! Every error a handler can return, mapped to Loki's status codes and text bodies here and
//! nowhere else.
//!
//! A 5xx body never names a location on the server: the error is logged in full, and the
//! client gets its text with every path or URL cut down to the object key inside it
//! (`v1/tenant=…`), or to `<path>` when there is none. A 4xx body is the client's own mistake
//! and goes out as is.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parquetry_ingest::IngestError;
use parquetry_model::TenantError;
use parquetry_query::QueryError;
use parquetry_ruler::RuleStoreError;
use parquetry_store::layout::FORMAT_PREFIX;

/// Every error a handler can return; [`ApiError::status`] maps it to Loki's status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad parameter or query: 400 with the message as is.
    #[error("{0}")]
    BadRequest(String),
    /// A missing (401) or invalid (400) tenant id.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A push that cannot be decoded or is refused as a whole, with its own status.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Some entries or streams were dropped: 400 after the valid ones were stored.
    #[error("{0}")]
    PartialIngest(String),
    /// A query that failed: 400 for the caller's mistakes, else 500.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The storage layer failed: 500.
    #[error("{0}")]
    Storage(#[from] parquetry_store::StoreError),
    /// A bug or an environment failure: 500.
    #[error("{0}")]
    Internal(String),
    /// 404 with the message.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed for this tenant (e.g. `deletion_mode: disabled`): 403.
    #[error("{0}")]
    Forbidden(String),
    /// The ruler API's server errors: 500 in the Prometheus JSON error envelope, as Loki's
    /// ruler answers them (`errorType: server_error`).
    #[error("{0}")]
    RulerServerError(String),
    /// `limits_config.query_timeout` elapsed.
    #[error(
        "request timed out, decrease the duration of the request or add more label matchers (prefer exact match over regex match) to reduce the amount of data processed"
    )]
    Timeout,
    /// The request body stopped arriving before `server.http_server_read_timeout`.
    #[error(
        "request timed out: the request body did not arrive within server.http_server_read_timeout"
    )]
    RequestTimeout,
}

impl ApiError {
    /// The HTTP status Loki answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::PartialIngest(_) => StatusCode::BAD_REQUEST,
            ApiError::Tenant(TenantError::Missing) => StatusCode::UNAUTHORIZED,
            ApiError::Tenant(_) => StatusCode::BAD_REQUEST,
            ApiError::Ingest(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::Query(QueryError::BadRequest(_) | QueryError::Unsupported(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Query(_)
            | ApiError::Storage(_)
            | ApiError::Internal(_)
            | ApiError::RulerServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A rule store failure: a missing group or namespace is 404 with Loki's text; anything
    /// else becomes `other` of its text, since Loki's ruler endpoints differ in which status
    /// they answer it with.
    pub(crate) fn rule_store(e: RuleStoreError, other: fn(String) -> ApiError) -> ApiError {
        match e {
            RuleStoreError::GroupNotFound | RuleStoreError::NamespaceNotFound => {
                ApiError::NotFound(e.to_string())
            }
            e => other(e.to_string()),
        }
    }

    /// The response body's text.
    pub fn public_message(&self) -> String {
        let text = self.to_string();
        if self.status().is_server_error() {
            without_server_locations(&text)
        } else {
            text
        }
    }
}

/// `text` with each path or URL replaced by the object key inside it, or by `<path>`. Object
/// store and DataFusion errors name files by absolute path (`Unable to open file
/// /home/x/data/v1/…`) and S3 objects by URL, which tell a client the server's directory
/// layout, user names or endpoints; the key alone is what an operator needs from a report.
pub fn without_server_locations(text: &str) -> String {
    let key_start = format!("{FORMAT_PREFIX}/tenant=");
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if let Some(i) = token.find(&key_start) {
            out.push_str(&token[i..]);
        } else if looks_like_location(token) {
            out.push_str("<path>");
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if is_token_boundary(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Where a path in an error message ends: Rust's `Debug` quotes paths, messages put them in
/// parentheses or between spaces.
fn is_token_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';'
        )
}

/// A path or URL rather than a word such as `I/O`.
fn looks_like_location(token: &str) -> bool {
    let separators = token.matches(['/', '\\']).count();
    if separators == 0 {
        return false;
    }
    let bytes = token.as_bytes();
    let drive = bytes.len() > 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\');
    token.starts_with(['/', '\\', '~'])
        || token.starts_with("./")
        || token.starts_with("../")
        || token.contains("://")
        || drive
        || separators >= 2
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request rejected");
        }
        if let ApiError::RulerServerError(_) = &self {
            let body = serde_json::json!({
                "status": "error",
                "data": null,
                "errorType": "server_error",
                "error": self.public_message(),
            });
            let mut resp = (status, body.to_string()).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        let mut resp = (status, self.public_message()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error answered the OTLP/HTTP way: the same status as [`ApiError`] (but 503 for 500, so
/// that exporters retry, as Loki does), and a `google.rpc.Status` body in the request's format.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OtlpError(
    #[source] pub ApiError,
    pub parquetry_ingest::otlp::OtlpFormat,
);

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let OtlpError(err, format) = self;
        let mut status = err.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
        if status.is_server_error() {
            tracing::error!(error = %err, "OTLP request failed");
        } else {
            tracing::debug!(error = %err, status = status.as_u16(), "OTLP request rejected");
        }
        let body = parquetry_ingest::otlp::error_response(format, &err.public_message());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        resp
    }
}

/// Runs a query under `limits_config.query_timeout` (0 = no limit). On timeout the request
/// answers 504 at once; scan tasks already started finish in the background.
pub async fn within_query_timeout<T>(
    limit: std::time::Duration,
    fut: impl Future<Output = Result<T, QueryError>>,
) -> ApiResult<T> {
    if limit.is_zero() {
        return Ok(fut.await?);
    }
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(err: ApiError) -> (StatusCode, String) {
        let resp = err.into_response();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn server_errors_name_object_keys_not_server_paths() {
        let key = "v1/tenant=fake/day=2024-01-01/service_name=api/0000000000000000001-0000000000000000002-0123abcd.parquet";
        let cases = [
            (
                ApiError::Internal(format!(
                    "External error: Unable to open file /home/alice/parquetry/data/{key}: No such file or directory (os error 2)"
                )),
                format!(
                    "External error: Unable to open file {key}: No such file or directory (os error 2)"
                ),
            ),
            (
                ApiError::Storage(parquetry_store::StoreError::Corrupt {
                    path: format!("/srv/logs/{key}"),
                    reason: "bad footer".into(),
                }),
                format!("corrupt object {key}: bad footer"),
            ),
            (
                ApiError::Internal(format!(
                    "Generic S3 error: Error performing GET https://s3.eu-west-1.amazonaws.com/my-bucket/prod/{key} in 1s"
                )),
                format!("Generic S3 error: Error performing GET {key} in 1s"),
            ),
            (
                ApiError::Internal(
                    "Unable to walk dir: File system loop found: /var/lib/parquetry/a points to an ancestor /var"
                        .into(),
                ),
                "Unable to walk dir: File system loop found: <path> points to an ancestor <path>"
                    .into(),
            ),
            (
                ApiError::Internal(
                    "UnableToCreateDir { path: \"/home/bob/data/tmp\", source: Os { code: 13 } } at ./data/x and C:\\logs\\x and file:///tmp/x"
                        .into(),
                ),
                "UnableToCreateDir { path: \"<path>\", source: Os { code: 13 } } at <path> and <path> and <path>"
                    .into(),
            ),
            (
                ApiError::Internal("Generic I/O error: disk full".into()),
                "Generic I/O error: disk full".into(),
            ),
        ];
        for (err, want) in cases {
            let (status, body) = body_of(err).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body, want);
        }
        // A client's own input in a 4xx answer is not rewritten.
        let (status, body) = body_of(ApiError::BadRequest("parse error near /a/b/c".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, "parse error near /a/b/c");
    }

    #[tokio::test]
    async fn body_timeout_answers_408() {
        let (status, body) = body_of(ApiError::RequestTimeout).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert!(body.contains("http_server_read_timeout"), "{body}");
    }

    #[tokio::test]
    async fn query_timeout_answers_504() {
        let slow = std::future::pending::<Result<(), QueryError>>();
        let err = within_query_timeout(std::time::Duration::from_millis(10), slow)
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(err.to_string().starts_with("request timed out"));
        let fast = async { Ok::<_, QueryError>(7) };
        assert_eq!(
            within_query_timeout(std::time::Duration::ZERO, fast)
                .await
                .ok(),
            Some(7)
        );
    }
}
