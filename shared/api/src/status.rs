//! `/ready`, `/loki/api/v1/status/buildinfo` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::json;

/// `GET /ready`.
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// A Loki-like version so clients that gate features on it treat us as current Loki.
pub const LOKI_COMPAT_VERSION: &str = "3.5.0";

/// `GET /loki/api/v1/status/buildinfo`.
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

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// Loki's `GET /config`: the effective configuration as YAML (secrets shown as `<secret>`),
/// with what a Loki file's keys turned into as trailing comments. `?mode=defaults` shows the
/// defaults, `?mode=diff` only the keys that differ from them, as Loki's does.
pub async fn config(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let defaults = parquetry_model::Config::default();
    let current = serde_yaml::to_value(&*state.config);
    let base = serde_yaml::to_value(&defaults);
    let (Ok(current), Ok(base)) = (current, base) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "config not serialisable\n",
        )
            .into_response();
    };
    let shown = match q.get("mode").map(String::as_str) {
        None | Some("") => current,
        Some("defaults") => base,
        Some("diff") => {
            diff(&current, &base).unwrap_or(serde_yaml::Value::Mapping(Default::default()))
        }
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown value for mode query parameter: {other:?}\n"),
            )
                .into_response();
        }
    };
    let mut text = serde_yaml::to_string(&shown).unwrap_or_default();
    for t in &state.config.loki.translated {
        text.push_str(&format!("# translated: {t}\n"));
    }
    for i in &state.config.loki.ignored {
        text.push_str(&format!("# ignored (no effect in Parquetry): {i}\n"));
    }
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The parts of `a` that differ from `b`, keeping the nesting.
fn diff(a: &serde_yaml::Value, b: &serde_yaml::Value) -> Option<serde_yaml::Value> {
    match (a, b) {
        (serde_yaml::Value::Mapping(am), serde_yaml::Value::Mapping(bm)) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, av) in am {
                let d = match bm.get(k) {
                    Some(bv) => diff(av, bv),
                    None => Some(av.clone()),
                };
                if let Some(d) = d {
                    out.insert(k.clone(), d);
                }
            }
            (!out.is_empty()).then_some(serde_yaml::Value::Mapping(out))
        }
        _ if a == b => None,
        _ => Some(a.clone()),
    }
}
