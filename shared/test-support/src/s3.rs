//! The S3 test server's coordinates (`PARQUETRY_TEST_S3_*`, exported by scripts/test.sh from
//! scripts/s3-server.sh) and the backend a run asks for (`PARQUETRY_TEST_BACKEND`).
//!
//! Two kinds of tests read them. End-to-end style tests run once per backend and ask
//! [`Backend::current`]; there `s3` without the variables is a failure. Store-level tests run
//! on every backend available and ask [`S3Env::optional`]; there missing variables skip the S3
//! part, unless `PARQUETRY_TEST_REQUIRE_S3=1` (CI) makes that a failure too.

use std::path::Path;

/// Where a test run keeps its objects, from `PARQUETRY_TEST_BACKEND` (`local`, the default, or
/// `s3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary local directory.
    Local,
    /// The S3-compatible test server.
    S3,
}

impl Backend {
    /// The backend of this run. An unknown value is a failure, never a silent default.
    pub fn current() -> Backend {
        match std::env::var("PARQUETRY_TEST_BACKEND").as_deref() {
            Err(_) | Ok("" | "local") => Backend::Local,
            Ok("s3") => Backend::S3,
            Ok(other) => panic!("PARQUETRY_TEST_BACKEND={other:?}: expected local or s3"),
        }
    }
}

/// The S3 test server: endpoint, bucket and credentials.
#[derive(Debug, Clone)]
pub struct S3Env {
    /// The server's URL.
    pub endpoint: String,
    /// The bucket tests write to.
    pub bucket: String,
    /// The signing region.
    pub region: String,
    /// The access key.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
}

impl S3Env {
    /// The server from the environment, or `None` when the variables are not set (the region
    /// defaults to `us-east-1`).
    pub fn from_env() -> Option<S3Env> {
        let var = |k: &str| std::env::var(format!("PARQUETRY_TEST_S3_{k}")).ok();
        Some(S3Env {
            endpoint: var("ENDPOINT")?,
            bucket: var("BUCKET")?,
            region: var("REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key_id: var("ACCESS_KEY_ID")?,
            secret_access_key: var("SECRET_ACCESS_KEY")?,
        })
    }

    /// The server, for tests whose run asked for S3: missing variables fail the test.
    pub fn required() -> S3Env {
        S3Env::from_env().unwrap_or_else(|| {
            panic!(
                "PARQUETRY_TEST_BACKEND=s3 needs PARQUETRY_TEST_S3_{{ENDPOINT,BUCKET,ACCESS_KEY_ID,\
                 SECRET_ACCESS_KEY}}: run the suite with scripts/test.sh, which starts \
                 scripts/s3-server.sh and exports them"
            )
        })
    }

    /// The server, for tests that cover S3 when it is there: missing variables skip (`None`,
    /// with a note on stderr) unless `PARQUETRY_TEST_REQUIRE_S3=1`, which fails the test.
    pub fn optional() -> Option<S3Env> {
        let env = S3Env::from_env();
        if env.is_none() {
            assert!(
                std::env::var("PARQUETRY_TEST_REQUIRE_S3").as_deref() != Ok("1"),
                "PARQUETRY_TEST_REQUIRE_S3=1 but PARQUETRY_TEST_S3_* are not set: run the suite \
                 with scripts/test.sh, which starts scripts/s3-server.sh"
            );
            eprintln!("S3 part skipped: PARQUETRY_TEST_S3_* unset");
        }
        env
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The storage settings for `prefix` as `PARQUETRY__STORAGE__*` environment overrides, the
    /// way a deployment passes them.
    pub fn storage_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("URL", self.url(prefix)),
            ("S3__ENDPOINT", self.endpoint.clone()),
            ("S3__REGION", self.region.clone()),
            ("S3__ACCESS_KEY_ID", self.access_key_id.clone()),
            ("S3__SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("PARQUETRY__STORAGE__{k}"), v))
        .collect()
    }
}

/// The storage overrides for a test that runs on the backend of this run: on S3 the prefix
/// that belongs to `dir` (see [`prefix_for_dir`]), else `dir` itself as a `file://` URL.
pub fn storage_env_for_run(dir: &Path, kind: &str) -> Vec<(String, String)> {
    match Backend::current() {
        Backend::Local => vec![(
            "PARQUETRY__STORAGE__URL".to_string(),
            format!("file://{}", dir.display()),
        )],
        Backend::S3 => S3Env::required().storage_env(&prefix_for_dir(dir, kind)),
    }
}

/// The S3 prefix that belongs to the local directory `dir`: a fresh [`crate::unique_prefix`]
/// recorded in `dir` on first use, so a test that restarts on the same directory (or opens it
/// twice) finds the same objects on S3 as it would on disk.
pub fn prefix_for_dir(dir: &Path, kind: &str) -> String {
    let marker = dir.join(".parquetry-test-s3-prefix");
    if let Ok(p) = std::fs::read_to_string(&marker) {
        return p.trim().to_string();
    }
    let p = crate::unique_prefix(kind);
    std::fs::create_dir_all(dir).expect("create the test directory");
    std::fs::write(&marker, &p).expect("record the S3 prefix");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_env_names_every_setting_under_the_prefix() {
        let e = S3Env {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "b".into(),
            region: "r".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
        };
        let env = e.storage_env("p/q");
        assert_eq!(
            env[0],
            ("PARQUETRY__STORAGE__URL".into(), "s3://b/p/q".into())
        );
        assert_eq!(env.len(), 5);
        assert!(
            env.iter()
                .all(|(k, _)| k.starts_with("PARQUETRY__STORAGE__"))
        );
    }

    #[test]
    fn a_directory_keeps_its_prefix() {
        let dir = std::env::temp_dir().join(crate::unique_prefix("support").replace('/', "-"));
        let first = prefix_for_dir(&dir, "support");
        assert_eq!(prefix_for_dir(&dir, "other"), first);
        assert!(first.starts_with("support/"), "{first}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
