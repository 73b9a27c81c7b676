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
mod commit;
pub mod compact;
pub mod delegate;
pub mod deletes;
pub mod durable;
pub mod faulty;
pub mod layout;
pub mod lease;
pub mod manifest;
mod merge_input;
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

/// Errors from the storage layer. Where a failure concerns one object (or one listed prefix)
/// the variant names it, so a log line says which object to look at; the bare `#[from]`
/// variants are for calls that have no object of their own (a whole in-memory batch, a
/// configuration value).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An object store call on `path` (an object key, or the prefix of a listing) failed.
    #[error("object store, {path}: {source}")]
    Object {
        /// The object key or listed prefix, relative to the store's root.
        path: String,
        /// What the object store answered.
        #[source]
        source: object_store::Error,
    },
    /// An object store failure with no single object to name (e.g. a path that does not parse).
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Reading or writing the Parquet object at `path` failed.
    #[error("parquet object {path}: {source}")]
    ParquetObject {
        /// The object key being read or written.
        path: String,
        /// The Parquet reader's or writer's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet encoding failure before the data has an object (a push being encoded).
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An Arrow operation on the rows of the object at `path` failed.
    #[error("arrow, object {path}: {source}")]
    ArrowObject {
        /// The object key whose rows were being read or rewritten.
        path: String,
        /// Arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// An Arrow failure on rows that belong to no object yet (a push being encoded).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The storage URL or its S3 settings cannot be used.
    #[error("invalid storage url {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured (redacted if it could hold credentials).
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// An object exists but its contents are not what the format says.
    #[error("corrupt object {path}: {reason}")]
    Corrupt {
        /// The object key.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A blocking encode or decode task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A concurrent writer won a race this call cannot retry further.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The failure of a write that stored several callers' entries together, as each of them
    /// sees it.
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
    /// The task storing a write ended before it did (see `commit`); nothing of it is
    /// acknowledged.
    #[error("the write's task ended before storing it")]
    WriteAbandoned,
}

/// A data object that is stored but whose bytes do not decode as one: a torn copy, a file
/// that is not Parquet, a footer without its stream catalog. Unlike a failing store this does
/// not change on retry, so readers leave the object out (and say so) instead of failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The object key.
    pub path: String,
    /// What the decoder said.
    pub reason: String,
}

/// Unreadable objects met by reads since the process started (`/metrics`).
pub(crate) static UNREADABLE_SEEN: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// How many reads have left out an unreadable object since the process started.
pub fn unreadable_objects_seen() -> u64 {
    UNREADABLE_SEEN.load(std::sync::atomic::Ordering::Relaxed)
}

impl StoreError {
    /// The object this error says cannot be decoded, if it says that. Only errors raised while
    /// decoding one data object qualify: a Parquet error that wraps a failed fetch
    /// (`External`) is the store's failure, not the object's, and a corrupt manifest is not a
    /// data object.
    pub fn unreadable_object(&self) -> Option<Unreadable> {
        match self {
            StoreError::ParquetObject {
                source: parquet::errors::ParquetError::External(_),
                ..
            } => None,
            StoreError::ParquetObject { path, source } => Some(Unreadable {
                path: path.clone(),
                reason: source.to_string(),
            }),
            StoreError::Corrupt { path, reason }
                if object_store::path::Path::parse(path)
                    .ok()
                    .and_then(|p| ObjectKey::parse(&p))
                    .is_some() =>
            {
                Some(Unreadable {
                    path: path.clone(),
                    reason: reason.clone(),
                })
            }
            _ => None,
        }
    }
}

/// The storage layer's result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the object (or prefix) an operation was about to a lower layer's error, turning it
/// into the [`StoreError`] variant that names it.
pub(crate) trait At<T> {
    /// The error, if any, as a [`StoreError`] naming `path`.
    fn at(self, path: impl std::fmt::Display) -> Result<T>;
}

impl<T> At<T> for std::result::Result<T, object_store::Error> {
    fn at(self, path: impl std::fmt::Display) -> Result<T> {
        self.map_err(|source| StoreError::Object {
            path: path.to_string(),
            source,
        })
    }
}

impl<T> At<T> for std::result::Result<T, parquet::errors::ParquetError> {
    fn at(self, path: impl std::fmt::Display) -> Result<T> {
        self.map_err(|source| StoreError::ParquetObject {
            path: path.to_string(),
            source,
        })
    }
}

impl<T> At<T> for std::result::Result<T, arrow::error::ArrowError> {
    fn at(self, path: impl std::fmt::Display) -> Result<T> {
        self.map_err(|source| StoreError::ArrowObject {
            path: path.to_string(),
            source,
        })
    }
}

/// Nanoseconds in a UTC day; objects never span two.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::layout::PartValue;

    fn store() -> Store {
        Store::from_object_store(
            Arc::new(InMemory::new()),
            "memory://",
            vec!["service_name".into()],
        )
    }

    #[tokio::test]
    async fn a_missing_object_is_named() {
        let key = "v1/tenant=fake/day=2024-01-01/service_name=api/1-2-gone.parquet";
        let err = store().read_key(key).await.expect_err("nothing stored");
        assert!(
            matches!(&err, StoreError::Object { path, source: object_store::Error::NotFound { .. } } if path == key),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("object store, {key}: ")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_footer_names_its_object() {
        let s = store();
        let key = ObjectKey {
            tenant: "fake".into(),
            day: "2024-01-01".into(),
            partition: vec![("service_name".into(), PartValue::Exact("api".into()))],
            min_ts: 1,
            max_ts: 2,
            id: "torn".into(),
        };
        let path = key.to_path();
        let junk = b"not a parquet file at all".to_vec();
        let size = junk.len() as u64;
        s.object_store()
            .put(&path, PutPayload::from(junk))
            .await
            .expect("in-memory put");
        let obj = DataObject { key, path, size };
        let err = s.catalog(&obj).await.expect_err("junk is not Parquet");
        assert!(
            matches!(&err, StoreError::ParquetObject { path, .. } if *path == obj.path.to_string()),
            "{err:?}"
        );
        assert!(err.to_string().contains(obj.path.as_ref()), "{err}");
    }

    #[test]
    fn only_decode_failures_of_data_objects_are_unreadable() {
        let key = "v1/tenant=fake/day=2024-01-01/service_name=api/1-2-torn.parquet";
        let decode = StoreError::ParquetObject {
            path: key.into(),
            source: parquet::errors::ParquetError::EOF("file too small".into()),
        };
        assert_eq!(
            decode.unreadable_object().map(|u| u.path),
            Some(key.to_string())
        );
        let missing_catalog = StoreError::Corrupt {
            path: key.into(),
            reason: "no stream catalog in footer".into(),
        };
        assert!(missing_catalog.unreadable_object().is_some());
        // A fetch that failed is the store's failure: retrying may work.
        let fetch = StoreError::ParquetObject {
            path: key.into(),
            source: parquet::errors::ParquetError::External(Box::new(
                object_store::Error::NotFound {
                    path: key.into(),
                    source: "gone".into(),
                },
            )),
        };
        assert!(fetch.unreadable_object().is_none());
        // A manifest is not a data object: a corrupt one is not skipped.
        let manifest = StoreError::Corrupt {
            path: "v1/tenant=fake/day=2024-01-01/_manifest/00000000000000000001.json".into(),
            reason: "bad json".into(),
        };
        assert!(manifest.unreadable_object().is_none());
    }

    #[tokio::test]
    async fn a_panicking_task_keeps_its_join_error() {
        let join = tokio::task::spawn_blocking(|| panic!("encode failed"))
            .await
            .expect_err("the task panicked");
        let err = StoreError::from(join);
        let source = std::error::Error::source(&err).expect("the JoinError is the source");
        assert!(source.is::<tokio::task::JoinError>(), "{source:?}");
        assert!(
            err.to_string().starts_with("background task failed: "),
            "{err}"
        );
    }
}
