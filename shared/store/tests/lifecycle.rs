//! Storage lifecycle: compaction, manifests and retention, on a local directory and (when the
//! `PARQUETRY_TEST_S3_*` server of scripts/test.sh is up) on S3, including crash tests that fail
//! the k-th store operation for every k and a concurrency test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquetry_model::Labels;
use parquetry_model::config::{S3Config, Secret, StorageConfig};
use parquetry_store::compact::{NoProgress, Row, read_all_rows};
use parquetry_store::faulty::FaultyStore;
use parquetry_store::manifest::is_cold_id;
use parquetry_store::{
    CompactOptions, DataObject, LogEntry, RetentionOptions, Store, StreamEntries,
};

use parquetry_test_support::s3::S3Env;
use parquetry_test_support::{DAY_NS, early_yesterday, unique_prefix};

/// A fresh, empty location on each backend available: a temporary directory, and a unique
/// prefix on the S3 test server when configured.
struct Backend {
    name: &'static str,
    url: String,
    inner: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

fn s3_storage() -> Option<(String, StorageConfig)> {
    let e = S3Env::optional()?;
    let cfg = StorageConfig {
        s3: S3Config {
            endpoint: Some(e.endpoint),
            region: Some(e.region),
            access_key_id: Some(e.access_key_id),
            secret_access_key: Some(Secret::new(e.secret_access_key)),
            ..Default::default()
        },
        ..StorageConfig::default()
    };
    Some((e.bucket, cfg))
}

fn backends() -> Vec<fn() -> Backend> {
    let mut out: Vec<fn() -> Backend> = vec![local_backend];
    if s3_storage().is_some() {
        out.push(s3_backend);
    }
    out
}

fn local_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    Backend {
        name: "local",
        url: dir.path().display().to_string(),
        inner,
        _dir: Some(dir),
    }
}

fn s3_backend() -> Backend {
    let (bucket, cfg) = s3_storage().unwrap();
    let url = format!("s3://{bucket}/{}", unique_prefix("lifecycle-tests"));
    let store = Store::open_with_env(&url, &cfg, []).unwrap();
    Backend {
        name: "s3",
        url,
        inner: store.object_store(),
        _dir: None,
    }
}

impl Backend {
    fn store(&self) -> Store {
        Store::from_object_store(self.inner.clone(), &self.url, vec!["service_name".into()])
    }
    fn faulty(&self) -> (Arc<FaultyStore>, Store) {
        let f = Arc::new(FaultyStore::new(self.inner.clone()));
        let s = Store::from_object_store(f.clone(), &self.url, vec!["service_name".into()]);
        (f, s)
    }
}

fn opts(delay: Duration) -> CompactOptions {
    CompactOptions {
        hot_min_age: Duration::ZERO,
        target_size: 256 << 20,
        delete_delay: delay,
        max_inputs: 1000,
    }
}

/// One push: `n` entries for each of a few streams in two partitions, at `base` + small steps.
fn push(seq: i64, base: i64, n: i64) -> Vec<StreamEntries> {
    ["api", "web"]
        .iter()
        .flat_map(|svc| {
            (0..2).map(move |pod| StreamEntries {
                labels: Labels::from_pairs([
                    ("service_name", svc.to_string()),
                    ("pod", format!("p{pod}")),
                ]),
                entries: (0..n)
                    .map(|i| LogEntry {
                        ts_ns: base + seq * 1_000_000 + i * 1_000,
                        line: format!("{svc} p{pod} push {seq} line {i}").into(),
                        structured_metadata: vec![(
                            "trace_id".into(),
                            format!("t{seq}-{i}").into(),
                        )],
                    })
                    .collect(),
            })
        })
        .collect()
}

