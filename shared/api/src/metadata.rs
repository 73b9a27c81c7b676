//! `labels`, `label/<name>/values`, `series`, `index/stats` and `index/volume[_range]`:
//! answered from stream catalogs, never from line bytes.

use axum::extract::{Path, State};
use axum::response::Response;
use parquetry_logql::parse_selector;
use parquetry_model::Matcher;
use parquetry_query::metadata::VolumeQuery;

use crate::AppState;
use crate::error::{ApiError, ApiResult, within_query_timeout};
use crate::json;
use crate::params::{Params, now_ns, range_params, time_range};
use crate::request::QueryRequest;

fn selector(s: &str) -> ApiResult<Vec<Matcher>> {
    parse_selector(s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The optional `query` selector of `labels` and `label values`.
fn optional_selector(p: &Params) -> ApiResult<Option<Vec<Matcher>>> {
    p.get("query").map(selector).transpose()
}

/// `{"status":"success","data":[…]}`, or without `data` when empty, as Loki answers.
fn names_response(values: &[String]) -> Response {
    if values.is_empty() {
        return json::response("{\"status\":\"success\"}".into());
    }
    let mut out = String::from("{\"status\":\"success\",\"data\":");
    json::push_str_array(&mut out, values.iter().map(String::as_str));
    out.push('}');
    json::response(out)
}

/// `GET /loki/api/v1/labels`.
pub async fn labels(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    let (start, end) = time_range(&req.params, now_ns())?;
    let m = optional_selector(&req.params)?;
    let names = state
        .engine
        .label_names(&req.tenant, m.as_deref(), start, end)
        .await?;
    Ok(names_response(&names))
}

/// `GET /loki/api/v1/label/<name>/values`.
pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: QueryRequest,
) -> ApiResult<Response> {
    let (start, end) = time_range(&req.params, now_ns())?;
    let m = optional_selector(&req.params)?;
    let values = state
        .engine
        .label_values(&req.tenant, &name, m.as_deref(), start, end)
        .await?;
    Ok(names_response(&values))
}

/// `GET /loki/api/v1/series`.
pub async fn series(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    let (start, end) = time_range(&req.params, now_ns())?;
    let mut raw: Vec<&str> = req
        .params
        .all("match[]")
        .iter()
        .chain(req.params.all("match"))
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty())
        .collect();
    raw.sort_unstable();
    raw.dedup();
    let mut sets = Vec::with_capacity(raw.len());
    for s in raw {
        let m = selector(s)?;
        // `{}` means every stream.
        if m.is_empty() {
            sets.clear();
            break;
        }
        sets.push(m);
    }
    let series = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state.engine.series(&req.tenant, &sets, start, end),
    )
    .await?;
    let mut out = String::from("{\"status\":\"success\",\"data\":[");
    for (i, labels) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::push_map(
            &mut out,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
    }
    out.push_str("]}");
    Ok(json::response(out))
}

/// `GET /loki/api/v1/index/stats`.
pub async fn index_stats(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    let r = range_params(&req.params, now_ns())?;
    let q = req
        .params
        .get("query")
        .ok_or_else(|| ApiError::BadRequest("query parameter is required".into()))?;
    let m = selector(q)?;
    let s = state
        .engine
        .index_stats(&req.tenant, &m, r.start, r.end)
        .await?;
    Ok(json::response(format!(
        "{{\"streams\":{},\"chunks\":{},\"bytes\":{},\"entries\":{}}}",
        s.streams, s.chunks, s.bytes, s.entries
    )))
}

/// `index/volume` (one bucket ending at `end`) and `index/volume_range` (buckets of `step`).
async fn volume_common(state: &AppState, req: &QueryRequest, range: bool) -> ApiResult<Response> {
    let r = range_params(&req.params, now_ns())?;
    let q = req
        .params
        .get("query")
        .ok_or_else(|| ApiError::BadRequest("query parameter is required".into()))?;
    let matchers = selector(q)?;
    let limit = match req.params.get("limit") {
        None | Some("") => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(0) => 100,
            Ok(n) => n,
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid limit: {v:?} is not a non-negative integer"
                )));
            }
        },
    };
    let by_label_names = match req.params.get("aggregateBy") {
        None | Some("") | Some("series") => false,
        Some("labels") => true,
        Some(_) => return Err(ApiError::BadRequest("invalid aggregation option".into())),
    };
    let target_labels = req
        .params
        .get("targetLabels")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let vq = VolumeQuery {
        tenant: req.tenant.clone(),
        matchers,
        start: r.start,
        end: r.end,
        step: range.then_some(r.step_ns),
        target_labels,
        by_label_names,
        limit,
    };
    let series = within_query_timeout(
        state.config.limits_config.query_timeout.0,
        state.engine.volume(&vq),
    )
    .await?;
    let vector = series.iter().all(|(_, p)| p.len() == 1);
    let mut out = String::from("{\"status\":\"success\",\"data\":{\"resultType\":");
    out.push_str(if vector { "\"vector\"" } else { "\"matrix\"" });
    out.push_str(",\"result\":[");
    for (i, (labels, points)) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metric\":");
        json::push_map(
            &mut out,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        let point = |out: &mut String, (t, v): (i64, u64)| {
            json::push_point_str(out, t, &v.to_string());
        };
        if vector {
            out.push_str(",\"value\":");
            point(&mut out, points[0]);
        } else {
            out.push_str(",\"values\":[");
            for (j, p) in points.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                point(&mut out, *p);
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push_str("],\"stats\":");
    json::push_stats(&mut out, &Default::default());
    out.push_str("}}");
    Ok(json::response(out))
}

/// `GET /loki/api/v1/index/volume`.
pub async fn volume(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    volume_common(&state, &req, false).await
}

/// `GET /loki/api/v1/index/volume_range`.
pub async fn volume_range(State(state): State<AppState>, req: QueryRequest) -> ApiResult<Response> {
    volume_common(&state, &req, true).await
}
