//! Encoding validated streams into Parquet objects.
//!
//! This is the CPU-heavy half of a push: callers run [`encode_objects`] on a blocking thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, MapBuilder, MapFieldNames, StringBuilder, TimestampNanosecondArray, UInt64Array,
};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use parquetry_model::{ByteString, Labels};

use crate::catalog::{StreamCatalog, StreamInfo};
use crate::layout::{ObjectKey, PartValue, day_of};
use crate::schema::{self, CATALOG_KEY, FORMAT_KEY, FORMAT_VERSION, log_schema};
use crate::{DAY_NS, Result};

/// One log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Entry time (Unix ns).
    pub ts_ns: i64,
    /// The log line.
    pub line: ByteString,
    /// Structured metadata, `(name, value)`.
    pub structured_metadata: Vec<(ByteString, ByteString)>,
}

/// A validated stream and its entries, ready to store.
#[derive(Debug, Clone)]
pub struct StreamEntries {
    /// The stream's labels.
    pub labels: Labels,
    /// Its entries, in any order.
    pub entries: Vec<LogEntry>,
}

/// An encoded object waiting to be put.
pub struct EncodedObject {
    /// Its key.
    pub key: ObjectKey,
    /// The Parquet bytes.
    pub data: Bytes,
    /// Entries it holds.
    pub entries: u64,
}

/// Rows per row group. Row groups are the unit of pruning by statistics; small enough that a
/// selective stream or time predicate skips most of a large compacted object, big enough that
/// footers stay small.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Which kind of object a writer produces: the encodings differ because the two are read and
/// paid for differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Written on the push path, read for minutes until the compactor rewrites it: encode
    /// CPU matters more than bytes.
    Hot,
    /// Written by the compactor (or a delete rewrite), kept for the retention period and
    /// read by every query over it: bytes matter more than encode CPU.
    Cold,
}

/// zstd level of hot objects: level 1 encodes about a fifth faster than 3 and the object is
/// rewritten by the compactor within minutes (docs/benchmarks.md, "Bytes at rest").
const HOT_ZSTD_LEVEL: i32 = 1;
/// zstd level of cold objects. Level 9 made lines 8 % smaller (5 % of the object) for twice
/// the compaction CPU on the format bench; compaction CPU is paid once per byte ingested, so
/// the cheap level wins until storage is the larger bill.
const COLD_ZSTD_LEVEL: i32 = 3;

/// Uncompressed size at which a cold object's `line` and metadata value pages close (see
/// [`writer_properties`]).
const COLD_PAGE_BYTES: usize = 32 * 1024;
/// Rows per write batch in cold objects: 128 lines of ~200 bytes fill about a page.
const COLD_WRITE_BATCH_ROWS: usize = 128;

/// Writer settings for an object holding `catalog`'s streams; `with_catalog` puts the catalog
/// in the footer now (a writer that learns its final counts later appends it before finish).
pub(crate) fn writer_properties(
    catalog: &StreamCatalog,
    with_catalog: bool,
    tier: Tier,
) -> Result<WriterProperties> {
    let mut kv = vec![KeyValue::new(
        FORMAT_KEY.to_string(),
        FORMAT_VERSION.to_string(),
    )];
    if with_catalog {
        kv.push(KeyValue::new(CATALOG_KEY.to_string(), catalog.to_json()));
    }
    let ts = ColumnPath::from(schema::COL_TIMESTAMP);
    let line = ColumnPath::from(schema::COL_LINE);
    let meta_value = ColumnPath::new(vec![
        schema::COL_METADATA.into(),
        "key_value".into(),
        "value".into(),
    ]);
    let (level, bloom) = match tier {
        Tier::Hot => (HOT_ZSTD_LEVEL, false),
        Tier::Cold => (COLD_ZSTD_LEVEL, true),
    };
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(level)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Lines rarely repeat; a dictionary would be built and then thrown away.
        .set_column_dictionary_enabled(line, false)
        // Timestamps rise within each stream's run: deltas pack into a few bytes where a
        // dictionary of unique values overflows and falls back to plain (7.4 → 3.9 bytes per
        // entry on the format bench).
        .set_column_dictionary_enabled(ts.clone(), false)
        .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
        // Metadata values are mostly ids (trace, span, request): lengths packed apart from the
        // bytes let zstd see only the ids (−13 % on the bench's trace ids).
        .set_column_dictionary_enabled(meta_value.clone(), false)
        .set_column_encoding(meta_value.clone(), Encoding::DELTA_LENGTH_BYTE_ARRAY);
    // A query that wants one row of a stream (the newest 1,000 lines of 1,000 streams)
    // decompresses that row's whole `line` and metadata pages. 32 KiB pages instead of
    // parquet's 1 MiB: newest 1,000 inside compacted objects 150–195 ms with 64 KiB pages,
    // 127–161 ms with 32 KiB, 105–138 ms with 16 KiB; objects +1.3 % and +4.3 % against
    // 64 KiB on the format bench (zstd finds a log line's repeats within a few lines), scans
    // and compaction CPU within noise (docs/benchmarks.md, "Newest lines first"). Pages close
    // between write batches, so batches shrink too. Hot objects are read whole by the
    // compactor and keep the default.
    if tier == Tier::Cold {
        b = b
            .set_column_data_page_size_limit(ColumnPath::from(schema::COL_LINE), COLD_PAGE_BYTES)
            .set_column_data_page_size_limit(meta_value, COLD_PAGE_BYTES)
            .set_write_batch_size(COLD_WRITE_BATCH_ROWS);
    }
    // A hot object's catalog already says which streams it holds, and the compactor reads it
    // whole: its bloom filter would only cost push CPU. Cold objects keep one per row group.
    if bloom {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(schema::COL_STREAM), true)
            .set_column_bloom_filter_max_ndv(
                ColumnPath::from(schema::COL_STREAM),
                catalog.streams.len().max(1) as u64,
            );
    }
    Ok(b.set_sorting_columns(Some(vec![
        SortingColumn {
            column_idx: 1,
            descending: false,
            nulls_first: false,
        },
        SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        },
    ]))
    .set_key_value_metadata(Some(kv))
    .build())
}

