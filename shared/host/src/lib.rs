//! Process wiring shared by every Parquetry executable: the `parquetry` command line and server,
//! and the push, query, compactor and ruler Lambda functions.
//!
//! This crate owns what happens between `main` and the first request or event:
//!
//! * [`config`]: the configuration from a file and the environment (the command line's
//!   `--config`, a function's `PARQUETRY_CONFIG` and `PARQUETRY__…` variables);
//! * [`lambda`]: the settings a Lambda host reads from its environment besides the
//!   configuration (role, shared secrets, response limit);
//! * [`logging`]: the `tracing` subscriber (JSON on stdout for Lambda, text or JSON on stderr
//!   for the command line);
//! * [`open_store`]: the store the configuration names;
//! * [`maintenance`]: the one compaction, delete and retention pass, under the compactor lease,
//!   that the server's timer, `parquetry compact` and the compactor function all run;
//! * [`runtime`]: the Tokio runtime every executable runs on;
//! * `scheduled` (feature `lambda`): the runtime loop of the functions driven by EventBridge
//!   schedules.
//!
//! It deliberately links neither axum nor DataFusion, so the compactor function, which needs
//! only this crate and the store, stays small. What needs the HTTP router or the query engine
//! stays in the crates of the executables that serve them.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod lambda;
pub mod logging;
pub mod maintenance;
#[cfg(feature = "lambda")]
pub mod scheduled;

use std::sync::Arc;

use parquetry_model::Config;
use parquetry_model::config::ConfigError;
use parquetry_store::{Store, StoreError};

pub use config::{load_config, load_lambda_config};
pub use logging::{LogOutput, init_logging};
pub use maintenance::{FailOn, Lease, Leased, Maintenance, PassReport};

/// What can go wrong while a process starts or runs its maintenance pass.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Lambda function without a storage URL.
    #[error("no storage configured: set PARQUETRY__STORAGE__URL (for example s3://bucket/prefix)")]
    NoStorage,
    /// An environment variable of the host (not a `PARQUETRY__` configuration key) is invalid.
    #[error("{key}: {message}")]
    Setting {
        /// The variable.
        key: String,
        /// Why it is invalid.
        message: String,
    },
    /// `server.log_level` is not a log filter.
    #[error("server.log_level: {0}")]
    LogFilter(String),
    /// The `tracing` subscriber could not be installed.
    #[error("initialising logging: {0}")]
    Logging(String),
    /// The store cannot be opened.
    #[error("opening storage {url}")]
    OpenStore {
        /// The storage URL (redacted if it could hold credentials).
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The Lambda runtime failed.
    #[error("lambda runtime: {0}")]
    Runtime(String),
    /// One step of a maintenance pass failed (`step` is `compaction`, `delete` or `retention`).
    #[error("{step} pass failed")]
    Pass {
        /// The step that failed.
        step: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// The multi-threaded Tokio runtime every executable runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// An error and its causes on one line (`outer: inner: root`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Opens the store `config` names (`storage.url`, else `common.path_prefix`, else `./data`),
/// with its partition labels and S3 settings and the process's `AWS_*` variables.
pub fn open_store(config: &Config) -> Result<Arc<Store>, HostError> {
    let url = config.storage_url();
    match Store::open_config(&url, &config.storage) {
        Ok(store) => Ok(Arc::new(store)),
        Err(source) => Err(HostError::OpenStore { url, source }),
    }
}

/// `(name, value)` pairs as the environment functions take them.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_is_one_line() {
        let err = HostError::OpenStore {
            url: "ftp://x".into(),
            source: StoreError::Conflict("busy".into()),
        };
        assert_eq!(error_chain(&err), "opening storage ftp://x: conflict: busy");
    }

    #[test]
    fn a_bad_storage_url_names_the_url() {
        let mut config = Config::default();
        config.storage.url = Some("ftp://nowhere/x".into());
        let err = open_store(&config).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("opening storage ftp://nowhere/x"));
    }

    #[test]
    fn a_directory_opens() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.url = Some(format!("file://{}", dir.path().display()));
        let store = open_store(&config).unwrap();
        assert_eq!(store.url(), format!("file://{}", dir.path().display()));
    }
}
