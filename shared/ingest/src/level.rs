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
//! JSON and logfmt are read by the scanners `| json` and `| logfmt` use (`parquetry_json`,
//! `parquetry_logfmt`), so the level found here is the value those parsers extract.

use std::borrow::Cow;

use parquetry_json::{JErr, Kind, Val};
use parquetry_model::{ByteString, Labels};

/// The structured-metadata name the level is stored under.
pub const DETECTED_LEVEL: &str = "detected_level";

/// The value stored when no level could be found.
pub const UNKNOWN_LEVEL: &str = "unknown";

/// The level names Loki stores (what [`normalize_level`] maps spellings onto, and
/// [`UNKNOWN_LEVEL`]).
const LEVEL_NAMES: [&str; 8] = [
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "critical",
    "fatal",
    UNKNOWN_LEVEL,
];

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
/// detects one from `labels`, `metadata` and `line` and appends it. For many entries of one
/// stream, [`StreamLevel`] looks at the labels once.
pub fn apply_detected_level(
    labels: &Labels,
    metadata: &mut Vec<(ByteString, ByteString)>,
    line: &str,
) {
    StreamLevel::new(labels).apply(metadata, line);
}

/// The level for an entry without `detected_level` metadata (see the module docs).
pub fn detect_level<'a, S: AsRef<str>>(
    labels: &'a Labels,
    metadata: &'a [(S, S)],
    line: &str,
) -> Cow<'a, str> {
    StreamLevel::new(labels).detect(metadata, line)
}

/// Level detection for the entries of one stream. A stream label named like a level field
/// wins over everything in the entry, and it is the same for every entry: it is looked up once
/// (eleven label lookups per entry were 4 % of the push path's CPU).
pub struct StreamLevel<'a> {
    from_labels: Option<&'a str>,
}

impl<'a> StreamLevel<'a> {
    /// Looks up the stream's level label, if any.
    pub fn new(labels: &'a Labels) -> Self {
        StreamLevel {
            from_labels: LEVEL_FIELDS
                .iter()
                .find_map(|f| labels.get(f).filter(|v| !v.is_empty()))
                .map(normalize_level),
        }
    }

    /// Sets `detected_level` in `metadata`: normalises an existing value in place, otherwise
    /// detects one and appends it.
    pub fn apply(&self, metadata: &mut Vec<(ByteString, ByteString)>, line: &str) {
        let mut had = false;
        for (n, v) in metadata.iter_mut() {
            if n == DETECTED_LEVEL {
                had = true;
                if let Some(k) = known_level(v)
                    && *v != k
                {
                    *v = ByteString::from_static(k);
                }
            }
        }
        if !had {
            // Nearly every level is one of Loki's names: those cost no allocation.
            let level = self.detect(metadata, line);
            let level = LEVEL_NAMES
                .iter()
                .find(|k| **k == level)
                .map_or_else(|| ByteString::from(&*level), |k| ByteString::from_static(k));
            metadata.push((ByteString::from_static(DETECTED_LEVEL), level));
        }
    }

    /// The level for an entry without `detected_level` metadata.
    pub fn detect<'m, S: AsRef<str>>(&self, metadata: &'m [(S, S)], line: &str) -> Cow<'m, str>
    where
        'a: 'm,
    {
        if let Some(v) = self.from_labels {
            return Cow::Borrowed(v);
        }
        if let Some(v) = LEVEL_FIELDS.iter().find_map(|f| {
            metadata
                .iter()
                .find(|(n, v)| n.as_ref() == *f && !v.as_ref().is_empty())
                .map(|(_, v)| v.as_ref())
        }) {
            return Cow::Borrowed(normalize_level(v));
        }
        // OTLP records carry their level as a number (OpenTelemetry's severity ranges).
        if let Some((_, n)) = metadata
            .iter()
            .find(|(n, v)| n.as_ref() == crate::otlp::SEVERITY_NUMBER && !v.as_ref().is_empty())
        {
            return Cow::Borrowed(severity_number_level(n.as_ref()));
        }
        Cow::Borrowed(line_level(line))
    }
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
pub fn normalize_level(v: &str) -> &str {
    known_level(v).unwrap_or(v)
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
/// Read with the scanner `| json` uses, so the field is the one `| json` extracts; fields before
/// a malformed part count, as they do for `| json`. The value is compared as written (see
/// [`consider`]).
fn json_level(line: &str) -> Option<Cow<'_, str>> {
    /// Why a scan ended early: malformed JSON, or a field nothing can outrank.
    struct Stop;
    impl From<JErr> for Stop {
        fn from(_: JErr) -> Stop {
            Stop
        }
    }
    let mut best: Best<'_> = None;
    // An error only ends the scan: what was found before it stands. A top-level field of
    // the first rank (`level`) wins over anything after it, so the scan ends there too.
    let _ = parquetry_json::object_each::<Stop>(line.as_bytes(), |key, value| {
        consider(&mut best, &key, value, 1, false);
        match best {
            Some((0, _)) => Err(Stop),
            _ => Ok(()),
        }
    });
    best.map(|(_, v)| v)
}

