//! `| logfmt [--strict] [--keep-empty] [extractions]`.
//!
//! Pairs are `key=value`, `key="quoted value"`, `key=` or a bare `key`, separated by
//! whitespace. Malformed pairs are skipped unless `--strict`, which stops at the first one and
//! records `LogfmtParserErr`.

use std::borrow::Cow;
use std::ops::ControlFlow;

use parquetry_logfmt::{Decoder, Item};

use crate::hints::ParserHints;
use crate::json::sanitize_key;
use crate::labels::EntryLabels;

/// `__error__` of `logfmt --strict` on a malformed pair.
pub const LOGFMT_ERR: &str = "LogfmtParserErr";

#[derive(Debug)]
pub(crate) struct Logfmt {
    strict: bool,
    keep_empty: bool,
    /// `(label name, key)`; empty means every key.
    extractions: Vec<(String, String)>,
}

impl Logfmt {
    pub(crate) fn new(p: &parquetry_logql::LogfmtParser) -> Self {
        Logfmt {
            strict: p.strict,
            keep_empty: p.keep_empty,
            extractions: p
                .extractions
                .iter()
                .map(|e| (e.name.clone(), e.path().to_string()))
                .collect(),
        }
    }

    /// With `hints`, only wanted keys are extracted and reading stops once all are there.
    pub(crate) fn process(&self, line: &str, entry: &mut EntryLabels, hints: Option<&ParserHints>) {
        if self.extractions.is_empty() {
            self.process_all(line, entry, hints);
        } else {
            self.process_extractions(line, entry, hints);
        }
    }

    /// `| logfmt`: every pair becomes a label; the first value of a name wins.
    fn process_all(&self, line: &str, entry: &mut EntryLabels, hints: Option<&ParserHints>) {
        // U+FFFD is EF BF BD in UTF-8: a line without the byte EF has none in its plain
        // values, and only unescaped ones need looking at.
        let may_replace = memchr::memchr(0xEF, line.as_bytes()).is_some();
        let owner = std::ptr::from_ref(self) as usize;
        entry.with_key_names(owner, |entry, names| {
            let mut at = 0;
            self.each_pair(line, entry, |entry, key, value| {
                let value = value.unwrap_or(Cow::Borrowed(""));
                at += 1;
                if value.is_empty() && !self.keep_empty {
                    return ControlFlow::Continue(());
                }
                let label = |entry: &EntryLabels, key: &str| {
                    let name = sanitize_key(key);
                    if name.is_empty() {
                        return None;
                    }
                    let name = entry.parsed_name(&name);
                    hints
                        .is_none_or(|h| h.wants(&name))
                        .then(|| name.into_owned())
                };
                let Some(named) = names.name(entry, at - 1, key, label) else {
                    return ControlFlow::Continue(());
                };
                let value = if may_replace || matches!(value, Cow::Owned(_)) {
                    replacement_to_space(value)
                } else {
                    value
                };
                if entry.add_parsed_named(named, &value) {
                    names.forget_line();
                }
                stop_when_all_extracted(entry, hints)
            })
        });
    }

    /// `| logfmt q="queue", a`: Loki's extraction parser. Every requested label exists
    /// afterwards — empty when its key is absent — unless it clashes with a stream label or
    /// structured metadata, in which case only a found key adds `<name>_extracted`. A key
    /// that appears twice gives its last value, except for a clashing name, where the first
    /// stays and reading stops.
    fn process_extractions(
        &self,
        line: &str,
        entry: &mut EntryLabels,
        hints: Option<&ParserHints>,
    ) {
        for (label, _) in &self.extractions {
            if !entry.clashes(label) {
                entry.set_parsed(label, "");
            }
        }
        self.each_pair(line, entry, |entry, key, value| {
            let key = sanitize_key(key);
            if key.is_empty() {
                return ControlFlow::Continue(());
            }
            let requested = self.extractions.iter().any(|(l, _)| *l == key);
            if !requested && (entry.is_parsed(&key) || hints.is_some_and(|h| !h.wants(&key))) {
                return ControlFlow::Continue(());
            }
            // A value with U+FFFD (invalid UTF-8 in the line) is dropped whole here,
            // where the plain parser only blanks the bad characters.
            let value = value
                .filter(|v| !v.contains('\u{FFFD}'))
                .unwrap_or(Cow::Borrowed(""));
            let label = self
                .extractions
                .iter()
                .find(|(_, k)| *k == key)
                .map_or(&*key, |(l, _)| l.as_str());
            if !self.extractions.iter().any(|(l, _)| l == label) {
                return ControlFlow::Continue(());
            }
            if entry.clashes(label) {
                let renamed = format!("{label}_extracted");
                if entry.is_parsed(&renamed) || hints.is_some_and(|h| !h.wants(&renamed)) {
                    return ControlFlow::Break(());
                }
                entry.set_parsed(&renamed, &value);
            } else {
                entry.set_parsed(label, &value);
            }
            stop_when_all_extracted(entry, hints)
        });
    }

