//! One evaluation pass over every tenant's rule groups, and the state machine of alerts.
//!
//! Each rule is an instant query at the evaluation time through [`QueryEngine`] (the path
//! `/loki/api/v1/query` takes). Alerting rules follow Prometheus: a new label set is
//! `pending`, `firing` once it has been returned for `for`, and when the query stops
//! returning it, resolved (`inactive`) — after `keep_firing_for` if set — and re-sent with
//! `endsAt` for 15 minutes. Firing alerts are re-sent every `resend_delay`. Recording rules'
//! samples are remote-written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquetry_logql::{Expr, parse_expr};
use parquetry_model::{Config, Labels};
use parquetry_query::{MetricQuery, QueryEngine, Value};
use parquetry_store::Store;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::notify::{self, PostableAlert, rfc3339};
use crate::remote_write::{self, Endpoint, TimeSeries};
use crate::rules::Rule;
use crate::state::{self, Alert, AlertState, GroupState, RuleState, rule_key};
use crate::store::{OwnedGroup, RuleStore};
use crate::template;

/// How long a resolved alert is kept and re-sent (Prometheus's `resolvedRetention`).
const RESOLVED_RETENTION_NS: i64 = 15 * 60 * 1_000_000_000;

/// What one pass did, for logs and the Lambda function's result.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PassSummary {
    /// Rule groups known.
    pub groups: usize,
    /// Groups due and evaluated in this pass.
    pub groups_evaluated: usize,
    /// Rules evaluated.
    pub rules_evaluated: usize,
    /// Rules whose evaluation failed.
    pub rule_errors: usize,
    /// Alerts pending (active, `for` not yet elapsed).
    pub alerts_pending: usize,
    /// Alerts firing.
    pub alerts_firing: usize,
    /// Alerts sent to Alertmanager.
    pub alerts_sent: usize,
    /// Recorded samples remote-written.
    pub samples_written: usize,
    /// Rule files that could not be loaded, notification and write failures.
    pub errors: Vec<String>,
}

type GroupId = (String, String, String);

#[derive(Default)]
struct Cache {
    loaded_at: Option<Instant>,
    groups: Vec<OwnedGroup>,
    states: HashMap<GroupId, GroupState>,
}

/// The ruler of one process: the rule store, the query engine, the clients.
pub struct Ruler {
    config: Arc<Config>,
    store: Arc<Store>,
    engine: QueryEngine,
    rules: RuleStore,
    http: reqwest::Client,
    /// Keep group states between passes (one long-lived evaluator); off, each pass reads
    /// them from the bucket (a Lambda invocation, which may run beside another).
    keep_state: bool,
    cache: Mutex<Cache>,
}

