//! The ruler API, as Loki serves it: rule groups in YAML under `/loki/api/v1/rules`, and the
//! Prometheus-compatible JSON views Grafana reads (`/prometheus/api/v1/rules`, `…/alerts`)
//! with each rule's health and alerts from its group's last evaluation (stored next to the
//! logs, so every process, a Lambda function included, answers the same).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parquetry_ruler::rules::{parse_group, validate_groups};
use parquetry_ruler::state::{self, AlertState, rule_key};
use parquetry_ruler::{RuleGroup, RuleStore, RuleStoreError};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::request::tenant;

fn rule_store(state: &AppState) -> RuleStore {
    RuleStore::from_config(&state.config, &state.store)
}

/// Loki refuses names that would leave the rule directory.
fn check_name(name: &str, what: &str) -> ApiResult<()> {
    let escapes = name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..");
    if escapes {
        return Err(ApiError::RulerServerError(format!(
            "invalid {what}: path traversal not allowed"
        )));
    }
    Ok(())
}

/// The tenant of a request naming one rule group, once both names are checked.
fn group_tenant(
    state: &AppState,
    headers: &HeaderMap,
    namespace: &str,
    group: &str,
) -> ApiResult<String> {
    let tenant = tenant(state, headers)?;
    check_name(namespace, "namespace")?;
    check_name(group, "groupname")?;
    Ok(tenant)
}

fn yaml_response<T: serde::Serialize>(v: &T) -> ApiResult<Response> {
    let text = serde_yaml::to_string(v).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    Ok(resp)
}

