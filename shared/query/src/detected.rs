//! What Grafana's Logs Drilldown asks about a selection: the fields its lines carry
//! (`detected_fields`), the values of one field (`detected_field/<name>/values`) and the stream
//! labels worth offering as tabs (`detected_labels`).
//!
//! Fields come from a sample, as in Loki: the newest `line_limit` entries of the query (run
//! like any log query, pipeline included). Each entry contributes its structured metadata,
//! the labels the query's own pipeline extracted, and what parsing its line gives, trying
//! `json` first and `logfmt` second with the pipeline crate's parsers. Distinct values are
//! counted exactly: the sample is bounded by `max_entries_limit_per_query` lines, so the sets
//! stay small, and Loki's HyperLogLog sketches are exact in that range too.
//!
//! Labels come from the stream catalogs alone: no line is read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parquetry_logql::{Expr, LogExpr, Stage, parse_expr};
use parquetry_model::{Labels, Matcher};
use parquetry_pipeline::{
    ERROR_DETAILS_LABEL, ERROR_LABEL, EntryLabels, PRESERVE_ERROR_LABEL, Pipeline,
};

use crate::logs::{Direction, LogQuery, LogResult};
use crate::select::Selection;
use crate::stats::QueryStats;
use crate::{QueryEngine, QueryError, Result};

/// A `detected_fields` or `detected_field/<name>/values` request, validated.
#[derive(Debug, Clone)]
pub struct DetectedFieldsQuery {
    /// The tenant.
    pub tenant: String,
    /// The request's log query.
    pub expr: LogExpr,
    /// Range start (inclusive, ns).
    pub start: i64,
    /// Range end (exclusive, ns).
    pub end: i64,
    /// Entries sampled, newest first.
    pub line_limit: usize,
    /// Distinct fields (or, for values, distinct values) to collect at most.
    pub limit: usize,
    /// `limits_config.max_query_response_size`; 0 = unlimited.
    pub max_response_bytes: u64,
}

/// A field's detected type, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// The value parses as an integer.
    Int,
    /// The value parses as a float.
    Float,
    /// The value parses as a Go boolean.
    Boolean,
    /// The value parses as a Go duration.
    Duration,
    /// The value parses as a byte size.
    Bytes,
    /// Anything else.
    String,
}

impl FieldType {
    /// The type as Loki's answer spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Duration => "duration",
            FieldType::Bytes => "bytes",
            FieldType::String => "string",
        }
    }
}

/// One entry of a `detected_fields` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedField {
    /// The field's name.
    pub label: String,
    /// The type detected from its values, in Loki's order.
    pub field_type: FieldType,
    /// Distinct values among the sampled entries.
    pub cardinality: u64,
    /// `json`/`logfmt` in the order first seen; empty for structured metadata and for labels
    /// only the query's own parser produced on a line neither parser reads.
    pub parsers: Vec<&'static str>,
    /// Where a field parsed from JSON sits in the object (`["user", "id"]` for `user_id`).
    pub json_path: Option<Vec<String>>,
}

/// One stream label and how many distinct values it has among the selected streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedLabel {
    /// The label name.
    pub label: String,
    /// Its distinct values among the selected streams.
    pub cardinality: u64,
}

/// Labels Loki keeps in `detected_labels` whatever their values look like.
const STATIC_LABELS: [&str; 4] = ["cluster", "namespace", "instance", "pod"];

impl QueryEngine {
    /// The fields of the newest `line_limit` entries of `q.expr`, sorted by name.
    pub async fn detected_fields(&self, q: &DetectedFieldsQuery) -> Result<Vec<DetectedField>> {
        let sample = self.sample(q).await?;
        let limit = q.limit;
        tokio::task::spawn_blocking(move || {
            let parsers = LineParsers::new()?;
            Ok(collect_fields(&sample, &parsers, limit))
        })
        .await
        .map_err(|e| QueryError::Internal(format!("detected fields task failed: {e}")))?
    }

    /// Distinct values of field `name` in the newest `line_limit` entries of `q.expr`, sorted.
    pub async fn detected_field_values(
        &self,
        q: &DetectedFieldsQuery,
        name: &str,
    ) -> Result<Vec<String>> {
        let sample = self.sample(q).await?;
        let (limit, name) = (q.limit, name.to_string());
        tokio::task::spawn_blocking(move || {
            let parsers = LineParsers::new()?;
            Ok(collect_values(&sample, &parsers, &name, limit))
        })
        .await
        .map_err(|e| QueryError::Internal(format!("detected field values task failed: {e}")))?
    }

