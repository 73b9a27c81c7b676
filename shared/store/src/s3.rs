//! `s3://bucket[/prefix]`: AWS S3 or any S3-compatible server, through object_store's
//! `AmazonS3Builder`.
//!
//! Settings come from three places, later ones winning: object_store's defaults (region
//! `us-east-1`, credentials from the instance, container or Lambda role), the standard `AWS_*`
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...; what Lambda provides), and the
//! `storage.s3` keys of the configuration. Secrets are never logged.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use parquetry_model::config::S3Config;

use crate::{Result, StoreError};

/// Bucket and key prefix of an `s3://` (or `s3a://`) URL; `None` for other schemes.
pub(crate) fn parse_url(url: &str) -> Option<Result<(String, String)>> {
    let rest = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))?;
    let bad = |reason: &str| StoreError::BadUrl {
        // Never echo what could be credentials pasted into the URL.
        url: if url.contains('@') {
            "s3://<redacted>".into()
        } else {
            url.to_string()
        },
        reason: reason.into(),
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains('@') {
        return Some(Err(bad(
            "credentials do not belong in the URL: use storage.s3 or the AWS_* environment",
        )));
    }
    if bucket.is_empty()
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Some(Err(bad(
            "expected s3://bucket[/prefix] with a bucket name of a-z, 0-9, '-' and '.'",
        )));
    }
    if url.contains('?') || url.contains('#') {
        return Some(Err(bad(
            "options go in storage.s3 or the environment, not the URL",
        )));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if prefix
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
        && !prefix.is_empty()
    {
        return Some(Err(bad("the prefix has an empty, '.' or '..' segment")));
    }
    Some(Ok((bucket.to_string(), prefix)))
}

/// Builds the store for `s3://bucket/prefix` from `cfg` over the `AWS_*` variables of `env`.
pub(crate) fn open(
    url: &str,
    bucket: &str,
    prefix: &str,
    cfg: &S3Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Arc<dyn ObjectStore>> {
    let bad = |reason: String| StoreError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let mut builder = AmazonS3Builder::new();
    let mut env_endpoint = None;
    let mut env_style = false;
    let mut env_allow_http = false;
    let mut env_credentials = false;
    // Credentials come whole from one place: a session token from the environment (Lambda
    // sets one) signed beside the configured key would make every request fail.
    let config_credentials = cfg.access_key_id.is_some() || cfg.secret_access_key.is_some();
    for (k, v) in env {
        if !k.starts_with("AWS_") {
            continue;
        }
        // The same mapping as AmazonS3Builder::from_env, over the environment we were given.
        let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else {
            continue;
        };
        match key {
            AmazonS3ConfigKey::AccessKeyId
            | AmazonS3ConfigKey::SecretAccessKey
            | AmazonS3ConfigKey::Token
                if config_credentials =>
            {
                continue;
            }
            AmazonS3ConfigKey::Endpoint => env_endpoint = Some(v.clone()),
            AmazonS3ConfigKey::VirtualHostedStyleRequest => env_style = true,
            AmazonS3ConfigKey::AccessKeyId => env_credentials = true,
            AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp) => {
                env_allow_http = true
            }
            // The bucket is the URL's, whatever the environment says.
            AmazonS3ConfigKey::Bucket => continue,
            _ => {}
        }
        builder = builder.with_config(key, v);
    }
    builder = builder.with_bucket_name(bucket);
    if let Some(region) = cfg.region.as_deref().filter(|r| !r.is_empty()) {
        builder = builder.with_region(region);
    }
    if let Some(id) = &cfg.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &cfg.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &cfg.session_token {
        builder = builder.with_token(token.expose());
    }

    let endpoint = match cfg.endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(e) if e.contains("://") => Some(e.trim_end_matches('/').to_string()),
        Some(e) => {
            let scheme = if cfg.insecure { "http" } else { "https" };
            Some(format!("{scheme}://{}", e.trim_end_matches('/')))
        }
        None => env_endpoint.map(|e| e.trim_end_matches('/').to_string()),
    };
    let path_style = match cfg.s3forcepathstyle {
        Some(p) => Some(p),
        // A custom endpoint is almost always a server that wants path style; AWS prefers
        // virtual-hosted, except for dotted bucket names that break its TLS certificates.
        None if env_style => None,
        None => Some(endpoint.is_some() || bucket.contains('.')),
    };
    if let Some(e) = &endpoint {
        let (scheme, host) = e
            .split_once("://")
            .ok_or_else(|| bad(format!("endpoint {e:?} has no scheme")))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad(format!(
                "endpoint {e:?}: the scheme must be http or https"
            )));
        }
        if scheme == "http" {
            if cfg.insecure || is_loopback(host) {
                builder = builder.with_allow_http(true);
            } else if !env_allow_http {
                return Err(bad(format!(
                    "endpoint {e:?} is plain http: set storage.s3.insecure: true to allow it"
                )));
            }
        }
        // Virtual-hosted style against a custom endpoint: the bucket is part of the host.
        let e = if path_style == Some(false) {
            format!("{scheme}://{bucket}.{host}")
        } else {
            e.clone()
        };
        builder = builder.with_endpoint(e);
    }
    if let Some(p) = path_style {
        builder = builder.with_virtual_hosted_style_request(!p);
    }

    let region = builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .unwrap_or_default();
    tracing::info!(
        bucket,
        prefix,
        endpoint = endpoint.as_deref().unwrap_or("aws"),
        region,
        path_style = path_style.unwrap_or(false),
        credentials = if config_credentials {
            "storage.s3"
        } else if env_credentials {
            "environment"
        } else {
            "aws default chain"
        },
        "opening S3 storage"
    );
    let s3 = builder
        .build()
        .map_err(|e| bad(format!("S3 configuration: {e}")))?;
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, Path::from(prefix)))
    })
}

