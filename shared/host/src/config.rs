//! The configuration a process starts from: an optional YAML file in Loki's vocabulary, then
//! `PARQUETRY__…` overrides from the environment.

use std::path::{Path, PathBuf};

use parquetry_model::Config;

use crate::HostError;

/// Optional YAML configuration file of a Lambda function (inside the deployment package or a
/// layer); the command line's `--config` reads the same variable.
pub const CONFIG_FILE_ENV: &str = "PARQUETRY_CONFIG";

/// The configuration in `file` (none: the defaults) with the `PARQUETRY__…` variables of `env`
/// applied. With `expand_env` (Loki's `-config.expand-env`), `${VAR}` and `${VAR:-default}` in
/// the file are replaced from `env` first.
pub fn load_config(
    file: Option<&Path>,
    expand_env: bool,
    env: Vec<(String, String)>,
) -> Result<Config, HostError> {
    let config = if expand_env {
        Config::load_expanding_env(file, env)?
    } else {
        Config::load(file, env)?
    };
    Ok(config)
}

/// A Lambda function's configuration: `PARQUETRY_CONFIG` (optional file) plus `PARQUETRY__…`
/// overrides. Storage must be named explicitly: a Lambda's file system is read-only outside
/// `/tmp`, so the all-in-one default `./data` would only fail later and less clearly.
pub fn load_lambda_config(env: Vec<(String, String)>) -> Result<Config, HostError> {
    let file = env
        .iter()
        .find(|(k, _)| k == CONFIG_FILE_ENV)
        .map(|(_, v)| PathBuf::from(v));
    let config = load_config(file.as_deref(), false, env)?;
    if config.storage.url.is_none() && config.common.path_prefix.is_none() {
        return Err(HostError::NoStorage);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_env as env;

    #[test]
    fn lambda_config_needs_storage() {
        let err = load_lambda_config(env(&[])).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "no storage configured: set PARQUETRY__STORAGE__URL (for example s3://bucket/prefix)"
            )
        );
        let config = load_lambda_config(env(&[
            ("PARQUETRY__STORAGE__URL", "s3://bucket/prefix"),
            ("PARQUETRY__COMPACTOR__RETENTION_ENABLED", "true"),
        ]))
        .unwrap();
        assert_eq!(config.storage_url(), "s3://bucket/prefix");
        assert!(config.compactor.retention_enabled);
    }

    #[test]
    fn lambda_config_reads_the_named_file_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(
            &file,
            "common:\n  path_prefix: /tmp/data\ncompactor:\n  compaction_interval: 5m\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let config = load_lambda_config(env(&[
            (CONFIG_FILE_ENV, &path),
            ("PARQUETRY__COMPACTOR__COMPACTION_INTERVAL", "1m"),
        ]))
        .unwrap();
        assert_eq!(config.storage_url(), "/tmp/data");
        assert_eq!(
            config.compactor.compaction_interval.0,
            std::time::Duration::from_secs(60)
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = load_lambda_config(env(&[(CONFIG_FILE_ENV, "/nonexistent/parquetry.yaml")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/parquetry.yaml"), "{err}");
    }

    #[test]
    fn expand_env_replaces_variables_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "storage:\n  url: ${DATA_URL:-/fallback}\n").unwrap();
        let expanded = load_config(Some(&file), true, env(&[("DATA_URL", "memory://")])).unwrap();
        assert_eq!(expanded.storage_url(), "memory://");
        let literal = load_config(Some(&file), false, env(&[("DATA_URL", "memory://")])).unwrap();
        assert_eq!(literal.storage_url(), "${DATA_URL:-/fallback}");
    }
}