    /// The newest `line_limit` entries, read newest window first as Loki's splits are: a
    /// first window ending at the newest matching entry, then windows four times wider further
    /// back until enough entries are found. Windows are disjoint and each asks only for what
    /// is still missing, so the answer is the newest `line_limit` entries whatever the widths.
    ///
    /// When the pipeline keeps every line, the first window starts at the `line_limit`-th
    /// newest entry time the stream catalogs vouch for (see [`catalog_bound`]): it holds the
    /// sample and little else, so only the streams active at its end are scanned. Otherwise
    /// (line or label filters) it is 1/64 of the range.
    // Reads through `log_query`, which already leaves damaged objects out.
    async fn sample(&self, q: &DetectedFieldsQuery) -> Result<Arc<LogResult>> {
        let sel = self
            .select(
                &q.tenant,
                std::slice::from_ref(&q.expr.selector),
                q.start,
                q.end,
                &mut QueryStats::default(),
            )
            .await?;
        // Every object's copy of a stream: a stream's newest entries may be in a later object.
        let Some(newest) = sel
            .objects
            .iter()
            .flat_map(|o| o.streams.iter())
            .map(|s| s.max_ts)
            .max()
        else {
            return Ok(Arc::new(LogResult::default()));
        };
        let mut hi = q.end.min(newest.saturating_add(1));
        let mut width = ((hi - q.start) / 64).max(60_000_000_000);
        let mut first = if keeps_every_line(&q.expr) {
            catalog_bound(&sel, q.start, hi, q.line_limit)
        } else {
            None
        };
        let mut out = LogResult::default();
        let mut found = 0;
        while hi > q.start && found < q.line_limit {
            let lo = match first.take() {
                Some(bound) => bound.max(q.start),
                None => {
                    let lo = hi.saturating_sub(width).max(q.start);
                    width = width.saturating_mul(4);
                    lo
                }
            };
            let lq = LogQuery {
                tenant: q.tenant.clone(),
                expr: q.expr.clone(),
                start: lo,
                end: hi,
                limit: q.line_limit - found,
                direction: Direction::Backward,
                interval_ns: None,
                max_response_bytes: q.max_response_bytes,
            };
            let part = self.log_query(&lq).await?;
            found += part.streams.iter().map(|(_, e)| e.len()).sum::<usize>();
            out.streams.extend(part.streams);
            hi = lo;
        }
        Ok(Arc::new(out))
    }

