//! `query_range` and `query`: LogQL in, Loki's result envelope out.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use parquetry_logql::{Expr, parse_expr};
use parquetry_model::Labels;
use parquetry_query::trace::{Stage, in_stage};
use parquetry_query::{
    Direction, LogQuery, LogResult, MetricQuery, MetricResult, ResultEntry, Value,
};

use crate::AppState;
use crate::error::{ApiError, ApiResult, within_query_timeout};
use crate::json;
use crate::params::{Params, direction, limit, now_ns, parse_timestamp, range_params};
use crate::request::QueryRequest;

/// LogQL longer than this is refused before parsing, as Loki does.
const MAX_QUERY_BYTES: usize = 131_072;

fn parse_query(p: &Params) -> ApiResult<Expr> {
    let q = p.get("query").unwrap_or_default();
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "parse error : input size too long ({} > {MAX_QUERY_BYTES})",
            q.len()
        )));
    }
    parse_expr(q).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `GET|POST /loki/api/v1/query_range`.
pub async fn query_range(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    let r = range_params(&req.params, now_ns())?;
    let expr = in_stage(Stage::Plan, || parse_query(&req.params))?;
    let limits = &state.config.limits_config;
    let max_len = limits.max_query_length.as_nanos();
    if max_len > 0 && r.end - r.start > max_len {
        return Err(ApiError::BadRequest(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            parquetry_model::duration::format_go(r.end - r.start),
            limits.max_query_length
        )));
    }
    match expr {
        Expr::Log(log) => {
            let max_entries = limits.max_entries_limit_per_query;
            if max_entries > 0 && u64::from(r.limit) > max_entries {
                return Err(ApiError::BadRequest(format!(
                    "max entries limit per query exceeded, limit > max_entries_limit_per_query ({} > {max_entries})",
                    r.limit
                )));
            }
            let q = LogQuery {
                tenant: req.tenant.clone(),
                expr: log,
                start: r.start,
                end: r.end,
                limit: r.limit as usize,
                direction: r.direction,
                interval_ns: r.interval_ns,
                max_response_bytes: state.config.limits_config.max_query_response_size.0,
            };
            let result = within_query_timeout(
                state.config.limits_config.query_timeout.0,
                state.engine.log_query(&q),
            )
            .await?;
            Ok(in_stage(Stage::Encode, || {
                streams_response(&result, r.direction, req.categorize_labels())
            }))
        }
        Expr::Sample(expr) => {
            let (start, end) = if state.config.query_range.align_to_step_grid {
                align(r.start, r.end, r.step_ns)
            } else {
                (r.start, r.end)
            };
            let q = MetricQuery {
                tenant: req.tenant.clone(),
                expr,
                start,
                end,
                step: r.step_ns,
                instant: false,
                max_series: limits.max_query_series,
                max_response_bytes: limits.max_query_response_size.0,
            };
            let result = within_query_timeout(
                state.config.limits_config.query_timeout.0,
                state.engine.metric_query(&q),
            )
            .await?;
            Ok(in_stage(Stage::Encode, || metric_response(&result)))
        }
    }
}

/// Loki's query frontend aligns metric ranges to the step grid from the Unix epoch
/// (`start` down, `end` up), so points sit on absolute multiples of the step.
fn align(start: i64, end: i64, step: i64) -> (i64, i64) {
    let start = start.div_euclid(step) * step;
    let end = end.div_euclid(step) * step + if end.rem_euclid(step) == 0 { 0 } else { step };
    (start, end)
}

