//! `detected_level`: the log level Loki attaches to every entry as structured metadata at
//! ingest, which Grafana's log-volume panel and Logs Drilldown group by.
//!
//! Sources, first hit wins: an existing `detected_level` (normalised), a stream label named like
//! a level field, a structured-metadata field named like one, an OTLP `severity_number`
//! structured-metadata field, the line itself (a level field of
//! a JSON object up to depth 2, or of logfmt pairs), and finally the earliest level keyword in
//! the line as a whole word. Nothing found gives `unknown`.
//!
//! This runs on every accepted entry, so the line inspection avoids building JSON values or
//! copying the line: one pass for JSON (borrowing strings), one for logfmt, one for keywords.

use std::borrow::Cow;
use std::fmt;

use parquetry_model::Labels;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The structured-metadata name the level is stored under.
pub const DETECTED_LEVEL: &str = "detected_level";

/// The value stored when no level could be found.
pub const UNKNOWN_LEVEL: &str = "unknown";

/// Field names that carry a level, in priority order (labels, metadata, JSON and logfmt).
pub const LEVEL_FIELDS: [&str; 11] = [
    "level",
    "LEVEL",
    "Level",
    "log.level",
    "severity",
    "SEVERITY",
    "Severity",
    "SeverityText",
    "lvl",
    "LVL",
    "Lvl",
];

/// Sets `detected_level` in `metadata`: normalises an existing value in place, otherwise
/// detects one from `labels`, `metadata` and `line` and appends it.
pub fn apply_detected_level(labels: &Labels, metadata: &mut Vec<(String, String)>, line: &str) {
    let mut had = false;
    for (n, v) in metadata.iter_mut() {
        if n == DETECTED_LEVEL {
            had = true;
            if let Some(k) = known_level(v)
                && k != v
            {
                *v = k.to_string();
            }
        }
    }
    if !had {
        let level = detect_level(labels, metadata, line).into_owned();
        metadata.push((DETECTED_LEVEL.to_string(), level));
    }
}

/// The level for an entry without `detected_level` metadata (see the module docs).
pub fn detect_level<'a>(
    labels: &'a Labels,
    metadata: &'a [(String, String)],
    line: &str,
) -> Cow<'a, str> {
    if let Some(v) = LEVEL_FIELDS
        .iter()
        .find_map(|f| labels.get(f).filter(|v| !v.is_empty()))
    {
        return normalize_level(v);
    }
    if let Some(v) = LEVEL_FIELDS.iter().find_map(|f| {
        metadata
            .iter()
            .find(|(n, v)| n == f && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }) {
        return normalize_level(v);
    }
    // OTLP records carry their level as a number (OpenTelemetry's severity ranges).
    if let Some((_, n)) = metadata
        .iter()
        .find(|(n, v)| n == crate::otlp::SEVERITY_NUMBER && !v.is_empty())
    {
        return Cow::Borrowed(severity_number_level(n));
    }
    Cow::Borrowed(line_level(line))
}

/// Loki's level for an OTLP `severity_number`: 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn,
/// 17-20 error, 21-24 fatal, 0 and anything above unknown; a value that is not a number reads
/// as info.
fn severity_number_level(n: &str) -> &'static str {
    match n.parse::<i64>() {
        Err(_) => "info",
        Ok(0) => UNKNOWN_LEVEL,
        // Loki compares `<= 4`, so a negative number reads as trace too.
        Ok(..=4) => "trace",
        Ok(5..=8) => "debug",
        Ok(9..=12) => "info",
        Ok(13..=16) => "warn",
        Ok(17..=20) => "error",
        Ok(21..=24) => "fatal",
        Ok(_) => UNKNOWN_LEVEL,
    }
}

/// Maps the usual spellings onto Loki's level names, case-insensitively; anything else is kept
/// as given.
pub fn normalize_level(v: &str) -> Cow<'_, str> {
    match known_level(v) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Borrowed(v),
    }
}

/// Loki's level name for a recognised spelling.
fn known_level(v: &str) -> Option<&'static str> {
    let b = v.as_bytes();
    if b.len() > 11 {
        return None;
    }
    let mut buf = [0u8; 11];
    for (d, s) in buf.iter_mut().zip(b) {
        *d = s.to_ascii_lowercase();
    }
    Some(match &buf[..b.len()] {
        b"trace" | b"trc" => "trace",
        b"debug" | b"dbg" => "debug",
        b"info" | b"inf" | b"information" => "info",
        b"warn" | b"wrn" | b"warning" => "warn",
        b"error" | b"err" => "error",
        b"critical" => "critical",
        b"fatal" => "fatal",
        _ => return None,
    })
}

/// The level a line states, or `unknown`. A structured field whose value is not a recognised
/// level does not end the search: the keyword scan still runs, as in Loki.
fn line_level(line: &str) -> &'static str {
    let t = line.trim_ascii();
    let field = if t.len() >= 2 && t.starts_with('{') && t.ends_with('}') {
        json_level(t)
    } else if t.contains('=') {
        logfmt_level(t)
    } else {
        None
    };
    if let Some(k) = field.as_deref().and_then(known_level) {
        return k;
    }
    keyword_level(line).unwrap_or(UNKNOWN_LEVEL)
}

