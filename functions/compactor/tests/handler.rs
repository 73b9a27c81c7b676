//! The compactor function's handler fed with a recorded EventBridge "Scheduled Event" (what an
//! EventBridge schedule rule delivers), against a real store in a temporary directory, with the
//! configuration read from environment variables as in Lambda.

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{Context, LambdaEvent};
use parquetry_host::load_lambda_config as load_config;
use parquetry_lambda_compactor::Compactor;
use parquetry_model::Labels;
use parquetry_store::compact::{Row, read_all_rows};
use parquetry_store::{DataObject, LogEntry, Store, StreamEntries};
use parquetry_test_support::{DAY_NS, early_yesterday as yesterday};

const SCHEDULED: &str = include_str!("events/eventbridge-scheduled.json");

fn env(dir: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PARQUETRY__STORAGE__URL".to_string(),
            format!("file://{}", dir.display()),
        ),
        // The objects written just now count as old enough to compact.
        (
            "PARQUETRY__COMPACTOR__HOT_OBJECT_MIN_AGE".into(),
            "0s".into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// One push: a few entries for two pods in each of two partitions.
fn push(seq: i64, base: i64) -> Vec<StreamEntries> {
    ["api", "web"]
        .iter()
        .flat_map(|svc| {
            (0..2).map(move |pod| StreamEntries {
                labels: Labels::from_pairs([
                    ("service_name", svc.to_string()),
                    ("pod", format!("p{pod}")),
                ]),
                entries: (0..5)
                    .map(|i| LogEntry {
                        ts_ns: base + seq * 1_000_000 + i * 1_000,
                        line: format!("{svc} p{pod} push {seq} line {i}").into(),
                        structured_metadata: Vec::new(),
                    })
                    .collect(),
            })
        })
        .collect()
}

async fn visible(store: &Store, base: i64) -> (Vec<DataObject>, Vec<Row>) {
    let objs = store
        .list("fake", base - DAY_NS, base + DAY_NS, |_| true)
        .await
        .unwrap();
    let mut rows = read_all_rows(store, &objs).await.unwrap();
    rows.sort();
    (objs, rows)
}

fn scheduled_event() -> LambdaEvent<CloudWatchEvent> {
    let event: CloudWatchEvent = serde_json::from_str(SCHEDULED).unwrap();
    assert_eq!(event.detail_type.as_deref(), Some("Scheduled Event"));
    assert_eq!(event.source.as_deref(), Some("aws.events"));
    assert_eq!(event.detail, Some(serde_json::json!({})));
    LambdaEvent::new(event, Context::default())
}

/// The function's start-up from `env`, and a store handle of the test's own on the same URL.
fn start(env: Vec<(String, String)>) -> (Compactor, Store) {
    let config = load_config(env).unwrap();
    let store = Store::open_config(&config.storage_url(), &config.storage).unwrap();
    (Compactor::new(config).unwrap(), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_event_compacts_hot_objects_without_changing_content() {
    let dir = tempfile::tempdir().unwrap();
    let (compactor, store) = start(env(dir.path(), &[]));
    let base = yesterday();
    for seq in 0..6 {
        store.write("fake", push(seq, base)).await.unwrap();
    }
    let (before_objs, before) = visible(&store, base).await;
    // Partitioned by service_name: one object per partition per push.
    assert_eq!(before_objs.len(), 12);
    assert_eq!(before.len(), 6 * 4 * 5);

    let summary = compactor.handle(scheduled_event()).await.unwrap();

    let (after_objs, after) = visible(&store, base).await;
    assert_eq!(after_objs.len(), 2, "{after_objs:?}");
    assert_eq!(after, before);
    assert_eq!(summary["compaction"]["ok"], true, "{summary}");
    assert_eq!(summary["compaction"]["hot_absorbed"], 12, "{summary}");
    assert_eq!(summary["compaction"]["cold_written"], 2, "{summary}");
    assert_eq!(summary["retention"]["enabled"], false, "{summary}");

    // A second scheduled pass finds nothing to do and changes nothing.
    let again = compactor.handle(scheduled_event()).await.unwrap();
    assert_eq!(again["compaction"]["hot_absorbed"], 0, "{again}");
    assert_eq!(visible(&store, base).await.1, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_pass_runs_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let (compactor, store) = start(env(
        dir.path(),
        &[
            ("PARQUETRY__COMPACTOR__RETENTION_ENABLED", "true"),
            ("PARQUETRY__COMPACTOR__RETENTION_DELETE_DELAY", "0s"),
            ("PARQUETRY__LIMITS_CONFIG__RETENTION_PERIOD", "7d"),
        ],
    ));
    let old = yesterday() - 30 * DAY_NS;
    let recent = yesterday();
    store.write("fake", push(0, old)).await.unwrap();
    store.write("fake", push(0, recent)).await.unwrap();
    let (_, recent_rows) = visible(&store, recent).await;

    let summary = compactor.handle(scheduled_event()).await.unwrap();

    assert_eq!(summary["retention"]["ok"], true, "{summary}");
    assert_eq!(summary["retention"]["days_expired"], 1, "{summary}");
    assert!(visible(&store, old).await.0.is_empty());
    assert_eq!(visible(&store, recent).await.1, recent_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pass_is_an_invocation_error() {
    let dir = tempfile::tempdir().unwrap();
    let (compactor, store) = start(env(dir.path(), &[]));
    store.write("fake", push(0, yesterday())).await.unwrap();
    store.write("fake", push(1, yesterday())).await.unwrap();
    // A manifest that does not parse: the day cannot be compacted safely. (A damaged data
    // object would not do: the merge leaves it out and goes on.)
    let victim = walk(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    let manifests = victim
        .parent()
        .and_then(|partition| partition.parent())
        .unwrap()
        .join(parquetry_store::manifest::MANIFEST_DIR);
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join(format!("{:020}.json", 1)), b"not a manifest").unwrap();

    let err = compactor.handle(scheduled_event()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("compaction pass failed"),
        "{err:#}"
    );
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A compactor that holds the lease in the bucket (a pass still running, or a `parquetry
/// serve` backend) makes a scheduled invocation skip its pass; once released, the next runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_skips_while_another_compactor_holds_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (compactor, store) = start(env(dir.path(), &[]));
    let base = yesterday();
    for seq in 0..6 {
        store.write("fake", push(seq, base)).await.unwrap();
    }
    store
        .acquire_lease("compactor", "server-1", std::time::Duration::from_secs(600))
        .await
        .unwrap();
    let skipped = compactor.handle(scheduled_event()).await.unwrap();
    assert!(
        skipped["skipped"]
            .as_str()
            .unwrap_or("")
            .contains("server-1"),
        "{skipped}"
    );
    assert_eq!(visible(&store, base).await.0.len(), 12, "nothing compacted");

    store.release_lease("compactor", "server-1").await.unwrap();
    let ran = compactor.handle(scheduled_event()).await.unwrap();
    assert_eq!(ran["compaction"]["hot_absorbed"], 12, "{ran}");
}
