//! The endpoints Grafana's Logs Drilldown adds to the query API: `detected_fields`,
//! `detected_field/<name>/values`, `detected_labels` and `drilldown-limits`. Parameters are
//! read and validated as Loki reads them, in Loki's order, with its messages; the work is in
//! `parquetry_query::detected`.

use axum::extract::{Path, State};
use axum::response::Response;
use parquetry_logql::{EMPTY_COMPATIBLE_MSG, Expr, LogExpr, parse_expr, parse_selector};
use parquetry_model::Matcher;
use parquetry_query::detected::{DetectedField, DetectedFieldsQuery};

use crate::AppState;
use crate::error::{ApiError, ApiResult, within_query_timeout};
use crate::json;
use crate::params::{Params, now_ns, step_param, time_range};
use crate::request::QueryRequest;

/// Parameters shared by `detected_fields` and `detected_field/<name>/values`.
struct FieldsParams {
    start: i64,
    end: i64,
    line_limit: u32,
    limit: u32,
}

/// Go's `strconv.Atoi` on a parameter, with Loki's default when absent.
fn int_param(p: &Params, key: &str, default: i64) -> ApiResult<i64> {
    let Some(s) = p.get(key) else {
        return Ok(default);
    };
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        ApiError::BadRequest(format!("strconv.Atoi: parsing {s:?}: {why}"))
    })
}

fn positive_u32(v: i64, name: &str) -> ApiResult<u32> {
    if v <= 0 {
        return Err(ApiError::BadRequest(
            "limit must be a positive value".into(),
        ));
    }
    u32::try_from(v).map_err(|_| {
        ApiError::BadRequest(format!("{name} value {v} is out of range [0, 4294967295]"))
    })
}

/// Loki's `ParseDetectedFieldsQuery`: bounds, line limit, field limit, then the step rules
/// (the step itself only shapes Loki's downstream query, so it is validated and dropped).
fn fields_params(p: &Params) -> ApiResult<FieldsParams> {
    let (start, end) = time_range(p, now_ns())?;
    let line_limit = positive_u32(int_param(p, "line_limit", 100)?, "line_limit")?;
    // `field_limit` is the older name of `limit`.
    let raw_limit = if p.get("limit").is_some() {
        int_param(p, "limit", 1000)?
    } else {
        int_param(p, "field_limit", 1000)?
    };
    let limit = positive_u32(raw_limit, "limit")?;
    // Checked only, as Loki does, which keeps the step in whole milliseconds first.
    step_param(p, start, end, true)?;
    Ok(FieldsParams {
        start,
        end,
        line_limit,
        limit,
    })
}

/// The `query` of a fields request: a log query, pipeline allowed.
fn log_query(p: &Params) -> ApiResult<LogExpr> {
    let q = p.get("query").unwrap_or_default();
    if q.trim().is_empty() {
        // Loki's parser has no position to report for an empty input.
        return Err(ApiError::BadRequest(
            "parse error : syntax error: unexpected $end".into(),
        ));
    }
    match parse_expr(q).map_err(|e| ApiError::BadRequest(e.to_string()))? {
        Expr::Log(log) => Ok(log),
        _ => Err(ApiError::BadRequest(
            "only log selector is supported".into(),
        )),
    }
}

/// Everything both fields endpoints check before running, in Loki's order.
fn fields_query(state: &AppState, req: &QueryRequest) -> ApiResult<DetectedFieldsQuery> {
    let fp = fields_params(&req.params)?;
    let expr = log_query(&req.params)?;
    let max_entries = state.config.limits_config.max_entries_limit_per_query;
    if max_entries > 0 && u64::from(fp.line_limit) > max_entries {
        return Err(ApiError::BadRequest(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({} > {max_entries})",
            fp.line_limit
        )));
    }
    Ok(DetectedFieldsQuery {
        tenant: req.tenant.clone(),
        expr,
        start: fp.start,
        end: fp.end,
        line_limit: fp.line_limit as usize,
        limit: fp.limit as usize,
        max_response_bytes: state.config.limits_config.max_query_response_size.0,
    })
}