/// Whether the `host[:port][/path]` part of an endpoint names this machine.
fn is_loopback(host_port: &str) -> bool {
    let authority = host_port.split('/').next().unwrap_or("");
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("file:///x").map(|r| r.is_ok()), None);
        let (b, p) = parse_url("s3://logs").unwrap().unwrap();
        assert_eq!((b.as_str(), p.as_str()), ("logs", ""));
        let (b, p) = parse_url("s3://logs/a/b/").unwrap().unwrap();
        assert_eq!((b.as_str(), p.as_str()), ("logs", "a/b"));
        for bad in [
            "s3://",
            "s3:///x",
            "s3://Logs",
            "s3://logs/a/../b",
            "s3://logs?region=x",
        ] {
            assert!(parse_url(bad).unwrap().is_err(), "{bad}");
        }
        let e = parse_url("s3://AKID:hunter2@logs/x")
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn loopback() {
        for h in ["127.0.0.1:8333", "localhost", "[::1]:9000/x", "127.1.2.3"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1:8333", "minio.internal:9000", "s3.amazonaws.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    /// Configured keys with a stray session token in the environment (what a Lambda function
    /// pointed at another S3-compatible server has): the token must not be sent with them.
    #[tokio::test]
    async fn configured_keys_are_not_signed_with_an_environment_token() {
        use object_store::ObjectStoreExt;
        let Some(s3) = parquetry_test_support::s3::S3Env::optional() else {
            return;
        };
        let cfg = S3Config {
            endpoint: Some(s3.endpoint.clone()),
            region: Some(s3.region.clone()),
            access_key_id: Some(s3.access_key_id.clone()),
            secret_access_key: Some(parquetry_model::config::Secret::new(
                s3.secret_access_key.clone(),
            )),
            ..Default::default()
        };
        let env = [
            ("AWS_ACCESS_KEY_ID", "ASIAFROMTHEFUNCTIONROLE"),
            ("AWS_SECRET_ACCESS_KEY", "role-secret"),
            ("AWS_SESSION_TOKEN", "role-session-token"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let prefix = parquetry_test_support::unique_prefix("s3-keys");
        let store = open(&s3.url(&prefix), &s3.bucket, &prefix, &cfg, env).expect("open");
        let path = Path::from("probe");
        store
            .put(&path, b"x".to_vec().into())
            .await
            .expect("configured keys alone sign the request");
        store.delete(&path).await.expect("delete probe");
    }

    fn cfg(endpoint: Option<&str>, insecure: bool) -> S3Config {
        S3Config {
            endpoint: endpoint.map(String::from),
            insecure,
            ..Default::default()
        }
    }

    #[test]
    fn http_only_to_loopback_or_when_insecure() {
        let env = || Vec::<(String, String)>::new();
        assert!(
            open(
                "s3://b",
                "b",
                "",
                &cfg(Some("http://127.0.0.1:1"), false),
                env()
            )
            .is_ok()
        );
        assert!(open("s3://b", "b", "", &cfg(Some("localhost:1"), true), env()).is_ok());
        let e = open(
            "s3://b",
            "b",
            "",
            &cfg(Some("http://minio:9000"), false),
            env(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("insecure"), "{e}");
        assert!(
            open(
                "s3://b",
                "b",
                "",
                &cfg(Some("http://minio:9000"), true),
                env()
            )
            .is_ok()
        );
        assert!(open("s3://b", "b", "p", &cfg(Some("minio:9000"), false), env()).is_ok());
        assert!(open("s3://b", "b", "", &cfg(Some("ftp://minio"), false), env()).is_err());
        // AWS_ALLOW_HTTP in the environment counts as consent too.
        let env = vec![("AWS_ALLOW_HTTP".to_string(), "true".to_string())];
        assert!(
            open(
                "s3://b",
                "b",
                "",
                &cfg(Some("http://minio:9000"), false),
                env
            )
            .is_ok()
        );
    }
}
