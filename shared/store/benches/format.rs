//! Bytes at rest and CPU per ingested byte: generated logs written as pushes would write them
//! ("hot" objects), then compacted once ("cold"); reports the encode CPU of the push path, the
//! compaction CPU, the stored size of each, the cold objects' size per column, and zstd of the
//! raw text as a physical reference.
//!
//! `cargo bench -p parquetry-store --bench format`
//! (PARQUETRY_BENCH_MB raw line volume, default 200; PARQUETRY_BENCH_STREAMS, default 400;
//! PARQUETRY_BENCH_PUSH_KB raw line bytes per push, default 1024 — about what one Promtail
//! batch carries; PARQUETRY_BENCH_METADATA=0 pushes without the trace id as structured
//! metadata, as an agent that sends only lines would).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquetry_model::Labels;
use parquetry_store::compact::NoProgress;
use parquetry_store::writer::encode_objects;
use parquetry_store::{CompactOptions, LogEntry, Store, StreamEntries};
use parquetry_test_support::bench::{AtRestData, Proc};

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

/// The allocator the binaries link (functions/*/src/main.rs): push encode CPU depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let data = AtRestData::from_env();
    let (target, n_streams, push_bytes, with_metadata) = (
        data.target_bytes,
        data.streams,
        data.push_bytes,
        data.with_metadata,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().display().to_string();
    let store = Store::open(&url, vec!["service_name".into()]).expect("store");

    let mut generator = data.generator();

    // Generate every push first, so the clock measures encoding only.
    let per_stream = data.per_stream();
    let mut pushes: Vec<Vec<StreamEntries>> = Vec::new();
    let mut raw = 0u64;
    let mut text: Vec<u8> = Vec::with_capacity(target as usize + (1 << 20));
    while raw < target {
        let push: Vec<StreamEntries> = generator
            .batch(per_stream)
            .into_iter()
            .map(|s| StreamEntries {
                labels: Labels::from_pairs(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| {
                        raw += e.line.len() as u64;
                        text.extend_from_slice(e.line.as_bytes());
                        text.push(b'\n');
                        LogEntry {
                            ts_ns: e.ts_ns,
                            line: e.line.into(),
                            structured_metadata: if with_metadata {
                                vec![("trace_id".into(), e.trace_id.into())]
                            } else {
                                Vec::new()
                            },
                        }
                    })
                    .collect(),
            })
            .collect();
        pushes.push(push);
    }
    let entries: usize = pushes
        .iter()
        .flat_map(|p| p.iter().map(|s| s.entries.len()))
        .sum();
    println!(
        "data: {:.1} MB of lines, {entries} entries, {n_streams} streams, {} pushes of ~{} KB, trace id as structured metadata: {with_metadata}",
        mb(raw),
        pushes.len(),
        push_bytes / 1024
    );
    // The information content of what was generated: no lossless encoding is smaller on
    // average, so it is the floor every size below is measured against.
    let floor = (generator.information_bits() / 8.0) as u64;
    println!(
        "information content: {:.1} MB ({:.3} of raw)",
        mb(floor),
        floor as f64 / raw as f64
    );

    // The push path's CPU-heavy half (grouping, Arrow building, Parquet encoding), on this
    // thread alone; the puts are timed apart.
    let cpu0 = Proc::This.cpu_seconds();
    let t = Instant::now();
    let mut encoded = Vec::with_capacity(pushes.len());
    for (i, push) in pushes.into_iter().enumerate() {
        encoded.push(
            encode_objects(
                "fake",
                push,
                &["service_name".to_string()],
                100,
                &format!("{i:08}"),
            )
            .expect("encode"),
        );
    }
    let encode_cpu = Proc::This.cpu_seconds() - cpu0;
    let encode_wall = t.elapsed();
    let mut hot_bytes = 0u64;
    let mut hot_objects = 0usize;
    for objs in encoded {
        for o in objs {
            hot_bytes += o.data.len() as u64;
            hot_objects += 1;
            store
                .object_store()
                .put(&o.key.to_path(), o.data.into())
                .await
                .expect("put");
        }
    }
    println!(
        "push encode: {:.2}s CPU ({:.1}s wall): {:.1} raw MB per CPU-second; {hot_objects} hot objects, {:.1} MB ({:.3} of raw)",
        encode_cpu,
        encode_wall.as_secs_f64(),
        mb(raw) / encode_cpu.max(1e-3),
        mb(hot_bytes),
        hot_bytes as f64 / raw as f64
    );

    let opts = CompactOptions {
        hot_min_age: Duration::ZERO,
        target_size: 256 << 20,
        delete_delay: Duration::ZERO,
        max_inputs: 200,
    };
    let cpu0 = Proc::This.cpu_seconds();
    let t = Instant::now();
    let summary = store.compact(&opts, &NoProgress).await.expect("compact");
    let compact_cpu = Proc::This.cpu_seconds() - cpu0;
    println!(
        "compaction: {:.2}s CPU ({:.1}s wall): {:.1} raw MB per CPU-second; push + compaction {:.1} raw MB per CPU-second; {summary:?}",
        compact_cpu,
        t.elapsed().as_secs_f64(),
        mb(raw) / compact_cpu.max(1e-3),
        mb(raw) / (encode_cpu + compact_cpu).max(1e-3)
    );

    // Cold objects: total and per column (compressed bytes in column chunks).
    let mut cold_bytes = 0u64;
    let mut cold_objects = 0usize;
    let mut columns: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (key, size) in store.list_keys("").await.expect("keys") {
        if !key.ends_with(".parquet") {
            continue;
        }
        cold_bytes += size;
        cold_objects += 1;
        let bytes = std::fs::read(dir.path().join(&key)).expect("read object");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("parquet");
        for rg in reader.metadata().row_groups() {
            for c in rg.columns() {
                let e = columns.entry(c.column_path().string()).or_default();
                e.0 += c.compressed_size() as u64;
                e.1 += c.uncompressed_size() as u64;
            }
        }
    }
    println!(
        "at rest after compaction: {cold_objects} objects, {:.1} MB ({:.3} of raw, {:.2}x smaller)",
        mb(cold_bytes),
        cold_bytes as f64 / raw as f64,
        raw as f64 / cold_bytes as f64
    );
    println!(
        "  {:.2} × the information content",
        cold_bytes as f64 / floor.max(1) as f64
    );
    for (col, (c, u)) in &columns {
        println!(
            "  {col:<40} {:>8.2} MB compressed, {:>8.2} MB encoded, {:>5.1}% of the object bytes",
            mb(*c),
            mb(*u),
            100.0 * *c as f64 / cold_bytes as f64
        );
    }

    // Physical references: the same lines as one text file, compressed whole.
    for level in [3, 9] {
        let t = Instant::now();
        let mut enc = zstd::Encoder::new(Vec::new(), level).expect("zstd");
        enc.write_all(&text).expect("zstd");
        let out = enc.finish().expect("zstd");
        println!(
            "reference: zstd -{level} of the raw text: {:.1} MB ({:.2}x) in {:.1}s",
            mb(out.len() as u64),
            text.len() as f64 / out.len() as f64,
            t.elapsed().as_secs_f64()
        );
    }
}