/// `GET|POST /loki/api/v1/detected_fields`.
pub async fn detected_fields(
    State(state): State<AppState>,
    req: QueryRequest,
) -> ApiResult<Response> {
    let q = fields_query(&state, &req)?;
    let fields = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state.engine.detected_fields(&q),
    )
    .await?;
    Ok(json::response(fields_body(&fields, q.limit)))
}

/// `{"fields":[…],"limit":N}`, or `{}` when nothing was found, as Loki answers.
pub fn fields_body(fields: &[DetectedField], limit: usize) -> String {
    if fields.is_empty() {
        return "{}".into();
    }
    let mut out = String::from("{\"fields\":[");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"label\":");
        json::push_str(&mut out, &f.label);
        out.push_str(",\"type\":\"");
        out.push_str(f.field_type.as_str());
        out.push('"');
        if f.cardinality > 0 {
            out.push_str(&format!(",\"cardinality\":{}", f.cardinality));
        }
        out.push_str(",\"parsers\":");
        if f.parsers.is_empty() {
            out.push_str("null");
        } else {
            json::push_str_array(&mut out, f.parsers.iter().copied());
        }
        if let Some(path) = f.json_path.as_ref().filter(|p| !p.is_empty()) {
            out.push_str(",\"jsonPath\":");
            json::push_str_array(&mut out, path.iter().map(String::as_str));
        }
        out.push('}');
    }
    out.push_str(&format!("],\"limit\":{limit}}}"));
    out
}

/// `GET|POST /loki/api/v1/detected_field/<name>/values`.
pub async fn detected_field_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: QueryRequest,
) -> ApiResult<Response> {
    let q = fields_query(&state, &req)?;
    let values = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state.engine.detected_field_values(&q, &name),
    )
    .await?;
    if values.is_empty() {
        return Ok(json::response("{}".into()));
    }
    let mut out = String::from("{\"values\":");
    json::push_str_array(&mut out, values.iter().map(String::as_str));
    out.push_str(&format!(",\"limit\":{}}}", q.limit));
    Ok(json::response(out))
}

/// The optional `query` of `detected_labels`: stream matchers only.
fn label_matchers(p: &Params) -> ApiResult<Option<Vec<Matcher>>> {
    let Some(q) = p.get("query") else {
        return Ok(None);
    };
    match parse_selector(q) {
        // `{}` would select every stream; Loki asks for `query` to be left out instead.
        Ok(m) if m.iter().all(|m| m.matches_empty()) => Err(ApiError::BadRequest(format!(
            "parse error : {EMPTY_COMPATIBLE_MSG}"
        ))),
        Ok(m) => Ok(Some(m)),
        Err(e) => match parse_expr(q) {
            // A valid query with a pipeline gets Loki's "matchers only" message.
            Ok(_) => Err(ApiError::BadRequest(
                "only label matchers are supported".into(),
            )),
            Err(_) => Err(ApiError::BadRequest(e.to_string())),
        },
    }
}

/// `GET|POST /loki/api/v1/detected_labels`.
pub async fn detected_labels(
    State(state): State<AppState>,
    req: QueryRequest,
) -> ApiResult<Response> {
    let (start, end) = time_range(&req.params, now_ns())?;
    let matchers = label_matchers(&req.params)?;
    let labels = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state
            .engine
            .detected_labels(&req.tenant, matchers.as_deref(), start, end),
    )
    .await?;
    if labels.is_empty() {
        return Ok(json::response("{}".into()));
    }
    let mut out = String::from("{\"detectedLabels\":[");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"label\":");
        json::push_str(&mut out, &l.label);
        out.push_str(&format!(",\"cardinality\":{}}}", l.cardinality));
    }
    out.push_str("]}");
    Ok(json::response(out))
}

/// Whether this server answers `/loki/api/v1/patterns`; Drilldown hides its Patterns tab
/// when `drilldown-limits` says no.
const PATTERNS_SERVED: bool = true;

