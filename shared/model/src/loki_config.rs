//! Loki configuration files, accepted as they are.
//!
//! A user migrating from Loki starts Parquetry with their `loki-config.yaml`. Every key of
//! that file falls in one of three classes:
//!
//! - **Parquetry's own** (most of `server`, `limits_config`, `compactor`, …, same names as
//!   Loki's): kept as written.
//! - **Loki's, with a meaning here** (where the data lives — `common.storage.filesystem`,
//!   `storage_config.aws`, the thanos-style `object_store` blocks, `schema_config` choosing
//!   among them — and the 2.x `table_manager` retention): translated into Parquetry's keys,
//!   unless the file also sets Parquetry's key, which wins.
//! - **Loki's, without a meaning here** (gRPC, rings, ingesters, caches, the index): dropped
//!   and reported once at start-up, so the user sees what their file turned into.
//!
//! A key in none of these classes is an error naming it: a typo fails loudly, exactly as
//! Loki itself would refuse it. Loki's key list (`loki_keys.txt`) comes from Loki's
//! configuration reference plus the 2.x keys it has since removed.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde_yaml::{Mapping, Value};

use crate::config::ConfigError;

/// What a Loki file turned into, for the start-up log and `GET /config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// `loki.key → parquetry.key`, for each Loki key that was honoured.
    pub translated: Vec<String>,
    /// Loki keys that mean nothing here (a whole block once, not each key in it).
    pub ignored: Vec<String>,
}

struct LokiKeys {
    exact: HashSet<&'static str>,
    /// Blocks under which Loki accepts any key (maps, removed 2.x blocks).
    prefixes: Vec<&'static str>,
}

static LOKI_KEYS: LazyLock<LokiKeys> = LazyLock::new(|| {
    let mut exact = HashSet::new();
    let mut prefixes = Vec::new();
    for line in include_str!("loki_keys.txt").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix(".*") {
            Some(p) => {
                exact.insert(p);
                prefixes.push(p);
            }
            None => {
                exact.insert(line);
            }
        }
    }
    LokiKeys { exact, prefixes }
});

fn loki_knows(path: &str) -> bool {
    let k = &*LOKI_KEYS;
    k.exact.contains(path)
        || k.prefixes.iter().any(|p| {
            path.len() > p.len() && path.starts_with(p) && path.as_bytes()[p.len()] == b'.'
        })
}

/// Top-level blocks of Parquetry's tree whose keys are free-form (tenant ids).
const OUR_FREE_BLOCKS: &[&str] = &["overrides"];

/// The S3-style blocks Loki reads a bucket from, most specific first.
const S3_BLOCKS: &[&str] = &[
    "storage_config.aws",
    "storage_config.object_store.s3",
    "common.storage.s3",
    "common.storage.object_store.s3",
];

/// The directory keys of Loki's filesystem store, most specific first.
const DIR_KEYS: &[&str] = &[
    "storage_config.filesystem.directory",
    "storage_config.object_store.filesystem.dir",
    "common.storage.filesystem.chunks_directory",
    "common.storage.object_store.filesystem.dir",
];

/// Loki keys (or blocks) that may be translated.
const TRANSLATED_SOURCES: &[&str] = &[
    "storage_config.aws",
    "storage_config.object_store.s3",
    "common.storage.s3",
    "common.storage.object_store.s3",
    "storage_config.filesystem.directory",
    "storage_config.object_store.filesystem.dir",
    "common.storage.filesystem.chunks_directory",
    "common.storage.object_store.filesystem.dir",
    "table_manager.retention_period",
    "table_manager.retention_deletes_enabled",
];

/// Rewrites `root` (a parsed Loki or Parquetry file) into Parquetry's tree. `ours` is
/// Parquetry's default tree, serialised: its mappings say which keys are Parquetry's.
pub fn translate(root: &mut Value, ours: &Value) -> Result<Translation, ConfigError> {
    let Some(map) = root.as_mapping() else {
        return Ok(Translation::default());
    };
    let original = Value::Mapping(map.clone());
    let mut out = Translation::default();
    let mut unknown = Vec::new();
    let mut kept = Mapping::new();
    classify(
        map,
        Some(ours),
        "",
        &mut kept,
        &mut out.ignored,
        &mut unknown,
    );
    if !unknown.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "unknown configuration key{} {}: neither a Parquetry nor a Loki key",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", ")
        )));
    }
    *root = Value::Mapping(kept);
    apply_storage(&original, root, &mut out)?;
    apply_table_manager(&original, root, &mut out);
    // A key that was translated is not also "ignored".
    let consumed: Vec<String> = out
        .translated
        .iter()
        .filter_map(|t| t.split(" → ").next().map(str::to_string))
        .collect();
    out.ignored.retain(|i| !consumed.iter().any(|c| c == i));
    Ok(out)
}