/// `GET|POST /loki/api/v1/query`.
pub async fn query_instant(
    State(state): State<AppState>,
    req: QueryRequest,
) -> ApiResult<Response> {
    let time = match req.params.get("time") {
        Some(t) => parse_timestamp(t)
            .map_err(|e| ApiError::BadRequest(format!("could not parse 'time' parameter: {e}")))?,
        None => now_ns(),
    };
    limit(&req.params)?;
    direction(&req.params)?;
    // Loki checks a pipeline's stages only when it runs them, after refusing a log query here.
    let log_instant = || {
        ApiError::BadRequest(
            "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        )
    };
    let parsed = match in_stage(Stage::Plan, || parse_query(&req.params)) {
        Err(ApiError::BadRequest(m))
            if m.starts_with("parse error : stage '")
                && req
                    .params
                    .get("query")
                    .unwrap_or_default()
                    .trim_start()
                    .starts_with('{') =>
        {
            return Err(log_instant());
        }
        other => other?,
    };
    match parsed {
        Expr::Log(_) => Err(log_instant()),
        Expr::Sample(expr) => {
            let q = MetricQuery {
                tenant: req.tenant.clone(),
                expr,
                start: time,
                end: time,
                step: 0,
                instant: true,
                max_series: state.config.limits_config.max_query_series,
                max_response_bytes: state.config.limits_config.max_query_response_size.0,
            };
            let result = within_query_timeout(
                state.config.limits_config.query_timeout.0,
                state.engine.metric_query(&q),
            )
            .await?;
            Ok(in_stage(Stage::Encode, || metric_response(&result)))
        }
    }
}

/// `matrix`, `vector` or `scalar` envelopes. Times are float seconds (a scalar's are
/// milliseconds, as in Loki), values strings.
fn metric_response(result: &MetricResult) -> Response {
    let mut out = String::with_capacity(4096);
    json::push_success_start(&mut out, &result.stats.warnings);
    out.push_str("{\"resultType\":");
    let labels_json = |out: &mut String, l: &Labels| {
        json::push_map(out, l.iter().map(|l| (l.name.as_str(), l.value.as_str())));
    };
    match &result.value {
        Value::Scalar { t, v } => {
            out.push_str("\"scalar\",\"result\":");
            json::push_scalar_point(&mut out, *t, *v);
        }
        Value::Vector(samples) => {
            out.push_str("\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, &s.labels);
                out.push_str(",\"value\":");
                json::push_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, (t, v)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    json::push_point(&mut out, *t, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push_str(",\"stats\":");
    json::push_stats(&mut out, &result.stats);
    out.push_str("}}");
    json::response(out)
}

/// The `streams` envelope.
///
/// Categorized: streams keyed by their stored labels, each value a 3-tuple whose third
/// element carries structured metadata. Otherwise: structured metadata is merged into the
/// stream labels, which can split one stored stream into several result streams.
fn streams_response(result: &LogResult, dir: Direction, categorize: bool) -> Response {
    let mut out = String::with_capacity(4096);
    json::push_success_start(&mut out, &result.stats.warnings);
    out.push_str("{\"resultType\":\"streams\",");
    if categorize {
        out.push_str("\"encodingFlags\":[\"categorize-labels\"],");
    }
    out.push_str("\"result\":[");
    let mut first = true;
    let mut write_stream = |labels: &Labels, entries: &[&ResultEntry], out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"stream\":");
        json::push_map(
            out,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        out.push_str(",\"values\":[");
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::push_entry(
                out,
                e.ts,
                &e.line,
                &e.structured_metadata,
                &e.parsed,
                categorize,
                json::push_str,
            );
        }
        out.push_str("]}");
    };
    if categorize {
        for (labels, entries) in &result.streams {
            let refs: Vec<&ResultEntry> = entries.iter().collect();
            write_stream(labels, &refs, &mut out);
        }
    } else {
        // Regroup by stream labels plus metadata, keeping each group in query direction.
        let mut groups: BTreeMap<String, (Labels, Vec<&ResultEntry>)> = BTreeMap::new();
        for (labels, entries) in &result.streams {
            for e in entries {
                let mut merged = labels.clone();
                for (k, v) in e.structured_metadata.iter().chain(&e.parsed) {
                    merged.set(k, v);
                }
                groups
                    .entry(merged.to_string())
                    .or_insert_with(|| (merged, Vec::new()))
                    .1
                    .push(e);
            }
        }
        for (labels, mut entries) in groups.into_values() {
            match dir {
                Direction::Backward => entries.sort_by_key(|e| std::cmp::Reverse(e.ts)),
                Direction::Forward => entries.sort_by_key(|e| e.ts),
            }
            write_stream(&labels, &entries, &mut out);
        }
    }
    out.push_str("],\"stats\":");
    json::push_stats(&mut out, &result.stats);
    out.push_str("}}");
    json::response(out)
}

/// `format_query`: the canonical, pretty-printed form of a query. Parse errors are JSON here,
/// unlike every other query endpoint.
pub async fn format_query(req: QueryRequest) -> Response {
    let q = req.params.get("query").unwrap_or_default();
    match parquetry_logql::format_query(q) {
        Ok(pretty) => {
            let mut out = String::from("{\"status\":\"success\",\"data\":");
            json::push_str(&mut out, &pretty);
            out.push('}');
            json::response(out)
        }
        Err(e) => {
            let mut out = String::from("{\"status\":\"invalid-query\",\"error\":");
            json::push_str(&mut out, &e.to_string());
            out.push('}');
            let mut resp = json::response(out);
            *resp.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
            );
            resp
        }
    }
}
