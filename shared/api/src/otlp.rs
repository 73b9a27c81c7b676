//! `POST /otlp/v1/logs`: OpenTelemetry logs over OTLP/HTTP, protobuf or JSON.
//!
//! decode → map (Loki's attribute mapping, `parquetry_ingest::otlp`) → the push path's
//! validation → one atomic write. A request that fails as a whole stores nothing. When only
//! some records are invalid the rest is stored and the answer is OTLP's partial success (200
//! with `rejected_log_records` and Loki's text for why), where Loki answers 400.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parquetry_ingest::otlp::{self, OtlpFormat};
use parquetry_ingest::{DecodeLimits, IngestError, validate};

use crate::AppState;
use crate::error::{ApiError, OtlpError};
use crate::params::now_ns;
use crate::push::{header_str, read_body};
use crate::request::tenant;

/// `POST /otlp/v1/logs`.
pub async fn logs(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    // Errors are answered in the request's format when it has a known one.
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let format = OtlpFormat::from_content_type(content_type.as_deref());
    let reply_format = format.as_ref().copied().unwrap_or(OtlpFormat::Protobuf);
    match export(state, headers, body, format).await {
        Ok(resp) => resp,
        Err(e) => OtlpError(e, reply_format).into_response(),
    }
}

async fn export(
    state: AppState,
    headers: HeaderMap,
    body: Body,
    format: Result<OtlpFormat, IngestError>,
) -> Result<Response, ApiError> {
    let tenant = tenant(&state, &headers)?;
    let limits = DecodeLimits::from(&state.config.distributor);
    let bytes = read_body(&headers, body, &limits).await?;
    let format = format?;
    let content_encoding = header_str(&headers, header::CONTENT_ENCODING);
    let config = state.config.clone();
    let task_tenant = tenant.clone();

    // Decoding, mapping and validation are CPU work: keep them off the I/O threads.
    let validated = tokio::task::spawn_blocking(move || {
        // A request without records maps to no streams: 422, as Loki answers.
        let req = otlp::decode_otlp(&bytes, format, content_encoding.as_deref(), &limits)?;
        let limits = &config.limits_config;
        let now = now_ns();
        let push = otlp::otlp_to_push(
            req,
            config.otlp_config(&task_tenant),
            &limits.discover_service_name,
            now,
        )?;
        validate(push, limits, now)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("OTLP push task failed: {e}")))??;

    let mut validated = validated;
    // The Loki push's write path: metrics, durability, then live tails.
    crate::push::store_accepted(&state, &tenant, &mut validated).await?;
    match validated.dropped {
        // Nothing was accepted: a plain 400, as for a Loki push.
        Some(text) if validated.accepted_entries == 0 => Err(ApiError::PartialIngest(text)),
        Some(text) => Ok(success(format, validated.dropped_entries, &text)),
        None => Ok(success(format, 0, "")),
    }
}

fn success(format: OtlpFormat, rejected: usize, message: &str) -> Response {
    let mut resp = (
        StatusCode::OK,
        otlp::export_response(format, rejected, message),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}
