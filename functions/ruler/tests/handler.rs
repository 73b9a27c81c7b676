//! The ruler function's handler fed with a recorded EventBridge "Scheduled Event", against a
//! real store in a temporary directory, configuration from environment variables as in
//! Lambda: rules stored through the rule store, logs through the store, state checked in the
//! bucket across two invocations of two separate function instances.

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{Context, LambdaEvent};
use parquetry_host::load_lambda_config as load_config;
use parquetry_lambda_ruler::RulerFunction;
use parquetry_model::Labels;
use parquetry_ruler::state::{self, AlertState, rule_key};
use parquetry_ruler::{RuleStore, rules::parse_group};
use parquetry_store::{LogEntry, Store, StreamEntries};
use parquetry_test_support::now_ns;

const SCHEDULED: &str = include_str!("events/eventbridge-scheduled.json");

fn scheduled_event() -> LambdaEvent<CloudWatchEvent> {
    let event: CloudWatchEvent = serde_json::from_str(SCHEDULED).unwrap();
    assert_eq!(event.detail_type.as_deref(), Some("Scheduled Event"));
    LambdaEvent::new(event, Context::default())
}

const GROUP: &str = "name: errors\nrules:\n- alert: ApiErrors\n  expr: sum by (service_name) (count_over_time({service_name=\"api\"} |= \"error\" [5m])) > 2\n  labels:\n    severity: page\n  annotations:\n    summary: '{{ $labels.service_name }} logged {{ $value }} errors'\n- record: api:lines:count5m\n  expr: sum(count_over_time({service_name=\"api\"}[5m]))\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_event_evaluates_rules_and_keeps_state_in_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "PARQUETRY__STORAGE__URL".to_string(),
        format!("file://{}", dir.path().display()),
    )];
    let config = load_config(env.clone()).unwrap();
    let store = Store::open_config(&config.storage_url(), &config.storage).unwrap();
    let group = parse_group(GROUP).unwrap();
    RuleStore::bucket(store.object_store())
        .set_group("fake", "team-a", &group)
        .await
        .unwrap();
    let t = now_ns() - 30_000_000_000;
    let entries = (0..4)
        .map(|i| LogEntry {
            ts_ns: t + i * 1_000_000,
            line: format!("level=error request {i} failed").into(),
            structured_metadata: Vec::new(),
        })
        .chain(std::iter::once(LogEntry {
            ts_ns: t + 10_000_000,
            line: "level=info fine".into(),
            structured_metadata: Vec::new(),
        }))
        .collect();
    store
        .write(
            "fake",
            vec![StreamEntries {
                labels: Labels::from_pairs([("service_name", "api")]),
                entries,
            }],
        )
        .await
        .unwrap();

    let summary = RulerFunction::new(load_config(env.clone()).unwrap())
        .unwrap()
        .handle(scheduled_event())
        .await
        .unwrap();
    assert_eq!(summary["groups_evaluated"], 1, "{summary}");
    assert_eq!(summary["rules_evaluated"], 2, "{summary}");
    assert_eq!(summary["rule_errors"], 0, "{summary}");
    assert_eq!(summary["alerts_firing"], 1, "{summary}");

    let objects = store.object_store();
    let st = state::load(objects.as_ref(), "fake", "team-a", "errors")
        .await
        .unwrap();
    let alerts = &st.rules[&rule_key(&group.rules[0])].alerts;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = alerts.values().next().unwrap();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.value, 4.0);
    assert_eq!(a.labels["severity"], "page");
    assert_eq!(a.labels["alertname"], "ApiErrors");
    assert_eq!(a.annotations["summary"], "api logged 4 errors");
    let fired_at = a.fired_at_ns;
    assert!(fired_at > 0);
    assert_eq!(st.rules[&rule_key(&group.rules[1])].health, "ok");

    // A new execution environment carries on from the bucket: the alert is still the one
    // that fired first, not a new one.
    let again = RulerFunction::new(load_config(env).unwrap())
        .unwrap()
        .handle(scheduled_event())
        .await
        .unwrap();
    assert_eq!(again["alerts_firing"], 1, "{again}");
    let st = state::load(objects.as_ref(), "fake", "team-a", "errors")
        .await
        .unwrap();
    let a = st.rules[&rule_key(&group.rules[0])]
        .alerts
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(a.fired_at_ns, fired_at);
}
