//! What the push and query Lambda functions share: start-up (configuration from the
//! environment, JSON logs on stdout, the store) and the host wiring around the library router.
//! Everything with logic lives in the library crates; this crate only puts the router behind
//! `lambda_http` and adds what only a public Lambda URL needs:
//!
//! * [`Role`]: each function answers only the routes it is deployed for, so a mis-routed
//!   request gets a clear 404 instead of being served by the wrong function.
//! * [`auth`]: an optional shared secret (bearer token or basic-auth password) for the public
//!   URL, from the `PARQUETRY_AUTH_TOKEN` environment variable.
//! * [`response`]: Lambda's 6 MiB synchronous response limit answered with a clear 413 instead of
//!   a failed invocation, and gzip for query responses when the client accepts it.

pub mod auth;
pub mod response;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parquetry_api::{AppState, router};
use parquetry_model::Config;
use parquetry_store::Store;
use tracing_subscriber::EnvFilter;

pub use response::{LAMBDA_MAX_RESPONSE_BYTES, LambdaHandler};

/// Optional YAML configuration file (inside the deployment package or a layer).
pub const CONFIG_FILE_ENV: &str = "PARQUETRY_CONFIG";

/// Which part of the API a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `POST /loki/api/v1/push`, `POST /api/prom/push`, `POST /otlp/v1/logs` (and `/ready`).
    Push,
    /// Every other route: queries, metadata, status.
    Query,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Push => "push",
            Role::Query => "query",
        }
    }
}

/// Settings of the Lambda host itself (not of the Loki API, which stay in [`Config`]).
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub role: Role,
    /// Accepted shared secrets; empty means the URL is protected by API Gateway (IAM) or not at all.
    pub auth_tokens: Vec<String>,
    /// Largest serialized Lambda response; larger ones become a 413.
    pub max_response_bytes: usize,
}

impl HostSettings {
    /// Reads `PARQUETRY_AUTH_TOKEN` and `PARQUETRY_LAMBDA_MAX_RESPONSE_BYTES` from `env`.
    pub fn from_env(
        role: Role,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<HostSettings> {
        let mut settings = HostSettings {
            role,
            auth_tokens: Vec::new(),
            max_response_bytes: LAMBDA_MAX_RESPONSE_BYTES,
        };
        for (k, v) in env {
            match k.as_str() {
                auth::AUTH_TOKEN_ENV => settings.auth_tokens = auth::parse_tokens(&v)?,
                response::MAX_RESPONSE_ENV => {
                    settings.max_response_bytes = v
                        .trim()
                        .parse()
                        .with_context(|| format!("{k}: expected a number of bytes, got {v:?}"))?;
                }
                _ => {}
            }
        }
        Ok(settings)
    }
}

/// The configuration: `PARQUETRY_CONFIG` (optional file) plus `PARQUETRY__…` overrides.
/// Storage must be named explicitly: a Lambda's file system is read-only outside `/tmp`, so the
/// all-in-one default `./data` would only fail later and less clearly.
pub fn load_config(env: Vec<(String, String)>) -> anyhow::Result<Config> {
    let file = env
        .iter()
        .find(|(k, _)| k == CONFIG_FILE_ENV)
        .map(|(_, v)| PathBuf::from(v));
    let config = Config::load(file.as_deref(), env)?;
    if config.storage.url.is_none() && config.common.path_prefix.is_none() {
        anyhow::bail!(
            "no storage configured: set PARQUETRY__STORAGE__URL (for example s3://bucket/prefix)"
        );
    }
    Ok(config)
}

/// JSON lines on stdout, which CloudWatch Logs stores as structured events. `RUST_LOG` wins over
/// `server.log_level`.
pub fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| {
            EnvFilter::try_new(format!(
                "{},hyper=warn,datafusion=warn,lambda_runtime=warn",
                config.server.log_level
            ))
        })
        .context("server.log_level")?;
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        // The runtime's invocation span carries the request id: keep it on every line.
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|e| anyhow::anyhow!("initialising logging: {e}"))
}