type Partition = Vec<(String, PartValue)>;

/// The partition an entry's stream belongs to: the value of each configured label, empty when
/// absent.
fn partition_of(labels: &Labels, partition_labels: &[String]) -> Partition {
    partition_labels
        .iter()
        .map(|n| (n.clone(), PartValue::of(labels.get(n).unwrap_or(""))))
        .collect()
}

/// Keeps at most `max` partitions (0: no limit): the largest `max - 1` by entries keep theirs,
/// the rest share one object whose partition values are all [`PartValue::Mixed`]. One push
/// with thousands of partition values would otherwise become thousands of tiny objects.
fn fold_partitions(
    parts: &[Partition],
    streams: &[StreamEntries],
    max: usize,
) -> HashSet<Partition> {
    let mut sizes: HashMap<&Partition, usize> = HashMap::new();
    for (p, s) in parts.iter().zip(streams) {
        *sizes.entry(p).or_default() += s.entries.len();
    }
    if max == 0 || sizes.len() <= max {
        return HashSet::new();
    }
    let mut ranked: Vec<(&Partition, usize)> = sizes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .skip(max.saturating_sub(1))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Groups streams into one object per (UTC day, partition) and encodes each. `id` makes keys
/// unique per write; the caller provides it so encoding stays deterministic.
pub fn encode_objects(
    tenant: &str,
    streams: Vec<StreamEntries>,
    partition_labels: &[String],
    max_partitions: usize,
    id: &str,
) -> Result<Vec<EncodedObject>> {
    // (day, partition) -> fingerprint -> (labels, entries). BTreeMaps give the row order the
    // format promises: by stream fingerprint, then time.
    type Group = BTreeMap<u64, (Labels, Vec<LogEntry>)>;
    let parts: Vec<Partition> = streams
        .iter()
        .map(|s| partition_of(&s.labels, partition_labels))
        .collect();
    let folded = fold_partitions(&parts, &streams, max_partitions);
    let mixed: Partition = partition_labels
        .iter()
        .map(|n| (n.clone(), PartValue::Mixed))
        .collect();
    let mut groups: BTreeMap<(i64, Partition), Group> = BTreeMap::new();
    for (s, part) in streams.into_iter().zip(parts) {
        let fp = s.labels.fingerprint();
        let part = if folded.contains(&part) {
            mixed.clone()
        } else {
            part
        };
        // Per (stream, day), not per entry: cloning the partition key and walking both maps
        // for every entry was 7 % of the push path's CPU.
        for (day, entries) in by_day(s.entries) {
            let slot = groups
                .entry((day, part.clone()))
                .or_default()
                .entry(fp)
                .or_insert_with(|| (s.labels.clone(), Vec::new()));
            if slot.1.is_empty() {
                slot.1 = entries;
            } else {
                slot.1.extend(entries);
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((_, partition), mut group) in groups {
        for (_, entries) in group.values_mut() {
            // Identical (timestamp, line) in one stream is one entry, as in Loki: an agent
            // that repeats an entry in a batch must not count it twice.
            entries.sort_by(|a, b| a.ts_ns.cmp(&b.ts_ns).then_with(|| a.line.cmp(&b.line)));
            entries.dedup_by(|b, a| a.ts_ns == b.ts_ns && a.line == b.line);
        }
        out.push(encode_group(tenant, partition, group, id)?);
    }
    Ok(out)
}

/// A stream's entries split by UTC day, days ascending. Nearly every push falls in one day,
/// and then the entries move as they are.
fn by_day(entries: Vec<LogEntry>) -> Vec<(i64, Vec<LogEntry>)> {
    let day = |e: &LogEntry| e.ts_ns.div_euclid(DAY_NS);
    let Some(first) = entries.first().map(day) else {
        return Vec::new();
    };
    if entries.iter().all(|e| day(e) == first) {
        return vec![(first, entries)];
    }
    let mut days: BTreeMap<i64, Vec<LogEntry>> = BTreeMap::new();
    for e in entries {
        days.entry(day(&e)).or_default().push(e);
    }
    days.into_iter().collect()
}

/// Arrow rows handed to the Parquet writer at once: the `labels` column repeats each row's
/// label text, so one batch for a whole push with long label sets and many short lines would
/// hold (label bytes × rows) — past 2 GiB, more than an Arrow string column can. Bounded
/// batches keep a push's Arrow copy near this size, whatever the push holds; the Parquet
/// output is the same (row groups and pages are cut by the writer, not by batches).
const BATCH_BYTES: usize = 16 << 20;

fn encode_group(
    tenant: &str,
    partition: Partition,
    group: BTreeMap<u64, (Labels, Vec<LogEntry>)>,
    id: &str,
) -> Result<EncodedObject> {
    // The catalog (in the footer, so known before the first row is written) and the sizes.
    let label_texts: Vec<String> = group.values().map(|(l, _)| l.to_string()).collect();
    let mut catalog = StreamCatalog::default();
    let (mut rows, mut row_bytes, mut stored_bytes) = (0, 0, 0);
    for ((fp, (labels, entries)), text) in group.iter().zip(&label_texts) {
        let mut info = StreamInfo {
            fingerprint: *fp,
            labels: labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            entries: entries.len() as u64,
            bytes: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        };
        for e in entries {
            let meta: usize = e
                .structured_metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum();
            row_bytes += text.len() + e.line.len() + meta;
            stored_bytes += e.line.len() + meta;
            info.bytes += e.line.len() as u64;
            info.min_ts = info.min_ts.min(e.ts_ns);
            info.max_ts = info.max_ts.max(e.ts_ns);
        }
        rows += entries.len();
        catalog.streams.push(info);
    }
    let min_ts = catalog.streams.iter().map(|s| s.min_ts).min().unwrap_or(0);
    let max_ts = catalog.streams.iter().map(|s| s.max_ts).max().unwrap_or(0);

    let props = writer_properties(&catalog, true, Tier::Hot)?;
    // Pushed objects hold ~0.5–0.7 bytes per byte of line and metadata (docs/benchmarks.md):
    // room for 3/4 is rarely outgrown, and pages never written are never touched. Sized
    // once, like the batch below: grown by doubling, the buffers were copied several times
    // per object and their fresh pages faulted in each time (~3 % of the push path).
    let mut buf = Vec::with_capacity(stored_bytes * 3 / 4 + (64 << 10));
    let mut writer = ArrowWriter::try_new(&mut buf, log_schema(), Some(props))?;
    // Rows per batch: as many as fit in `BATCH_BYTES` at this group's average row size.
    let per_batch = if row_bytes <= BATCH_BYTES {
        rows
    } else {
        (rows as u128 * BATCH_BYTES as u128 / row_bytes as u128).max(1) as usize
    };
    let mut batch = RowBatch::with_capacity(per_batch.min(rows), BATCH_BYTES.min(row_bytes));
    for ((fp, (_, entries)), text) in group.iter().zip(&label_texts) {
        for e in entries {
            batch.push(*fp, text, e)?;
            // (A group that fits in one batch is written whole below.)
            if batch.rows == per_batch && per_batch < rows {
                writer.write(&batch.take()?)?;
            }
        }
    }
    if batch.rows > 0 {
        writer.write(&batch.into_batch()?)?;
    }
    writer.close()?;

    let key = ObjectKey {
        tenant: tenant.to_string(),
        day: day_of(min_ts),
        partition,
        min_ts,
        max_ts,
        id: id.to_string(),
    };
    Ok(EncodedObject {
        key,
        data: Bytes::from(buf),
        entries: rows as u64,
    })
}

/// The Arrow columns of a pushed object's rows, a batch at a time (see [`BATCH_BYTES`]).
struct RowBatch {
    rows: usize,
    /// What the builders are sized for, again after each batch.
    capacity: (usize, usize),
    ts: Vec<i64>,
    fps: Vec<u64>,
    labels: StringBuilder,
    lines: StringBuilder,
    meta: MapBuilder<StringBuilder, StringBuilder>,
}

impl RowBatch {
    /// Room for `rows` rows and `bytes` of label text, lines and metadata together, split by
    /// the usual proportions of pushed data; a builder that needs more grows.
    fn with_capacity(rows: usize, bytes: usize) -> RowBatch {
        let names = MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        };
        RowBatch {
            rows: 0,
            capacity: (rows, bytes),
            ts: Vec::with_capacity(rows),
            fps: Vec::with_capacity(rows),
            labels: StringBuilder::with_capacity(rows, bytes / 3),
            lines: StringBuilder::with_capacity(rows, bytes / 2),
            meta: MapBuilder::with_capacity(
                Some(names),
                StringBuilder::with_capacity(rows * 2, bytes / 32),
                StringBuilder::with_capacity(rows * 2, bytes / 8),
                rows,
            ),
        }
    }

    fn push(&mut self, fp: u64, label_text: &str, e: &LogEntry) -> Result<()> {
        self.ts.push(e.ts_ns);
        self.fps.push(fp);
        self.labels.append_value(label_text);
        self.lines.append_value(&e.line);
        for (k, v) in &e.structured_metadata {
            self.meta.keys().append_value(k);
            self.meta.values().append_value(v);
        }
        self.meta.append(true)?;
        self.rows += 1;
        Ok(())
    }

    /// The rows so far as a record batch, for a push larger than one; the builders start
    /// over at their first size (a finished builder is empty, and growing it again by
    /// doubling would copy each batch several times).
    fn take(&mut self) -> Result<RecordBatch> {
        let (rows, bytes) = self.capacity;
        std::mem::replace(self, RowBatch::with_capacity(rows, bytes)).into_batch()
    }

    /// The rows as a record batch.
    fn into_batch(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(self.ts).with_timezone("UTC")),
            Arc::new(UInt64Array::from(self.fps)),
            Arc::new(self.labels.finish()),
            Arc::new(self.lines.finish()),
            Arc::new(self.meta.finish()),
        ];
        Ok(RecordBatch::try_new(log_schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(svc: &str, n: usize) -> StreamEntries {
        StreamEntries {
            labels: Labels::from_pairs([("service_name", svc)]),
            entries: (0..n)
                .map(|i| LogEntry {
                    ts_ns: 1_700_000_000_000_000_000 + i as i64,
                    line: format!("{svc} {i}").into(),
                    structured_metadata: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn many_partitions_in_one_push_share_a_mixed_object() {
        let labels = vec!["service_name".to_string()];
        let mut streams: Vec<StreamEntries> =
            (0..50).map(|i| stream(&format!("s{i}"), 1)).collect();
        streams.push(stream("big", 10));
        let out = encode_objects("t", streams.clone(), &labels, 5, "id").unwrap();
        assert_eq!(out.len(), 5);
        let mixed: Vec<_> = out
            .iter()
            .filter(|o| o.key.partition[0].1 == PartValue::Mixed)
            .collect();
        assert_eq!(mixed.len(), 1);
        assert_eq!(mixed[0].entries, 47);
        assert!(
            out.iter()
                .any(|o| o.key.partition[0].1.exact() == Some("big"))
        );
        assert_eq!(out.iter().map(|o| o.entries).sum::<u64>(), 60);
        // No limit: one object per partition.
        assert_eq!(
            encode_objects("t", streams, &labels, 0, "id")
                .unwrap()
                .len(),
            51
        );
    }

    #[test]
    fn repeated_entries_in_one_push_are_stored_once() {
        let mut s = stream("a", 3);
        let again = s.entries.clone();
        s.entries.extend(again);
        s.entries.push(LogEntry {
            ts_ns: s.entries[0].ts_ns,
            line: "same time, other line".into(),
            structured_metadata: vec![],
        });
        let out = encode_objects("t", vec![s], &["service_name".to_string()], 0, "id").unwrap();
        assert_eq!(out[0].entries, 4);
    }

    #[test]
    fn a_push_larger_than_one_arrow_batch_is_written_whole_and_in_order() {
        // 2 KB of label text on each of 10,000 rows: 20 MB of `labels` column, over one batch.
        let long = "v".repeat(2_000);
        let n = 10_000;
        let s = StreamEntries {
            labels: Labels::from_pairs([("service_name", "api"), ("long", long.as_str())]),
            entries: (0..n)
                .map(|i| LogEntry {
                    ts_ns: 1_700_000_000_000_000_000 + i as i64,
                    line: format!("line {i}").into(),
                    structured_metadata: vec![("trace_id".into(), format!("t{i}").into())],
                })
                .collect(),
        };
        let label_text = s.labels.to_string();
        assert!(label_text.len() * n > BATCH_BYTES);
        let out = encode_objects("t", vec![s], &["service_name".to_string()], 0, "id").unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].entries, n as u64);
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                out[0].data.clone(),
            )
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let all = arrow::compute::concat_batches(&log_schema(), &batches).unwrap();
        assert_eq!(all.num_rows(), n);
        let col = |i: usize| {
            all.column(i)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
                .clone()
        };
        let (labels, lines) = (col(2), col(3));
        let meta = all
            .column(4)
            .as_any()
            .downcast_ref::<arrow::array::MapArray>()
            .unwrap();
        for i in 0..n {
            assert_eq!(labels.value(i), label_text);
            assert_eq!(lines.value(i), format!("line {i}"));
            let pair = meta.value(i);
            let values = pair
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            assert_eq!(values.value(0), format!("t{i}"));
        }
    }

    #[test]
    fn a_push_across_midnight_makes_one_object_per_day_and_stream_order_holds_in_each() {
        let midnight = 19_675 * DAY_NS;
        let entry = |ts_ns: i64| LogEntry {
            ts_ns,
            line: format!("at {ts_ns}").into(),
            structured_metadata: vec![],
        };
        // Days interleaved and out of order, in two streams of one partition.
        let a = StreamEntries {
            labels: Labels::from_pairs([("service_name", "api"), ("pod", "a")]),
            entries: vec![
                entry(midnight + 5),
                entry(midnight - 5),
                entry(midnight + 1),
            ],
        };
        let b = StreamEntries {
            labels: Labels::from_pairs([("service_name", "api"), ("pod", "b")]),
            entries: vec![entry(midnight - 1), entry(midnight - 9)],
        };
        let out = encode_objects("t", vec![a, b], &["service_name".to_string()], 0, "id").unwrap();
        let days: Vec<(String, i64, i64, u64)> = out
            .iter()
            .map(|o| (o.key.day.clone(), o.key.min_ts, o.key.max_ts, o.entries))
            .collect();
        assert_eq!(
            days,
            vec![
                (day_of(midnight - 9), midnight - 9, midnight - 1, 3),
                (day_of(midnight), midnight + 1, midnight + 5, 2),
            ]
        );
        let before = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            out[0].data.clone(),
        )
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
        let ts = before
            .column(0)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        let fps = before
            .column(1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        let rows: Vec<(u64, i64)> = fps
            .values()
            .iter()
            .copied()
            .zip(ts.values().iter().copied())
            .collect();
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(rows, sorted, "by stream, then time");
    }
}

/// The per-column layout of hot and cold objects is part of the format's cost model
/// (docs/format.md, docs/benchmarks.md "Bytes at rest"): these tests read it back from written
/// objects so an accidental change of a column's encoding, codec or bloom filter shows up here.
#[cfg(test)]
mod layout_tests {
    use std::collections::BTreeSet;

    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::ParquetMetaData;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// A hot object as the push path writes it: several streams, rising timestamps, trace ids
    /// as structured metadata.
    fn hot_object() -> EncodedObject {
        let streams = (0..4)
            .map(|s| StreamEntries {
                labels: Labels::from_pairs([("service_name", "api"), ("pod", &format!("p{s}"))]),
                entries: (0..500)
                    .map(|i| LogEntry {
                        ts_ns: 1_700_000_000_000_000_000 + i * 1_000_003,
                        line: format!("level=info msg=\"request {i}\" pod=p{s}").into(),
                        structured_metadata: vec![(
                            "trace_id".into(),
                            format!("{:032x}", i * 7919).into(),
                        )],
                    })
                    .collect(),
            })
            .collect();
        let mut out = encode_objects("t", streams, &["service_name".to_string()], 0, "id").unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    /// The compactor's rewrite of `hot` (same rows, cold properties).
    fn cold_object(hot: &EncodedObject) -> Bytes {
        let meta = metadata(&hot.data);
        let json = meta
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .find(|kv| kv.key == CATALOG_KEY)
            .and_then(|kv| kv.value.clone())
            .unwrap();
        let catalog = StreamCatalog::from_json(&json).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(hot.data.clone())
            .unwrap()
            .build()
            .unwrap();
        let props = writer_properties(&catalog, true, Tier::Cold).unwrap();
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, log_schema(), Some(props)).unwrap();
        for batch in reader {
            writer.write(&batch.unwrap()).unwrap();
        }
        writer.close().unwrap();
        Bytes::from(buf)
    }

    fn metadata(data: &Bytes) -> ParquetMetaData {
        SerializedFileReader::new(data.clone())
            .unwrap()
            .metadata()
            .clone()
    }

    /// Column path → (encodings of the chunk, codec, has a bloom filter), the same in every row
    /// group. The chunk's encodings include RLE for repetition/definition levels and PLAIN
    /// for a dictionary page; RLE_DICTIONARY means the values are dictionary indices.
    type ChunkLayout = (BTreeSet<String>, String, bool);

    fn layout(data: &Bytes) -> BTreeMap<String, ChunkLayout> {
        let meta = metadata(data);
        let mut out = BTreeMap::new();
        for rg in meta.row_groups() {
            for c in rg.columns() {
                let chunk = (
                    c.encodings().map(|e| e.to_string()).collect(),
                    format!("{:?}", c.compression_codec()),
                    c.bloom_filter_offset().is_some(),
                );
                let prev = out.insert(c.column_path().string(), chunk.clone());
                assert!(prev.is_none_or(|p| p == chunk), "row groups differ");
            }
        }
        out
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// The layout both tiers share; only the bloom filter on `stream` differs.
    fn expected(cold: bool) -> BTreeMap<String, ChunkLayout> {
        let dict = ["PLAIN", "RLE", "RLE_DICTIONARY"];
        let col = |name: &str, encodings: &[&str], bloom: bool| {
            (
                name.to_string(),
                (set(encodings), "ZSTD".to_string(), bloom),
            )
        };
        BTreeMap::from([
            // Rising per stream: deltas, never a dictionary of unique values.
            col("timestamp", &["DELTA_BINARY_PACKED", "RLE"], false),
            // One value per stream run: dictionary indices run-length encode; the bloom filter
            // prunes cold row groups by stream.
            col("stream", &dict, cold),
            col("labels", &dict, false),
            // Lines rarely repeat: plain bytes, zstd does the work.
            col("line", &["PLAIN", "RLE"], false),
            col("structured_metadata.key_value.key", &dict, false),
            // Ids: lengths packed apart from the bytes, no dictionary.
            col(
                "structured_metadata.key_value.value",
                &["DELTA_LENGTH_BYTE_ARRAY", "RLE"],
                false,
            ),
        ])
    }

    #[test]
    fn hot_objects_keep_their_column_layout() {
        let hot = hot_object();
        assert_eq!(layout(&hot.data), expected(false));
    }

    #[test]
    fn cold_objects_keep_their_column_layout() {
        let cold = cold_object(&hot_object());
        assert_eq!(layout(&cold), expected(true));
    }

    #[test]
    fn hot_and_cold_objects_differ_in_zstd_level_and_bloom_filter() {
        // The level is not recorded in the file; the properties are what the writers use.
        let catalog = StreamCatalog::default();
        let stream = ColumnPath::from(schema::COL_STREAM);
        for (tier, level, bloom) in [
            (Tier::Hot, HOT_ZSTD_LEVEL, false),
            (Tier::Cold, COLD_ZSTD_LEVEL, true),
        ] {
            let p = writer_properties(&catalog, false, tier).unwrap();
            for col in ["timestamp", "stream", "labels", "line"] {
                assert_eq!(
                    p.compression(&ColumnPath::from(col)),
                    Compression::ZSTD(ZstdLevel::try_new(level).unwrap()),
                    "{tier:?} {col}"
                );
            }
            assert_eq!(
                p.bloom_filter_properties(&stream).is_some(),
                bloom,
                "{tier:?}"
            );
        }
        assert_eq!((HOT_ZSTD_LEVEL, COLD_ZSTD_LEVEL), (1, 3));
    }
}
