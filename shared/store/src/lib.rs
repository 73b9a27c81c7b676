//! Storage: where log objects live, what they look like and how to find them again.
//!
//! Every byte goes through [`object_store`], so the same code runs on a local directory, in
//! memory (tests) and on S3 or any S3-compatible server (`s3`). The crate owns
//! - the key layout (`layout`): tenant / day / partition, time range in the file name, every
//!   component escaped so nothing can leave its tenant's prefix;
//! - the Parquet encoding of a push (`writer`): one object per (day, partition), rows sorted by
//!   (stream, time), zstd, page statistics, a bloom filter on the stream fingerprint and a
//!   stream catalog in the footer;
//! - finding objects for a query (`Store::list`) and reading their stream catalogs without
//!   touching line bytes (`catalog`).
//!
//! - the per-tenant-day manifest (`manifest`) that makes compaction invisible to readers, the
//!   compactor (`compact`) and retention (`retention`); `faulty` is an object store that fails
//!   on demand, for crash tests.
//!
//! The format is specified in `docs/format.md`; operations in `docs/operations.md`.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod catalog;
pub mod compact;
pub mod deletes;
pub mod durable;
pub mod faulty;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod retention;
pub mod rewrite;
pub mod schema;
pub mod writer;

mod s3;
mod store;

pub use catalog::{StreamCatalog, StreamInfo};
pub use layout::{DataObject, ObjectKey};

pub use compact::{CompactOptions, CompactSummary};
pub use retention::{RetentionOptions, RetentionSummary};
pub use rewrite::{DeletePassOptions, DeletePassSummary, TenantPolicy};
pub use store::{Store, WriteSummary};
pub use writer::{LogEntry, StreamEntries};

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("invalid storage url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("corrupt object {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("background task failed: {0}")]
    Join(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Nanoseconds in a UTC day; objects never span two.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;
