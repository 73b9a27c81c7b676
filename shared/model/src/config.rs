//! The configuration tree: a YAML file in Loki's vocabulary, every key overridable by an
//! environment variable, defaults that need no file at all.
//!
//! Environment overrides name the key path with `__` between levels under the `PARQUETRY`
//! prefix: `PARQUETRY__SERVER__HTTP_LISTEN_PORT=3200`,
//! `PARQUETRY__LIMITS_CONFIG__MAX_LINE_SIZE=1MB`, `PARQUETRY__AUTH_ENABLED=true`. Values are
//! read as YAML scalars, so numbers, booleans and `[a, b]` lists work. Unknown keys, in the file
//! or the environment, are errors rather than silently ignored.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::{parse_bytes, parse_prometheus_or_go};

/// Environment variables with this prefix override configuration keys (`__` separates levels).
pub const ENV_PREFIX: &str = "PARQUETRY__";

/// Why the configuration does not load.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML or a value is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A `PARQUETRY__…` environment variable whose key path does not fit the tree.
    #[error("invalid configuration: {var}: {reason}")]
    EnvKey {
        /// The variable's name.
        var: String,
        /// Why its path cannot be set.
        #[source]
        reason: EnvKeyError,
    },
}

/// Why an environment override's key path cannot be set in the configuration tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvKeyError {
    /// The variable names no key after the prefix.
    #[error("empty key")]
    Empty,
    /// A key along the path (named here) holds a value, not a mapping.
    #[error("{0} is not inside a mapping")]
    NotInMapping(String),
}

/// The whole tree. Field names are Loki's where Loki has one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// With auth on, every request needs `X-Scope-OrgID`; with it off everything runs as `fake`.
    pub auth_enabled: bool,
    /// Loki's `server` block: listening and timeouts.
    pub server: ServerConfig,
    /// Loki's `common` block.
    pub common: CommonConfig,
    /// Where objects live and how they are partitioned.
    pub storage: StorageConfig,
    /// Push body limits.
    pub distributor: DistributorConfig,
    /// Per-tenant limits, Loki's `limits_config`.
    pub limits_config: Limits,
    /// Query execution settings.
    pub query_range: QueryRangeConfig,
    /// Compaction, retention and delete settings.
    pub compactor: CompactorConfig,
    /// Loki's `querier` keys that apply here.
    pub querier: QuerierConfig,
    /// Loki's query-frontend keys that apply here (the slow-query log).
    pub frontend: crate::frontend_config::FrontendConfig,
    /// Alerting and recording rules over LogQL (Loki's `ruler` block).
    pub ruler: crate::ruler_config::RulerConfig,
    /// Per-tenant limits that differ from `limits_config`, by tenant id: Loki's runtime
    /// `overrides:` block, with the keys Parquetry honours per tenant.
    pub overrides: std::collections::BTreeMap<String, TenantOverrides>,
    /// Which parts this process runs, Loki's `-target`: `all`, or a comma list of `write`
    /// (push), `read` (queries), `backend` (compactor, retention, deletes), or Loki's
    /// component names, which map onto those three.
    pub target: Target,
    /// What a Loki file's keys turned into (translated and ignored keys), for the start-up
    /// warning and `GET /config`.
    #[serde(skip)]
    pub loki: crate::loki_config::Translation,
}

/// The compactor (merging small pushed objects into large sorted ones) and retention, with
/// Loki's key names where Loki has one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// How often `parquetry serve` runs a compaction (and, when enabled, retention) pass.
    /// `0` disables the timer.
    pub compaction_interval: LokiDuration,
    /// Run retention on the timer inside `parquetry serve`.
    pub retention_enabled: bool,
    /// Grace period between an object leaving the live set (absorbed by compaction, or its
    /// day marked for retention) and its deletion, so queries that already listed it finish.
    pub retention_delete_delay: LokiDuration,
    /// Pushed ("hot") objects younger than this are left alone, so a compaction absorbs many
    /// of them at once.
    pub hot_object_min_age: LokiDuration,
    /// Size a compacted ("cold") object grows to before another is started.
    pub target_object_size: ByteSize,
    /// Most hot objects merged into one cold object in one pass (bounds open inputs and so
    /// memory).
    pub max_objects_per_merge: usize,
    /// How long a delete request can be cancelled; the compactor removes its entries only
    /// after it (queries hide them at once).
    pub delete_request_cancel_period: LokiDuration,
    /// Accepted for Loki compatibility: delete requests always live in the log store, next
    /// to the manifests.
    pub delete_request_store: String,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            compaction_interval: LokiDuration::from_secs(600),
            retention_enabled: false,
            retention_delete_delay: LokiDuration::from_secs(2 * 3600),
            hot_object_min_age: LokiDuration::from_secs(15 * 60),
            target_object_size: ByteSize(256 << 20),
            max_objects_per_merge: 200,
            delete_request_cancel_period: LokiDuration::from_secs(24 * 3600),
            delete_request_store: String::new(),
        }
    }
}

