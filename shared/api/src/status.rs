//! `/ready`, `/loki/api/v1/status/buildinfo` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::json;

pub async fn ready(State(state): State<AppState>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// A Loki-like version so clients that gate features on it treat us as current Loki.
pub const LOKI_COMPAT_VERSION: &str = "3.5.0";

pub async fn buildinfo() -> Response {
    let mut out = String::from("{\"version\":");
    json::push_str(&mut out, LOKI_COMPAT_VERSION);
    out.push_str(",\"revision\":");
    json::push_str(
        &mut out,
        option_env!("PARQUETRY_REVISION").unwrap_or("unknown"),
    );
    out.push_str(",\"branch\":\"main\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":");
    json::push_str(
        &mut out,
        &format!("parquetry-{}", env!("CARGO_PKG_VERSION")),
    );
    out.push('}');
    json::response(out)
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
