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
use parquetry_model::Labels;

use crate::catalog::{StreamCatalog, StreamInfo};
use crate::layout::{ObjectKey, PartValue, day_of};
use crate::schema::{self, CATALOG_KEY, FORMAT_KEY, FORMAT_VERSION, log_schema};
use crate::{DAY_NS, Result};

/// One log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub ts_ns: i64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

/// A validated stream and its entries, ready to store.
#[derive(Debug, Clone)]
pub struct StreamEntries {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// An encoded object waiting to be put.
pub struct EncodedObject {
    pub key: ObjectKey,
    pub data: Bytes,
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
        .set_column_encoding(meta_value, Encoding::DELTA_LENGTH_BYTE_ARRAY);
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
        for e in s.entries {
            let day = e.ts_ns.div_euclid(DAY_NS);
            groups
                .entry((day, part.clone()))
                .or_default()
                .entry(fp)
                .or_insert_with(|| (s.labels.clone(), Vec::new()))
                .1
                .push(e);
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

fn encode_group(
    tenant: &str,
    partition: Partition,
    group: BTreeMap<u64, (Labels, Vec<LogEntry>)>,
    id: &str,
) -> Result<EncodedObject> {
    let rows: usize = group.values().map(|(_, e)| e.len()).sum();
    let line_bytes: usize = group
        .values()
        .flat_map(|(_, e)| e.iter().map(|x| x.line.len()))
        .sum();
    let mut ts = Vec::with_capacity(rows);
    let mut fps = Vec::with_capacity(rows);
    let mut labels_col = StringBuilder::with_capacity(rows, rows * 16);
    let mut lines = StringBuilder::with_capacity(rows, line_bytes);
    let names = MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut meta = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    let mut catalog = StreamCatalog::default();
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);

    for (fp, (labels, entries)) in &group {
        let label_text = labels.to_string();
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
            ts.push(e.ts_ns);
            fps.push(*fp);
            labels_col.append_value(&label_text);
            lines.append_value(&e.line);
            for (k, v) in &e.structured_metadata {
                meta.keys().append_value(k);
                meta.values().append_value(v);
            }
            meta.append(true)?;
            info.bytes += e.line.len() as u64;
            info.min_ts = info.min_ts.min(e.ts_ns);
            info.max_ts = info.max_ts.max(e.ts_ns);
        }
        min_ts = min_ts.min(info.min_ts);
        max_ts = max_ts.max(info.max_ts);
        catalog.streams.push(info);
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(UInt64Array::from(fps)),
        Arc::new(labels_col.finish()),
        Arc::new(lines.finish()),
        Arc::new(meta.finish()),
    ];
    let batch = RecordBatch::try_new(log_schema(), columns)?;
    let props = writer_properties(&catalog, true, Tier::Hot)?;
    let mut buf = Vec::with_capacity(line_bytes / 4 + 4096);
    let mut writer = ArrowWriter::try_new(&mut buf, log_schema(), Some(props))?;
    writer.write(&batch)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(svc: &str, n: usize) -> StreamEntries {
        StreamEntries {
            labels: Labels::from_pairs([("service_name", svc)]),
            entries: (0..n)
                .map(|i| LogEntry {
                    ts_ns: 1_700_000_000_000_000_000 + i as i64,
                    line: format!("{svc} {i}"),
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
}