/// The best candidate so far: its rank (lower wins) and value.
type Best<'a> = Option<(usize, Cow<'a, str>)>;

/// Ranks one object member as a level field, descending one level into object values.
fn consider<'a>(
    best: &mut Best<'a>,
    key: &[u8],
    value: Val<'a>,
    depth: usize,
    parent_is_log: bool,
) {
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    let rank = field_rank(key)
        .or_else(|| (parent_is_log && key == "level").then(|| field_rank("log.level"))?);
    match rank {
        Some(r) => {
            // Depth 2 ranks after every depth 1 field.
            let r = r + (depth - 1) * LEVEL_FIELDS.len();
            // The value as written, escapes and all: Loki matches levels on the raw bytes
            // (`"\u0065rror"` is no level there), though keys are unescaped.
            if value.kind == Kind::String
                && best.as_ref().is_none_or(|(b, _)| r < *b)
                && let Ok(v) = std::str::from_utf8(value.raw)
            {
                *best = Some((r, Cow::Borrowed(v)));
            }
        }
        None if depth == 1 && value.kind == Kind::Object => {
            let parent_is_log = key == "log";
            let _ = parquetry_json::object_each::<JErr>(value.raw, |k, v| {
                consider(best, &k, v, 2, parent_is_log);
                Ok(())
            });
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_METADATA: &[(&str, &str)] = &[];

    fn line(l: &str) -> String {
        detect_level(&Labels::default(), NO_METADATA, l).into_owned()
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
        assert_eq!(detect_level(&labels, NO_METADATA, "error here"), "warn");
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
        // Recorded from a reference Loki: an escaped key is unescaped, an escaped value is
        // not (and the keyword scan finds no level in it).
        assert_eq!(line(r#"{"le\u0076el":"error"}"#), "error");
        assert_eq!(line(r#"{"le\u0076el":"\u0065rror"}"#), "unknown");
        assert_eq!(line(r#"{"level":"\u0044EBUG","msg":"x"}"#), "unknown");
        // Also recorded from Loki: a validating parser would stop before these levels.
        assert_eq!(line(r#"{"msg":"bad \q escape","level":"WRN"}"#), "warn");
        assert_eq!(line(r#"{"took":1e,"level":"trc"}"#), "trace");
        assert_eq!(line(r#"{"severity":"critical",}"#), "critical");
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
        let pair = |n: &str, v: &str| (ByteString::from(n), ByteString::from(v));
        let mut md = vec![pair("detected_level", "WRN")];
        apply_detected_level(&Labels::default(), &mut md, "error");
        assert_eq!(md, vec![pair("detected_level", "warn")]);
        let mut md = vec![];
        apply_detected_level(&Labels::default(), &mut md, "nothing");
        assert_eq!(md, vec![pair("detected_level", "unknown")]);
        // A label value that is no level name is kept as written.
        let labels = Labels::from_pairs([("level", "Custom")]);
        let mut md = vec![];
        apply_detected_level(&labels, &mut md, "error");
        assert_eq!(md, vec![pair("detected_level", "Custom")]);
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