/// Word characters for keyword boundaries, ASCII-only like RE2's `\b`.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The earliest whole word that is a level keyword.
fn keyword_level(line: &str) -> Option<&'static str> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !is_word(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_word(b[i]) {
            i += 1;
        }
        let w = &b[start..i];
        if (3..=8).contains(&w.len()) {
            let mut buf = [0u8; 8];
            for (d, s) in buf.iter_mut().zip(w) {
                *d = s.to_ascii_lowercase();
            }
            let hit = match &buf[..w.len()] {
                b"trace" => Some("trace"),
                b"debug" => Some("debug"),
                b"fatal" => Some("fatal"),
                b"critical" => Some("critical"),
                b"error" | b"err" => Some("error"),
                b"warning" | b"warn" => Some("warn"),
                b"info" => Some("info"),
                _ => None,
            };
            if hit.is_some() {
                return hit;
            }
        }
    }
    None
}

/// Position of a field name in [`LEVEL_FIELDS`].
fn field_rank(name: &str) -> Option<usize> {
    LEVEL_FIELDS.iter().position(|f| *f == name)
}

/// The string value of the best level field of a logfmt line: the first level-named key, read
/// with the scanner `| logfmt` uses (malformed pairs skipped as it skips them; `level=` is
/// an empty value).
fn logfmt_level(line: &str) -> Option<Cow<'_, str>> {
    parquetry_logfmt::Decoder::new(line).find_map(|item| match item {
        parquetry_logfmt::Item::Pair(key, value) if field_rank(key).is_some() => {
            Some(value.unwrap_or(Cow::Borrowed("")))
        }
        _ => None,
    })
}

/// The string value of the best level field of a JSON object: any top-level field beats a
/// nested one, then [`LEVEL_FIELDS`] order decides. `log.level` also matches `{"log":{"level"}}`.
fn json_level(line: &str) -> Option<Cow<'_, str>> {
    let mut best: Best<'_> = None;
    let mut de = serde_json::Deserializer::from_str(line);
    Deserializer::deserialize_map(
        &mut de,
        ObjectScan {
            best: &mut best,
            depth: 1,
            parent_is_log: false,
        },
    )
    .ok()?;
    best.map(|(_, v)| v)
}

/// The best candidate so far: its rank (lower wins) and value.
type Best<'de> = Option<(usize, Cow<'de, str>)>;

/// Scans one object's keys for level fields, descending one level into object values.
struct ObjectScan<'b, 'de> {
    best: &'b mut Best<'de>,
    depth: usize,
    parent_is_log: bool,
}

impl<'de> Visitor<'de> for ObjectScan<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let rank = field_rank(&key).or_else(|| {
                (self.parent_is_log && key == "level").then(|| field_rank("log.level"))?
            });
            match rank {
                Some(r) => {
                    // Depth 2 ranks after every depth 1 field.
                    let r = r + (self.depth - 1) * LEVEL_FIELDS.len();
                    if let Some(v) = map.next_value_seed(StrValue)?
                        && self.best.as_ref().is_none_or(|(b, _)| r < *b)
                    {
                        *self.best = Some((r, v));
                    }
                }
                None if self.depth == 1 => map.next_value_seed(NestedScan {
                    best: &mut *self.best,
                    parent_is_log: key == "log",
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the line when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value that is a string (captured) or anything else (skipped).
struct StrValue;

impl<'de> DeserializeSeed<'de> for StrValue {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(AnyValue::<true> { nested: None })
            .map(|v| v.flatten())
    }
}

/// A value at depth 1 that is scanned if it is an object and skipped otherwise.
struct NestedScan<'b, 'de> {
    best: &'b mut Best<'de>,
    parent_is_log: bool,
}

impl<'de> DeserializeSeed<'de> for NestedScan<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(AnyValue::<false> {
            nested: Some(ObjectScan {
                best: self.best,
                depth: 2,
                parent_is_log: self.parent_is_log,
            }),
        })
        .map(|_| ())
    }
}

/// Accepts any JSON value. With `CAPTURE` it returns strings; with `nested` set it scans an
/// object value; everything else is consumed and dropped.
struct AnyValue<'b, 'de, const CAPTURE: bool> {
    nested: Option<ObjectScan<'b, 'de>>,
}

impl<'de, const CAPTURE: bool> Visitor<'de> for AnyValue<'_, 'de, CAPTURE> {
    type Value = Option<Option<Cow<'de, str>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(CAPTURE.then_some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(CAPTURE.then(|| Cow::Owned(v.to_string()))))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        match self.nested {
            Some(scan) => scan.visit_map(map)?,
            None => while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {},
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(l: &str) -> String {
        detect_level(&Labels::default(), &[], l).into_owned()
    }