/// Loki's `target`: the roles one process plays. Loki's component names are accepted and
/// mapped onto Parquetry's three roles (its simple-scalable deployment's names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Target(pub String);

impl Default for Target {
    fn default() -> Self {
        Target("all".into())
    }
}

/// A role of [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Push endpoints (Loki's distributor and ingester).
    Write,
    /// Query endpoints (querier, query frontend).
    Read,
    /// Compaction, retention and deletes (compactor, ruler, index gateway).
    Backend,
}

impl Target {
    fn role_of(name: &str) -> Option<&'static [Role]> {
        Some(match name {
            "all" | "" => &[Role::Write, Role::Read, Role::Backend],
            "write" | "distributor" | "ingester" => &[Role::Write],
            "read" | "querier" | "query-frontend" | "query-scheduler" => &[Role::Read],
            "backend" | "compactor" | "ruler" | "index-gateway" | "table-manager" => {
                &[Role::Backend]
            }
            _ => return None,
        })
    }

    /// A `-target` value, checked.
    pub fn parse(s: &str) -> Result<Target, ConfigError> {
        let t = Target(s.to_string());
        t.validate()?;
        Ok(t)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for part in self.0.split(',').map(str::trim) {
            if Self::role_of(part).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "target: unknown target {part:?}; use all, write, read or backend"
                )));
            }
        }
        Ok(())
    }

    /// Whether this process plays `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.0
            .split(',')
            .map(str::trim)
            .filter_map(Self::role_of)
            .any(|roles| roles.contains(&role))
    }
}

/// Limits overridden for one tenant (`overrides.<tenant>.<key>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantOverrides {
    /// Replaces `limits_config.retention_period` for this tenant (`0` keeps forever).
    pub retention_period: Option<LokiDuration>,
    /// Replaces `limits_config.retention_stream` for this tenant.
    pub retention_stream: Option<Vec<StreamRetention>>,
    /// Replaces `limits_config.deletion_mode` for this tenant.
    pub deletion_mode: Option<DeletionMode>,
    /// Replaces `limits_config.otlp_config` for this tenant.
    pub otlp_config: Option<crate::otlp::OtlpConfig>,
}

/// One `retention_stream` rule: streams matching `selector` keep `period`; of several
/// matching rules the highest `priority` wins, and of equal priorities the shortest period.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRetention {
    /// The stream selector.
    pub selector: String,
    /// Higher wins among matching rules.
    #[serde(default)]
    pub priority: u32,
    /// How long matching streams are kept.
    pub period: LokiDuration,
}

/// `deletion_mode`: what the delete API may do for a tenant (Loki's values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum DeletionMode {
    /// The delete API refuses requests.
    #[serde(rename = "disabled")]
    Disabled,
    /// Matching entries are hidden from queries, never removed from storage.
    #[serde(rename = "filter-only")]
    FilterOnly,
    /// Hidden from queries, then removed by the compactor.
    #[default]
    #[serde(rename = "filter-and-delete")]
    FilterAndDelete,
}

/// The querier's live tail (`/loki/api/v1/tail`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    /// A tail is closed (1011 `reached tail max duration limit`) after this long, as Loki's
    /// `querier.tail_max_duration`.
    pub tail_max_duration: LokiDuration,
    /// How often a tail also reads storage for entries pushed through other processes (other
    /// `serve` replicas, the push Lambda). `0` (the default) relies on this process's own
    /// pushes alone: right for a single all-in-one server.
    pub tail_storage_poll_interval: LokiDuration,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        QuerierConfig {
            tail_max_duration: LokiDuration::from_secs(3600),
            tail_storage_poll_interval: LokiDuration::from_secs(0),
        }
    }
}

