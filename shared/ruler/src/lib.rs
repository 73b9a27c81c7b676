//! Loki's ruler: alerting and recording rules written in LogQL, evaluated on a schedule.
//!
//! - [`rules`]: the Prometheus rule-group format with LogQL `expr`, parsing and Loki's
//!   validation messages.
//! - [`store`]: where rule groups live — a read-only local directory
//!   (`<dir>/<tenant>/<namespace>`), or the log store's bucket, writable through the API.
//! - [`state`]: per-group evaluation state (alerts pending/firing/resolved, rule health),
//!   kept in the bucket so it survives restarts and is shared by every process.
//! - [`eval`]: one evaluation pass: instant queries through the query engine, Prometheus's
//!   alert state machine, then notifications ([`notify`], Alertmanager API v2) and recorded
//!   samples ([`remote_write`], Prometheus remote write 1.0).
//! - [`template`]: Prometheus-style `{{ $labels.x }}` / `{{ $value }}` expansion on the
//!   LogQL template engine.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod eval;
pub mod notify;
pub mod remote_write;
pub mod rules;
pub mod state;
pub mod store;
pub mod template;

pub use eval::{PassSummary, Ruler, spawn};
pub use rules::{Rule, RuleGroup, RuleGroupFile};
pub use state::{AlertState, GroupState, StateError};
pub use store::{RuleStore, RuleStoreError};

pub use parquetry_model::now_ns;