    /// Feeds each pair of `line` to `pair` until it breaks. A malformed pair is skipped, or
    /// under `--strict` ends the line with [`LOGFMT_ERR`].
    fn each_pair<'l>(
        &self,
        line: &'l str,
        entry: &mut EntryLabels,
        mut pair: impl FnMut(&mut EntryLabels, &'l str, Option<Cow<'l, str>>) -> ControlFlow<()>,
    ) {
        for item in Decoder::new(line) {
            match item {
                Item::Pair(key, value) => {
                    if pair(entry, key, value).is_break() {
                        return;
                    }
                }
                Item::Malformed { pos, msg } => {
                    if self.strict {
                        set_syntax_error(entry, pos, msg);
                        return;
                    }
                }
            }
        }
    }
}

/// Reading can stop once the hints have everything they want.
fn stop_when_all_extracted(entry: &EntryLabels, hints: Option<&ParserHints>) -> ControlFlow<()> {
    if hints.is_some_and(|h| h.all_extracted(entry)) {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

fn set_syntax_error(entry: &mut EntryLabels, pos: usize, msg: &str) {
    entry.set_error(
        LOGFMT_ERR,
        &format!("logfmt syntax error at pos {} : {msg}", pos + 1),
    );
}

/// Loki turns U+FFFD, which is what invalid UTF-8 in a line decodes to, into spaces.
fn replacement_to_space(v: Cow<'_, str>) -> Cow<'_, str> {
    // U+FFFD is EF BF BD in UTF-8: a byte search rules it out far faster than a `char`
    // pattern, which searches for the whole sequence.
    if memchr::memchr(0xEF, v.as_bytes()).is_some() && v.contains('\u{FFFD}') {
        Cow::Owned(v.replace('\u{FFFD}', " "))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_logql::{LabelExtraction, LogfmtParser};
    use parquetry_model::Labels;

    fn run(p: LogfmtParser, line: &str) -> EntryLabels {
        let mut e = EntryLabels::of_stream(&Labels::from_pairs([("level", "x")]));
        Logfmt::new(&p).process(line, &mut e, None);
        e
    }

    #[test]
    fn pairs() {
        let e = run(
            LogfmtParser::default(),
            r#"ts=1 msg="hello \"w\" x" level=info empty= bare a.b=c url=http://x?a=b 1x=y"#,
        );
        assert_eq!(e.get("ts"), Some("1"));
        assert_eq!(e.get("msg"), Some(r#"hello "w" x"#));
        assert_eq!(e.get("level_extracted"), Some("info"));
        assert_eq!(e.get("empty"), None);
        assert_eq!(e.get("bare"), None);
        assert_eq!(e.get("a_b"), Some("c"));
        assert_eq!(e.get("url"), Some("http://x?a=b"));
        assert_eq!(e.get("_1x"), Some("y"));
        assert!(!e.has_error());
    }

    #[test]
    fn flags_and_extractions() {
        let keep = LogfmtParser {
            keep_empty: true,
            ..Default::default()
        };
        let e = run(keep, "a= b c=1");
        assert_eq!(e.get("a"), Some(""));
        assert_eq!(e.get("b"), Some(""));
        let strict = LogfmtParser {
            strict: true,
            ..Default::default()
        };
        let e = run(strict.clone(), "a=1 =2 c=3");
        assert_eq!(e.get("__error__"), Some(LOGFMT_ERR));
        assert_eq!(e.get("a"), Some("1"));
        assert_eq!(e.get("c"), None);
        let e = run(strict, r#"a="unterminated"#);
        assert_eq!(e.get("__error__"), Some(LOGFMT_ERR));
        let e = run(LogfmtParser::default(), "a=1 =2 c=3 d\"x=1");
        assert!(!e.has_error());
        assert_eq!(e.get("c"), Some("3"));
        let ex = LogfmtParser {
            extractions: vec![
                LabelExtraction {
                    name: "lat".into(),
                    expression: Some("latency".into()),
                },
                LabelExtraction {
                    name: "a".into(),
                    expression: None,
                },
            ],
            ..Default::default()
        };
        let e = run(ex, "a=1 latency=5ms other=2");
        assert_eq!(e.get("lat"), Some("5ms"));
        assert_eq!(e.get("a"), Some("1"));
        assert_eq!(e.get("other"), None);
    }

    fn categorized(e: &EntryLabels) -> Vec<String> {
        let mut all: Vec<String> = e.iter().map(|(c, n, v)| format!("{c:?} {n}={v}")).collect();
        all.sort();
        all
    }

    /// An entry reset per line of a stream names keys as they were named on its earlier
    /// lines; that must be what naming each key afresh gives, whatever the metadata names,
    /// a stage's change to the stream or a metadata label a key moves mid-line.
    #[test]
    fn remembered_key_names_are_what_naming_afresh_gives() {
        let a = Labels::from_pairs([("env", "test"), ("level", "x")]);
        let b = Labels::from_pairs([("app", "y")]);
        let lines = [
            r#"level=info env=prod msg="a" trace_id=1 x_extracted=2"#,
            r#"level=info env=prod msg="b" trace_id=2 x_extracted=3"#,
            "level=warn app=z 1x=4 level=again x=5",
            r#"a.b=1 a_b=2 env= env=late msg="\ufffd" q=ok"#,
            "a=1 trace_id_extracted=5 trace_id=6",
            "trace_id=9 trace_id_extracted=10 level=info",
            "trace_id=9 trace_id_extracted=10 level=info",
            "bare level_extracted=1 level=2 app=3",
        ];
        let metas: [&[(&str, &str)]; 4] = [
            &[],
            &[("trace_id", "t")],
            &[("trace_id", "t"), ("trace_id_extracted", "m")],
            &[("x", "m"), ("level", "l")],
        ];
        let by_level = ParserHints::for_range(
            &[],
            None,
            &crate::hints::SampleGrouping {
                groups: vec!["level_extracted".into(), "x".into()],
                ..Default::default()
            },
        );
        let p = Logfmt::new(&LogfmtParser::default());
        // Lines of one shape in a row, and one line under each metadata in a row.
        let by_shape = metas
            .iter()
            .flat_map(|m| lines.iter().map(move |l| (*m, *l)));
        let by_line = lines
            .iter()
            .flat_map(|l| metas.iter().map(move |m| (*m, *l)));
        let entries: Vec<_> = by_shape.chain(by_line).collect();
        for hints in [None, Some(&by_level)] {
            let mut kept = EntryLabels::default();
            for _ in 0..2 {
                for (key, stream) in [(1, &a), (2, &b)] {
                    for (i, &(meta, line)) in entries.iter().enumerate() {
                        kept.reset_keyed(key, stream, meta);
                        let mut fresh = EntryLabels::new(stream, meta);
                        // A stage before the parser changes the stream of every other line.
                        let change = i % 2 == 1;
                        for e in [&mut kept, &mut fresh].into_iter().filter(|_| change) {
                            e.remove("env");
                            e.set(crate::Category::Stream, "msg", "s");
                        }
                        p.process(line, &mut kept, hints);
                        p.process(line, &mut fresh, hints);
                        assert_eq!(
                            categorized(&kept),
                            categorized(&fresh),
                            "{line} {meta:?} {change}"
                        );
                    }
                }
            }
        }
    }

    fn extractions(pairs: &[(&str, &str)]) -> LogfmtParser {
        LogfmtParser {
            extractions: pairs
                .iter()
                .map(|(n, e)| LabelExtraction {
                    name: n.to_string(),
                    expression: Some(e.to_string()),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Recorded from Loki 3.8 (`| logfmt q="queue", a="attempt"` and `| logfmt env, queue`
    /// over a stream `{env="test"}`): a requested key that is absent still gives its label,
    /// empty; a requested name that is a stream label only appears, as `_extracted`, when
    /// the key is there.
    #[test]
    fn absent_requested_keys_are_empty_labels() {
        let p = extractions(&[("q", "queue"), ("a", "attempt")]);
        let cases = [
            (
                "level=info queue=emails attempt=3 took=1.5s",
                r#"{a="3", q="emails"}"#,
            ),
            (
                "level=info queue=emails took=200ms",
                r#"{a="", q="emails"}"#,
            ),
            (r#"level=error msg="boom" attempt=2"#, r#"{a="2", q=""}"#),
            (r#"not logfmt at all "unterminated"#, r#"{a="", q=""}"#),
        ];
        for (line, want) in cases {
            let mut e = EntryLabels::of_stream(&Labels::from_pairs([("env", "test")]));
            Logfmt::new(&p).process(line, &mut e, None);
            assert_eq!(e.parsed().to_string(), want, "{line}");
        }
        let p = extractions(&[("env", "env"), ("queue", "queue")]);
        for (line, want) in [
            (
                "env=prod queue=sms attempt=1",
                r#"{env_extracted="prod", queue="sms"}"#,
            ),
            ("level=info attempt=1", r#"{queue=""}"#),
        ] {
            let mut e = EntryLabels::of_stream(&Labels::from_pairs([("env", "test")]));
            Logfmt::new(&p).process(line, &mut e, None);
            assert_eq!(e.parsed().to_string(), want, "{line}");
        }
    }
}