/// Query-frontend behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryRangeConfig {
    /// Align metric range queries to the step grid from the Unix epoch (`start` down, `end`
    /// up), as Loki's query frontend does when it splits queries, so Grafana sees the same
    /// points as from Loki. Off gives the raw grid `start + k·step`.
    pub align_to_step_grid: bool,
    /// Memory the query engine's sorts and aggregations may hold, all queries of the process
    /// together (0: no limit). A query that needs more fails with a 400 instead of the
    /// process growing until the kernel kills it.
    pub max_memory: ByteSize,
    /// Scan partitions (parallel tasks) per query; 0 (the default) is one per core.
    pub parallelism: usize,
    /// Memory one time block of a metric range query should hold. A range query whose samples
    /// grow with the lines it reads — a range function over every value (`avg_over_time`,
    /// `quantile_over_time`, … with `unwrap`: ~16 bytes a line), or an aggregation above a
    /// range function that may make a series per line (~100 bytes a line) — and whose
    /// selected lines would hold more than this is evaluated in consecutive blocks of steps,
    /// each holding about this much, so its memory follows one block rather than the whole
    /// range. Answers are the same to the last bit. 0: never.
    pub time_block_memory: ByteSize,
    /// The shortest time block, in lookbacks (the query's longest range): each block reads
    /// its first step's lookback again, so blocks of N lookbacks read at most 1/N of the rows
    /// twice. 0 lets a block be one step (what tests use to cut queries as finely as they go).
    pub time_block_min_lookbacks: u32,
    /// Price of 1,000 S3 GET requests in US dollars, for the cost estimate in every query's
    /// `stats.parquetry` (AWS list price, S3 Standard).
    pub cost_s3_get_per_1000: f64,
    /// Price of a Lambda GB-second in US dollars, for the same estimate (AWS list price, x86).
    pub cost_lambda_gb_second: f64,
    /// Memory of the function the estimate assumes (the query function's default). In Lambda
    /// the function's own memory size is used instead.
    pub cost_lambda_memory: ByteSize,
    /// Most leaves a log or metric query is split into, by stream (0 or 1: no fan-out).
    pub fanout_leaves: usize,
    /// Catalog line bytes a leaf should read: a query gets `bytes / fanout_target_bytes`
    /// leaves, at most `fanout_leaves` (0: always `fanout_leaves`).
    pub fanout_target_bytes: ByteSize,
    /// Leaves of one query running at once (0: all of them).
    pub fanout_concurrency: usize,
    /// Where leaves run: in this process, on peer replicas (`parquetry serve`), or as Lambda
    /// invocations (the query function only).
    pub fanout_transport: FanoutTransport,
    /// The function leaves invoke with the `lambda` transport (empty: the function's own
    /// name, `AWS_LAMBDA_FUNCTION_NAME`).
    pub fanout_lambda_function: String,
    /// The replicas leaves go to with the `peers` transport, as `host:port`; each name is
    /// resolved at query time to all its addresses (a Kubernetes headless Service names every
    /// read replica).
    pub fanout_peers: Vec<String>,
}

impl QueryRangeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.fanout_transport == FanoutTransport::Peers
            && self.fanout_peers.iter().all(|p| p.trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "query_range.fanout_transport is peers, but query_range.fanout_peers names no \
                 peer (host:port, e.g. a headless Service of the read replicas)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `query_range.fanout_transport`: where a split query's leaves run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FanoutTransport {
    /// Tasks of the process that split the query.
    #[default]
    Local,
    /// Synchronous invocations of a Lambda function (`fanout_lambda_function`).
    Lambda,
    /// HTTP requests to other `parquetry serve` replicas (`fanout_peers`) on the same storage.
    Peers,
}

impl Default for QueryRangeConfig {
    fn default() -> Self {
        QueryRangeConfig {
            align_to_step_grid: true,
            max_memory: ByteSize(512 << 20),
            parallelism: 0,
            time_block_memory: ByteSize(128 << 20),
            time_block_min_lookbacks: 4,
            cost_s3_get_per_1000: 0.0004,
            cost_lambda_gb_second: 0.000_016_666_7,
            cost_lambda_memory: ByteSize(2048 << 20),
            fanout_leaves: 0,
            fanout_target_bytes: ByteSize(0),
            fanout_concurrency: 0,
            fanout_transport: FanoutTransport::Local,
            fanout_lambda_function: String::new(),
            fanout_peers: Vec::new(),
        }
    }
}