/// Splits `map` into Parquetry's keys (into `kept`), Loki-only keys (reported, dropped) and
/// unknown keys.
fn classify(
    map: &Mapping,
    ours: Option<&Value>,
    prefix: &str,
    kept: &mut Mapping,
    ignored: &mut Vec<String>,
    unknown: &mut Vec<String>,
) {
    for (k, v) in map {
        let name = match k {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let our_child = ours.and_then(|o| o.as_mapping()).and_then(|m| m.get(&name));
        let free = prefix.is_empty() && OUR_FREE_BLOCKS.contains(&name.as_str());
        match (our_child, v) {
            // Our block: keep our keys, sort the rest below it.
            (Some(Value::Mapping(_)), Value::Mapping(sub)) if !free => {
                let mut kept_sub = Mapping::new();
                classify(sub, our_child, &path, &mut kept_sub, ignored, unknown);
                kept.insert(k.clone(), Value::Mapping(kept_sub));
            }
            // Our leaf (or free-form block): serde checks its value.
            (Some(_), _) => {
                kept.insert(k.clone(), v.clone());
            }
            _ if free => {
                kept.insert(k.clone(), v.clone());
            }
            _ if loki_knows(&path) => check_loki_block(&path, v, ignored, unknown),
            _ => unknown.push(path),
        }
    }
}

/// Below a key only Loki knows, every key must still be one of Loki's; the block is reported
/// once.
fn check_loki_block(path: &str, v: &Value, ignored: &mut Vec<String>, unknown: &mut Vec<String>) {
    // A block that holds keys we translate is reported key by key, so the warning never
    // names a block part of which was honoured.
    let dotted = format!("{path}.");
    let holds_source = TRANSLATED_SOURCES
        .iter()
        .any(|s| *s == path || s.starts_with(&dotted));
    if holds_source && let Value::Mapping(m) = v {
        for (k, sub) in m {
            let Some(name) = k.as_str() else { continue };
            let child = format!("{path}.{name}");
            if loki_knows(&child) {
                check_loki_block(&child, sub, ignored, unknown);
            } else {
                unknown.push(child);
            }
        }
        return;
    }
    let before = unknown.len();
    walk_loki(path, v, unknown);
    if unknown.len() == before {
        ignored.push(path.to_string());
    }
}

fn walk_loki(path: &str, v: &Value, unknown: &mut Vec<String>) {
    if LOKI_KEYS
        .prefixes
        .iter()
        .any(|p| path == *p || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'.')))
    {
        return;
    }
    match v {
        Value::Mapping(m) => {
            for (k, sub) in m {
                let Some(name) = k.as_str() else { continue };
                let child = format!("{path}.{name}");
                if loki_knows(&child) {
                    walk_loki(&child, sub, unknown);
                } else if !has_loki_children(path) {
                    // A leaf Loki types as a map or a struct value (e.g. `<labels>`): its
                    // keys are data, not configuration.
                    return;
                } else {
                    unknown.push(child);
                }
            }
        }
        Value::Sequence(items) => {
            let elem = format!("{path}.[]");
            if has_loki_children(&elem) {
                for item in items {
                    walk_loki(&elem, item, unknown);
                }
            }
        }
        _ => {}
    }
}

fn has_loki_children(path: &str) -> bool {
    let dotted = format!("{path}.");
    LOKI_KEYS.exact.iter().any(|k| k.starts_with(&dotted))
}

fn get<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |v, k| v.as_mapping().and_then(|m| m.get(k)))
}

