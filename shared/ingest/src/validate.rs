//! Loki's ingest-time processing of a decoded push (as Loki's distributor does it): label parsing,
//! `service_name` discovery, stream- and entry-level validation with partial acceptance,
//! `detected_level`, merging of streams with equal labels and dropping of duplicate entries.
//!
//! Whole-request failures (no streams, unparseable or oversized labels) are errors. Invalid
//! streams and entries are not: they are dropped, the rest is returned, and
//! [`Validated::dropped`] carries the 400 text the caller answers with after storing the rest.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat};
use parquetry_model::{Labels, Limits};

use crate::error::IngestError;
use crate::labels::{is_valid_label_name, parse_stream_labels};
use crate::level::StreamLevel;
use crate::push::{Entry, InvalidUtf8, PushRequest};

/// The label Loki adds to every stream that lacks it.
pub const SERVICE_NAME_LABEL: &str = "service_name";
/// `service_name` when none of the discovery labels is present.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// Internal streams of aggregated metrics; exempt from `service_name` and label validation.
pub const AGGREGATED_METRIC_LABEL: &str = "__aggregated_metric__";
/// Internal streams of detected patterns; exempt like aggregated metrics.
pub const PATTERN_LABEL: &str = "__pattern__";

/// One stream ready to store: parsed labels (with `service_name`) and its accepted entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidStream {
    /// The stream's labels, `service_name` and others filled in.
    pub labels: Labels,
    /// Its accepted entries.
    pub entries: Vec<Entry>,
}

/// The outcome of [`validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    /// Streams to store, one per distinct label set, none of them empty.
    pub streams: Vec<ValidStream>,
    /// When anything was dropped: the text of the 400 response, Loki's grouped form. A single
    /// problem is its message alone; otherwise each distinct message, in first-seen order, is
    /// prefixed `N errors like: ` and the groups are joined with `; `.
    pub dropped: Option<String>,
    /// Entries in `streams`.
    pub accepted_entries: usize,
    /// Bytes in `streams` as stored: line bytes plus structured-metadata name and value bytes
    /// (including the added `detected_level`).
    pub accepted_bytes: u64,
    /// Entries dropped as invalid, whether one by one or with their whole stream. Silently
    /// dropped duplicates are not counted.
    pub dropped_entries: usize,
    /// The request's invalid UTF-8 fields, as decoding counted them ([`PushRequest::invalid_utf8`]).
    pub invalid_utf8: InvalidUtf8,
    /// Structured metadata values in which U+FFFD was replaced with a space: Loki's
    /// `loki_distributor_push_structured_metadata_sanitized_total`.
    pub sanitized_structured_metadata: usize,
}

impl Validated {
    /// The 400 error to answer with once the accepted part is stored, if anything was dropped.
    pub fn dropped_error(&self) -> Option<IngestError> {
        self.dropped.clone().map(IngestError::Dropped)
    }
}