/// Loki's `server` block.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub http_listen_address: String,
    /// Port the HTTP server listens on (3100).
    pub http_listen_port: u16,
    /// `debug`, `info`, `warn` or `error`.
    pub log_level: String,
    /// `logfmt` (human text) or `json`.
    pub log_format: String,
    /// Also log each span as it closes (request, query stages, compaction, merge) with its
    /// fields and busy/idle time. Off by default: several lines per request.
    pub log_spans: bool,
    /// Prefix under which the HTTP API is also served (for proxies that add one).
    pub http_path_prefix: String,
    /// Longest a client may take to send a whole request, head and body, counted from its
    /// first byte (from the accept for a connection's first request). Loki's key and default.
    /// `0` = no limit.
    pub http_server_read_timeout: LokiDuration,
    /// Longest a client may take to send a request head. `0` = `http_server_read_timeout`.
    pub http_server_read_header_timeout: LokiDuration,
    /// Longest from a request's head being read to its response being written, after which
    /// the connection is closed. Never shorter than `limits_config.query_timeout` plus a
    /// margin, so a query that runs into its own timeout still gets its 504 out. `0` = no limit.
    pub http_server_write_timeout: LokiDuration,
    /// Longest a keep-alive connection may wait for its next request.
    /// `0` = `http_server_read_timeout`.
    pub http_server_idle_timeout: LokiDuration,
    /// Most connections open at once; more wait in the listen backlog until one closes.
    /// `0` = no limit.
    pub http_listen_conn_limit: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen_address: "0.0.0.0".into(),
            http_listen_port: 3100,
            log_level: "info".into(),
            log_format: "logfmt".into(),
            log_spans: false,
            http_path_prefix: String::new(),
            http_server_read_timeout: LokiDuration::from_secs(30),
            http_server_read_header_timeout: LokiDuration::from_secs(0),
            http_server_write_timeout: LokiDuration::from_secs(30),
            http_server_idle_timeout: LokiDuration::from_secs(120),
            // Loki's default is 0 (no limit). Every connection costs a file descriptor, and
            // the common soft limit is 1,024, shared with the object files and S3 connections
            // that pushes and queries open: 512 keeps idle or hostile clients from taking the
            // descriptors the store needs, with room to spare.
            http_listen_conn_limit: 512,
        }
    }
}

/// Loki's `common` block.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommonConfig {
    /// Loki's data directory. When set and `storage.url` is not, data lives here.
    pub path_prefix: Option<String>,
}

/// Where objects live and how they are partitioned.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where objects live: a directory path, `file:///abs/path`, `s3://bucket[/prefix]` or
    /// `memory://`.
    pub url: Option<String>,
    /// Stream labels whose values partition object keys. The first one present on a stream
    /// names its partition.
    pub partition_labels: Vec<String>,
    /// Connection settings for `s3://` URLs. Each key left unset falls back to the standard
    /// `AWS_*` environment variables, then to the AWS defaults (instance or Lambda role).
    pub s3: S3Config,
    /// Most partitions one push writes: past it, the streams of the smallest partitions share
    /// one "mixed" object per day (0: no limit).
    pub max_partitions_per_push: usize,
}

/// Well above what one agent's batch holds (one node's services), far below what makes a
/// push cost thousands of PUTs and a query thousands of footers.
pub const DEFAULT_MAX_PARTITIONS_PER_PUSH: usize = 100;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            partition_labels: vec!["service_name".into()],
            s3: S3Config::default(),
            max_partitions_per_push: DEFAULT_MAX_PARTITIONS_PER_PUSH,
        }
    }
}

/// S3 settings in Loki's vocabulary (`storage_config.aws`). All optional: on AWS proper,
/// nothing needs setting when the environment provides credentials and a region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// An S3-compatible server: `host:port` (https, or http with `insecure`) or a full URL
    /// such as `http://127.0.0.1:8333`. Unset: AWS, or `AWS_ENDPOINT_URL` when set.
    pub endpoint: Option<String>,
    /// Signing region. Unset: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Access key. Unset: the environment's credentials.
    pub access_key_id: Option<String>,
    /// Secret key, with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// `true`: `endpoint/bucket/key` requests; `false`: `bucket.endpoint/key`. Unset: path
    /// style with a configured endpoint (what S3-compatible servers expect), virtual-hosted
    /// style on AWS.
    pub s3forcepathstyle: Option<bool>,
    /// Allow plain http to the endpoint. Loopback endpoints never need it.
    pub insecure: bool,
}

/// A credential: readable by the code that needs it, never printed. `Debug` and `Serialize`
/// show `<secret>`, as Loki's `/config` does.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret's text, for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// Loki's `distributor` keys that apply here.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// Largest push body accepted, before decompression (Loki's
    /// `distributor.max_recv_msg_size`, 100 MiB).
    pub max_recv_msg_size: ByteSize,
    /// Largest push body accepted after decompression, gzip, deflate or snappy (Loki's
    /// `distributor.max_decompressed_size`). 0 means 50 × `max_recv_msg_size`, as in Loki.
    pub max_decompressed_size: ByteSize,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        DistributorConfig {
            max_recv_msg_size: ByteSize(100 << 20),
            // Not Loki's 5000 MiB (50 × max_recv_msg_size): decoding stops garbage at its first
            // byte, but a well-formed body (one 1 GB line, gzipped to 1 MB) is held whole before
            // max_line_size can refuse it, and three at once would take gigabytes. No agent
            // sends batches near 100 MiB (Promtail, Alloy and Fluent Bit default to ~1 MiB).
            max_decompressed_size: ByteSize(100 << 20),
        }
    }
}

