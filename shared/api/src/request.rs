//! What every query handler starts from: merged parameters, the tenant and the flags.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, header};
use parquetry_model::{NO_AUTH_TENANT, TenantError, validate_tenant_id};

use crate::AppState;
use crate::error::ApiError;
use crate::params::Params;

/// The tenant header.
pub const TENANT_HEADER: &str = "x-scope-orgid";
/// Loki's response encoding flags header (`categorize-labels`).
pub const FLAGS_HEADER: &str = "x-loki-response-encoding-flags";

/// Form bodies are parameters, not data: a LogQL query is at most 128 KiB.
const MAX_FORM_BODY: usize = 1 << 20;

/// A parsed query request.
pub struct QueryRequest {
    /// URL and form parameters.
    pub params: Params,
    /// The resolved tenant.
    pub tenant: String,
    /// The request headers.
    pub headers: HeaderMap,
}

impl QueryRequest {
    /// True if the client asked for categorized labels (3-tuples).
    pub fn categorize_labels(&self) -> bool {
        self.headers
            .get_all(FLAGS_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|f| f.trim() == "categorize-labels")
    }
}

/// The tenant of a request: `fake` with auth off, else a valid `X-Scope-OrgID`.
pub fn tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if !state.config.auth_enabled {
        return Ok(NO_AUTH_TENANT.to_string());
    }
    let id = headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(TenantError::Missing)?;
    if id.contains('|') {
        return Err(ApiError::BadRequest(
            "multi-tenant queries are not enabled".into(),
        ));
    }
    validate_tenant_id(id)?;
    Ok(id.to_string())
}

impl FromRequest<AppState> for QueryRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let tenant = tenant(state, req.headers())?;
        let query = req.uri().query().map(str::to_string);
        let is_form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.split(';').next().is_some_and(|m| {
                        m.trim()
                            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                    })
                });
        let headers = req.headers().clone();
        let body = if is_form {
            Some(
                axum::body::to_bytes(req.into_body(), MAX_FORM_BODY)
                    .await
                    .map_err(|e| ApiError::BadRequest(format!("reading form body: {e}")))?,
            )
        } else {
            None
        };
        let params = Params::from_parts(query.as_deref(), body.as_deref())?;
        crate::trace::note_query(&params);
        Ok(QueryRequest {
            params,
            tenant,
            headers,
        })
    }
}
