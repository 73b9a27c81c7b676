//! Evaluation state of one rule group: each rule's health and, for alerting rules, its
//! active alerts with Prometheus's timestamps (active, fired, resolved, last sent).
//!
//! One JSON object per group in the log store's bucket, written after each evaluation:
//!
//! ```text
//! ruler/state/<tenant>/<namespace>/<group>.json
//! ```
//!
//! so a restarted server, another replica or the next Lambda invocation carries on with
//! pending alerts still pending (their `for` clock running) and firing alerts not re-fired,
//! and the API lists what the last evaluation found wherever it is served.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

/// Where alert state lives in the bucket.
pub const STATE_PREFIX: &str = "ruler/state";
/// Version of the stored state's JSON.
pub const STATE_FORMAT: u32 = 1;

/// Where an alert is in Prometheus's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Active, `for` not yet elapsed.
    Pending,
    /// Active and sent to Alertmanager.
    Firing,
    /// Resolved: kept (and re-sent with `endsAt`) for 15 minutes, then dropped.
    Inactive,
}

impl AlertState {
    /// The state as Prometheus's API spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Inactive => "inactive",
        }
    }
}

/// One alert of an alerting rule: a label set the rule's query returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// Its expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its state.
    pub state: AlertState,
    /// The query's value at the last evaluation.
    pub value: f64,
    /// When it became active (Unix ns).
    pub active_at_ns: i64,
    /// When it started firing (Unix ns, 0: never).
    #[serde(default)]
    pub fired_at_ns: i64,
    /// When it resolved (Unix ns, 0: not resolved).
    #[serde(default)]
    pub resolved_at_ns: i64,
    /// When it was last sent to Alertmanager (Unix ns).
    #[serde(default)]
    pub last_sent_ns: i64,
    /// The `endsAt` last sent (Unix ns).
    #[serde(default)]
    pub valid_until_ns: i64,
    /// When the query last returned this alert (for `keep_firing_for`).
    #[serde(default)]
    pub last_seen_ns: i64,
    /// When `keep_firing_for` started holding it (Unix ns, 0: not held).
    #[serde(default)]
    pub keep_firing_since_ns: i64,
}

/// One rule's outcome at its last evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// `ok`, `err` or `unknown` (never evaluated), as Prometheus reports health.
    pub health: String,
    /// The error of the last evaluation, empty if it succeeded.
    #[serde(default)]
    pub last_error: String,
    /// When the rule was last evaluated (Unix ns).
    pub last_evaluation_ns: i64,
    /// How long that evaluation took.
    pub evaluation_seconds: f64,
    /// Active alerts by their label set's text.
    #[serde(default)]
    pub alerts: BTreeMap<String, Alert>,
}

/// A group's state: its rules' states keyed by [`rule_key`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// [`STATE_FORMAT`] when written.
    pub format: u32,
    /// When the group was last evaluated (Unix ns).
    pub last_evaluation_ns: i64,
    /// How long that evaluation took.
    pub evaluation_seconds: f64,
    /// Each rule's state.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleState>,
}

/// A rule's identity across evaluations and edits: its kind, name and query. Editing the
/// query starts the rule afresh, as Prometheus does when a reload changes a rule.
pub fn rule_key(rule: &crate::Rule) -> String {
    let kind = if rule.is_alert() { "alert" } else { "record" };
    format!("{kind}:{}:{}", rule.name(), rule.expr)
}

fn enc(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

/// Where a group's state is stored.
pub fn state_path(tenant: &str, namespace: &str, group: &str) -> Path {
    Path::from(format!(
        "{STATE_PREFIX}/{}/{}/{}.json",
        enc(tenant),
        enc(namespace),
        enc(group)
    ))
}

/// A group's stored state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The bucket failed.
    #[error(
        "{action} ruler state of tenant {tenant:?} group {namespace}/{group} ({path}): {source}"
    )]
    Storage {
        /// `loading` or `saving`.
        action: &'static str,
        /// The tenant.
        tenant: String,
        /// The rule namespace.
        namespace: String,
        /// The rule group.
        group: String,
        /// The state object.
        path: Path,
        /// What the bucket answered.
        #[source]
        source: object_store::Error,
    },
    /// The state did not encode as JSON.
    #[error("encoding ruler state of tenant {tenant:?} group {namespace}/{group}: {source}")]
    Encode {
        /// The tenant.
        tenant: String,
        /// The rule namespace.
        namespace: String,
        /// The rule group.
        group: String,
        /// What the encoder said.
        #[source]
        source: serde_json::Error,
    },
}

/// The stored state of a group, or a fresh one when there is none (or it is unreadable: a
/// corrupt state object must not stop the rules).
pub async fn load(
    store: &dyn ObjectStore,
    tenant: &str,
    namespace: &str,
    group: &str,
) -> Result<GroupState, StateError> {
    let path = state_path(tenant, namespace, group);
    let failed = |source| StateError::Storage {
        action: "loading",
        tenant: tenant.to_string(),
        namespace: namespace.to_string(),
        group: group.to_string(),
        path: path.clone(),
        source,
    };
    let bytes = match store.get(&path).await {
        Ok(r) => r.bytes().await.map_err(failed)?,
        Err(object_store::Error::NotFound { .. }) => return Ok(GroupState::default()),
        Err(e) => return Err(failed(e)),
    };
    match serde_json::from_slice::<GroupState>(&bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::warn!(tenant, namespace, group, %path, error = %e, "unreadable ruler state; starting afresh");
            Ok(GroupState::default())
        }
    }
}

/// Writes a group's state.
pub async fn save(
    store: &dyn ObjectStore,
    tenant: &str,
    namespace: &str,
    group: &str,
    state: &GroupState,
) -> Result<(), StateError> {
    let mut state = state.clone();
    state.format = STATE_FORMAT;
    let body = serde_json::to_vec(&state).map_err(|source| StateError::Encode {
        tenant: tenant.to_string(),
        namespace: namespace.to_string(),
        group: group.to_string(),
        source,
    })?;
    let path = state_path(tenant, namespace, group);
    match store.put(&path, PutPayload::from(body)).await {
        Ok(_) => Ok(()),
        Err(source) => Err(StateError::Storage {
            action: "saving",
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
            group: group.to_string(),
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn state_round_trips_and_a_failed_read_names_its_group() {
        let store = InMemory::new();
        let mut st = GroupState {
            last_evaluation_ns: 42,
            ..Default::default()
        };
        save(&store, "t", "ns", "g", &st).await.unwrap();
        st.format = STATE_FORMAT;
        assert_eq!(load(&store, "t", "ns", "g").await.unwrap(), st);
        assert_eq!(
            load(&store, "t", "ns", "other").await.unwrap(),
            GroupState::default()
        );

        // A file where the state directory should be: reads and writes fail, and not as
        // "not found".
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("ruler"), b"in the way").unwrap();
        let err = load(&local, "t", "ns", "g").await.unwrap_err();
        assert!(matches!(err, StateError::Storage { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("loading ruler state of tenant \"t\" group ns/g (ruler/state/"),
            "{text}"
        );
        let err = save(&local, "t", "ns", "g", &st).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("saving ruler state of tenant \"t\" group ns/g"),
            "{err}"
        );
    }
}