/// Per-tenant limits, with Loki's names and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Refuse entries older than `reject_old_samples_max_age`.
    pub reject_old_samples: bool,
    /// How old an entry may be when `reject_old_samples` is on.
    pub reject_old_samples_max_age: LokiDuration,
    /// How far in the future an entry may be.
    pub creation_grace_period: LokiDuration,
    /// Longest line accepted (0: no limit).
    pub max_line_size: ByteSize,
    /// Truncate longer lines instead of refusing them.
    pub max_line_size_truncate: bool,
    /// Most labels a stream may have.
    pub max_label_names_per_series: usize,
    /// Longest label name.
    pub max_label_name_length: usize,
    /// Longest label value.
    pub max_label_value_length: usize,
    /// Most bytes of structured metadata per entry.
    pub max_structured_metadata_size: ByteSize,
    /// Most structured metadata pairs per entry.
    pub max_structured_metadata_entries_count: usize,
    /// Accept structured metadata at all.
    pub allow_structured_metadata: bool,
    /// Labels tried in order to fill `service_name` when a stream lacks it.
    pub discover_service_name: Vec<String>,
    /// Add `detected_level` metadata at push time.
    pub discover_log_levels: bool,
    /// Largest `limit` a log query may ask for.
    pub max_entries_limit_per_query: u64,
    /// Longest query range (0: no limit).
    pub max_query_length: LokiDuration,
    /// Most series a metric query may return.
    pub max_query_series: usize,
    /// How long a query may run.
    pub query_timeout: LokiDuration,
    /// Most bytes of lines and labels one query may produce (0: no limit). Loki bounds the
    /// same through its gRPC message size between querier and frontend; a pipeline such as
    /// `label_format x="{{ repeat 1000000 "y" }}"` would otherwise hold gigabytes.
    pub max_query_response_size: ByteSize,
    /// Entries older than this are deleted, a whole UTC day at a time, once the whole day is
    /// older. `0` keeps everything forever (Loki's default).
    pub retention_period: LokiDuration,
    /// Per-stream retention rules, applied by the compactor.
    pub retention_stream: Vec<StreamRetention>,
    /// Whether the delete API is available and applied to storage.
    pub deletion_mode: DeletionMode,
    /// Live tails one tenant may hold open at once.
    pub max_concurrent_tail_requests: usize,
    /// How OTLP attributes map to stream labels and structured metadata.
    pub otlp_config: crate::otlp::OtlpConfig,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reject_old_samples: true,
            reject_old_samples_max_age: LokiDuration::from_secs(168 * 3600),
            creation_grace_period: LokiDuration::from_secs(600),
            max_line_size: ByteSize(256 * 1024),
            max_line_size_truncate: false,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_structured_metadata_size: ByteSize(64 * 1024),
            max_structured_metadata_entries_count: 128,
            allow_structured_metadata: true,
            discover_service_name: [
                "service",
                "app",
                "application",
                "app_name",
                "name",
                "app_kubernetes_io_name",
                "container",
                "container_name",
                "k8s_container_name",
                "component",
                "workload",
                "job",
                "k8s_job_name",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            discover_log_levels: true,
            max_entries_limit_per_query: 5000,
            max_query_length: LokiDuration::from_secs(721 * 3600),
            max_query_series: 500,
            query_timeout: LokiDuration::from_secs(60),
            max_query_response_size: ByteSize(128 << 20),
            retention_period: LokiDuration::from_secs(0),
            retention_stream: Vec::new(),
            deletion_mode: DeletionMode::FilterAndDelete,
            max_concurrent_tail_requests: 10,
            otlp_config: Default::default(),
        }
    }
}

/// A duration written the Loki way in YAML (`168h`, `10m`, `1.5h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LokiDuration(pub Duration);

impl LokiDuration {
    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        LokiDuration(Duration::from_secs(s))
    }
    /// Nanoseconds, saturating at `i64::MAX`.
    pub fn as_nanos(&self) -> i64 {
        self.0.as_nanos().min(i64::MAX as u128) as i64
    }
}