    /// Stream labels of the streams matching `matchers` (all streams without), with their
    /// distinct value counts, sorted by name. Like Loki, a label is left out when every value
    /// is a number or a UUID (an id, useless as a tab), unless it is one of [`STATIC_LABELS`]
    /// or its values are only `0`/`1` (a flag).
    pub async fn detected_labels(
        &self,
        tenant: &str,
        matchers: Option<&[Matcher]>,
        start: i64,
        end: i64,
    ) -> Result<Vec<DetectedLabel>> {
        let sets = matchers.map(|m| vec![m.to_vec()]).unwrap_or_default();
        let sel = self
            .select(tenant, &sets, start, end, &mut QueryStats::default())
            .await?;
        let mut values: HashMap<&str, HashSet<&str>> = HashMap::new();
        for s in sel.streams() {
            for (name, value) in s.labels.iter() {
                values
                    .entry(name.as_str())
                    .or_default()
                    .insert(value.as_str());
            }
        }
        let mut out: Vec<DetectedLabel> = values
            .into_iter()
            .filter(|(name, vals)| {
                !vals.is_empty() && (STATIC_LABELS.contains(name) || !reject_label(vals))
            })
            .map(|(name, vals)| DetectedLabel {
                label: name.to_string(),
                cardinality: vals.len() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }
}

/// Whether no stage of the query can drop a line (parsers and formatters only), so every
/// stored entry in a window is a sampled entry.
fn keeps_every_line(expr: &LogExpr) -> bool {
    !expr
        .pipeline
        .iter()
        .any(|s| matches!(s, Stage::LineFilter(_) | Stage::LabelFilter(_)))
}

/// A time at or below the `k`-th newest entry in `[start, hi)`, from the catalogs alone: each
/// selected stream of each object holds an entry at its `max_ts` and, when different, one at
/// its `min_ts`, so the `k`-th largest of those in-range times has at least `k` entries at or
/// after it. `None` when the catalogs vouch for fewer than `k`. Entries stored twice (a
/// retried push) or deleted can leave the window short; the caller then reads further back.
fn catalog_bound(sel: &Selection, start: i64, hi: i64, k: usize) -> Option<i64> {
    let in_range = |t: i64| (start..hi).contains(&t);
    let mut times: Vec<i64> = Vec::new();
    for s in sel.objects.iter().flat_map(|o| o.streams.iter()) {
        if in_range(s.max_ts) {
            times.push(s.max_ts);
        }
        if s.min_ts != s.max_ts && in_range(s.min_ts) {
            times.push(s.min_ts);
        }
    }
    let i = k.checked_sub(1)?;
    if i >= times.len() {
        return None;
    }
    let (_, kth, _) = times.select_nth_unstable_by(i, |a, b| b.cmp(a));
    Some(*kth)
}

/// Loki's `shouldRejectLabel`: values that are all ids, but not a `0`/`1` flag.
fn reject_label(values: &HashSet<&str>) -> bool {
    if values.len() <= 2 && values.iter().all(|v| *v == "0" || *v == "1") {
        return false;
    }
    values
        .iter()
        .all(|v| v.parse::<f64>().is_ok() || uuid::Uuid::try_parse(v).is_ok())
}

/// The two parsers every line is tried with, compiled once per request.
struct LineParsers {
    json: Pipeline,
    logfmt: Pipeline,
}

impl LineParsers {
    fn new() -> Result<LineParsers> {
        let compile = |parser: &str| -> Result<Pipeline> {
            let src = format!("{{x=\"y\"}} | {parser}");
            match parse_expr(&src) {
                Ok(Expr::Log(log)) => Pipeline::new(&log.pipeline)
                    .map_err(|e| QueryError::Internal(format!("{parser} parser: {e}"))),
                _ => Err(QueryError::Internal(format!(
                    "{parser} parser did not compile"
                ))),
            }
        };
        Ok(LineParsers {
            json: compile("json")?,
            logfmt: compile("logfmt")?,
        })
    }

    /// What parsing `line` gives: the parser that read it without error (JSON first) and its
    /// labels, named as they would be next to `stream` (`_extracted` on a clash).
    fn parse(&self, stream: &Labels, line: &str) -> Option<(&'static str, Labels)> {
        for (name, p) in [("json", &self.json), ("logfmt", &self.logfmt)] {
            let mut entry = EntryLabels::of_stream(stream);
            if p.process(0, line, &mut entry).is_some() && !entry.has_error() {
                return Some((name, entry.parsed()));
            }
        }
        None
    }
}

fn is_error_label(name: &str) -> bool {
    name == ERROR_LABEL || name == ERROR_DETAILS_LABEL || name == PRESERVE_ERROR_LABEL
}

/// A field while the sample is read.
struct Acc {
    field_type: FieldType,
    values: HashSet<String>,
    parsers: Vec<&'static str>,
    json_path: Option<Vec<String>>,
}

impl Acc {
    fn new(parsers: &[&'static str]) -> Acc {
        Acc {
            field_type: FieldType::String,
            values: HashSet::new(),
            parsers: parsers.to_vec(),
            json_path: None,
        }
    }
}

/// Labels of one entry grouped by name, in first-seen order, each value once.
type Grouped = Vec<(String, Vec<String>)>;

fn group(pairs: impl Iterator<Item = (String, String)>) -> Grouped {
    let mut out: Grouped = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(n, _)| *n == k) {
            Some((_, vals)) => {
                if !vals.contains(&v) {
                    vals.push(v);
                }
            }
            None => out.push((k, vec![v])),
        }
    }
    out
}

/// An entry's parsed fields: the query pipeline's own labels plus what json/logfmt read
/// from the line, without error labels; and the parser that read the line, if any.
fn entry_fields(
    parsers: &LineParsers,
    stream: &Labels,
    line: &str,
    query_parsed: &[(String, String)],
) -> (Grouped, Option<&'static str>) {
    let own = query_parsed
        .iter()
        .filter(|(k, _)| !is_error_label(k))
        .map(|(k, v)| (k.clone(), v.clone()));
    match parsers.parse(stream, line) {
        Some((parser, labels)) => {
            let line_labels = labels
                .into_vec()
                .into_iter()
                .filter(|l| !is_error_label(&l.name))
                .map(|l| (l.name, l.value));
            (group(own.chain(line_labels)), Some(parser))
        }
        None => (group(own), None),
    }
}

fn collect_fields(sample: &LogResult, parsers: &LineParsers, limit: usize) -> Vec<DetectedField> {
    let mut fields: BTreeMap<String, Acc> = BTreeMap::new();
    let add = |fields: &mut BTreeMap<String, Acc>,
               name: &str,
               values: &[String],
               parser: Option<&'static str>,
               json_path: Option<&Vec<String>>| {
        if !fields.contains_key(name) {
            // The first `limit` fields seen are kept; later ones are ignored.
            if fields.len() >= limit {
                return;
            }
            fields.insert(name.to_string(), Acc::new(&[]));
        }
        let Some(acc) = fields.get_mut(name) else {
            return;
        };
        if let Some(p) = parser
            && !acc.parsers.contains(&p)
        {
            acc.parsers.push(p);
        }
        if parser == Some("json") {
            acc.json_path = json_path.cloned();
        }
        // The type follows the first value of the latest entry holding the field.
        if let Some(first) = values.first() {
            acc.field_type = detect_type(first);
        }
        acc.values.extend(values.iter().cloned());
    };
    for (stream, entries) in &sample.streams {
        for e in entries {
            let metadata = group(e.structured_metadata.iter().cloned());
            for (name, values) in &metadata {
                add(&mut fields, name, values, None, None);
            }
            let (parsed, parser) = entry_fields(parsers, stream, &e.line, &e.parsed);
            let paths = match parser {
                Some("json") if !parsed.is_empty() => json_paths(stream, &e.line),
                _ => HashMap::new(),
            };
            for (name, values) in &parsed {
                add(&mut fields, name, values, parser, paths.get(name));
            }
        }
    }
    fields
        .into_iter()
        .map(|(label, acc)| DetectedField {
            label,
            field_type: acc.field_type,
            cardinality: acc.values.len() as u64,
            parsers: acc.parsers,
            json_path: acc.json_path,
        })
        .collect()
}

fn collect_values(
    sample: &LogResult,
    parsers: &LineParsers,
    name: &str,
    limit: usize,
) -> Vec<String> {
    let mut values: BTreeSet<String> = BTreeSet::new();
    'entries: for (stream, entries) in &sample.streams {
        for e in entries {
            // Checked per entry, as Loki does: one entry may take the set past `limit`.
            if values.len() >= limit {
                break 'entries;
            }
            for (k, v) in &e.structured_metadata {
                if k == name {
                    values.insert(v.clone());
                }
            }
            let (parsed, _) = entry_fields(parsers, stream, &e.line, &e.parsed);
            if let Some((_, vals)) = parsed.iter().find(|(k, _)| k == name) {
                for v in vals {
                    values.insert(normalize_bytes(v).unwrap_or_else(|| v.clone()));
                }
            }
        }
    }
    values.into_iter().collect()
}