fn get_str(root: &Value, path: &str) -> Option<String> {
    match get(root, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn set(root: &mut Value, path: &str, value: Value) {
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let Some(m) = cur.as_mapping_mut() else {
            return;
        };
        let key = Value::String((*p).to_string());
        if i + 1 == parts.len() {
            m.insert(key, value);
            return;
        }
        cur = m
            .entry(key)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

/// Where Loki's file keeps the data, as Parquetry's `storage.url` and `storage.s3`.
fn apply_storage(loki: &Value, root: &mut Value, out: &mut Translation) -> Result<(), ConfigError> {
    if get_str(root, "storage.url").is_some() {
        // Parquetry's own key wins; the Loki storage keys are reported as ignored.
        return Ok(());
    }
    // The newest schema period names the store Loki writes to now.
    let period_store = get(loki, "schema_config.configs")
        .and_then(Value::as_sequence)
        .and_then(|c| c.last())
        .and_then(|p| p.get("object_store"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let s3 = S3_BLOCKS.iter().find_map(|b| s3_target(loki, b));
    let dir = DIR_KEYS
        .iter()
        .find_map(|k| get_str(loki, k).map(|d| (*k, d)));
    let use_s3 = match period_store.as_deref() {
        Some("s3" | "aws") => true,
        Some("filesystem") => false,
        None => s3.is_some() && dir.is_none(),
        // A named store or a backend we cannot reach: refuse rather than write elsewhere.
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "schema_config: object_store {other:?} is not supported; Parquetry stores \
                 objects in S3 (aws, s3) or a local directory (filesystem)"
            )));
        }
    };
    if use_s3 {
        let Some(t) = s3 else {
            return Err(ConfigError::Invalid(
                "schema_config uses object_store s3 but no bucket is configured \
                 (storage_config.aws.bucketnames or common.storage.s3.bucketnames)"
                    .into(),
            ));
        };
        let url = format!("s3://{}", t.bucket);
        set(root, "storage.url", Value::String(url));
        out.translated
            .push(format!("{}.{} → storage.url", t.block, t.bucket_key));
        for (src, key, value) in t.settings {
            if get(root, &format!("storage.s3.{key}")).is_none_or(Value::is_null) {
                set(root, &format!("storage.s3.{key}"), value);
                out.translated
                    .push(format!("{}.{src} → storage.s3.{key}", t.block));
            }
        }
    } else if let Some((key, d)) = dir {
        set(root, "storage.url", Value::String(d));
        out.translated.push(format!("{key} → storage.url"));
    }
    Ok(())
}

struct S3Target {
    block: &'static str,
    bucket_key: &'static str,
    bucket: String,
    /// (Loki key in the block, Parquetry key under `storage.s3`, value).
    settings: Vec<(&'static str, &'static str, Value)>,
}

/// Reads one S3 block in either of Loki's spellings (`s3_storage_config` or the thanos
/// `object_store.s3`), including the `s3: s3://key:secret@region/bucket` URL form.
fn s3_target(loki: &Value, block: &'static str) -> Option<S3Target> {
    let b = get(loki, block)?.as_mapping()?;
    let s = |k: &str| -> Option<String> {
        match b.get(k)? {
            Value::String(v) if !v.is_empty() => Some(v.clone()),
            _ => None,
        }
    };
    let mut settings: Vec<(&'static str, &'static str, Value)> = Vec::new();
    let mut bucket = None;
    let mut bucket_key = "bucketnames";
    if let Some(url) = s("s3") {
        // s3://[key:secret@]region/bucket, or s3://bucket with the region elsewhere.
        if let Some(rest) = url.strip_prefix("s3://") {
            let (creds, hostpath) = match rest.rsplit_once('@') {
                Some((c, h)) => (Some(c), h),
                None => (None, rest),
            };
            if let Some((id, secret)) = creds.and_then(|c| c.split_once(':')) {
                settings.push(("s3", "access_key_id", Value::String(percent_decode(id))));
                settings.push((
                    "s3",
                    "secret_access_key",
                    Value::String(percent_decode(secret)),
                ));
            }
            match hostpath.split_once('/') {
                Some((region, b)) if !b.is_empty() => {
                    if !region.is_empty() && region != "inmemory" {
                        settings.push(("s3", "region", Value::String(region.to_string())));
                    }
                    bucket = Some(b.trim_end_matches('/').to_string());
                }
                _ => bucket = Some(hostpath.trim_end_matches('/').to_string()),
            }
            bucket_key = "s3";
        }
    }
    if let Some(names) = s("bucketnames") {
        // Loki spreads chunks over several buckets; Parquetry writes to one.
        bucket = names
            .split(',')
            .map(str::trim)
            .find(|n| !n.is_empty())
            .map(String::from);
        bucket_key = "bucketnames";
    }
    if let Some(name) = s("bucket_name") {
        bucket = Some(name);
        bucket_key = "bucket_name";
    }
    let bucket = bucket.filter(|b| !b.is_empty())?;
    for key in [
        "endpoint",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
    ] {
        if let Some(v) = s(key) {
            settings.retain(|(_, k, _)| *k != key);
            settings.push((key, key, Value::String(v)));
        }
    }
    if let Some(Value::Bool(v)) = b.get("s3forcepathstyle") {
        settings.push(("s3forcepathstyle", "s3forcepathstyle", Value::Bool(*v)));
    }
    if let Some(t) = s("bucket_lookup_type") {
        match t.as_str() {
            "path" => settings.push(("bucket_lookup_type", "s3forcepathstyle", Value::Bool(true))),
            "virtual-hosted" => {
                settings.push(("bucket_lookup_type", "s3forcepathstyle", Value::Bool(false)))
            }
            _ => {}
        }
    }
    if let Some(Value::Bool(true)) = b.get("insecure") {
        settings.push(("insecure", "insecure", Value::Bool(true)));
    }
    Some(S3Target {
        block,
        bucket_key,
        bucket,
        settings,
    })
}

/// `%XX` escapes in the credentials of an `s3://` URL, as Loki's URL parser reads them.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Loki 2.x kept retention in the table manager; `retention_deletes_enabled` with a period
/// is what the compactor's retention does here.
fn apply_table_manager(loki: &Value, root: &mut Value, out: &mut Translation) {
    let enabled = matches!(
        get(loki, "table_manager.retention_deletes_enabled"),
        Some(Value::Bool(true))
    );
    let Some(period) = get_str(loki, "table_manager.retention_period") else {
        return;
    };
    if !enabled {
        return;
    }
    if get(root, "limits_config.retention_period").is_none() {
        set(
            root,
            "limits_config.retention_period",
            Value::String(period),
        );
        out.translated
            .push("table_manager.retention_period → limits_config.retention_period".to_string());
    }
    if get(root, "compactor.retention_enabled").is_none() {
        set(root, "compactor.retention_enabled", Value::Bool(true));
        out.translated.push(
            "table_manager.retention_deletes_enabled → compactor.retention_enabled".to_string(),
        );
    }
}

/// Loki's `-config.expand-env`: `${VAR}` and `${VAR:-default}` replaced from `env`; an unset
/// variable without a default becomes empty, as in Loki.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let value = env(name)
            .filter(|v| !(v.is_empty() && default.is_some()))
            .or_else(|| default.map(str::to_string))
            .unwrap_or_default();
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_list_loads_and_knows_lokis_blocks() {
        assert!(loki_knows("server.grpc_listen_port"));
        assert!(loki_knows("common.ring.kvstore.store"));
        assert!(loki_knows("table_manager.retention_period"));
        assert!(loki_knows("storage_config.boltdb_shipper.shared_store"));
        assert!(!loki_knows("server.grpc_listen_prot"));
        assert!(!loki_knows("nonsense"));
    }

    #[test]
    fn expand_env_as_loki() {
        let env = |k: &str| match k {
            "A" => Some("x".to_string()),
            "E" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_env("a=${A} b=${B} c=${B:-d} e=${E:-f}", &env),
            "a=x b= c=d e=f"
        );
        assert_eq!(expand_env("unterminated ${A", &env), "unterminated ${A");
    }

    #[test]
    fn percent_decoding_of_url_credentials() {
        assert_eq!(percent_decode("a%2Fb%3D"), "a/b=");
        assert_eq!(percent_decode("100%"), "100%");
    }
}