impl Ruler {
    /// A ruler reading rules and keeping alert state as `config.ruler` says.
    pub fn new(config: Arc<Config>, store: Arc<Store>, engine: QueryEngine) -> Ruler {
        let rules = RuleStore::from_config(&config, &store);
        Ruler {
            config,
            store,
            engine,
            rules,
            http: reqwest::Client::new(),
            keep_state: true,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Read rules and state from storage at every pass (for hosts that run one pass per
    /// invocation).
    pub fn stateless(mut self) -> Ruler {
        self.keep_state = false;
        self
    }

    /// Where its rule groups live.
    pub fn rule_store(&self) -> &RuleStore {
        &self.rules
    }

    /// Loads every rule group now and returns the problems found (invalid files), so a
    /// server can report them at start-up without refusing to start.
    pub async fn check_rules(&self) -> (usize, Vec<String>) {
        let (groups, errs) = self.rules.all_groups().await;
        let n = groups.len();
        let mut cache = self.cache.lock().await;
        cache.groups = groups;
        cache.loaded_at = Some(Instant::now());
        (n, errs)
    }

    async fn groups(&self, summary: &mut PassSummary) -> Vec<OwnedGroup> {
        let poll = self.config.ruler.poll_interval.0;
        let mut cache = self.cache.lock().await;
        let fresh = self.keep_state && cache.loaded_at.is_some_and(|t| t.elapsed() < poll);
        if !fresh {
            let (groups, errs) = self.rules.all_groups().await;
            for e in &errs {
                tracing::warn!(error = %e, "rule group not loaded");
            }
            summary.errors.extend(errs);
            cache.groups = groups;
            cache.loaded_at = Some(Instant::now());
        }
        cache.groups.clone()
    }

    /// One pass at `now_ns`. With `only_due`, groups whose interval has not passed since
    /// their last evaluation are skipped (a timer ticking faster than the intervals);
    /// without, every group is evaluated (one scheduled invocation per interval).
    pub async fn run_pass(&self, now_ns: i64, only_due: bool) -> PassSummary {
        let mut summary = PassSummary::default();
        let groups = self.groups(&mut summary).await;
        summary.groups = groups.len();
        let default_interval = self.config.ruler.evaluation_interval.as_nanos().max(1);
        let objects = self.store.object_store();
        let mut live: HashSet<GroupId> = HashSet::new();
        for g in &groups {
            let id: GroupId = (g.tenant.clone(), g.namespace.clone(), g.group.name.clone());
            live.insert(id.clone());
            let interval = g
                .group
                .interval
                .map(|d| d.0)
                .filter(|d| *d > 0)
                .unwrap_or(default_interval);
            let cached = if self.keep_state {
                self.cache.lock().await.states.get(&id).cloned()
            } else {
                None
            };
            let mut st = match cached {
                Some(s) => s,
                None => match state::load(objects.as_ref(), &id.0, &id.1, &id.2).await {
                    Ok(s) => s,
                    Err(e) => {
                        summary.errors.push(e.to_string());
                        continue;
                    }
                },
            };
            if only_due && st.last_evaluation_ns > 0 && now_ns - st.last_evaluation_ns < interval {
                if self.keep_state {
                    self.cache.lock().await.states.insert(id, st);
                }
                continue;
            }
            self.eval_group(g, &mut st, now_ns, interval, &mut summary)
                .await;
            summary.groups_evaluated += 1;
            if let Err(e) = state::save(objects.as_ref(), &id.0, &id.1, &id.2, &st).await {
                tracing::warn!(error = %e, "saving ruler state failed");
                summary.errors.push(e.to_string());
            }
            if self.keep_state {
                self.cache.lock().await.states.insert(id, st);
            }
        }
        // Groups deleted since: forget their state (the stored object stays, harmless).
        self.cache
            .lock()
            .await
            .states
            .retain(|k, _| live.contains(k));
        summary
    }

    async fn eval_group(
        &self,
        g: &OwnedGroup,
        st: &mut GroupState,
        ts: i64,
        interval: i64,
        summary: &mut PassSummary,
    ) {
        let started = Instant::now();
        let mut old = std::mem::take(&mut st.rules);
        let mut to_send: Vec<PostableAlert> = Vec::new();
        let mut sent_keys: Vec<(String, String)> = Vec::new();
        let mut series: Vec<TimeSeries> = Vec::new();
        let resend = self.config.ruler.resend_delay.as_nanos();
        let delta = resend.max(interval);
        for rule in &g.group.rules {
            let key = rule_key(rule);
            let mut rs = old.remove(&key).unwrap_or_default();
            let rule_started = Instant::now();
            summary.rules_evaluated += 1;
            let result = match self.query(&g.tenant, &rule.expr, ts).await {
                Ok(samples) => {
                    if rule.is_alert() {
                        self.alerting(rule, &mut rs, samples, ts, g.group.limit)
                    } else {
                        self.recording(rule, samples, ts, g.group.limit)
                            .map(|s| series.extend(s))
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    rs.health = "ok".into();
                    rs.last_error.clear();
                }
                Err(e) => {
                    tracing::warn!(tenant = %g.tenant, group = %g.group.name, rule = rule.name(), error = %e, "rule evaluation failed");
                    summary.rule_errors += 1;
                    rs.health = "err".into();
                    rs.last_error = e.to_string();
                }
            }
            rs.last_evaluation_ns = ts;
            rs.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            if rule.is_alert() {
                for (k, a) in rs.alerts.iter_mut() {
                    match a.state {
                        AlertState::Pending => summary.alerts_pending += 1,
                        AlertState::Firing => summary.alerts_firing += 1,
                        AlertState::Inactive => {}
                    }
                    if !needs_sending(a, ts, resend) {
                        continue;
                    }
                    a.valid_until_ns = ts + 4 * delta;
                    to_send.push(PostableAlert {
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                        starts_at: rfc3339(if a.fired_at_ns > 0 {
                            a.fired_at_ns
                        } else {
                            a.active_at_ns
                        }),
                        ends_at: rfc3339(if a.state == AlertState::Inactive {
                            a.resolved_at_ns
                        } else {
                            a.valid_until_ns
                        }),
                        generator_url: self.generator_url(&rule.expr),
                    });
                    sent_keys.push((key.clone(), k.clone()));
                }
            }
            st.rules.insert(key, rs);
        }
        // Notifications: sent alerts are marked so the next pass waits `resend_delay`.
        let urls = self.config.ruler.alertmanager_urls();
        if !to_send.is_empty() && !urls.is_empty() {
            let timeout = self.config.ruler.notification_timeout.0;
            let (ok, errs) = notify::send(&self.http, &urls, &to_send, timeout).await;
            for e in errs {
                tracing::warn!(error = %e, "alert notification failed");
                summary.errors.push(e.to_string());
            }
            if ok {
                summary.alerts_sent += to_send.len();
                for (rk, ak) in sent_keys {
                    if let Some(a) = st.rules.get_mut(&rk).and_then(|r| r.alerts.get_mut(&ak)) {
                        a.last_sent_ns = ts;
                    }
                }
            }
        }
        let rw = &self.config.ruler.remote_write;
        if rw.enabled && !series.is_empty() {
            let n = series.len();
            let tenant = rw
                .add_org_id_header
                .unwrap_or(true)
                .then_some(g.tenant.as_str());
            let mut any_ok = false;
            for c in rw.all_clients() {
                let endpoint = Endpoint {
                    url: c.url.clone(),
                    headers: c.headers.clone(),
                    timeout: c
                        .remote_timeout
                        .map(|d| d.0)
                        .unwrap_or(Duration::from_secs(30)),
                };
                match remote_write::send(&self.http, &endpoint, tenant, series.clone()).await {
                    Ok(()) => any_ok = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "remote write failed");
                        summary.errors.push(e.to_string());
                    }
                }
            }
            if any_ok {
                summary.samples_written += n;
            }
        }
        st.last_evaluation_ns = ts;
        st.evaluation_seconds = started.elapsed().as_secs_f64();
    }

    /// Runs `expr` as an instant query at `ts` (ns): a vector, or a scalar as one sample.
    async fn query(
        &self,
        tenant: &str,
        expr: &str,
        ts: i64,
    ) -> Result<Vec<(Labels, f64)>, RuleError> {
        let Expr::Sample(sample) = parse_expr(expr)? else {
            return Err(RuleError::NotVector);
        };
        let limits = &self.config.limits_config;
        let q = MetricQuery {
            tenant: tenant.to_string(),
            expr: sample,
            start: ts,
            end: ts,
            step: 0,
            instant: true,
            max_series: limits.max_query_series,
            max_response_bytes: limits.max_query_response_size.0,
        };
        let timeout = limits.query_timeout.0;
        let run = self.engine.metric_query(&q);
        let result = if timeout.is_zero() {
            run.await
        } else {
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => return Err(RuleError::Timeout),
            }
        }
        .map_err(RuleError::Query)?;
        match result.value {
            Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
            Value::Scalar { v, .. } => Ok(vec![(Labels::default(), v)]),
            Value::Matrix(_) => Err(RuleError::NotVector),
        }
    }

    fn external_labels(&self, into: &mut BTreeMap<String, String>) {
        if let Some(ext) = &self.config.ruler.external_labels {
            for (k, v) in ext {
                into.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }

    fn alerting(
        &self,
        rule: &Rule,
        rs: &mut RuleState,
        samples: Vec<(Labels, f64)>,
        ts: i64,
        limit: i64,
    ) -> Result<(), RuleError> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut fresh: Vec<(String, Alert)> = Vec::new();
        for (labels, v) in samples {
            let mut base = Labels::default();
            let mut lbls: BTreeMap<String, String> = BTreeMap::new();
            for l in labels.iter().filter(|l| l.name != "__name__") {
                base.set(&l.name, &l.value);
                lbls.insert(l.name.clone(), l.value.clone());
            }
            for (k, tpl) in &rule.labels {
                lbls.insert(k.clone(), template::expand(&rule.alert, tpl, &base, v, ts));
            }
            lbls.insert("alertname".into(), rule.alert.clone());
            self.external_labels(&mut lbls);
            let annotations: BTreeMap<String, String> = rule
                .annotations
                .iter()
                .map(|(k, tpl)| (k.clone(), template::expand(&rule.alert, tpl, &base, v, ts)))
                .collect();
            let key = serde_json::to_string(&lbls).unwrap_or_default();
            if !seen.insert(key.clone()) {
                return Err(RuleError::DuplicateLabels("alert"));
            }
            fresh.push((
                key,
                Alert {
                    labels: lbls,
                    annotations,
                    state: AlertState::Pending,
                    value: v,
                    active_at_ns: ts,
                    fired_at_ns: 0,
                    resolved_at_ns: 0,
                    last_sent_ns: 0,
                    valid_until_ns: 0,
                    last_seen_ns: ts,
                    keep_firing_since_ns: 0,
                },
            ));
        }
        if limit > 0 && fresh.len() as i64 > limit {
            rs.alerts.clear();
            return Err(RuleError::Limit {
                limit,
                count: fresh.len(),
                what: "alerts",
            });
        }
        for (key, new) in fresh {
            match rs.alerts.get_mut(&key) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = new.value;
                    a.annotations = new.annotations;
                    a.last_seen_ns = ts;
                    a.keep_firing_since_ns = 0;
                }
                _ => {
                    rs.alerts.insert(key, new);
                }
            }
        }
        let for_ns = rule.for_ns();
        let keep_ns = rule.keep_firing_for_ns();
        rs.alerts.retain(|key, a| {
            if !seen.contains(key) {
                match a.state {
                    AlertState::Pending => return false,
                    AlertState::Inactive => return ts - a.resolved_at_ns <= RESOLVED_RETENTION_NS,
                    AlertState::Firing => {
                        if keep_ns > 0 && ts - a.last_seen_ns < keep_ns {
                            if a.keep_firing_since_ns == 0 {
                                a.keep_firing_since_ns = ts;
                            }
                        } else {
                            a.state = AlertState::Inactive;
                            a.resolved_at_ns = ts;
                        }
                        return true;
                    }
                }
            }
            if a.state == AlertState::Pending && ts - a.active_at_ns >= for_ns {
                a.state = AlertState::Firing;
                a.fired_at_ns = ts;
            }
            true
        });
        Ok(())
    }

