//! The maintenance pass over a real store in a temporary directory: what each step does, how
//! the lease decides who runs, and which failures fail the pass.

use std::sync::Arc;
use std::time::Duration;

use parquetry_host::{FailOn, HostError, Lease, Leased, Maintenance, PassReport, open_store};
use parquetry_model::{Config, Labels};
use parquetry_store::compact::{CompactSummary, NoProgress};
use parquetry_store::faulty::FaultyStore;
use parquetry_store::{LogEntry, Store, StoreError, StreamEntries};

use parquetry_test_support::s3::storage_env_for_run;
use parquetry_test_support::{DAY_NS, early_yesterday as yesterday};

fn config(dir: &std::path::Path, retention: bool) -> Config {
    // A temporary directory, or with `PARQUETRY_TEST_BACKEND=s3` a prefix of the test bucket.
    let mut env = storage_env_for_run(dir, "host");
    env.extend([
        // The objects written just now count as old enough to compact.
        (
            "PARQUETRY__COMPACTOR__HOT_OBJECT_MIN_AGE".to_string(),
            "0s".into(),
        ),
        (
            "PARQUETRY__COMPACTOR__RETENTION_DELETE_DELAY".into(),
            "0s".into(),
        ),
        (
            "PARQUETRY__LIMITS_CONFIG__RETENTION_PERIOD".into(),
            "7d".into(),
        ),
    ]);
    if retention {
        env.push((
            "PARQUETRY__COMPACTOR__RETENTION_ENABLED".into(),
            "true".into(),
        ));
    }
    parquetry_host::load_lambda_config(env).unwrap()
}

fn push(seq: i64, base: i64) -> Vec<StreamEntries> {
    ["api", "web"]
        .iter()
        .map(|svc| StreamEntries {
            labels: Labels::from_pairs([("service_name", svc.to_string())]),
            entries: (0..3)
                .map(|i| LogEntry {
                    ts_ns: base + seq * 1_000_000 + i,
                    line: format!("{svc} push {seq} line {i}").into(),
                    structured_metadata: Vec::new(),
                })
                .collect(),
        })
        .collect()
}

async fn objects(store: &Store, base: i64) -> usize {
    store
        .list("fake", base - DAY_NS, base + DAY_NS, |_| true)
        .await
        .unwrap()
        .len()
}