/// Names and paths of the scalar members of a JSON object line, named as the `json` parser
/// names them (nested keys joined by `_`, sanitised, `_extracted` on a stream-label clash).
fn json_paths(stream: &Labels, line: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line) {
        let mut path = Vec::new();
        walk_json(&map, &mut path, stream, &mut out, 0);
    }
    out
}

fn walk_json(
    map: &serde_json::Map<String, serde_json::Value>,
    path: &mut Vec<String>,
    stream: &Labels,
    out: &mut HashMap<String, Vec<String>>,
    depth: usize,
) {
    // The json parser stops flattening at this depth too.
    if depth >= 256 {
        return;
    }
    for (k, v) in map {
        path.push(k.clone());
        match v {
            serde_json::Value::Object(inner) => walk_json(inner, path, stream, out, depth + 1),
            serde_json::Value::String(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Bool(_) => {
                let mut name = flattened(path);
                if !name.is_empty() {
                    if stream.get(&name).is_some() {
                        name.push_str("_extracted");
                    }
                    out.insert(name, path.clone());
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// A nested key as a label name: the non-blank parts, every character outside
/// `[A-Za-z0-9_]` made `_`, joined by `_`, with `_` before a leading digit.
fn flattened(parts: &[String]) -> String {
    let mut out = String::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('_');
        }
        if out.is_empty() && part.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('_');
        }
        out.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    out
}

/// Loki's order: Go's `ParseInt`, `ParseFloat`, `ParseBool`, `time.ParseDuration`, then
/// `humanize.ParseBytes`; anything else is a string.
pub fn detect_type(v: &str) -> FieldType {
    if v.parse::<i64>().is_ok() {
        FieldType::Int
    } else if v.parse::<f64>().is_ok() {
        FieldType::Float
    } else if matches!(
        v,
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    ) {
        FieldType::Boolean
    } else if parquetry_model::duration::parse_go(v).is_ok() {
        FieldType::Duration
    } else if parse_bytes(v).is_some() {
        FieldType::Bytes
    } else {
        FieldType::String
    }
}

/// `humanize.ParseBytes`, as the pipeline's bytes filters read sizes.
fn parse_bytes(v: &str) -> Option<u64> {
    parquetry_pipeline::parse_humanized_bytes(v).ok()
}

/// A byte size written with a unit, rewritten the way `humanize.Bytes` prints it without the
/// space (`1500b` → `1.5kB`), so a suggested value pastes into a query; `None` for anything
/// else. Loki only rewrites values ending in a unit it lists.
fn normalize_bytes(v: &str) -> Option<String> {
    const UNITS: [&str; 25] = [
        "b", "kib", "kb", "mib", "mb", "gib", "gb", "tib", "tb", "pib", "pb", "eib", "eb", "ki",
        "k", "mi", "m", "gi", "g", "ti", "t", "pi", "p", "ei", "e",
    ];
    let lower = v.to_ascii_lowercase();
    if !UNITS.iter().any(|u| lower.ends_with(u)) {
        return None;
    }
    let n = parse_bytes(v)?;
    Some(humanize_bytes(n))
}

/// `humanize.Bytes` (SI units) without the space.
fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n}B");
    }
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    let val = ((n as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1}{suffix}")
    } else {
        format!("{val:.0}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::ResultEntry;

    #[test]
    fn types_in_lokis_order() {
        for (v, t) in [
            ("200", FieldType::Int),
            ("-3", FieldType::Int),
            ("0.25", FieldType::Float),
            ("1e3", FieldType::Float),
            ("true", FieldType::Boolean),
            ("T", FieldType::Boolean),
            ("15ms", FieldType::Duration),
            ("1h2m", FieldType::Duration),
            ("1.5kB", FieldType::Bytes),
            ("2048b", FieldType::Bytes),
            ("10MiB", FieldType::Bytes),
            ("bob", FieldType::String),
            ("", FieldType::String),
        ] {
            assert_eq!(detect_type(v), t, "{v:?}");
        }
    }

    #[test]
    fn bytes_printed_like_humanize() {
        assert_eq!(normalize_bytes("1500b").as_deref(), Some("1.5kB"));
        assert_eq!(normalize_bytes("2048b").as_deref(), Some("2.0kB"));
        assert_eq!(normalize_bytes("5b").as_deref(), Some("5B"));
        assert_eq!(normalize_bytes("12MB").as_deref(), Some("12MB"));
        assert_eq!(normalize_bytes("200"), None);
        assert_eq!(normalize_bytes("ok"), None);
    }

    #[test]
    fn ids_are_rejected_flags_kept() {
        let set = |v: &[&'static str]| v.iter().copied().collect::<HashSet<&str>>();
        assert!(reject_label(&set(&["1", "2", "3"])));
        assert!(reject_label(&set(&[
            "b28ee851-c73c-4edb-ad67-1bd4a52c39dc"
        ])));
        assert!(!reject_label(&set(&["0", "1"])));
        assert!(!reject_label(&set(&["1", "api"])));
    }

    fn entry(line: &str, meta: &[(&str, &str)]) -> ResultEntry {
        ResultEntry {
            ts: 0,
            line: line.into(),
            structured_metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            parsed: vec![],
        }
    }

    #[test]
    fn fields_from_metadata_json_and_logfmt() {
        let stream = Labels::from_pairs([("env", "prod")]);
        let sample = LogResult {
            streams: vec![(
                stream,
                vec![
                    entry(
                        r#"{"user":{"id":"u1"},"status":200,"env":"x","tags":[1]}"#,
                        &[("trace_id", "a")],
                    ),
                    entry("status=500 dur=1.5s msg=hi", &[("trace_id", "b")]),
                    entry("no fields here", &[]),
                ],
            )],
            stats: Default::default(),
        };
        let parsers = LineParsers::new().unwrap();
        let fields = collect_fields(&sample, &parsers, 1000);
        let by: HashMap<&str, &DetectedField> =
            fields.iter().map(|f| (f.label.as_str(), f)).collect();
        assert_eq!(by["trace_id"].cardinality, 2);
        assert!(by["trace_id"].parsers.is_empty());
        assert_eq!(by["status"].parsers, ["json", "logfmt"]);
        assert_eq!(by["status"].field_type, FieldType::Int);
        assert_eq!(by["status"].cardinality, 2);
        assert_eq!(
            by["user_id"].json_path.as_deref(),
            Some(&["user".to_string(), "id".to_string()][..])
        );
        assert_eq!(by["env_extracted"].parsers, ["json"]);
        assert_eq!(by["dur"].field_type, FieldType::Duration);
        assert!(!by.contains_key("tags"));
        assert_eq!(collect_fields(&sample, &parsers, 2).len(), 2);
        let values = collect_values(&sample, &parsers, "status", 1000);
        assert_eq!(values, ["200", "500"]);
    }
}
