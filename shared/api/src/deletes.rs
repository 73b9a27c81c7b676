//! Loki's delete API: `POST|PUT /loki/api/v1/delete` makes a request, `GET` lists them,
//! `DELETE` cancels one, with Loki's parameter rules and messages. Requests are stored by
//! the log store (`parquetry_store::deletes`); queries hide what they match at once, and the
//! compactor removes it once the cancel period is over.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parquetry_model::config::DeletionMode;
use parquetry_store::deletes::{Cancel, DeleteQueryError, parse_delete_query};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::json;
use crate::params::{Params, now_ns};
use crate::request::QueryRequest;

const MS: i64 = 1_000_000;

/// Loki's delete time parameter, in ms: RFC3339, or exactly ten digits of Unix seconds;
/// absent is now.
fn parse_time(s: Option<&str>, now_ms: i64) -> Option<i64> {
    let Some(s) = s else {
        return Some(now_ms);
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if s.len() != 10 {
        return None;
    }
    s.parse::<i64>().ok().map(|secs| secs.saturating_mul(1000))
}

fn deletion_allowed(state: &AppState, tenant: &str) -> ApiResult<()> {
    if state.config.deletion_mode(tenant) == DeletionMode::Disabled {
        return Err(ApiError::Forbidden(
            "deletion is not available for this tenant".into(),
        ));
    }
    Ok(())
}

/// The validated parameters of a new request: (query, start ns, end ns).
fn new_request(p: &Params, now_ms: i64) -> ApiResult<(String, i64, i64)> {
    let bad = |m: &str| ApiError::BadRequest(m.to_string());
    let query = p.get("query").ok_or_else(|| bad("query not set"))?;
    parse_delete_query(query).map_err(|e| match e {
        DeleteQueryError::Invalid => bad("invalid query expression"),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    let start = p.get("start").ok_or_else(|| bad("start time not set"))?;
    let start = parse_time(Some(start), now_ms)
        .ok_or_else(|| bad("invalid start time: require unix seconds or RFC3339 format"))?;
    let end = parse_time(p.get("end"), now_ms)
        .ok_or_else(|| bad("invalid end time: require unix seconds or RFC3339 format"))?;
    if end > now_ms {
        return Err(bad("deletes in the future are not allowed"));
    }
    if start >= end {
        return Err(bad("start time can't be greater than or equal to end time"));
    }
    // Line filters are checked now, not when the compactor reads the request back.
    parquetry_store::deletes::DeleteFilter::new(query, start * MS, end * MS)
        .map_err(|_| bad("invalid query expression"))?;
    Ok((
        query.to_string(),
        start.saturating_mul(MS),
        end.saturating_mul(MS),
    ))
}

/// `POST|PUT /loki/api/v1/delete`: 204 once the request is durably stored.
pub async fn create(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    deletion_allowed(&state, &req.tenant)?;
    let (query, start, end) = new_request(&req.params, now_ns() / MS)?;
    let r = state
        .store
        .add_delete_request(&req.tenant, &query, start, end)
        .await?;
    tracing::info!(
        tenant = req.tenant,
        request = r.request_id,
        query,
        "delete request received"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Seconds with Loki's millisecond precision: `1700000000` or `1700000000.123`.
fn push_seconds(out: &mut String, ns: i64) {
    let ms = ns.div_euclid(MS);
    let (s, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 {
        out.push_str(&s.to_string());
    } else {
        let f = format!("{frac:03}");
        out.push_str(&format!("{s}.{}", f.trim_end_matches('0')));
    }
}

/// `GET /loki/api/v1/delete`: every request of the tenant, with Loki's field names.
pub async fn list(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    deletion_allowed(&state, &req.tenant)?;
    let all = state.store.delete_requests(&req.tenant).await?;
    let mut out = String::from("[");
    for (i, r) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"request_id\":");
        json::push_str(&mut out, &r.request.request_id);
        out.push_str(",\"start_time\":");
        push_seconds(&mut out, r.request.start_ns);
        out.push_str(",\"end_time\":");
        push_seconds(&mut out, r.request.end_ns);
        out.push_str(",\"query\":");
        json::push_str(&mut out, &r.request.query);
        out.push_str(",\"status\":");
        json::push_str(&mut out, if r.processed { "processed" } else { "received" });
        out.push_str(",\"created_at\":");
        push_seconds(&mut out, r.request.created_ns);
        out.push_str(",\"user_id\":");
        json::push_str(&mut out, &r.request.tenant);
        out.push('}');
    }
    out.push(']');
    Ok(json::response(out))
}

/// `DELETE /loki/api/v1/delete?request_id=…[&force=true]`.
pub async fn cancel(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    deletion_allowed(&state, &req.tenant)?;
    // Loki answers 204 to a cancel without an id, having nothing to do.
    let Some(id) = req.params.get("request_id") else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let force = req.params.get("force") == Some("true");
    let period = state.config.compactor.delete_request_cancel_period.0;
    match state
        .store
        .cancel_delete_request(&req.tenant, id, period, force)
        .await?
    {
        Cancel::Cancelled => {
            tracing::info!(
                tenant = req.tenant,
                request = id,
                "delete request cancelled"
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Cancel::NotFound => Err(ApiError::NotFound(
            "could not find delete request with given id".into(),
        )),
        Cancel::TooLate => Err(ApiError::BadRequest(
            "deletion of request which is in process or already processed is not allowed".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_loki_reads_them() {
        assert_eq!(parse_time(None, 5), Some(5));
        assert_eq!(parse_time(Some("0000000001"), 5), Some(1000));
        assert_eq!(parse_time(Some("1"), 5), None);
        assert_eq!(parse_time(Some("1700000000000"), 5), None);
        assert_eq!(parse_time(Some("1970-01-01T00:00:02Z"), 5), Some(2000));
        let mut s = String::new();
        push_seconds(&mut s, 1_700_000_000_120_000_000);
        assert_eq!(s, "1700000000.12");
    }
}