#[cfg(test)]
mod fixtures {
    use crate::Config;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Config::from_yaml_and_env(&super::expand_env(yaml, &lookup), env.clone())
    }

    #[test]
    fn single_binary_loki_config() {
        let c = load(
            include_str!("../../../tests/fixtures/loki/single-binary.yaml"),
            &[],
        )
        .unwrap();
        assert_eq!(c.storage_url(), "/tmp/loki/chunks");
        assert_eq!(c.server.http_listen_port, 3100);
        assert_eq!(c.limits_config.max_query_series, 1000);
        assert_eq!(c.limits_config.retention_period.0.as_secs(), 744 * 3600);
        assert!(c.compactor.retention_enabled);
        // `ruler` is Parquetry's own block now: the fixture's Alertmanager is honoured.
        assert_eq!(c.ruler.alertmanager_urls(), ["http://localhost:9093"]);
        assert!(!c.loki.ignored.iter().any(|i| i == "ruler"));
        assert!(
            c.loki
                .translated
                .contains(&"common.storage.filesystem.chunks_directory → storage.url".into())
        );
        for ignored in [
            "server.grpc_listen_port",
            "common.ring",
            "common.storage.filesystem.rules_directory",
            "schema_config",
            "pattern_ingester",
            "compactor.working_directory",
            "query_range.results_cache",
        ] {
            assert!(
                c.loki.ignored.iter().any(|i| i == ignored),
                "{ignored} not in {:?}",
                c.loki.ignored
            );
        }
        assert!(
            !c.loki
                .ignored
                .iter()
                .any(|i| i.contains("chunks_directory")),
            "{:?}",
            c.loki.ignored
        );
    }

    #[test]
    fn kubernetes_configmap_on_s3_with_expanded_env() {
        let c = load(
            include_str!("../../../tests/fixtures/loki/kubernetes-s3.yaml"),
            &[
                ("S3_ACCESS_KEY_ID", "AKIA-TEST"),
                ("S3_SECRET_ACCESS_KEY", "s3cr3t"),
            ],
        )
        .unwrap();
        assert_eq!(c.storage_url(), "s3://loki-chunks");
        let s3 = &c.storage.s3;
        assert_eq!(s3.endpoint.as_deref(), Some("minio.loki.svc:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.access_key_id.as_deref(), Some("AKIA-TEST"));
        assert_eq!(
            s3.secret_access_key.as_ref().map(|s| s.expose()),
            Some("s3cr3t")
        );
        assert_eq!(s3.s3forcepathstyle, Some(true));
        assert!(s3.insecure);
        assert!(c.auth_enabled);
        assert_eq!(c.limits_config.max_entries_limit_per_query, 10000);
        assert!(c.loki.ignored.contains(&"memberlist".to_string()));
        assert!(
            c.loki
                .ignored
                .contains(&"common.storage.s3.http_config".to_string())
        );
        // The effective configuration never shows the secret.
        let shown = serde_yaml::to_string(&c).unwrap();
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn loki_2_table_manager_retention() {
        let c = load(
            include_str!("../../../tests/fixtures/loki/loki2-table-manager.yaml"),
            &[],
        )
        .unwrap();
        assert_eq!(c.limits_config.retention_period.0.as_secs(), 48 * 3600);
        assert!(c.compactor.retention_enabled);
        assert_eq!(c.storage_url(), "/tmp/loki/chunks");
        for ignored in [
            "ingester",
            "storage_config.boltdb_shipper",
            "limits_config.enforce_metric_name",
            "chunk_store_config",
        ] {
            assert!(c.loki.ignored.iter().any(|i| i == ignored), "{ignored}");
        }
        assert!(
            !c.loki
                .ignored
                .iter()
                .any(|i| i.starts_with("table_manager"))
        );
    }

    #[test]
    fn typos_fail_with_the_key_named() {
        let e = load("server:\n  grpc_listen_prot: 9095\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.grpc_listen_prot"), "{e}");
        let e = load("ingester:\n  chunk_idle_perod: 1h\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingester.chunk_idle_perod"), "{e}");
        let e = load("limits_config:\n  max_query_seriess: 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits_config.max_query_seriess"), "{e}");
    }

    #[test]
    fn parquetry_keys_win_over_lokis() {
        let c = load(
            "storage:\n  url: s3://mine\nstorage_config:\n  filesystem:\n    directory: /x\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.storage_url(), "s3://mine");
        assert!(
            c.loki
                .ignored
                .contains(&"storage_config.filesystem.directory".to_string())
        );
    }

    #[test]
    fn unsupported_object_store_is_refused() {
        let e = load(
            "schema_config:\n  configs:\n    - from: 2024-01-01\n      object_store: gcs\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gcs"), "{e}");
    }

    #[test]
    fn url_form_of_s3() {
        let c = load(
            "storage_config:\n  aws:\n    s3: s3://key:se%2Fcret@us-west-2/bucket-a\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.storage_url(), "s3://bucket-a");
        assert_eq!(c.storage.s3.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            c.storage.s3.secret_access_key.as_ref().map(|s| s.expose()),
            Some("se/cret")
        );
    }

    #[test]
    fn targets() {
        use crate::config::Role;
        let c = load("target: read\n", &[]).unwrap();
        assert!(c.target.runs(Role::Read) && !c.target.runs(Role::Write));
        let c = load("target: distributor,compactor\n", &[]).unwrap();
        assert!(c.target.runs(Role::Write) && c.target.runs(Role::Backend));
        assert!(!c.target.runs(Role::Read));
        assert!(load("", &[]).unwrap().target.runs(Role::Write));
        assert!(load("target: writer\n", &[]).is_err());
    }
}
