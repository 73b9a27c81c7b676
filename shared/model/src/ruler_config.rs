//! The `ruler` block: where alerting and recording rules live, how often they run and where
//! their results go, with Loki's key names. Loki's other `ruler.*` keys (rings, sharding,
//! gRPC clients, other storage back ends) are accepted and reported as ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::LokiDuration;

/// Loki's `ruler` block: where rules live, how often they run, where alerts and samples go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerConfig {
    /// Where rule groups are read from.
    pub storage: RulerStorageConfig,
    /// How often a rule group runs when it sets no `interval` of its own (Loki: 1m).
    pub evaluation_interval: LokiDuration,
    /// How often rule groups are re-read from storage (Loki's `poll_interval`: 1m).
    pub poll_interval: LokiDuration,
    /// Alertmanager base URLs, comma separated; alerts go to `<url>/api/v2/alerts`. Empty:
    /// alerts are evaluated and listed by the API but sent nowhere.
    pub alertmanager_url: String,
    /// Base of each alert's `generatorURL`.
    pub external_url: String,
    /// Labels added to every alert and recorded series (a rule's own labels win). An
    /// `Option` for the same reason as `remote_write.clients`.
    pub external_labels: Option<BTreeMap<String, String>>,
    /// A firing alert is re-sent to Alertmanager at most this often (Prometheus: 1m).
    pub resend_delay: LokiDuration,
    /// Timeout of one Alertmanager or remote-write request.
    pub notification_timeout: LokiDuration,
    /// Where recording rules' samples are written.
    pub remote_write: RulerRemoteWriteConfig,
}

impl Default for RulerConfig {
    fn default() -> Self {
        RulerConfig {
            storage: RulerStorageConfig::default(),
            evaluation_interval: LokiDuration::from_secs(60),
            poll_interval: LokiDuration::from_secs(60),
            alertmanager_url: String::new(),
            external_url: String::new(),
            external_labels: None,
            resend_delay: LokiDuration::from_secs(60),
            notification_timeout: LokiDuration::from_secs(10),
            remote_write: RulerRemoteWriteConfig::default(),
        }
    }
}

impl RulerConfig {
    /// The Alertmanager base URLs, without trailing slashes.
    pub fn alertmanager_urls(&self) -> Vec<String> {
        self.alertmanager_url
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether rules are read from `storage.local.directory` (read-only, as in Loki) rather
    /// than kept in the log store's bucket next to the logs.
    pub fn local_storage(&self) -> bool {
        self.storage.kind == "local"
    }
}

/// `ruler.storage`: `type: local` reads `<local.directory>/<tenant>/<namespace>` files; any
/// other type (Loki's `s3`, `gcs`, `azure`, …, or unset) keeps rules in the log store's own
/// bucket, where the rules API can write them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerStorageConfig {
    /// `local` for files under `local.directory`; anything else keeps groups in the storage bucket.
    #[serde(rename = "type")]
    pub kind: String,
    /// The directory of `local` storage.
    pub local: RulerLocalStorage,
}

/// `ruler.storage.local`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerLocalStorage {
    /// One subdirectory per tenant, one YAML file per namespace.
    pub directory: String,
}

/// `ruler.remote_write`: where recording rules' samples go (Prometheus remote write 1.0).
/// Loki's single `client` and its newer `clients.<name>` map are both read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulerRemoteWriteConfig {
    /// Whether recording rules' samples are sent at all.
    pub enabled: bool,
    /// Adds `X-Scope-OrgID: <tenant>` to each request (Loki's default: true).
    pub add_org_id_header: Option<bool>,
    // Options serialise as null, so the Loki-key classifier keeps these blocks whole for
    // serde instead of sorting their free-form keys as Loki-only ones.
    /// Loki's single `client`.
    pub client: Option<RemoteWriteClient>,
    /// Loki's named `clients`.
    pub clients: Option<BTreeMap<String, RemoteWriteClient>>,
}

impl RulerRemoteWriteConfig {
    /// Every configured client, `client` first.
    pub fn all_clients(&self) -> Vec<&RemoteWriteClient> {
        let mut out: Vec<&RemoteWriteClient> = self.client.iter().collect();
        if let Some(m) = &self.clients {
            out.extend(m.values());
        }
        out.retain(|c| !c.url.is_empty());
        out
    }
}

/// One remote-write endpoint. Prometheus's other client keys (`queue_config`, relabelling,
/// TLS, sigv4, …) are accepted and have no effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RemoteWriteClient {
    /// The remote-write endpoint.
    pub url: String,
    /// Extra HTTP headers on each request.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one request (30 s when unset).
    pub remote_timeout: Option<LokiDuration>,
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn lokis_ruler_keys() {
        let y = "ruler:\n  alertmanager_url: http://a:9093, http://b:9093/\n  enable_api: true\n  evaluation_interval: 30s\n  external_labels:\n    env: prod\n  storage:\n    type: local\n    local:\n      directory: /rules\n  rule_path: /tmp/scratch\n  remote_write:\n    enabled: true\n    clients:\n      prom:\n        url: http://p:9090/api/v1/write\n        queue_config:\n          capacity: 10\n";
        let c = Config::from_yaml_and_env(y, []).unwrap();
        let r = &c.ruler;
        assert_eq!(r.alertmanager_urls(), ["http://a:9093", "http://b:9093"]);
        assert_eq!(r.evaluation_interval.0.as_secs(), 30);
        assert!(r.local_storage());
        assert_eq!(r.storage.local.directory, "/rules");
        assert_eq!(
            r.external_labels
                .as_ref()
                .and_then(|l| l.get("env"))
                .map(String::as_str),
            Some("prod")
        );
        assert!(r.remote_write.enabled);
        assert_eq!(
            r.remote_write.all_clients()[0].url,
            "http://p:9090/api/v1/write"
        );
        for ignored in ["ruler.enable_api", "ruler.rule_path"] {
            assert!(
                c.loki.ignored.iter().any(|i| i == ignored),
                "{:?}",
                c.loki.ignored
            );
        }
        let c = Config::from_yaml_and_env(
            "ruler:\n  remote_write:\n    client:\n      url: http://p/w\n",
            [("PARQUETRY__RULER__EVALUATION_INTERVAL".into(), "1s".into())],
        )
        .unwrap();
        assert_eq!(c.ruler.remote_write.all_clients()[0].url, "http://p/w");
        assert_eq!(c.ruler.evaluation_interval.0.as_secs(), 1);
        assert!(!c.ruler.local_storage());
        assert!(Config::from_yaml_and_env("ruler:\n  nope: 1\n", []).is_err());
    }
}