fn json_response(status: StatusCode, v: Value) -> Response {
    let mut resp = (status, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn accepted() -> Response {
    json_response(
        StatusCode::ACCEPTED,
        json!({"status": "success", "data": null, "errorType": "", "error": ""}),
    )
}

/// Listing errors as Loki's API words and codes them.
fn list_error(e: RuleStoreError) -> ApiError {
    match e {
        RuleStoreError::Local(m) => ApiError::BadRequest(m),
        other => ApiError::BadRequest(other.to_string()),
    }
}

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    namespace: Option<&str>,
) -> ApiResult<Response> {
    let tenant = tenant(state, headers)?;
    if let Some(ns) = namespace {
        check_name(ns, "namespace")?;
    }
    let groups = rule_store(state)
        .list(&tenant, namespace)
        .await
        .map_err(list_error)?;
    if groups.values().all(Vec::is_empty) {
        return Err(ApiError::NotFound("no rule groups found".into()));
    }
    yaml_response(&groups)
}

/// `GET /loki/api/v1/rules`: every namespace of the tenant.
pub async fn list_all(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    list(&state, &headers, None).await
}

/// `GET /loki/api/v1/rules/{namespace}`.
pub async fn list_namespace(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    list(&state, &headers, Some(&namespace)).await
}

/// `GET /loki/api/v1/rules/{namespace}/{group}`.
pub async fn get_group(
    State(state): State<AppState>,
    Path((namespace, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = group_tenant(&state, &headers, &namespace, &group)?;
    let g = rule_store(&state)
        .get_group(&tenant, &namespace, &group)
        .await
        .map_err(|e| ApiError::rule_store(e, ApiError::BadRequest))?;
    yaml_response(&g)
}

/// `POST /loki/api/v1/rules/{namespace}`: one group in YAML, created or replaced.
pub async fn create_group(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let tenant = tenant(&state, &headers)?;
    check_name(&namespace, "namespace")?;
    let text = String::from_utf8_lossy(&body);
    let group: RuleGroup = parse_group(&text)
        .map_err(|_| ApiError::BadRequest("unable to decoded rule group".into()))?;
    let errs = validate_groups(std::slice::from_ref(&group));
    if !errs.is_empty() {
        return Err(ApiError::BadRequest(errs.join(", ")));
    }
    match rule_store(&state)
        .set_group(&tenant, &namespace, &group)
        .await
    {
        Ok(()) => {
            tracing::info!(%tenant, %namespace, group = %group.name, "stored rule group");
            Ok(accepted())
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// `DELETE /loki/api/v1/rules/{namespace}`.
pub async fn delete_namespace(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = tenant(&state, &headers)?;
    check_name(&namespace, "namespace")?;
    rule_store(&state)
        .delete_namespace(&tenant, &namespace)
        .await
        .map_err(|e| ApiError::rule_store(e, ApiError::RulerServerError))?;
    Ok(accepted())
}

/// `DELETE /loki/api/v1/rules/{namespace}/{group}`.
pub async fn delete_group(
    State(state): State<AppState>,
    Path((namespace, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = group_tenant(&state, &headers, &namespace, &group)?;
    rule_store(&state)
        .delete_group(&tenant, &namespace, &group)
        .await
        .map_err(|e| ApiError::rule_store(e, ApiError::RulerServerError))?;
    Ok(accepted())
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `2.5e-01`.
fn go_e(v: f64) -> String {
    if let Some(s) = crate::json::non_finite(v) {
        return s.into();
    }
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mant}e{sign}{digits:0>2}")
}

fn time_json(ns: i64) -> String {
    if ns <= 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        parquetry_ruler::notify::rfc3339(ns)
    }
}

/// A rule's query as Loki lists it: the parsed expression printed back.
fn canonical(expr: &str) -> String {
    parquetry_logql::parse_expr(expr)
        .map(|e| e.to_string())
        .unwrap_or_else(|_| expr.to_string())
}

/// The tenant's groups that the ruler runs (invalid local files are left out, as Loki's
/// ruler leaves them unloaded), with their stored states.
async fn groups_with_state(
    state: &AppState,
    tenant: &str,
) -> ApiResult<Vec<(String, RuleGroup, state::GroupState)>> {
    let (groups, errs) = rule_store(state).tenant_groups(tenant).await;
    for e in errs {
        tracing::debug!(error = %e, "rule group not listed");
    }
    let objects = state.store.object_store();
    let mut out = Vec::new();
    for g in groups {
        let st = state::load(objects.as_ref(), tenant, &g.namespace, &g.group.name)
            .await
            .map_err(|e| ApiError::RulerServerError(e.to_string()))?;
        out.push((g.namespace, g.group, st));
    }
    Ok(out)
}

fn alerts_json(rs: Option<&state::RuleState>) -> Vec<Value> {
    rs.map(|r| {
        r.alerts
            .values()
            .map(|a| {
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "state": a.state.as_str(),
                    "activeAt": time_json(a.active_at_ns),
                    "value": go_e(a.value),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// `GET /prometheus/api/v1/rules`, with Loki's `type`, `rule_name`, `rule_group` and `file`
/// filters.
pub async fn prometheus_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let tenant = tenant(&state, &headers)?;
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let all = |k: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(n, _)| n == k || n == &format!("{k}[]"))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let kind = params
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let (want_alerts, want_records) = match kind.as_str() {
        "" => (true, true),
        "alert" => (true, false),
        "record" => (false, true),
        other => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                json!({"status": "error", "data": null, "errorType": "bad_data",
                       "error": format!("not supported value {other:?}")}),
            ));
        }
    };
    let (names, groups_f, files) = (all("rule_name"), all("rule_group"), all("file"));
    let default_interval = state.config.ruler.evaluation_interval.0.as_secs_f64();
    let mut out = Vec::new();
    for (ns, g, st) in groups_with_state(&state, &tenant).await? {
        if (!files.is_empty() && !files.contains(&ns.as_str()))
            || (!groups_f.is_empty() && !groups_f.contains(&g.name.as_str()))
        {
            continue;
        }
        let mut rules = Vec::new();
        for r in &g.rules {
            if (r.is_alert() && !want_alerts) || (!r.is_alert() && !want_records) {
                continue;
            }
            if !names.is_empty() && !names.contains(&r.name()) {
                continue;
            }
            let rs = st.rules.get(&rule_key(r));
            let health = rs.map(|s| s.health.as_str()).unwrap_or("unknown");
            let last_error = rs.map(|s| s.last_error.as_str()).unwrap_or("");
            let last_eval = time_json(rs.map(|s| s.last_evaluation_ns).unwrap_or(0));
            let eval_time = rs.map(|s| s.evaluation_seconds).unwrap_or(0.0);
            if r.is_alert() {
                let rule_state = rs
                    .map(|s| {
                        if s.alerts.values().any(|a| a.state == AlertState::Firing) {
                            "firing"
                        } else if s.alerts.values().any(|a| a.state == AlertState::Pending) {
                            "pending"
                        } else {
                            "inactive"
                        }
                    })
                    .unwrap_or("inactive");
                rules.push(json!({
                    "state": rule_state,
                    "name": r.alert,
                    "query": canonical(&r.expr),
                    "duration": r.for_ns() as f64 / 1e9,
                    "labels": r.labels,
                    "annotations": r.annotations,
                    "alerts": alerts_json(rs),
                    "health": health,
                    "lastError": last_error,
                    "type": "alerting",
                    "lastEvaluation": last_eval,
                    "evaluationTime": eval_time,
                }));
            } else {
                rules.push(json!({
                    "name": r.record,
                    "query": canonical(&r.expr),
                    "labels": r.labels,
                    "health": health,
                    "lastError": last_error,
                    "type": "recording",
                    "lastEvaluation": last_eval,
                    "evaluationTime": eval_time,
                }));
            }
        }
        if rules.is_empty() && (!names.is_empty() || !kind.is_empty()) {
            continue;
        }
        out.push(json!({
            "name": g.name,
            "file": ns,
            "rules": rules,
            "interval": g.interval.map(|d| d.0 as f64 / 1e9).unwrap_or(default_interval),
            "limit": g.limit,
            "lastEvaluation": time_json(st.last_evaluation_ns),
            "evaluationTime": st.evaluation_seconds,
        }));
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"status": "success", "data": {"groups": out}, "errorType": "", "error": ""}),
    ))
}

/// `GET /prometheus/api/v1/alerts`: every pending, firing or recently resolved alert.
pub async fn prometheus_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let tenant = tenant(&state, &headers)?;
    let mut alerts = Vec::new();
    for (_, g, st) in groups_with_state(&state, &tenant).await? {
        for r in g.rules.iter().filter(|r| r.is_alert()) {
            alerts.extend(alerts_json(st.rules.get(&rule_key(r))));
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"status": "success", "data": {"alerts": alerts}, "errorType": "", "error": ""}),
    ))
}

#[cfg(test)]
mod tests {
    use super::go_e;

    #[test]
    fn go_float_e() {
        assert_eq!(go_e(1.0), "1e+00");
        assert_eq!(go_e(2.5), "2.5e+00");
        assert_eq!(go_e(0.025), "2.5e-02");
        assert_eq!(go_e(12345.0), "1.2345e+04");
    }
}
