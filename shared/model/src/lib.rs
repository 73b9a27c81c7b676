//! The vocabulary every other Parquetry crate shares: stream labels and their fingerprints,
//! label matchers, tenant ids, Loki-style durations and byte sizes, limits and the typed
//! configuration tree.
//!
//! Nothing here does I/O or depends on a heavy crate, so the LogQL parser and the ingest path
//! can use it without building DataFusion.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod duration;
pub mod frontend_config;
pub mod labels;
pub mod loki_config;
pub mod matcher;
pub mod otlp;
pub mod ruler_config;
pub mod tenant;

/// Immutable UTF-8 text that may share one buffer with others: a pushed line or metadata
/// field is a slice of the decompressed request body, not a copy of its own, so decoding a push
/// allocates per request rather than per field (and the entries free as one buffer).
pub use bytestring::ByteString;
pub use config::{Config, Limits};
pub use labels::{Label, Labels, hash_pairs};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use tenant::{TenantError, validate_tenant_id};

/// Nanoseconds since the epoch, now: the clock request defaults, compaction ages and rule
/// evaluation read. Saturates at `i64::MAX` (year 2262) and reads 0 before 1970.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The tenant every request runs as when `auth_enabled` is false, as in Loki.
pub const NO_AUTH_TENANT: &str = "fake";