/// `GET /loki/api/v1/drilldown-limits`: the tenant limits Drilldown reads, under Loki's
/// allow-listed names. Limits Parquetry has no notion of are reported with the value that
/// describes its behaviour (no byte or range cap, no aggregated metrics).
pub async fn drilldown_limits(
    State(state): State<AppState>,
    req: QueryRequest,
) -> ApiResult<Response> {
    let l = &state.config.limits_config;
    let otlp = serde_json::to_value(state.config.otlp_config(&req.tenant))
        .map_err(|e| ApiError::Internal(format!("encoding otlp_config: {e}")))?;
    let retention_stream = serde_json::to_value(state.config.retention_stream(&req.tenant))
        .map_err(|e| ApiError::Internal(format!("encoding retention_stream: {e}")))?;
    let limits = serde_json::json!({
        "discover_log_levels": l.discover_log_levels,
        "discover_service_name": l.discover_service_name,
        "log_level_fields": log_level_fields(),
        "max_entries_limit_per_query": l.max_entries_limit_per_query,
        "max_line_size_truncate": l.max_line_size_truncate,
        "max_query_bytes_read": "0B",
        "max_query_length": prometheus_duration(l.max_query_length.as_nanos()),
        "max_query_lookback": "0s",
        "max_query_range": "0s",
        "max_query_series": l.max_query_series,
        "metric_aggregation_enabled": false,
        "otlp_config": otlp,
        "pattern_persistence_enabled": false,
        "query_timeout": prometheus_duration(l.query_timeout.as_nanos()),
        "retention_period": prometheus_duration(state.config.retention_period(&req.tenant).as_nanos()),
        "retention_stream": retention_stream,
        "volume_enabled": true,
        "volume_max_series": 1000,
    });
    let body = serde_json::json!({
        "limits": limits,
        "pattern_ingester_enabled": PATTERNS_SERVED,
        "version": env!("CARGO_PKG_VERSION"),
    });
    Ok(json::response(body.to_string()))
}

/// Fields the ingester reads a line's level from (`detected_level` discovery), as Loki lists
/// them: the ones the push path reads, in its order, then three spellings of OTLP's severity
/// text that Loki lists too and the push path does not read.
fn log_level_fields() -> Vec<&'static str> {
    let otlp = ["severity_text", "Severity_Text", "SEVERITY_TEXT"];
    parquetry_ingest::level::LEVEL_FIELDS
        .iter()
        .copied()
        .chain(otlp)
        .collect()
}

/// A duration as Prometheus' `model.Duration` prints it: years and weeks only when exact
/// (`30d1h`, not `4w2d1h`).
fn prometheus_duration(ns: i64) -> String {
    let mut ms = ns / 1_000_000;
    if ms <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    const DAY: i64 = 86_400_000;
    for (unit, size, exact) in [
        ("y", 365 * DAY, true),
        ("w", 7 * DAY, true),
        ("d", DAY, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % size != 0 {
            continue;
        }
        let v = ms / size;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_prometheus() {
        let h = 3_600_000_000_000i64;
        assert_eq!(prometheus_duration(721 * h), "30d1h");
        assert_eq!(prometheus_duration(168 * h), "1w");
        assert_eq!(prometheus_duration(60_000_000_000), "1m");
        assert_eq!(prometheus_duration(0), "0s");
    }

    #[test]
    fn fields_parameters_like_loki() {
        let p = |q: &str| Params::from_parts(Some(q), None).unwrap();
        let err = |q: &str| fields_params(&p(q)).err().unwrap().to_string();
        assert_eq!(err("line_limit=0"), "limit must be a positive value");
        assert_eq!(
            err("line_limit=abc"),
            "strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert_eq!(err("limit=-1"), "limit must be a positive value");
        assert_eq!(
            err("line_limit=5000000000"),
            "line_limit value 5000000000 is out of range [0, 4294967295]"
        );
        assert!(err("step=0").starts_with("zero or negative"));
        let ok = fields_params(&p("field_limit=7&step=20000ms")).unwrap();
        assert_eq!((ok.limit, ok.line_limit), (7, 100));
    }
}
