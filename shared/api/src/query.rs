//! `query_range` and `query`: LogQL in, Loki's result envelope out.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use parquetry_logql::{Expr, parse_expr};
use parquetry_model::Labels;
use parquetry_model::duration::format_prometheus;
use parquetry_query::{Direction, LogQuery, LogResult, QueryError, ResultEntry};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
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

pub async fn query_range(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    let r = range_params(&req.params, now_ns())?;
    let expr = parse_query(&req.params)?;
    let limits = &state.config.limits_config;
    let max_len = limits.max_query_length.as_nanos();
    if max_len > 0 && r.end - r.start > max_len {
        return Err(ApiError::BadRequest(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            format_prometheus(r.end - r.start),
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
            };
            let result = state.engine.log_query(&q).await?;
            Ok(streams_response(
                &result,
                r.direction,
                req.categorize_labels(),
            ))
        }
        Expr::Sample(_) => Err(ApiError::Query(QueryError::Unsupported(
            "metric queries are not supported yet".into(),
        ))),
    }
}

pub async fn query_instant(
    State(_state): State<AppState>,
    req: QueryRequest,
) -> ApiResult<Response> {
    if let Some(t) = req.params.get("time") {
        parse_timestamp(t)
            .map_err(|e| ApiError::BadRequest(format!("could not parse 'time' parameter: {e}")))?;
    }
    limit(&req.params)?;
    direction(&req.params)?;
    match parse_query(&req.params)? {
        Expr::Log(_) => Err(ApiError::BadRequest(
            "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        )),
        Expr::Sample(_) => Err(ApiError::Query(QueryError::Unsupported(
            "metric queries are not supported yet".into(),
        ))),
    }
}

/// The `streams` envelope.
///
/// Categorized: streams keyed by their stored labels, each value a 3-tuple whose third
/// element carries structured metadata. Otherwise: structured metadata is merged into the
/// stream labels, which can split one stored stream into several result streams.
fn streams_response(result: &LogResult, dir: Direction, categorize: bool) -> Response {
    let mut out = String::with_capacity(4096);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":\"streams\",");
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
            out.push_str("[\"");
            out.push_str(&e.ts.to_string());
            out.push_str("\",");
            json::push_str(out, &e.line);
            if categorize {
                out.push_str(",{");
                if !e.structured_metadata.is_empty() {
                    out.push_str("\"structuredMetadata\":");
                    json::push_map(
                        out,
                        e.structured_metadata
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    );
                }
                out.push('}');
            }
            out.push(']');
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
                for (k, v) in &e.structured_metadata {
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
