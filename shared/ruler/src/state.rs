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

/// The stored state of a group, or a fresh one when there is none (or it is unreadable: a
/// corrupt state object must not stop the rules).
pub async fn load(
    store: &dyn ObjectStore,
    tenant: &str,
    namespace: &str,
    group: &str,
) -> Result<GroupState, object_store::Error> {
    match store.get(&state_path(tenant, namespace, group)).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            match serde_json::from_slice::<GroupState>(&bytes) {
                Ok(s) => Ok(s),
                Err(e) => {
                    tracing::warn!(tenant, namespace, group, error = %e, "unreadable ruler state; starting afresh");
                    Ok(GroupState::default())
                }
            }
        }
        Err(object_store::Error::NotFound { .. }) => Ok(GroupState::default()),
        Err(e) => Err(e),
    }
}

/// Writes a group's state.
pub async fn save(
    store: &dyn ObjectStore,
    tenant: &str,
    namespace: &str,
    group: &str,
    state: &GroupState,
) -> Result<(), object_store::Error> {
    let mut state = state.clone();
    state.format = STATE_FORMAT;
    let body = serde_json::to_vec(&state).map_err(|e| object_store::Error::Generic {
        store: "ruler state",
        source: Box::new(e),
    })?;
    store
        .put(
            &state_path(tenant, namespace, group),
            PutPayload::from(body),
        )
        .await?;
    Ok(())
}
