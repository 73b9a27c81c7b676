//! `POST /loki/api/v1/push` and the legacy `/api/prom/push`.
//!
//! decode → validate → write, and 204 only once every object is durable. Invalid streams and
//! entries are dropped and reported with a 400 after the valid ones are stored, as Loki does.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use parquetry_ingest::{DecodeLimits, IngestError, Validated, decode_push, validate};
use parquetry_store::{LogEntry, StreamEntries};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::now_ns;
use crate::request::tenant;

/// `POST /loki/api/v1/push`.
pub async fn push_v1(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    push(state, headers, body, true).await
}

/// `POST /api/prom/push`.
pub async fn push_legacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    push(state, headers, body, false).await
}

async fn push(state: AppState, headers: HeaderMap, body: Body, v1: bool) -> ApiResult<StatusCode> {
    let tenant = tenant(&state, &headers)?;
    let limits = DecodeLimits::from(&state.config.distributor);
    let bytes = read_body(&headers, body, &limits).await?;
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let content_encoding = header_str(&headers, header::CONTENT_ENCODING);
    let config = state.config.clone();

    // Decoding and validation are CPU work: keep them off the I/O threads.
    let metrics = state.metrics.clone();
    let validated = tokio::task::spawn_blocking(move || {
        let req = decode_push(
            &bytes,
            content_type.as_deref(),
            content_encoding.as_deref(),
            v1,
            &limits,
        )?;
        // Counted before validation: invalid labels refuse the push, and count too.
        metrics.record_repairs(&req.invalid_utf8, 0);
        validate(req, &config.limits_config, now_ns())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("push task failed: {e}")))??;
    let mut validated = validated;
    store_accepted(&state, &tenant, &mut validated).await?;

    match validated.dropped {
        Some(text) => Err(ApiError::PartialIngest(text)),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

/// Stores what validation accepted and, once it is durable, hands it to this process's live
/// tails: the one write path of every push format (Loki push, OTLP).
pub(crate) async fn store_accepted(
    state: &AppState,
    tenant: &str,
    validated: &mut Validated,
) -> ApiResult<()> {
    state
        .metrics
        .record_repairs(&Default::default(), validated.sanitized_structured_metadata);
    let streams: Vec<StreamEntries> = std::mem::take(&mut validated.streams)
        .into_iter()
        .map(|s| StreamEntries {
            labels: s.labels,
            entries: s
                .entries
                .into_iter()
                .map(|e| LogEntry {
                    ts_ns: e.ts_ns,
                    line: e.line,
                    structured_metadata: e.structured_metadata,
                })
                .collect(),
        })
        .collect();
    if streams.is_empty() {
        return Ok(());
    }
    // Live tails get a copy only when the tenant has one, and only once it is durable.
    let for_tails = state.tail_hub.has_tails(tenant).then(|| streams.clone());
    let summary = state.store.write(tenant, streams).await?;
    if let Some(streams) = for_tails {
        state.tail_hub.publish(tenant, streams);
    }
    state.metrics.record_ingest(
        summary.entries,
        validated.accepted_bytes,
        summary.bytes_written,
    );
    Ok(())
}

/// The request body, refused with Loki's 413 text past `max_recv_msg_size` (naming the
/// declared length when there is one): every push format reads its body this way.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &DecodeLimits,
) -> ApiResult<bytes::Bytes> {
    let max = limits.max_recv_msg_size as usize;
    axum::body::to_bytes(body, max.saturating_add(1))
        .await
        .map_err(|_| {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(max as u64 + 1);
            ApiError::Ingest(IngestError::BodyTooLarge {
                size: declared,
                max: max as u64,
            })
        })
}

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