fn pass(config: Config) -> Maintenance {
    let store = open_store(&config).unwrap();
    Maintenance::new(Arc::new(config), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_compacts_deletes_and_applies_retention_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let pass = pass(config(dir.path(), true));
    let store = pass.store().clone();
    let (recent, old) = (yesterday(), yesterday() - 30 * DAY_NS);
    for seq in 0..3 {
        store.write("fake", push(seq, recent)).await.unwrap();
    }
    store.write("fake", push(0, old)).await.unwrap();
    assert_eq!(objects(&store, recent).await, 6);

    let report = pass.run(&NoProgress).await;
    let compaction = report.compaction.as_ref().unwrap();
    // Three pushes of two partitions merged; the old day's single objects have nothing to merge.
    assert_eq!(compaction.hot_absorbed, 6, "{report:?}");
    assert!(report.deletes.is_ok(), "{report:?}");
    let retention = report.retention.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(retention.expired.len(), 1, "{report:?}");
    assert_eq!(objects(&store, recent).await, 2);
    assert_eq!(objects(&store, old).await, 0);

    let summary = report.summary(store.url());
    assert_eq!(summary["compaction"]["hot_absorbed"], 6, "{summary}");
    assert_eq!(summary["retention"]["days_expired"], 1, "{summary}");
    assert_eq!(summary["storage"], store.url(), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retention_keeps_expired_days() {
    let dir = tempfile::tempdir().unwrap();
    let pass = pass(config(dir.path(), true)).without_retention();
    assert!(!pass.retention_enabled());
    let old = yesterday() - 30 * DAY_NS;
    pass.store().write("fake", push(0, old)).await.unwrap();
    let report = pass.run(&NoProgress).await;
    assert!(report.retention.is_none());
    assert_eq!(report.summary("x")["retention"]["enabled"], false);
    // Still there: one object per partition.
    assert_eq!(objects(pass.store(), old).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_keeps_the_lease_and_an_invocation_hands_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = pass(config(dir.path(), false));
    let b = pass(config(dir.path(), false));
    let timer = Lease::for_timer(Duration::from_millis(500));
    assert_eq!(timer.ttl, Duration::from_secs(60));
    assert!(!timer.release);

    // The timer renews its own lease at every tick and keeps it between ticks.
    assert!(matches!(
        a.run_leased(&timer, &NoProgress).await,
        Leased::Ran(_)
    ));
    assert!(matches!(
        a.run_leased(&timer, &NoProgress).await,
        Leased::Ran(_)
    ));
    let invocation = Lease::for_invocation("req-1");
    match b.run_leased(&invocation, &NoProgress).await {
        Leased::Skipped { holder } => assert_eq!(holder, timer.owner),
        Leased::Ran(r) => panic!("ran while the timer held the lease: {r:?}"),
    }

    // Once the timer's holder lets go, an invocation runs and releases after its pass, so the
    // next invocation is not kept waiting.
    a.store()
        .release_lease("compactor", &timer.owner)
        .await
        .unwrap();
    assert!(matches!(
        b.run_leased(&invocation, &NoProgress).await,
        Leased::Ran(_)
    ));
    let next = Lease::for_invocation("req-2");
    assert!(matches!(
        a.run_leased(&next, &NoProgress).await,
        Leased::Ran(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lease_does_not_stop_the_pass_and_failures_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), true);
    let inner = open_store(&config).unwrap().object_store();
    let faulty = Arc::new(FaultyStore::new(inner));
    // Every list, put and delete fails from the first on: the lease cannot be read, and every
    // step fails.
    faulty.crash_at(1);
    let store = Arc::new(Store::from_object_store(
        faulty,
        "faulty://",
        config.storage.partition_labels.clone(),
    ));
    let pass = Maintenance::new(Arc::new(config), store);
    let report = match pass
        .run_leased(&Lease::for_invocation("req"), &NoProgress)
        .await
    {
        Leased::Ran(report) => *report,
        Leased::Skipped { holder } => panic!("skipped for {holder}"),
    };
    assert!(
        report.compaction.is_err() && report.deletes.is_err(),
        "{report:?}"
    );
    assert!(matches!(report.retention, Some(Err(_))), "{report:?}");
    assert_eq!(report.summary("faulty://")["compaction"]["ok"], false);
    let err = report
        .into_result(FailOn::CompactionOrRetention)
        .unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Pass {
                step: "compaction",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "compaction pass failed");
}

fn report(deletes_fail: bool, retention_fails: bool) -> PassReport {
    let injected = || StoreError::Conflict("injected".into());
    PassReport {
        compaction: Ok(CompactSummary::default()),
        deletes: if deletes_fail {
            Err(injected())
        } else {
            Ok(Default::default())
        },
        retention: retention_fails.then(|| Err(injected())),
        elapsed: Duration::ZERO,
    }
}

#[test]
fn which_failures_fail_the_pass() {
    // The compactor function leaves a failed delete pass to the next invocation ...
    assert!(
        report(true, false)
            .into_result(FailOn::CompactionOrRetention)
            .is_ok()
    );
    // ... `parquetry compact --once` reports it in its exit status.
    let err = report(true, false)
        .into_result(FailOn::AnyStep)
        .unwrap_err();
    assert_eq!(err.to_string(), "delete pass failed");
    let err = report(false, true)
        .into_result(FailOn::CompactionOrRetention)
        .unwrap_err();
    assert_eq!(err.to_string(), "retention pass failed");
    assert!(report(false, false).into_result(FailOn::AnyStep).is_ok());
}
