//! Every error a handler can return, mapped to Loki's status codes and text bodies here and
//! nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parquetry_ingest::IngestError;
use parquetry_model::TenantError;
use parquetry_query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad parameter or query: 400 with the message as is.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Some entries or streams were dropped: 400 after the valid ones were stored.
    #[error("{0}")]
    PartialIngest(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Storage(#[from] parquetry_store::StoreError),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    NotFound(String),
    /// `limits_config.query_timeout` elapsed.
    #[error(
        "request timed out, decrease the duration of the request or add more label matchers (prefer exact match over regex match) to reduce the amount of data processed"
    )]
    Timeout,
}

impl ApiError {
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
            ApiError::Query(_) | ApiError::Storage(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request rejected");
        }
        let mut resp = (status, self.to_string()).into_response();
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

pub type ApiResult<T> = Result<T, ApiError>;

/// Runs a query under `limits_config.query_timeout` (0 = no limit). On timeout the request
/// answers 504 at once; scan tasks already started finish in the background.
pub async fn within_query_timeout<T>(
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, QueryError>>,
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