/// The library router for `role`, over the store the configuration names, with the host layers.
pub fn app(config: Config, settings: &HostSettings) -> anyhow::Result<Router> {
    let url = config.storage_url();
    let store = Arc::new(
        Store::open_config(&url, &config.storage)
            .with_context(|| format!("opening storage {url}"))?,
    );
    Ok(wrap(router(AppState::new(config, store)), settings))
}

/// Adds the host layers to a router: role filter inside, shared-secret check outside, gzip for
/// query responses.
pub fn wrap(app: Router, settings: &HostSettings) -> Router {
    let role = settings.role;
    let mut app = app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| serve_role(role, req, next),
    ));
    if role == Role::Query {
        // Grafana and logcli send Accept-Encoding: gzip; compressed responses stretch Lambda's
        // response limit roughly tenfold for log queries.
        app = app.layer(tower_http::compression::CompressionLayer::new());
    }
    if !settings.auth_tokens.is_empty() {
        app = auth::protect(app, settings.auth_tokens.clone());
    }
    app
}

fn is_tail_path(path: &str) -> bool {
    path.ends_with("/loki/api/v1/tail") || path.ends_with("/api/prom/tail")
}

/// API Gateway's HTTP APIs and function URLs cannot upgrade a request to a WebSocket, so a
/// live tail is refused with what to use instead, rather than failing as a bad handshake.
fn tail_unavailable() -> Response {
    let mut resp = (
        StatusCode::BAD_REQUEST,
        "live tail (/loki/api/v1/tail) needs a WebSocket, which the Lambda query function \
         cannot serve: poll /loki/api/v1/query_range instead (logcli query without --tail, \
         Grafana without Live), or run parquetry serve for live tailing\n",
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn is_push_path(path: &str) -> bool {
    path.ends_with("/loki/api/v1/push")
        || path.ends_with("/api/prom/push")
        || path.ends_with("/otlp/v1/logs")
}

async fn serve_role(role: Role, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let allowed = match role {
        Role::Push => is_push_path(path) || path.ends_with("/ready"),
        Role::Query => !is_push_path(path),
    };
    if role == Role::Query && is_tail_path(path) {
        return tail_unavailable();
    }
    if allowed {
        return next.run(req).await;
    }
    let other = match role {
        Role::Push => "query",
        Role::Query => "push",
    };
    let mut resp = (
        StatusCode::NOT_FOUND,
        format!(
            "{path} is not served by the {} function; route it to the {other} function\n",
            role.name()
        ),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `lambda_http` puts a REST API's stage name in front of the path (`/prod/loki/api/v1/...`)
/// unless this is set; Loki's paths never contain it.
pub const IGNORE_STAGE_ENV: &str = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH";

/// Process set-up that must happen before any other thread exists.
pub fn prepare_process() {
    if std::env::var_os(IGNORE_STAGE_ENV).is_none() {
        // SAFETY: called first thing in `main`, before the Tokio runtime or any other thread
        // exists, so nothing can read the environment concurrently.
        unsafe { std::env::set_var(IGNORE_STAGE_ENV, "true") };
    }
}

/// Start-up of either function: configuration, logging, store, router, then the runtime loop.
pub async fn run(role: Role) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = load_config(env.clone())?;
    init_logging(&config)?;
    let settings = HostSettings::from_env(role, env)?;
    let storage = config.storage_url();
    let auth_enabled = config.auth_enabled;
    let app = app(config, &settings)?;
    tracing::info!(
        function = role.name(),
        %storage,
        auth_enabled,
        shared_secret = !settings.auth_tokens.is_empty(),
        "parquetry lambda is ready"
    );
    lambda_http::lambda_runtime::run(LambdaHandler::new(app, settings.max_response_bytes))
        .await
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}