/// Validates and enriches a decoded push for storage. `now_ns` is the current time in Unix
/// nanoseconds, against which entry timestamps are judged.
pub fn validate(req: PushRequest, limits: &Limits, now_ns: i64) -> Result<Validated, IngestError> {
    if req.streams.is_empty() {
        return Err(IngestError::NoStreams);
    }

    // Labels first, for every stream: a parse failure rejects the whole request, as in Loki,
    // so nothing must have been judged (or reported) before it.
    let invalid_utf8 = req.invalid_utf8;
    let mut parsed = Vec::with_capacity(req.streams.len());
    for s in req.streams {
        let mut labels = parse_stream_labels(&s.labels)?;
        add_service_name(&mut labels, limits);
        parsed.push((labels, s.entries));
    }

    let ctx = EntryRules::new(limits, now_ns);
    let mut errors = GroupedErrors::default();
    let mut out = Validated {
        invalid_utf8,
        ..Validated::default()
    };
    // Fingerprint → positions in `out.streams`; equality is checked, so collisions are harmless.
    let mut by_fingerprint: HashMap<u64, Vec<usize>> = HashMap::new();

    for (labels, mut entries) in parsed {
        if entries.is_empty() {
            continue;
        }
        // Rendered once per stream, and only when a message needs it.
        let mut text: Option<String> = None;
        if let Some(msg) = stream_error(&labels, limits, &mut text) {
            errors.add(msg);
            out.dropped_entries += entries.len();
            continue;
        }
        let levels = (limits.discover_log_levels
            && limits.allow_structured_metadata
            && !is_internal(&labels))
        .then(|| StreamLevel::new(&labels));
        entries.retain_mut(|e| {
            ctx.truncate(e);
            if let Some(msg) = ctx.entry_error(e, &labels, &mut text) {
                errors.add(msg);
                out.dropped_entries += 1;
                return false;
            }
            out.sanitized_structured_metadata += sanitize_structured_metadata(e);
            if let Some(levels) = &levels {
                levels.apply(&mut e.structured_metadata, &e.line);
            }
            true
        });
        if entries.is_empty() {
            continue;
        }
        let slots = by_fingerprint.entry(labels.fingerprint()).or_default();
        match slots.iter().find(|&&i| out.streams[i].labels == labels) {
            Some(&i) => out.streams[i].entries.append(&mut entries),
            None => {
                slots.push(out.streams.len());
                out.streams.push(ValidStream { labels, entries });
            }
        }
    }

    for s in &mut out.streams {
        drop_duplicates(&mut s.entries);
        out.accepted_entries += s.entries.len();
        out.accepted_bytes += s
            .entries
            .iter()
            .map(|e| (e.line.len() + e.structured_metadata_size()) as u64)
            .sum::<u64>();
    }
    out.dropped = errors.text();
    Ok(out)
}

fn is_internal(labels: &Labels) -> bool {
    labels.get(AGGREGATED_METRIC_LABEL).is_some() || labels.get(PATTERN_LABEL).is_some()
}

/// Adds `service_name` from the first non-empty discovery label, else `unknown_service`. An
/// empty discovery list turns this off, as in Loki.
fn add_service_name(labels: &mut Labels, limits: &Limits) {
    if limits.discover_service_name.is_empty()
        || labels.get(SERVICE_NAME_LABEL).is_some()
        || is_internal(labels)
    {
        return;
    }
    let value = limits
        .discover_service_name
        .iter()
        .find_map(|n| {
            // The first of duplicated names, as Prometheus' `Get` returns (binary search in
            // `Labels::get` may land on any of them).
            labels
                .iter()
                .find(|l| l.name == *n && !l.value.is_empty())
                .map(|l| l.value.as_str())
        })
        .unwrap_or(UNKNOWN_SERVICE)
        .to_string();
    labels.set(SERVICE_NAME_LABEL, &value);
}

fn label_text<'a>(labels: &Labels, text: &'a mut Option<String>) -> &'a str {
    text.get_or_insert_with(|| labels.to_string())
}