    #[test]
    fn normalisation() {
        for (i, o) in [
            ("trc", "trace"),
            ("TRACE", "trace"),
            ("dbg", "debug"),
            ("Debug", "debug"),
            ("inf", "info"),
            ("INFORMATION", "info"),
            ("wrn", "warn"),
            ("WARNING", "warn"),
            ("warn", "warn"),
            ("err", "error"),
            ("Error", "error"),
            ("CRITICAL", "critical"),
            ("fatal", "fatal"),
            ("notice", "notice"),
            ("", ""),
        ] {
            assert_eq!(normalize_level(i), o, "{i}");
        }
    }

    #[test]
    fn labels_then_metadata_then_line() {
        let labels = Labels::from_pairs([("app", "x"), ("lvl", "WRN")]);
        assert_eq!(detect_level(&labels, &[], "error here"), "warn");
        let md = vec![("severity".to_string(), "Critical".to_string())];
        assert_eq!(
            detect_level(&Labels::default(), &md, "error here"),
            "critical"
        );
        // Field priority: `level` outranks `lvl` even when it comes later.
        let md = vec![
            ("lvl".to_string(), "debug".to_string()),
            ("level".to_string(), "info".to_string()),
        ];
        assert_eq!(detect_level(&Labels::default(), &md, ""), "info");
        // Labels win over metadata; unknown values pass through.
        let labels = Labels::from_pairs([("level", "notice")]);
        assert_eq!(detect_level(&labels, &md, ""), "notice");
    }

    #[test]
    fn json_lines() {
        assert_eq!(line(r#"{"msg":"error in x","level":"WARN"}"#), "warn");
        assert_eq!(line(r#"  {"severity":"dbg"}  "#), "debug");
        assert_eq!(line(r#"{"log":{"level":"err"},"msg":"hi"}"#), "error");
        assert_eq!(line(r#"{"a":{"lvl":"trc"},"msg":"x"}"#), "trace");
        // Top level beats nested regardless of field order.
        assert_eq!(line(r#"{"a":{"level":"debug"},"lvl":"info"}"#), "info");
        // Escaped key and value.
        assert_eq!(line(r#"{"le\u0076el":"\u0065rror"}"#), "error");
        // Number levels are not levels: fall back to keywords.
        assert_eq!(line(r#"{"level":30,"msg":"fatal crash"}"#), "fatal");
        // Unrecognised value: keywords over the whole line.
        assert_eq!(line(r#"{"level":"notice","msg":"debug it"}"#), "debug");
        // Depth 3 is not looked at.
        assert_eq!(line(r#"{"a":{"b":{"level":"error"}}}"#), "error");
        assert_eq!(line(r#"{"a":{"b":{"level":"x"}}}"#), "unknown");
        // Broken JSON falls back to keywords.
        assert_eq!(line(r#"{"level":"info" broken WARNING}"#), "info");
        assert_eq!(
            line(r#"{"x":[1,{"level":"error"}],"n":null,"t":true}"#),
            "error"
        );
    }

    #[test]
    fn logfmt_lines() {
        assert_eq!(line("ts=1 level=wrn msg=\"error in x\""), "warn");
        assert_eq!(line("ts=1 msg=\"a b\" Level=\"Information\""), "info");
        // Recorded from a reference Loki: an invalid escape makes the pair malformed, as for
        // `| logfmt`; malformed pairs before the level are skipped.
        assert_eq!(line("a=\"x\\\"y\" lvl=\"E\\RR\""), "unknown");
        assert_eq!(line("level=\"err\" broken=\"x"), "error");
        assert_eq!(line("bad\"key=1 level=error"), "error");
        assert_eq!(line("msg=hi level=notice critical"), "critical");
        assert_eq!(line("x= level= y=\""), "unknown");
    }

    #[test]
    fn keywords() {
        assert_eq!(line("GET /api 500 error: boom, warning later"), "error");
        assert_eq!(line("[WARN] disk almost full, error soon"), "warn");
        assert_eq!(line("Info: started"), "info");
        assert_eq!(line("errors happened, information below"), "unknown");
        assert_eq!(line("my_error and infos"), "unknown");
        assert_eq!(line("2024 ERR something"), "error");
        assert_eq!(line("TRACE"), "trace");
        assert_eq!(line("caf\u{e9}debug"), "debug");
        assert_eq!(line(""), "unknown");
    }

    #[test]
    fn apply_normalises_or_appends() {
        let mut md = vec![("detected_level".to_string(), "WRN".to_string())];
        apply_detected_level(&Labels::default(), &mut md, "error");
        assert_eq!(md, vec![("detected_level".to_string(), "warn".to_string())]);
        let mut md = vec![];
        apply_detected_level(&Labels::default(), &mut md, "nothing");
        assert_eq!(
            md,
            vec![("detected_level".to_string(), "unknown".to_string())]
        );
    }

    #[test]
    fn odd_input_never_panics() {
        for l in [
            "{",
            "}",
            "{}",
            "{\"",
            "{\"level\"",
            "{\"level\":",
            "=",
            "==",
            "a=\"",
            "a=\"\\",
            "level=\"\\",
            "\u{fffd}=x",
            "{\"a\":{\"b\":",
            "é=é level=é",
        ] {
            let _ = line(l);
        }
    }
}