async fn visible(store: &Store, tenant: &str, start: i64, end: i64) -> (Vec<DataObject>, Vec<Row>) {
    let objs = store.list(tenant, start, end, |_| true).await.unwrap();
    let rows = read_all_rows(store, &objs).await.unwrap();
    (objs, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_preserves_content_and_shrinks_object_count() {
    for make in backends() {
        let b = make();
        let store = b.store();
        let base = early_yesterday();
        for seq in 0..12 {
            store.write("fake", push(seq, base, 5)).await.unwrap();
        }
        let (before_objs, before) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(before_objs.len(), 24, "{}", b.name);
        assert_eq!(before.len(), 12 * 4 * 5);

        let s = store
            .compact(&opts(Duration::ZERO), &NoProgress)
            .await
            .unwrap();
        assert_eq!(s.cold_written, 2, "{}: {s:?}", b.name);
        assert_eq!(s.hot_absorbed, 24);
        assert_eq!(s.absorbed_deleted, 24);
        let (after_objs, after) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(after, before, "{}", b.name);
        assert_eq!(after_objs.len(), 2);
        // Only the two cold objects and the manifest remain in the store.
        let keys = store.list_keys("").await.unwrap();
        assert_eq!(keys.len(), 3, "{}: {keys:?}", b.name);

        // The catalog is exact and the cold object is a sorted, bloom-filtered v1 object.
        for o in &after_objs {
            assert!(is_cold_id(&o.key.id));
            let cat = store.catalog(o).await.unwrap();
            assert_eq!(cat.streams.len(), 2);
            assert_eq!(
                cat.streams.iter().map(|s| s.entries).sum::<u64>(),
                12 * 2 * 5
            );
            let bytes = store.read_key(o.path.as_ref()).await.unwrap();
            let reader = SerializedFileReader::new(bytes).unwrap();
            let rg = reader.metadata().row_group(0);
            assert!(rg.column(1).bloom_filter_offset().is_some());
            assert!(
                reader.metadata().column_index().is_some()
                    || rg.column(0).column_index_offset().is_some()
            );
            let rows = read_all_rows(&store, std::slice::from_ref(o))
                .await
                .unwrap();
            // read_all_rows sorts; check the file order separately.
            let file_order = file_rows(&store, o).await;
            assert_eq!(file_order.len(), rows.len());
            assert!(file_order.windows(2).all(|w| w[0] <= w[1]), "not sorted");
        }

        // A second pass has nothing to do and changes nothing.
        let s2 = store
            .compact(&opts(Duration::ZERO), &NoProgress)
            .await
            .unwrap();
        assert_eq!(s2.cold_written, 0, "{s2:?}");
        assert_eq!(
            visible(&store, "fake", base - DAY_NS, base + DAY_NS)
                .await
                .1,
            before
        );

        // New pushes after compaction: hot again, alongside the cold ones, then absorbed.
        store.write("fake", push(100, base, 3)).await.unwrap();
        let (objs, rows) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(objs.len(), 4);
        assert_eq!(rows.len(), before.len() + 12);
        // The day is over, so its small cold objects are merged again with the new hot ones.
        let s3 = store
            .compact(&opts(Duration::ZERO), &NoProgress)
            .await
            .unwrap();
        assert_eq!(
            (
                s3.cold_written,
                s3.cold_rewritten,
                s3.hot_absorbed,
                s3.orphans_deleted
            ),
            (2, 2, 2, 0),
            "{s3:?}"
        );
        let (objs2, rows2) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(objs2.len(), 2);
        assert_eq!(rows2, rows);
        assert_eq!(store.list_keys("").await.unwrap().len(), 3, "{}", b.name);
    }
}

async fn file_rows(store: &Store, o: &DataObject) -> Vec<(u64, i64)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{TimestampNanosecondType, UInt64Type};
    let bytes = store.read_key(o.path.as_ref()).await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let ts = b.column(0).as_primitive::<TimestampNanosecondType>();
        let st = b.column(1).as_primitive::<UInt64Type>();
        for r in 0..b.num_rows() {
            out.push((st.value(r), ts.value(r)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_keeps_absorbed_objects_hidden_until_deleted() {
    for make in backends() {
        let b = make();
        let store = b.store();
        let base = early_yesterday();
        for seq in 0..4 {
            store.write("fake", push(seq, base, 2)).await.unwrap();
        }
        let (_, before) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        let s = store
            .compact(&opts(Duration::from_secs(3600)), &NoProgress)
            .await
            .unwrap();
        assert_eq!((s.cold_written, s.absorbed_deleted), (2, 0), "{s:?}");
        // Absorbed hot objects are still stored but hidden: no entry is seen twice.
        assert_eq!(
            store.list_keys("").await.unwrap().len(),
            8 + 2 + 2,
            "one manifest version per commit"
        );
        let (objs, rows) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(objs.len(), 2, "{}", b.name);
        assert_eq!(rows, before);
        // An orphan cold object (a crashed compaction) is invisible and survives the grace.
        let orphan = objs[0].key.clone();
        let mut k = orphan.clone();
        k.id = "c_deadbeef".into();
        store
            .object_store()
            .put(
                &k.to_path(),
                store.read_key(objs[0].path.as_ref()).await.unwrap().into(),
            )
            .await
            .unwrap();
        assert_eq!(
            visible(&store, "fake", base - DAY_NS, base + DAY_NS)
                .await
                .1,
            before
        );
        let s = store
            .compact(&opts(Duration::from_secs(3600)), &NoProgress)
            .await
            .unwrap();
        assert_eq!(s.orphans_deleted, 0);
        // Once the grace is over, everything superseded goes.
        let s = store
            .compact(&opts(Duration::ZERO), &NoProgress)
            .await
            .unwrap();
        assert_eq!((s.absorbed_deleted, s.orphans_deleted), (8, 1), "{s:?}");
        assert_eq!(
            visible(&store, "fake", base - DAY_NS, base + DAY_NS)
                .await
                .1,
            before
        );
        assert_eq!(store.list_keys("").await.unwrap().len(), 2 + 1);
    }
}

/// For every k: fail the k-th put/delete/list of a compaction pass (and everything after, as a
/// crash would), check queries see exactly the content from before, then a clean pass finishes
/// the job with the same content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_a_crash_at_every_step() {
    for make in backends() {
        let mut k = 1;
        loop {
            let b = make();
            let (faulty, store) = b.faulty();
            let base = early_yesterday();
            for seq in 0..3 {
                store.write("fake", push(seq, base, 2)).await.unwrap();
            }
            // Cold objects already there, with absorbed objects still in their grace period,
            // then more pushes: the crashed pass absorbs hot objects, rewrites cold ones and
            // collects garbage.
            store
                .compact(&opts(Duration::from_secs(3600)), &NoProgress)
                .await
                .unwrap();
            for seq in 3..5 {
                store.write("fake", push(seq, base, 2)).await.unwrap();
            }
            let range = (base - DAY_NS, base + DAY_NS);
            let (_, before) = visible(&store, "fake", range.0, range.1).await;
            faulty.crash_at(k);
            let crashed = store.compact(&opts(Duration::ZERO), &NoProgress).await;
            let reached = faulty.ops() >= k;
            faulty.heal();
            assert_eq!(
                visible(&store, "fake", range.0, range.1).await.1,
                before,
                "{}: after a crash at operation {k}",
                b.name
            );
            store
                .compact(&opts(Duration::ZERO), &NoProgress)
                .await
                .unwrap_or_else(|e| panic!("{}: clean pass after crash at {k}: {e}", b.name));
            // A third pass collects what the crashed one left (orphans need their own pass
            // after being seen).
            store
                .compact(&opts(Duration::ZERO), &NoProgress)
                .await
                .unwrap();
            let (objs, after) = visible(&store, "fake", range.0, range.1).await;
            assert_eq!(after, before, "{}: crash at {k}", b.name);
            assert_eq!(objs.len(), 2, "{}: crash at {k}: {objs:?}", b.name);
            let keys = store.list_keys("").await.unwrap();
            assert_eq!(
                keys.len(),
                3,
                "{}: crash at {k}: garbage left {keys:?}",
                b.name
            );
            if !reached {
                assert!(crashed.is_ok());
                eprintln!(
                    "{}: compaction crash-tested at all {} operations",
                    b.name,
                    k - 1
                );
                break;
            }
            assert!(crashed.is_err(), "crash at {k} not reported");
            k += 1;
        }
        assert!(k > 10, "too few operations to be a meaningful test: {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_survives_a_crash_at_every_step() {
    for make in backends() {
        let mut k = 1;
        loop {
            let b = make();
            let (faulty, store) = b.faulty();
            let recent = early_yesterday();
            let old = recent - 10 * DAY_NS;
            for seq in 0..3 {
                store.write("fake", push(seq, recent, 2)).await.unwrap();
                store.write("fake", push(seq, old, 2)).await.unwrap();
                store.write("other", push(seq, old, 2)).await.unwrap();
            }
            // Part of the old day compacted, so manifests are in play too.
            store
                .compact(&opts(Duration::ZERO), &NoProgress)
                .await
                .unwrap();
            store.write("fake", push(9, old, 2)).await.unwrap();
            let recent_range = (recent - DAY_NS / 2, recent + DAY_NS / 2);
            let old_range = (old - DAY_NS / 2, old + DAY_NS / 2);
            let (_, recent_rows) = visible(&store, "fake", recent_range.0, recent_range.1).await;
            let (_, old_rows) = visible(&store, "fake", old_range.0, old_range.1).await;
            let (_, other_rows) = visible(&store, "other", old_range.0, old_range.1).await;
            assert_eq!(old_rows.len(), 4 * 4 * 2);
            // `fake` keeps 5 days, `other` forever.
            let period = |t: &str| {
                if t == "fake" {
                    Duration::from_secs(5 * 86_400)
                } else {
                    Duration::ZERO
                }
            };
            let ropts = RetentionOptions {
                delete_delay: Duration::ZERO,
                dry_run: false,
            };
            faulty.crash_at(k);
            let crashed = store.retention(period, &ropts).await;
            let reached = faulty.ops() >= k;
            faulty.heal();
            let check = |stage: &'static str| {
                let store = &store;
                let recent_rows = &recent_rows;
                let old_rows = &old_rows;
                let other_rows = &other_rows;
                let name = b.name;
                async move {
                    assert_eq!(
                        &visible(store, "fake", recent_range.0, recent_range.1)
                            .await
                            .1,
                        recent_rows,
                        "{name}: {stage} crash at {k}"
                    );
                    assert_eq!(
                        &visible(store, "other", old_range.0, old_range.1).await.1,
                        other_rows
                    );
                    let old_now = visible(store, "fake", old_range.0, old_range.1).await.1;
                    // All or nothing: a day never disappears piecemeal.
                    assert!(
                        old_now.is_empty() || &old_now == old_rows,
                        "{name}: {stage} crash at {k}: {} of {} old rows",
                        old_now.len(),
                        old_rows.len()
                    );
                    old_now.is_empty()
                }
            };
            check("after").await;
            let dry = store
                .retention(
                    period,
                    &RetentionOptions {
                        dry_run: true,
                        ..ropts.clone()
                    },
                )
                .await
                .unwrap();
            assert!(dry.expired.iter().all(|d| d.tenant == "fake" && !d.deleted));
            store.retention(period, &ropts).await.unwrap();
            assert!(check("clean").await, "{}: old day still visible", b.name);
            let keys = store.list_keys("v1/tenant=fake").await.unwrap();
            assert!(
                keys.iter()
                    .all(|(key, _)| !key.contains(&parquetry_store::layout::day_of(old))),
                "{}: crash at {k}: left {keys:?}",
                b.name
            );
            if !reached {
                assert!(crashed.is_ok());
                eprintln!(
                    "{}: retention crash-tested at all {} operations",
                    b.name,
                    k - 1
                );
                break;
            }
            k += 1;
        }
        assert!(k > 5, "too few operations: {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_dry_run_lists_and_keeps() {
    let b = local_backend();
    let store = b.store();
    let old = early_yesterday() - 40 * DAY_NS;
    store.write("fake", push(0, old, 2)).await.unwrap();
    store
        .write("fake", push(0, early_yesterday(), 2))
        .await
        .unwrap();
    let before = store.list_keys("").await.unwrap();
    let ropts = RetentionOptions {
        delete_delay: Duration::from_secs(3600),
        dry_run: true,
    };
    let s = store
        .retention(|_| Duration::from_secs(30 * 86_400), &ropts)
        .await
        .unwrap();
    assert_eq!(s.expired.len(), 1);
    assert_eq!(s.expired[0].day, parquetry_store::layout::day_of(old));
    assert_eq!(s.expired[0].objects, 2);
    assert_eq!(store.list_keys("").await.unwrap(), before);
    // Marked, not yet deleted: invisible, still stored.
    let ropts = RetentionOptions {
        dry_run: false,
        ..ropts
    };
    let s = store
        .retention(|_| Duration::from_secs(30 * 86_400), &ropts)
        .await
        .unwrap();
    assert!(!s.expired[0].deleted);
    assert!(
        visible(&store, "fake", old - DAY_NS, old + DAY_NS)
            .await
            .1
            .is_empty()
    );
    assert_eq!(store.list_keys("").await.unwrap().len(), before.len() + 1);
    // Zero keeps forever.
    let s = store.retention(|_| Duration::ZERO, &ropts).await.unwrap();
    assert!(s.expired.is_empty());
}

/// Pushes, queries and two compactors at once: every query sees at least everything
/// acknowledged before it started and at most everything started before it ended, and the
/// final count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_queries_and_compactions_concurrently() {
    for make in backends() {
        let b = make();
        let store = Arc::new(b.store());
        let base = early_yesterday();
        let per_push = 4 * 3;
        let pushes = 40;
        let acked = Arc::new(AtomicU64::new(0));
        let started = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let range = (base - DAY_NS, base + DAY_NS);

        let writer = {
            let (store, acked, started) = (store.clone(), acked.clone(), started.clone());
            tokio::spawn(async move {
                for seq in 0..pushes {
                    started.fetch_add(per_push, Ordering::SeqCst);
                    store.write("fake", push(seq, base, 3)).await.unwrap();
                    acked.fetch_add(per_push, Ordering::SeqCst);
                }
            })
        };
        let compactors: Vec<_> = (0..2)
            .map(|_| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    let mut passes = 0;
                    while !done.load(Ordering::SeqCst) {
                        store
                            .compact(&opts(Duration::from_millis(1500)), &NoProgress)
                            .await
                            .unwrap();
                        passes += 1;
                    }
                    passes
                })
            })
            .collect();
        let reader = {
            let (store, acked, started, done) =
                (store.clone(), acked.clone(), started.clone(), done.clone());
            tokio::spawn(async move {
                let mut queries = 0;
                while !done.load(Ordering::SeqCst) {
                    let lo = acked.load(Ordering::SeqCst);
                    let objs = store
                        .list("fake", range.0, range.1, |_| true)
                        .await
                        .unwrap();
                    let cats = store.catalogs(&objs).await.unwrap();
                    let n: u64 = cats
                        .iter()
                        .flat_map(|c| c.streams.iter())
                        .map(|s| s.entries)
                        .sum();
                    let hi = started.load(Ordering::SeqCst);
                    assert!(
                        lo <= n && n <= hi,
                        "query saw {n} entries, expected {lo}..={hi}"
                    );
                    queries += 1;
                }
                queries
            })
        };
        writer.await.unwrap();
        done.store(true, Ordering::SeqCst);
        let queries = reader.await.unwrap();
        let mut passes = 0;
        for c in compactors {
            passes += c.await.unwrap();
        }
        store
            .compact(&opts(Duration::ZERO), &NoProgress)
            .await
            .unwrap();
        let (objs, rows) = visible(&store, "fake", range.0, range.1).await;
        assert_eq!(rows.len() as u64, pushes as u64 * per_push, "{}", b.name);
        let mut dedup = rows.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), rows.len(), "{}: an entry seen twice", b.name);
        assert_eq!(
            objs.len(),
            2,
            "{}: one object per partition at the end",
            b.name
        );
        eprintln!(
            "{}: {queries} queries and {passes} compaction passes during {pushes} pushes; {} objects at the end",
            b.name,
            objs.len()
        );
    }
}

/// Encodings of each column chunk of an object's first row group, by column path.
fn chunk_encodings(bytes: &bytes::Bytes) -> std::collections::BTreeMap<String, Vec<String>> {
    let reader = SerializedFileReader::new(bytes.clone()).unwrap();
    reader
        .metadata()
        .row_group(0)
        .columns()
        .iter()
        .map(|c| {
            let mut e: Vec<String> = c.encodings().map(|e| e.to_string()).collect();
            e.sort();
            (c.column_path().string(), e)
        })
        .collect()
}

/// Objects written before the per-column layout (every column dictionary-encoded or plain,
/// zstd 3, a bloom filter on every column, Parquet's default page size) read the same and
/// compact into the current layout: the readers take encodings from each object, not from a
/// format version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_in_the_earlier_column_layout_still_read_and_compact() {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    for make in backends() {
        let b = make();
        let base = early_yesterday();
        let writer = b.store();
        for seq in 0..3 {
            writer.write("fake", push(seq, base, 50)).await.unwrap();
        }
        let (objs, current) = visible(&writer, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(objs.len(), 6);

        // Rewrite every object in place as the first release wrote them: same rows, same footer
        // keys (catalog, format), the earlier writer properties.
        for o in &objs {
            let key = o.path.as_ref();
            let bytes = writer.read_key(key).await.unwrap();
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
            let schema = builder.schema().clone();
            let kv = builder
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .cloned();
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_bloom_filter_enabled(true)
                .set_key_value_metadata(kv)
                .build();
            let mut out = Vec::new();
            let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
            for batch in builder.build().unwrap() {
                w.write(&batch.unwrap()).unwrap();
            }
            w.close().unwrap();
            let old = bytes::Bytes::from(out);
            let enc = chunk_encodings(&old);
            assert!(
                !enc["timestamp"].contains(&"DELTA_BINARY_PACKED".to_string()),
                "{enc:?}"
            );
            assert_ne!(enc, chunk_encodings(&bytes), "{}: layout unchanged", b.name);
            b.inner
                .put(&object_store::path::Path::from(key), old.into())
                .await
                .unwrap();
        }

        // A fresh store (no cached footers) reads the earlier objects as it read the current ones.
        let store = b.store();
        let (_, earlier) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(earlier, current, "{}", b.name);

        // Compaction reads them and writes the current layout.
        let s = store
            .compact(&opts(Duration::ZERO), &NoProgress)
            .await
            .unwrap();
        assert_eq!((s.hot_absorbed, s.cold_written), (6, 2), "{s:?}");
        let (cold, rows) = visible(&store, "fake", base - DAY_NS, base + DAY_NS).await;
        assert_eq!(rows, current, "{}", b.name);
        for o in &cold {
            let bytes = store.read_key(o.path.as_ref()).await.unwrap();
            assert!(
                chunk_encodings(&bytes)["timestamp"].contains(&"DELTA_BINARY_PACKED".to_string())
            );
        }
    }
}