/// Why a whole stream is rejected, checked in Loki's order, if it is.
fn stream_error(labels: &Labels, limits: &Limits, text: &mut Option<String>) -> Option<String> {
    if labels.is_empty() {
        return Some("error at least one label pair is required per stream".into());
    }
    if is_internal(labels) {
        return None;
    }
    let mut names = labels.len();
    if labels.get(SERVICE_NAME_LABEL).is_some() {
        // Added by ingest itself, so it must not push a stream over the limit.
        names -= 1;
    }
    if names > limits.max_label_names_per_series {
        return Some(format!(
            "entry for stream '{}' has {names} label names; limit {}",
            label_text(labels, text),
            limits.max_label_names_per_series
        ));
    }
    let mut prev: Option<&str> = None;
    for l in labels {
        if !is_valid_label_name(&l.name) {
            return Some(format!(
                "error parsing labels '{}' with error: invalid label name: '{}'",
                label_text(labels, text),
                l.name
            ));
        }
        if l.name.len() > limits.max_label_name_length {
            return Some(format!(
                "stream '{}' has label name too long: '{}'",
                label_text(labels, text),
                l.name
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Some(format!(
                "stream '{}' has label value too long: '{}'",
                label_text(labels, text),
                l.value
            ));
        }
        if prev == Some(l.name.as_str()) {
            return Some(format!(
                "stream '{}' has duplicate label name: '{}'",
                label_text(labels, text),
                l.name
            ));
        }
        prev = Some(&l.name);
    }
    None
}

/// Entry limits resolved once per request.
struct EntryRules<'a> {
    limits: &'a Limits,
    /// Entries strictly older than this are too old (when `reject_old_samples`).
    oldest_ns: i64,
    /// Entries strictly newer than this are too new.
    newest_ns: i64,
    max_line: usize,
}

impl<'a> EntryRules<'a> {
    fn new(limits: &'a Limits, now_ns: i64) -> Self {
        EntryRules {
            limits,
            oldest_ns: now_ns.saturating_sub(limits.reject_old_samples_max_age.as_nanos()),
            newest_ns: now_ns.saturating_add(limits.creation_grace_period.as_nanos()),
            max_line: usize::try_from(limits.max_line_size.0).unwrap_or(usize::MAX),
        }
    }

    /// With `max_line_size_truncate`, long lines are cut (at a character boundary) instead of
    /// rejected.
    fn truncate(&self, e: &mut Entry) {
        if self.limits.max_line_size_truncate && self.max_line != 0 && e.line.len() > self.max_line
        {
            let mut cut = self.max_line;
            while !e.line.is_char_boundary(cut) {
                cut -= 1;
            }
            e.line = e.line.slice_ref(&e.line[..cut]);
        }
    }

    /// Why an entry is dropped, checked in Loki's order, if it is.
    fn entry_error(&self, e: &Entry, labels: &Labels, text: &mut Option<String>) -> Option<String> {
        let l = self.limits;
        if l.reject_old_samples && e.ts_ns < self.oldest_ns {
            return Some(format!(
                "entry for stream '{}' has timestamp too old: {}, \
                 oldest acceptable timestamp is: {}",
                label_text(labels, text),
                rfc3339(e.ts_ns),
                rfc3339(self.oldest_ns)
            ));
        }
        if e.ts_ns > self.newest_ns {
            return Some(format!(
                "entry for stream '{}' has timestamp too new: {}",
                label_text(labels, text),
                rfc3339(e.ts_ns)
            ));
        }
        if self.max_line != 0 && e.line.len() > self.max_line {
            return Some(format!(
                "max entry size '{}' bytes exceeded for stream '{}' \
                 while adding an entry with length '{}' bytes",
                self.max_line,
                label_text(labels, text),
                e.line.len()
            ));
        }
        if e.structured_metadata.is_empty() {
            return None;
        }
        if !l.allow_structured_metadata {
            return Some(format!(
                "stream '{}' includes structured metadata, but this feature is disallowed. \
                 Please see `limits_config.allow_structured_metadata` \
                 or contact your Loki administrator to enable it.",
                label_text(labels, text)
            ));
        }
        let size = e.structured_metadata_size();
        let max_size = l.max_structured_metadata_size.0;
        if max_size != 0 && size as u64 > max_size {
            return Some(format!(
                "stream '{}' has structured metadata too large: '{size}' bytes, \
                 limit: '{max_size}' bytes. \
                 Please see `limits_config.max_structured_metadata_size` \
                 or contact your Loki administrator to increase it.",
                label_text(labels, text)
            ));
        }
        let count = e.structured_metadata.len();
        let max_count = l.max_structured_metadata_entries_count;
        if max_count != 0 && count > max_count {
            return Some(format!(
                "stream '{}' has too many structured metadata labels: '{count}', \
                 limit: '{max_count}'. \
                 Please see `limits_config.max_structured_metadata_entries_count` \
                 or contact your Loki administrator to increase it.",
                label_text(labels, text)
            ));
        }
        None
    }
}

/// Replaces U+FFFD in structured metadata values with a space, returning how many values it
/// changed. Loki's distributor does this after validation and before level detection, for every
/// push format, because Prometheus refuses label values holding U+FFFD; protobuf decoding has
/// already turned each invalid byte into U+FFFD, so an invalid byte ends up a space, as in Loki.
fn sanitize_structured_metadata(e: &mut Entry) -> usize {
    let mut changed = 0;
    for (_, v) in &mut e.structured_metadata {
        if v.contains(char::REPLACEMENT_CHARACTER) {
            *v = v.replace(char::REPLACEMENT_CHARACTER, " ").into();
            changed += 1;
        }
    }
    changed
}

/// Go's `time.RFC3339` layout in UTC: `2006-01-02T15:04:05Z`.
fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Drops entries whose timestamp and line equal an earlier entry's, keeping the first. Most
/// batches are in strictly increasing time order and need no more than one comparison pass.
fn drop_duplicates(entries: &mut Vec<Entry>) {
    if entries.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns) {
        return;
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // The index in the key keeps each run of equal timestamps in arrival order.
    order.sort_unstable_by_key(|&i| (entries[i].ts_ns, i));
    let mut duplicate = vec![false; entries.len()];
    let mut any = false;
    let mut start = 0;
    while start < order.len() {
        let ts = entries[order[start]].ts_ns;
        let mut end = start + 1;
        while end < order.len() && entries[order[end]].ts_ns == ts {
            end += 1;
        }
        let run = &order[start..end];
        if run.len() > 1 {
            // Hashing keeps a batch that stamps everything with one timestamp linear.
            let mut seen: HashSet<&str> = HashSet::with_capacity(run.len());
            for &i in run {
                if !seen.insert(&*entries[i].line) {
                    duplicate[i] = true;
                    any = true;
                }
            }
        }
        start = end;
    }
    if any {
        let mut i = 0;
        entries.retain(|_| {
            let keep = !duplicate[i];
            i += 1;
            keep
        });
    }
}

/// Loki's grouping of validation messages for the 400 text.
#[derive(Default)]
struct GroupedErrors {
    groups: Vec<(String, usize)>,
    index: HashMap<String, usize>,
    total: usize,
}

impl GroupedErrors {
    fn add(&mut self, msg: String) {
        self.total += 1;
        if let Some(&i) = self.index.get(&msg) {
            self.groups[i].1 += 1;
        } else {
            self.index.insert(msg.clone(), self.groups.len());
            self.groups.push((msg, 1));
        }
    }

    fn text(self) -> Option<String> {
        match self.total {
            0 => None,
            1 => self.groups.into_iter().next().map(|(m, _)| m),
            _ => Some(
                self.groups
                    .iter()
                    .map(|(m, n)| format!("{n} errors like: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::PushStream;
    use parquetry_model::ByteString;
    use parquetry_model::config::{ByteSize, LokiDuration};

    /// 2023-11-14T22:13:20Z.
    const NOW: i64 = 1_700_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;
    const DAY: i64 = 86_400 * SEC;

    fn entry(ts_ns: i64, line: &str) -> Entry {
        Entry {
            ts_ns,
            line: line.into(),
            structured_metadata: vec![],
        }
    }

    fn stream(labels: &str, entries: Vec<Entry>) -> PushStream {
        PushStream {
            labels: labels.into(),
            entries,
        }
    }

    fn req(streams: Vec<PushStream>) -> PushRequest {
        PushRequest {
            streams,
            ..PushRequest::default()
        }
    }

    fn run(streams: Vec<PushStream>, limits: &Limits) -> Validated {
        validate(req(streams), limits, NOW).unwrap()
    }

    /// Limits with level detection off, so entries compare without `detected_level`.
    fn plain() -> Limits {
        Limits {
            discover_log_levels: false,
            ..Limits::default()
        }
    }

    fn dropped_text(streams: Vec<PushStream>, limits: &Limits) -> String {
        run(streams, limits).dropped.unwrap_or_default()
    }

    #[test]
    fn no_streams_is_422() {
        let e = validate(req(vec![]), &Limits::default(), NOW).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(
            e.to_string(),
            "error at least one valid stream is required for ingestion"
        );
    }

    #[test]
    fn unparseable_labels_fail_the_request() {
        let e = validate(
            req(vec![
                stream(r#"{a="1"}"#, vec![entry(NOW, "x")]),
                stream(r#"{a="1""#, vec![entry(NOW, "x")]),
            ]),
            &Limits::default(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            r#"couldn't parse labels: 1:7: parse error: unexpected end of input, expected "," or "}""#
        );
    }

    #[test]
    fn service_name_discovery() {
        let name = |labels: &str, limits: &Limits| {
            let v = run(vec![stream(labels, vec![entry(NOW, "x")])], limits);
            v.streams[0]
                .labels
                .get(SERVICE_NAME_LABEL)
                .map(String::from)
        };
        let l = plain();
        assert_eq!(name(r#"{app="a", service="s"}"#, &l).as_deref(), Some("s"));
        assert_eq!(
            name(r#"{job="j", container="c"}"#, &l).as_deref(),
            Some("c")
        );
        assert_eq!(
            name(r#"{job="j", k8s_job_name="k"}"#, &l).as_deref(),
            Some("j")
        );
        assert_eq!(name(r#"{app="", job="j"}"#, &l).as_deref(), Some("j"));
        assert_eq!(
            name(r#"{env="prod"}"#, &l).as_deref(),
            Some(UNKNOWN_SERVICE)
        );
        assert_eq!(name("{}", &l).as_deref(), Some(UNKNOWN_SERVICE));
        assert_eq!(
            name(r#"{service_name="x", app="a"}"#, &l).as_deref(),
            Some("x")
        );
        assert_eq!(name(r#"{__aggregated_metric__="a", app="a"}"#, &l), None);
        assert_eq!(name(r#"{__pattern__="p", app="a"}"#, &l), None);
        let custom = Limits {
            discover_service_name: vec!["team".into(), "app".into()],
            ..plain()
        };
        assert_eq!(
            name(r#"{app="a", team="t"}"#, &custom).as_deref(),
            Some("t")
        );
        let off = Limits {
            discover_service_name: vec![],
            ..plain()
        };
        assert_eq!(name(r#"{app="a"}"#, &off), None);
    }

    #[test]
    fn stream_level_messages() {
        let off = Limits {
            discover_service_name: vec![],
            ..plain()
        };
        assert_eq!(
            dropped_text(vec![stream("{}", vec![entry(NOW, "x")])], &off),
            "error at least one label pair is required per stream"
        );
        // A stream without entries is skipped before validation.
        assert_eq!(run(vec![stream("{}", vec![])], &off).dropped, None);

        let l = plain();
        let names = |n: usize| {
            let pairs: Vec<String> = (0..n).map(|i| format!("l{i:02}=\"v\"")).collect();
            format!("{{{}}}", pairs.join(", "))
        };
        // 15 names plus the added service_name is within the limit.
        assert_eq!(
            run(vec![stream(&names(15), vec![entry(NOW, "x")])], &l).dropped,
            None
        );
        let text = dropped_text(vec![stream(&names(16), vec![entry(NOW, "x")])], &l);
        assert!(
            text.starts_with("entry for stream '{l00=\"v\", l01=\"v\", ")
                && text
                    .ends_with(", service_name=\"unknown_service\"}' has 16 label names; limit 15"),
            "{text}"
        );

        let long_name = "n".repeat(1025);
        assert_eq!(
            dropped_text(
                vec![stream(
                    &format!("{{{long_name}=\"v\", app=\"a\"}}"),
                    vec![entry(NOW, "x")]
                )],
                &l
            ),
            format!(
                "stream '{{app=\"a\", {long_name}=\"v\", service_name=\"a\"}}' has label name too long: '{long_name}'"
            )
        );
        let long_value = "v".repeat(2049);
        assert_eq!(
            dropped_text(
                vec![stream(
                    &format!("{{app=\"{long_value}\"}}"),
                    vec![entry(NOW, "x")]
                )],
                &l
            ),
            format!(
                "stream '{{app=\"{long_value}\", service_name=\"{long_value}\"}}' has label value too long: '{long_value}'"
            )
        );
        assert_eq!(
            dropped_text(
                vec![stream(r#"{app="a", app="b"}"#, vec![entry(NOW, "x")])],
                &l
            ),
            r#"stream '{app="a", app="b", service_name="a"}' has duplicate label name: 'app'"#
        );
        assert_eq!(
            dropped_text(
                vec![stream(
                    r#"{"service.name"="a", app="b"}"#,
                    vec![entry(NOW, "x")]
                )],
                &l
            ),
            r#"error parsing labels '{app="b", service.name="a", service_name="b"}' with error: invalid label name: 'service.name'"#
        );
        // Internal streams skip label validation.
        let v = run(
            vec![stream(
                &format!("{{__aggregated_metric__=\"x\", {}", &names(20)[1..]),
                vec![entry(NOW, "x")],
            )],
            &l,
        );
        assert_eq!(v.dropped, None);
        assert_eq!(v.accepted_entries, 1);
    }

    #[test]
    fn entry_level_messages() {
        let l = plain();
        let one =
            |e: Entry, limits: &Limits| dropped_text(vec![stream(r#"{app="a"}"#, vec![e])], limits);
        let labels = r#"{app="a", service_name="a"}"#;
        assert_eq!(
            one(entry(NOW - 8 * DAY, "x"), &l),
            format!(
                "entry for stream '{labels}' has timestamp too old: 2023-11-06T22:13:20Z, oldest acceptable timestamp is: 2023-11-07T22:13:20Z"
            )
        );
        assert_eq!(
            one(entry(NOW - 7 * DAY, "x"), &l),
            "",
            "the boundary is accepted"
        );
        let keep_old = Limits {
            reject_old_samples: false,
            ..plain()
        };
        assert_eq!(one(entry(NOW - 800 * DAY, "x"), &keep_old), "");
        assert_eq!(
            one(entry(NOW + 601 * SEC, "x"), &l),
            format!("entry for stream '{labels}' has timestamp too new: 2023-11-14T22:23:21Z")
        );
        assert_eq!(one(entry(NOW + 600 * SEC, "x"), &l), "");
        assert_eq!(
            one(entry(NOW, &"x".repeat(262_145)), &l),
            format!(
                "max entry size '262144' bytes exceeded for stream '{labels}' while adding an entry with length '262145' bytes"
            )
        );
        assert_eq!(one(entry(NOW, &"x".repeat(262_144)), &l), "");

        let mut e = entry(NOW, "x");
        e.structured_metadata = vec![("k".into(), "v".repeat(65_536).into())];
        assert_eq!(
            one(e.clone(), &l),
            format!(
                "stream '{labels}' has structured metadata too large: '65537' bytes, limit: '65536' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it."
            )
        );
        let no_sm = Limits {
            allow_structured_metadata: false,
            ..plain()
        };
        assert_eq!(
            one(e, &no_sm),
            format!(
                "stream '{labels}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
            )
        );
        let mut e = entry(NOW, "x");
        e.structured_metadata = (0..129)
            .map(|i| (format!("k{i}").into(), "v".into()))
            .collect();
        assert_eq!(
            one(e, &l),
            format!(
                "stream '{labels}' has too many structured metadata labels: '129', limit: '128'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it."
            )
        );
    }

    #[test]
    fn truncation_instead_of_rejection() {
        let l = Limits {
            max_line_size: ByteSize(5),
            max_line_size_truncate: true,
            ..plain()
        };
        let v = run(
            vec![stream(
                r#"{app="a"}"#,
                vec![entry(NOW, "abcdefgh"), entry(NOW + 1, "abcdé")],
            )],
            &l,
        );
        assert_eq!(v.dropped, None);
        let lines: Vec<&str> = v.streams[0].entries.iter().map(|e| &*e.line).collect();
        // "abcdé" is 6 bytes; the cut backs off to the character boundary.
        assert_eq!(lines, ["abcde", "abcd"]);
    }

    #[test]
    fn partial_acceptance_grouping() {
        let l = Limits {
            max_line_size: ByteSize(3),
            reject_old_samples_max_age: LokiDuration::from_secs(86_400),
            ..plain()
        };
        let v = run(
            vec![
                stream(
                    r#"{app="a"}"#,
                    vec![
                        entry(NOW, "long"),
                        entry(NOW + 1, "ok"),
                        entry(NOW + 2, "long"),
                        entry(NOW - 2 * DAY, "old"),
                        entry(NOW + 3, "long"),
                    ],
                ),
                stream(
                    r#"{app="b", app="c"}"#,
                    vec![entry(NOW, "x"), entry(NOW, "y")],
                ),
            ],
            &l,
        );
        assert_eq!(v.accepted_entries, 1);
        assert_eq!(v.dropped_entries, 6);
        let long = r#"max entry size '3' bytes exceeded for stream '{app="a", service_name="a"}' while adding an entry with length '4' bytes"#;
        let old = r#"entry for stream '{app="a", service_name="a"}' has timestamp too old: 2023-11-12T22:13:20Z, oldest acceptable timestamp is: 2023-11-13T22:13:20Z"#;
        let dup =
            r#"stream '{app="b", app="c", service_name="b"}' has duplicate label name: 'app'"#;
        assert_eq!(
            v.dropped.as_deref(),
            Some(
                format!("3 errors like: {long}; 1 errors like: {old}; 1 errors like: {dup}")
                    .as_str()
            )
        );
        let e = v.dropped_error().unwrap();
        assert_eq!(e.status(), 400);

        // One repeated message is still grouped; a single message is bare.
        let v = run(
            vec![stream(
                r#"{app="a"}"#,
                vec![entry(NOW, "long"), entry(NOW + 1, "long")],
            )],
            &l,
        );
        assert_eq!(v.dropped, Some(format!("2 errors like: {long}")));
        let v = run(vec![stream(r#"{app="a"}"#, vec![entry(NOW, "long")])], &l);
        assert_eq!(v.dropped.as_deref(), Some(long));
        assert!(v.streams.is_empty());
    }

    #[test]
    fn merge_dedupe_and_counts() {
        let l = plain();
        let mut with_sm = entry(NOW + 3, "d");
        with_sm.structured_metadata = vec![("k".into(), "vv".into())];
        let v = run(
            vec![
                stream(
                    r#"{app="a"}"#,
                    vec![entry(NOW + 2, "c"), entry(NOW, "a"), entry(NOW, "a")],
                ),
                stream(r#"{b="1"}"#, vec![entry(NOW, "z")]),
                stream(
                    r#" { app = "a" , x="" } "#,
                    vec![entry(NOW, "a"), entry(NOW, "b"), with_sm],
                ),
            ],
            &l,
        );
        assert_eq!(v.dropped, None);
        assert_eq!(v.streams.len(), 2);
        let s = &v.streams[0];
        assert_eq!(s.labels.to_string(), r#"{app="a", service_name="a"}"#);
        let got: Vec<(i64, &str)> = s
            .entries
            .iter()
            .map(|e| (e.ts_ns - NOW, &*e.line))
            .collect();
        // Out of order is kept as sent; the same (ts, line) is dropped; same ts with another
        // line is kept.
        assert_eq!(got, [(2, "c"), (0, "a"), (0, "b"), (3, "d")]);
        assert_eq!(
            v.streams[1].labels.to_string(),
            r#"{b="1", service_name="unknown_service"}"#
        );
        assert_eq!(v.accepted_entries, 5);
        assert_eq!(v.accepted_bytes, 5 + 3);
        assert_eq!(v.dropped_entries, 0);
    }

    #[test]
    fn many_equal_timestamps_stay_linear() {
        let entries: Vec<Entry> = (0..50_000)
            .map(|i| entry(NOW, &(i % 25_000).to_string()))
            .collect();
        let v = run(vec![stream(r#"{app="a"}"#, entries)], &plain());
        assert_eq!(v.accepted_entries, 25_000);
    }

    #[test]
    fn detected_level_enrichment() {
        let l = Limits::default();
        let mut pre = entry(NOW + 3, "x");
        pre.structured_metadata = vec![("detected_level".into(), "WRN".into())];
        let mut sm = entry(NOW + 4, "x");
        sm.structured_metadata = vec![("severity".into(), "dbg".into())];
        let v = run(
            vec![stream(
                r#"{app="a"}"#,
                vec![
                    entry(NOW, r#"{"level":"Error","msg":"x"}"#),
                    entry(NOW + 1, "ts=1 lvl=inf msg=hi"),
                    entry(NOW + 2, "something FATAL happened"),
                    pre,
                    sm,
                    entry(NOW + 5, "plain"),
                ],
            )],
            &l,
        );
        let levels: Vec<&str> = v.streams[0]
            .entries
            .iter()
            .map(|e| {
                e.structured_metadata
                    .iter()
                    .find(|(n, _)| n == "detected_level")
                    .map(|(_, v)| &**v)
                    .unwrap_or("-")
            })
            .collect();
        assert_eq!(
            levels,
            ["error", "info", "fatal", "warn", "debug", "unknown"]
        );

        let v = run(
            vec![stream(
                r#"{app="a", level="WARNING"}"#,
                vec![entry(NOW, "error")],
            )],
            &l,
        );
        assert_eq!(
            v.streams[0].entries[0].structured_metadata,
            vec![(ByteString::from("detected_level"), ByteString::from("warn"))]
        );
        for limits in [
            plain(),
            Limits {
                allow_structured_metadata: false,
                ..Limits::default()
            },
        ] {
            let v = run(
                vec![stream(r#"{app="a"}"#, vec![entry(NOW, "error")])],
                &limits,
            );
            assert!(v.streams[0].entries[0].structured_metadata.is_empty());
        }
        let v = run(
            vec![stream(r#"{__pattern__="p"}"#, vec![entry(NOW, "error")])],
            &l,
        );
        assert!(v.streams[0].entries[0].structured_metadata.is_empty());
        // The added metadata does not count against the metadata limits.
        let tight = Limits {
            max_structured_metadata_entries_count: 1,
            ..Limits::default()
        };
        let mut one = entry(NOW, "x");
        one.structured_metadata = vec![("k".into(), "v".into())];
        let v = run(vec![stream(r#"{app="a"}"#, vec![one])], &tight);
        assert_eq!(v.dropped, None);
        assert_eq!(v.streams[0].entries[0].structured_metadata.len(), 2);
    }

    #[test]
    fn replacement_characters_in_structured_metadata_values_become_spaces() {
        // As Loki's distributor does for every push format, after validation, before level
        // detection; names are left alone.
        let mut e = entry(NOW, "x");
        e.structured_metadata = vec![
            ("k\u{fffd}".into(), "a\u{fffd}b\u{fffd}".into()),
            ("ok".into(), "fine".into()),
        ];
        let v = run(vec![stream(r#"{app="a"}"#, vec![e])], &plain());
        assert_eq!(
            v.streams[0].entries[0].structured_metadata,
            vec![
                (ByteString::from("k\u{fffd}"), ByteString::from("a b ")),
                (ByteString::from("ok"), ByteString::from("fine"))
            ]
        );
        assert_eq!(v.sanitized_structured_metadata, 1);
        assert_eq!(v.dropped, None);
    }

    #[test]
    fn end_to_end_from_protobuf() {
        use crate::proto;
        use prost::Message;
        let body = proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: r#"{job="varlogs", filename="/var/log/syslog"}"#.into(),
                entries: vec![proto::EntryAdapter {
                    timestamp: Some(proto::Timestamp::from_unix_nanos(NOW)),
                    line: "level=warn msg=disk".into(),
                    structured_metadata: vec![],
                    parsed: vec![],
                }],
                hash: 0,
            }],
            format: String::new(),
        }
        .encode_to_vec();
        let body = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        let req = crate::decode_push(
            &body,
            Some("application/x-protobuf"),
            None,
            true,
            &crate::DecodeLimits::default(),
        )
        .unwrap();
        let v = validate(req, &Limits::default(), NOW).unwrap();
        assert_eq!(v.dropped, None);
        let s = &v.streams[0];
        assert_eq!(
            s.labels.to_string(),
            r#"{filename="/var/log/syslog", job="varlogs", service_name="varlogs"}"#
        );
        assert_eq!(
            s.entries[0].structured_metadata,
            vec![(ByteString::from("detected_level"), ByteString::from("warn"))]
        );
    }
}