impl fmt::Display for LokiDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::duration::format_prometheus(self.as_nanos()))
    }
}

impl<'de> Deserialize<'de> for LokiDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        let s = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) if n.as_u64() == Some(0) => "0".into(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a duration such as 10m or 168h, got {other:?}"
                )));
            }
        };
        let ns = parse_prometheus_or_go(&s).map_err(serde::de::Error::custom)?;
        if ns < 0 {
            return Err(serde::de::Error::custom(format!("negative duration {s:?}")));
        }
        Ok(LokiDuration(Duration::from_nanos(ns as u64)))
    }
}

impl Serialize for LokiDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A byte size written as a number of bytes or with a unit (`256KB`, `100MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        match v {
            serde_yaml::Value::Number(n) => n
                .as_u64()
                .map(ByteSize)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid byte size {n}"))),
            serde_yaml::Value::String(s) => parse_bytes(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a byte size such as 256KB, got {other:?}"
            ))),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Config {
    /// Reads an optional YAML file, then applies `PARQUETRY__…` overrides from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_yaml_and_env(&text, env)
    }

    /// Reads YAML (ours or a Loki file's) and applies `PARQUETRY__` overrides from `env`.
    pub fn from_yaml_and_env(
        yaml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut root: serde_yaml::Value = if yaml.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(yaml).map_err(|e| ConfigError::Invalid(e.to_string()))?
        };
        if root.is_null() {
            root = serde_yaml::Value::Mapping(Default::default());
        }
        let ours = serde_yaml::to_value(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let translation = crate::loki_config::translate(&mut root, &ours)?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (k, v) in overrides {
            let path: Vec<String> = k[ENV_PREFIX.len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect();
            let value: serde_yaml::Value =
                serde_yaml::from_str(&v).unwrap_or_else(|_| serde_yaml::Value::String(v.clone()));
            set_path(&mut root, &path, value).map_err(|reason| ConfigError::EnvKey {
                var: k.clone(),
                reason,
            })?;
        }
        let mut config: Config =
            serde_yaml::from_value(root).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.target.validate()?;
        config.query_range.validate()?;
        config.loki = translation;
        Ok(config)
    }

    /// [`Config::load`] with Loki's `-config.expand-env`: `${VAR}` and `${VAR:-default}` in
    /// the file are replaced from `env` before it is parsed.
    pub fn load_expanding_env(
        file: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let text = crate::loki_config::expand_env(&text, &lookup);
        Self::from_yaml_and_env(&text, env)
    }

    /// The storage URL in effect: `storage.url`, else `common.path_prefix`, else `./data`.
    pub fn storage_url(&self) -> String {
        self.storage
            .url
            .clone()
            .or_else(|| self.common.path_prefix.clone())
            .unwrap_or_else(|| "./data".into())
    }

    /// The OTLP attribute mapping of `tenant`: its override, else `limits_config.otlp_config`.
    pub fn otlp_config(&self, tenant: &str) -> &crate::otlp::OtlpConfig {
        self.overrides
            .get(tenant)
            .and_then(|o| o.otlp_config.as_ref())
            .unwrap_or(&self.limits_config.otlp_config)
    }

    /// The retention period of `tenant`: its override, else `limits_config.retention_period`.
    /// Zero means keep forever.
    pub fn retention_period(&self, tenant: &str) -> LokiDuration {
        self.overrides
            .get(tenant)
            .and_then(|o| o.retention_period)
            .unwrap_or(self.limits_config.retention_period)
    }

    /// The `retention_stream` rules of `tenant`: its override, else `limits_config`'s.
    pub fn retention_stream(&self, tenant: &str) -> &[StreamRetention] {
        self.overrides
            .get(tenant)
            .and_then(|o| o.retention_stream.as_deref())
            .unwrap_or(&self.limits_config.retention_stream)
    }

    /// The `deletion_mode` of `tenant`: its override, else `limits_config`'s.
    pub fn deletion_mode(&self, tenant: &str) -> DeletionMode {
        self.overrides
            .get(tenant)
            .and_then(|o| o.deletion_mode)
            .unwrap_or(self.limits_config.deletion_mode)
    }
}

fn set_path(
    root: &mut serde_yaml::Value,
    path: &[String],
    value: serde_yaml::Value,
) -> Result<(), EnvKeyError> {
    let Some((first, rest)) = path.split_first() else {
        return Err(EnvKeyError::Empty);
    };
    if root.is_null() {
        *root = serde_yaml::Value::Mapping(Default::default());
    }
    let map = root
        .as_mapping_mut()
        .ok_or_else(|| EnvKeyError::NotInMapping(first.clone()))?;
    let key = serde_yaml::Value::String(first.clone());
    if rest.is_empty() {
        map.insert(key, value);
        return Ok(());
    }
    let child = map
        .entry(key)
        .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    set_path(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::from_yaml_and_env("", []).unwrap();
        assert_eq!(c.server.http_listen_port, 3100);
        assert!(!c.auth_enabled);
        assert_eq!(c.storage_url(), "./data");
        assert_eq!(c.limits_config.max_line_size.0, 262_144);
    }

    #[test]
    fn distributor_sizes_are_lokis_but_the_decompressed_cap_is_safe() {
        let d = DistributorConfig::default();
        assert_eq!(d.max_recv_msg_size.0, 104_857_600);
        assert_eq!(d.max_decompressed_size.0, 104_857_600);
        let y = "distributor:\n  max_recv_msg_size: 1MiB\n  max_decompressed_size: 1048576\n";
        let c = Config::from_yaml_and_env(y, []).unwrap();
        assert_eq!(c.distributor.max_recv_msg_size.0, 1_048_576);
        assert_eq!(c.distributor.max_decompressed_size.0, 1_048_576);
    }

    #[test]
    fn loki_vocabulary_and_env_overrides() {
        let y = "auth_enabled: true\nserver:\n  http_listen_port: 3200\nlimits_config:\n  reject_old_samples_max_age: 24h\n  max_line_size: 1MB\n";
        let c = Config::from_yaml_and_env(
            y,
            [
                (
                    "PARQUETRY__SERVER__HTTP_LISTEN_PORT".to_string(),
                    "4000".to_string(),
                ),
                ("PARQUETRY__STORAGE__URL".into(), "/tmp/x".into()),
                ("OTHER".into(), "ignored".into()),
            ],
        )
        .unwrap();
        assert!(c.auth_enabled);
        assert_eq!(c.server.http_listen_port, 4000);
        assert_eq!(
            c.limits_config.reject_old_samples_max_age.0.as_secs(),
            86_400
        );
        assert_eq!(c.limits_config.max_line_size.0, 1_000_000);
        assert_eq!(c.storage_url(), "/tmp/x");
    }

    #[test]
    fn s3_keys_from_file_and_env_and_secrets_never_printed() {
        let y = "storage:\n  url: s3://logs/prod\n  s3:\n    region: eu-west-1\n    secret_access_key: from-file\n";
        let c = Config::from_yaml_and_env(
            y,
            [
                (
                    "PARQUETRY__STORAGE__S3__ENDPOINT".to_string(),
                    "127.0.0.1:8333".to_string(),
                ),
                (
                    "PARQUETRY__STORAGE__S3__ACCESS_KEY_ID".into(),
                    "AKID".into(),
                ),
                (
                    "PARQUETRY__STORAGE__S3__SECRET_ACCESS_KEY".into(),
                    "hunter2".into(),
                ),
                (
                    "PARQUETRY__STORAGE__S3__S3FORCEPATHSTYLE".into(),
                    "true".into(),
                ),
                ("PARQUETRY__STORAGE__S3__INSECURE".into(), "true".into()),
            ],
        )
        .unwrap();
        let s3 = &c.storage.s3;
        assert_eq!(c.storage_url(), "s3://logs/prod");
        assert_eq!(s3.endpoint.as_deref(), Some("127.0.0.1:8333"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(
            s3.secret_access_key.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert_eq!(s3.s3forcepathstyle, Some(true));
        assert!(s3.insecure);
        let shown = format!("{c:?}{}", serde_yaml::to_string(&c).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<secret>"), "{shown}");
        let e = Config::from_yaml_and_env("storage:\n  s3:\n    bucketnames: x\n", []).unwrap_err();
        assert!(e.to_string().contains("bucketnames"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::from_yaml_and_env("limits_config:\n  nope: 1\n", []).unwrap_err();
        assert!(e.to_string().contains("limits_config.nope"), "{e}");
        let e =
            Config::from_yaml_and_env("", [("PARQUETRY__BOGUS".into(), "1".into())]).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn server_connection_keys_have_lokis_names_and_defaults() {
        let d = Config::default().server;
        assert_eq!(d.http_server_read_timeout.0.as_secs(), 30);
        assert!(d.http_server_read_header_timeout.0.is_zero());
        assert_eq!(d.http_server_write_timeout.0.as_secs(), 30);
        assert_eq!(d.http_server_idle_timeout.0.as_secs(), 120);
        assert_eq!(d.http_listen_conn_limit, 512);
        let y = "server:\n  http_server_read_timeout: 1s\n  http_server_read_header_timeout: 500ms\n  http_server_write_timeout: 5m\n  http_server_idle_timeout: 0\n  http_listen_conn_limit: 0\n";
        let c = Config::from_yaml_and_env(
            y,
            [(
                "PARQUETRY__SERVER__HTTP_SERVER_IDLE_TIMEOUT".to_string(),
                "2s".to_string(),
            )],
        )
        .unwrap()
        .server;
        assert_eq!(c.http_server_read_timeout.0.as_secs(), 1);
        assert_eq!(c.http_server_read_header_timeout.0.as_millis(), 500);
        assert_eq!(c.http_server_write_timeout.0.as_secs(), 300);
        assert_eq!(c.http_server_idle_timeout.0.as_secs(), 2);
        assert_eq!(c.http_listen_conn_limit, 0);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The documented example must stay loadable and equal to the defaults.
    #[test]
    fn documented_example_is_the_defaults() {
        let text = include_str!("../../../infra/examples/parquetry.yaml");
        let c = Config::from_yaml_and_env(text, []).unwrap();
        let d = Config::default();
        assert_eq!(
            serde_yaml::to_string(&c.limits_config).unwrap(),
            serde_yaml::to_string(&d.limits_config).unwrap()
        );
        for (got, want) in [
            (
                serde_yaml::to_string(&c.server),
                serde_yaml::to_string(&d.server),
            ),
            (
                serde_yaml::to_string(&c.distributor),
                serde_yaml::to_string(&d.distributor),
            ),
            (
                serde_yaml::to_string(&c.query_range),
                serde_yaml::to_string(&d.query_range),
            ),
        ] {
            assert_eq!(got.unwrap(), want.unwrap());
        }
        assert_eq!(
            c.storage.max_partitions_per_push,
            d.storage.max_partitions_per_push
        );
        assert_eq!(c.storage_url(), "./data");
        assert_eq!(c.storage.partition_labels, d.storage.partition_labels);
        assert_eq!(c.storage.s3, d.storage.s3);
        assert_eq!(c.compactor, d.compactor);
        assert!(c.overrides.is_empty());
    }

    /// The Kubernetes overlays' files load; the scalable one spreads big queries over the
    /// read replicas through their headless Service.
    #[test]
    fn kubernetes_configs_load() {
        let single = include_str!("../../../infra/kubernetes/single/config.yaml");
        Config::from_yaml_and_env(single, []).unwrap();
        let scalable = include_str!("../../../infra/kubernetes/scalable/config.yaml");
        let q = Config::from_yaml_and_env(scalable, []).unwrap().query_range;
        assert_eq!(q.fanout_transport, FanoutTransport::Peers);
        assert_eq!(q.fanout_peers, ["parquetry-read-peers:3100"]);
        assert!(q.fanout_leaves > 1 && q.fanout_target_bytes.0 > 0);
    }

    #[test]
    fn peers_transport_needs_peers() {
        let e = Config::from_yaml_and_env("query_range:\n  fanout_transport: peers\n", [])
            .unwrap_err()
            .to_string();
        assert!(e.contains("query_range.fanout_peers"), "{e}");
        let c = Config::from_yaml_and_env(
            "query_range:\n  fanout_transport: peers\n",
            [(
                "PARQUETRY__QUERY_RANGE__FANOUT_PEERS".to_string(),
                "[a:3100, b:3100]".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.query_range.fanout_peers, ["a:3100", "b:3100"]);
    }

    #[test]
    fn compactor_and_retention_keys() {
        let y = "compactor:\n  compaction_interval: 5m\n  retention_enabled: true\n  target_object_size: 512MiB\nlimits_config:\n  retention_period: 744h\noverrides:\n  team-a:\n    retention_period: 24h\n";
        let c = Config::from_yaml_and_env(
            y,
            [(
                "PARQUETRY__COMPACTOR__RETENTION_DELETE_DELAY".to_string(),
                "30m".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.compactor.compaction_interval.0.as_secs(), 300);
        assert!(c.compactor.retention_enabled);
        assert_eq!(c.compactor.retention_delete_delay.0.as_secs(), 1800);
        assert_eq!(c.compactor.target_object_size.0, 512 << 20);
        assert_eq!(c.retention_period("team-a").0.as_secs(), 86_400);
        assert_eq!(c.retention_period("other").0.as_secs(), 744 * 3600);
        assert_eq!(Config::default().retention_period("x").0.as_secs(), 0);
        let e = Config::from_yaml_and_env("overrides:\n  t:\n    nope: 1\n", []).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
