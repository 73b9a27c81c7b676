//! `| logfmt [--strict] [--keep-empty] [extractions]`.
//!
//! Pairs are `key=value`, `key="quoted value"`, `key=` or a bare `key`, separated by
//! whitespace. Malformed pairs are skipped unless `--strict`, which stops at the first one and
//! records `LogfmtParserErr`.

use std::borrow::Cow;

use crate::json::push_sanitized;
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

/// One decoded pair, or the reason the pair at `pos` is malformed.
enum Item<'a> {
    Pair(&'a str, Option<Cow<'a, str>>),
    Malformed { pos: usize, msg: &'static str },
}

struct Decoder<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn skip_ws(&mut self) {
        let b = self.s.as_bytes();
        while self.pos < b.len() && b[self.pos] <= b' ' {
            self.pos += 1;
        }
    }

    /// Skips to the next whitespace, past the malformed pair.
    fn recover(&mut self) {
        let b = self.s.as_bytes();
        while self.pos < b.len() && b[self.pos] > b' ' {
            self.pos += 1;
        }
    }

    fn next(&mut self) -> Option<Item<'a>> {
        self.skip_ws();
        let b = self.s.as_bytes();
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < b.len() && b[self.pos] > b' ' && b[self.pos] != b'=' && b[self.pos] != b'"'
        {
            self.pos += 1;
        }
        let key = &self.s[start..self.pos];
        if key.is_empty() {
            let pos = self.pos;
            let msg = if b[pos] == b'=' {
                "unexpected '='"
            } else {
                "unexpected '\"'"
            };
            self.pos += 1;
            self.recover();
            return Some(Item::Malformed { pos, msg });
        }
        match b.get(self.pos) {
            Some(b'"') => {
                let pos = self.pos;
                self.recover();
                Some(Item::Malformed {
                    pos,
                    msg: "unexpected '\"'",
                })
            }
            Some(b'=') => {
                self.pos += 1;
                match b.get(self.pos) {
                    None => Some(Item::Pair(key, None)),
                    Some(c) if *c <= b' ' => Some(Item::Pair(key, None)),
                    Some(b'"') => self.quoted(key),
                    Some(_) => {
                        let vstart = self.pos;
                        while self.pos < b.len() && b[self.pos] > b' ' {
                            if b[self.pos] == b'"' {
                                let pos = self.pos;
                                self.recover();
                                return Some(Item::Malformed {
                                    pos,
                                    msg: "unexpected '\"'",
                                });
                            }
                            self.pos += 1;
                        }
                        Some(Item::Pair(
                            key,
                            Some(Cow::Borrowed(&self.s[vstart..self.pos])),
                        ))
                    }
                }
            }
            _ => Some(Item::Pair(key, None)),
        }
    }

    fn quoted(&mut self, key: &'a str) -> Option<Item<'a>> {
        let b = self.s.as_bytes();
        let open = self.pos;
        self.pos += 1;
        let vstart = self.pos;
        let mut escaped = false;
        while self.pos < b.len() {
            match b[self.pos] {
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                b'"' => {
                    let raw = &self.s[vstart..self.pos];
                    self.pos += 1;
                    let v = if escaped {
                        match unescape(raw) {
                            Some(v) => Cow::Owned(v),
                            None => {
                                return Some(Item::Malformed {
                                    pos: vstart,
                                    msg: "invalid quoted value",
                                });
                            }
                        }
                    } else {
                        Cow::Borrowed(raw)
                    };
                    return Some(Item::Pair(key, Some(v)));
                }
                _ => self.pos += 1,
            }
        }
        self.pos = b.len();
        Some(Item::Malformed {
            pos: open,
            msg: "unterminated quoted value",
        })
    }
}

/// Go `strconv.Unquote`-style escapes inside a quoted logfmt value.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'u' => {
                let h: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?).unwrap_or('\u{FFFD}'));
            }
            _ => return None,
        }
    }
    Some(out)
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

    pub(crate) fn process(&self, line: &str, entry: &mut EntryLabels) {
        let mut dec = Decoder { s: line, pos: 0 };
        let mut name = String::new();
        while let Some(item) = dec.next() {
            match item {
                Item::Pair(key, value) => {
                    let value = value.unwrap_or(Cow::Borrowed(""));
                    if value.is_empty() && !self.keep_empty {
                        continue;
                    }
                    if self.extractions.is_empty() {
                        name.clear();
                        push_sanitized(&mut name, key);
                        if name.starts_with(|c: char| c.is_ascii_digit()) {
                            name.insert(0, '_');
                        }
                        entry.add_parsed(&name, &value);
                    } else {
                        for (label, k) in &self.extractions {
                            if k == key {
                                entry.add_parsed(label, &value);
                            }
                        }
                    }
                }
                Item::Malformed { pos, msg } => {
                    if self.strict {
                        entry.set_error(
                            LOGFMT_ERR,
                            &format!("logfmt syntax error at pos {} : {msg}", pos + 1),
                        );
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_logql::{LabelExtraction, LogfmtParser};
    use parquetry_model::Labels;

    fn run(p: LogfmtParser, line: &str) -> EntryLabels {
        let mut e = EntryLabels::new(&Labels::from_pairs([("level", "x")]), &[]);
        Logfmt::new(&p).process(line, &mut e);
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
}