    fn recording(
        &self,
        rule: &Rule,
        samples: Vec<(Labels, f64)>,
        ts: i64,
        limit: i64,
    ) -> Result<Vec<TimeSeries>, RuleError> {
        if limit > 0 && samples.len() as i64 > limit {
            return Err(RuleError::Limit {
                limit,
                count: samples.len(),
                what: "series",
            });
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(samples.len());
        for (labels, v) in samples {
            let mut lbls: BTreeMap<String, String> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            for (k, val) in &rule.labels {
                lbls.insert(k.clone(), val.clone());
            }
            lbls.insert("__name__".into(), rule.record.clone());
            self.external_labels(&mut lbls);
            if !seen.insert(serde_json::to_string(&lbls).unwrap_or_default()) {
                return Err(RuleError::DuplicateLabels("rule"));
            }
            out.push(remote_write::series(&lbls, v, ts));
        }
        Ok(out)
    }

    /// Prometheus's table link for the expression, under `ruler.external_url`.
    fn generator_url(&self, expr: &str) -> String {
        #[allow(clippy::expect_used, reason = "a constant URL")]
        let mut q = reqwest::Url::parse("http://x/graph").expect("constant URL parses");
        q.query_pairs_mut()
            .append_pair("g0.expr", expr)
            .append_pair("g0.tab", "1");
        format!(
            "{}/graph?{}",
            self.config.ruler.external_url.trim_end_matches('/'),
            q.query().unwrap_or_default()
        )
    }
}

/// Prometheus's rule: pending alerts are never sent; a resolve is sent at once; otherwise
/// at most every `resend` ns.
fn needs_sending(a: &Alert, ts: i64, resend: i64) -> bool {
    match a.state {
        AlertState::Pending => false,
        AlertState::Inactive if a.resolved_at_ns > a.last_sent_ns => true,
        _ => a.last_sent_ns + resend < ts,
    }
}

/// How often the serve timer wakes: the finest grain of group intervals it honours.
const TICK: Duration = Duration::from_secs(1);
/// The ruler lease keeps several backend processes over one bucket from evaluating (and
/// notifying) twice; renewed well inside its lifetime.
const LEASE_TTL: Duration = Duration::from_secs(60);
const LEASE_RENEW: Duration = Duration::from_secs(20);

impl Ruler {
    /// The timer of a long-running server: reports invalid rule files once at start-up, then
    /// evaluates each group when its interval has passed, while this process holds the
    /// ruler lease.
    pub async fn run_forever(self: Arc<Self>) {
        let (n, errs) = self.check_rules().await;
        for e in &errs {
            tracing::error!(error = %e, "invalid rule group; it is skipped until fixed");
        }
        tracing::info!(groups = n, invalid = errs.len(), "ruler started");
        let owner = format!("ruler-{}-{}", std::process::id(), crate::now_ns());
        let mut held_until: Option<Instant> = None;
        loop {
            tokio::time::sleep(TICK).await;
            // Without rules (re-read every poll interval) the lease is not worth its requests.
            if self.groups(&mut PassSummary::default()).await.is_empty() {
                continue;
            }
            let renew = held_until.is_none_or(|t| t.elapsed() >= LEASE_RENEW);
            if renew {
                match self.store.acquire_lease("ruler", &owner, LEASE_TTL).await {
                    Ok(parquetry_store::lease::LeaseState::Held { .. }) => {
                        held_until = Some(Instant::now());
                    }
                    Ok(parquetry_store::lease::LeaseState::Busy { owner, .. }) => {
                        tracing::debug!(%owner, "another process holds the ruler lease");
                        held_until = None;
                        continue;
                    }
                    Err(e) => {
                        // Evaluating twice is better than not alerting at all.
                        tracing::warn!(error = %e, "ruler lease unavailable; evaluating anyway");
                        held_until = Some(Instant::now());
                    }
                }
            }
            let s = self.run_pass(crate::now_ns(), true).await;
            if s.groups_evaluated > 0 {
                tracing::debug!(?s, "ruler pass done");
            }
        }
    }
}

/// Starts the ruler timer of `parquetry serve` on the current runtime.
pub fn spawn(
    config: Arc<Config>,
    store: Arc<Store>,
    engine: QueryEngine,
) -> tokio::task::JoinHandle<()> {
    let ruler = Arc::new(Ruler::new(config, store, engine));
    tokio::spawn(ruler.run_forever())
}

/// Why one rule's evaluation failed. The texts are Prometheus's (as Loki's ruler reports
/// them): they become the rule's `lastError` in the rules API.
#[derive(Debug, thiserror::Error)]
enum RuleError {
    /// The expression does not parse.
    #[error(transparent)]
    Parse(#[from] parquetry_logql::ParseError),
    /// A log query, or a metric query that answered a matrix.
    #[error("rule result is not a vector or scalar")]
    NotVector,
    /// `limits_config.query_timeout` elapsed.
    #[error("rule evaluation failed: query timed out")]
    Timeout,
    /// The query itself failed.
    #[error("rule evaluation failed: {0}")]
    Query(#[source] parquetry_query::QueryError),
    /// The group's `limit` on alerts or series was exceeded.
    #[error("exceeded limit of {limit} with {count} {what}")]
    Limit {
        limit: i64,
        count: usize,
        what: &'static str,
    },
    /// Two samples became one label set once the rule's (`alert` or `rule`) labels applied.
    #[error("vector contains metrics with the same labelset after applying {0} labels")]
    DuplicateLabels(&'static str),
}
