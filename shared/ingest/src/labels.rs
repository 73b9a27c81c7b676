//! Parsing of the Prometheus series text that pushes carry as stream labels: `{a="b", c="d"}`.
//!
//! Accepted, as Prometheus' metric parser accepts it: whitespace (space, tab, CR, LF) between
//! tokens, `{}`, a trailing comma, values in `"…"` or `'…'` with Go escapes (`\n`, `\t`, `\\`,
//! `\"`, `\xHH`, octal `\377`, `\uHHHH`, `\UHHHHHHHH`, …) or in `` `…` `` without escapes, and
//! label names that are either identifiers (`[a-zA-Z_][a-zA-Z0-9_]*`) or quoted strings (the
//! Prometheus 3 form for names such as `"service.name"`; validation rejects those names per
//! stream rather than failing the whole request). U+FFFD inside quotes is refused with
//! `invalid UTF-8 rune`, as Prometheus refuses it.
//!
//! Known client quirk: Vector writes `k="v"` without escaping, so a value containing `"` or `\`
//! arrives unparseable and the request gets a 400, as it does from Loki. Raw newlines inside
//! quotes are tolerated, because that same unescaped output would otherwise fail on them too.

use std::fmt;

use parquetry_model::Labels;

use crate::error::IngestError;

/// Label text above this size is refused with 413 before parsing, so a hostile stream header
/// cannot make the parser allocate without bound.
pub const MAX_LABELS_TEXT_SIZE: usize = 16 << 20;

/// Where and why label text failed to parse. Displays like Prometheus: `1:4: parse error: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: parse error: {msg}")]
pub struct LabelParseError {
    /// 1-based line of the offending byte.
    pub line: usize,
    /// 1-based byte column within that line.
    pub col: usize,
    /// What is wrong there.
    pub msg: String,
}

/// Parses series text into a sorted label set, dropping empty values as Loki does. Duplicate
/// names are kept so validation can report them ([`Labels::duplicate_name`]).
pub fn parse_labels(text: &str) -> Result<Labels, LabelParseError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        pos: 0,
    };
    let pairs = p.series()?;
    Ok(Labels::from_pairs(
        pairs.into_iter().filter(|(_, v)| !v.is_empty()),
    ))
}

/// [`parse_labels`] with the size check Loki applies first, mapped to push errors
/// (413 for oversized text, 400 `couldn't parse labels: …` otherwise).
pub fn parse_stream_labels(text: &str) -> Result<Labels, IngestError> {
    if text.len() > MAX_LABELS_TEXT_SIZE {
        return Err(IngestError::LabelsTooLarge {
            size: text.len() as u64,
            max: MAX_LABELS_TEXT_SIZE as u64,
        });
    }
    Ok(parse_labels(text)?)
}

/// True for names Loki and Prometheus accept without quoting: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Renders pairs as series text that [`parse_labels`] reads back unchanged; names that are not
/// identifiers are quoted. Used to turn v1 JSON label maps into the common text form.
pub(crate) fn render_labels(out: &mut String, pairs: &[(String, String)]) {
    out.push('{');
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing into a String cannot fail.
        if is_valid_label_name(n) {
            out.push_str(n);
        } else {
            let _ = parquetry_model::labels::write_quoted(out, n);
        }
        out.push('=');
        let _ = parquetry_model::labels::write_quoted(out, v);
    }
    out.push('}');
}

/// Prometheus' message for U+FFFD (or an invalid byte) inside a quoted label string.
const INVALID_RUNE: &str = "invalid UTF-8 rune";
const REPLACEMENT_UTF8: &[u8] = "\u{fffd}".as_bytes();

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

/// Shows the offending input in error messages.
struct Found<'a>(Option<&'a str>);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("end of input"),
            Some(c) => write!(f, "{c:?}"),
        }
    }
}

impl<'a> Parser<'a> {
    fn err_at(&self, pos: usize, msg: String) -> LabelParseError {
        let pos = pos.min(self.b.len());
        let before = &self.b[..pos];
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        LabelParseError {
            line,
            col: pos - line_start + 1,
            msg,
        }
    }

    /// The character at `pos`, for messages.
    fn found(&self) -> Found<'a> {
        let rest = self.s.get(self.pos..).unwrap_or("");
        Found(rest.chars().next().map(|c| &rest[..c.len_utf8()]))
    }

    fn unexpected(&self, expected: &str) -> LabelParseError {
        self.err_at(
            self.pos,
            format!("unexpected {}, expected {expected}", self.found()),
        )
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), LabelParseError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn series(&mut self) -> Result<Vec<(String, String)>, LabelParseError> {
        let mut pairs = Vec::new();
        self.skip_ws();
        self.expect(b'{', "\"{\"")?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let name = self.name()?;
                self.skip_ws();
                self.expect(b'=', "\"=\"")?;
                self.skip_ws();
                let value = self.string("label value")?;
                pairs.push((name, value));
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if self.peek() == Some(b'}') {
                            self.pos += 1;
                            break;
                        }
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.unexpected("\",\" or \"}\"")),
                }
            }
        }
        self.skip_ws();
        if self.pos < self.b.len() {
            return Err(self.unexpected("end of input after \"}\""));
        }
        Ok(pairs)
    }

    fn name(&mut self) -> Result<String, LabelParseError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"' | b'\'' | b'`') => {
                let name = self.string("label name")?;
                if name.is_empty() {
                    return Err(self.err_at(start, "empty label name".into()));
                }
                Ok(name)
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                self.pos += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                Ok(self.s[start..self.pos].to_string())
            }
            _ => Err(self.unexpected("label name")),
        }
    }

    /// A quoted string starting at `pos`.
    fn string(&mut self, what: &str) -> Result<String, LabelParseError> {
        let open = self.pos;
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(self.unexpected(&format!("quoted {what}"))),
        };
        let body = open + 1;
        if quote == b'`' {
            let len = self.b[body..].iter().position(|&c| c == b'`');
            self.refuse_replacement_char(open, body, len)?;
            let Some(len) = len else {
                return Err(self.err_at(open, "unterminated raw string".into()));
            };
            self.pos = body + len + 1;
            return Ok(self.s[body..body + len].to_string());
        }
        // Fast path: most values hold no escapes and can be sliced directly.
        let stop = self.b[body..]
            .iter()
            .position(|&c| c == quote || c == b'\\');
        self.refuse_replacement_char(open, body, stop)?;
        let Some(stop) = stop else {
            return Err(self.err_at(open, "unterminated quoted string".into()));
        };
        if self.b[body + stop] == quote {
            self.pos = body + stop + 1;
            return Ok(self.s[body..body + stop].to_string());
        }
        let mut out: Vec<u8> = Vec::with_capacity(stop + 16);
        out.extend_from_slice(&self.b[body..body + stop]);
        self.pos = body + stop;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err_at(open, "unterminated quoted string".into()));
            };
            if c == quote {
                self.pos += 1;
                break;
            }
            if c != b'\\' {
                if self.b[self.pos..].starts_with(REPLACEMENT_UTF8) {
                    return Err(self.err_at(open, INVALID_RUNE.into()));
                }
                out.push(c);
                self.pos += 1;
                continue;
            }
            let esc_at = self.pos;
            self.pos += 1;
            let Some(e) = self.peek() else {
                return Err(self.err_at(open, "unterminated quoted string".into()));
            };
            self.pos += 1;
            match e {
                b'a' => out.push(0x07),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'v' => out.push(0x0b),
                b'\\' | b'"' | b'\'' => out.push(e),
                b'x' => {
                    let v = self.hex_digits(2, esc_at)?;
                    out.push(v as u8);
                }
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.pos += 1;
                            }
                            _ => {
                                return Err(
                                    self.err_at(esc_at, "invalid octal escape sequence".into())
                                );
                            }
                        }
                    }
                    if v > 255 {
                        return Err(self.err_at(esc_at, "octal escape value > 255".into()));
                    }
                    out.push(v as u8);
                }
                b'u' | b'U' => {
                    let n = if e == b'u' { 4 } else { 8 };
                    let v = self.hex_digits(n, esc_at)?;
                    let Some(ch) = char::from_u32(v) else {
                        return Err(self.err_at(
                            esc_at,
                            format!("escape sequence is an invalid Unicode code point: {v:#x}"),
                        ));
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => {
                    let shown = self
                        .s
                        .get(esc_at..)
                        .and_then(|r| r.get(..2))
                        .unwrap_or("\\");
                    return Err(self.err_at(esc_at, format!("unknown escape sequence {shown:?}")));
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err_at(open, format!("invalid UTF-8 in {what}")))
    }

    /// Prometheus' lexer refuses U+FFFD in a quoted string, and Go decodes every invalid byte
    /// as U+FFFD, so Loki refuses a stream whose labels hold either; protobuf decoding has
    /// turned invalid bytes into U+FFFD, so checking for it refuses both here too. Escapes such
    /// as `\ufffd` are unquoted later and pass, as in Prometheus. `len` is how far the string's
    /// text runs from `body`, `None` if unterminated.
    fn refuse_replacement_char(
        &self,
        open: usize,
        body: usize,
        len: Option<usize>,
    ) -> Result<(), LabelParseError> {
        let end = len.map_or(self.s.len(), |n| body + n);
        match self.s.get(body..end) {
            Some(text) if text.contains(char::REPLACEMENT_CHARACTER) => {
                Err(self.err_at(open, INVALID_RUNE.into()))
            }
            _ => Ok(()),
        }
    }

    fn hex_digits(&mut self, n: usize, esc_at: usize) -> Result<u32, LabelParseError> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err_at(esc_at, "invalid hex escape sequence".into())),
            };
            v = (v << 4) | u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(l: &Labels) -> Vec<(String, String)> {
        l.iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    fn p(s: &str) -> Vec<(String, String)> {
        pairs(&parse_labels(s).unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    fn kv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn basic_forms() {
        assert_eq!(p("{}"), kv(&[]));
        assert_eq!(p("  { }  "), kv(&[]));
        assert_eq!(
            p(r#"{job="x", app="a"}"#),
            kv(&[("app", "a"), ("job", "x")])
        );
        assert_eq!(
            p("\n{ a = \"1\" ,\tb=\"2\",\r\n}\n"),
            kv(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(p(r#"{_a_1="v"}"#), kv(&[("_a_1", "v")]));
        assert_eq!(p(r#"{a='x"y'}"#), kv(&[("a", "x\"y")]));
        assert_eq!(p(r#"{a=`x\ny`}"#), kv(&[("a", "x\\ny")]));
        assert_eq!(
            p(r#"{"service.name"="svc"}"#),
            kv(&[("service.name", "svc")])
        );
    }

    #[test]
    fn go_escapes() {
        assert_eq!(
            p(r#"{a="q\"b\\s\n\t\r\a\b\f\v"}"#),
            kv(&[("a", "q\"b\\s\n\t\r\x07\x08\x0c\x0b")])
        );
        assert_eq!(
            p(r#"{a="\x41\101\u00e9\U0001F600"}"#),
            kv(&[("a", "AAé😀")])
        );
        assert_eq!(p(r#"{a="\u65e5本"}"#), kv(&[("a", "日本")]));
    }

    #[test]
    fn empty_values_dropped_duplicates_kept() {
        let l = parse_labels(r#"{a="", b="1", b="2"}"#).unwrap();
        assert_eq!(pairs(&l), kv(&[("b", "1"), ("b", "2")]));
        assert_eq!(l.duplicate_name(), Some("b"));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse_labels(r#"{ab""#).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"1:4: parse error: unexpected "\"", expected "=""#
        );
        let e = parse_labels(r#"{a="b"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1:4: parse error: unterminated quoted string"
        );
        let e = parse_labels("{a=\"b\",\n 1=\"c\"}").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"2:2: parse error: unexpected "1", expected label name"#
        );
        let e = parse_labels(r#"{a="\q"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"1:5: parse error: unknown escape sequence "\\q""#
        );
        let e = parse_labels("").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"1:1: parse error: unexpected end of input, expected "{""#
        );
        let e = parse_labels(r#"{a="b"} x"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"1:9: parse error: unexpected "x", expected end of input after "}""#
        );
        assert!(parse_labels(r#"{a="\xff"}"#).is_err(), "invalid UTF-8");
        assert!(parse_labels(r#"{a="\ud800"}"#).is_err(), "surrogate");
        assert!(parse_labels(r#"{a="\400"}"#).is_err());
        assert!(parse_labels(r#"{a!="b"}"#).is_err());
        assert!(parse_labels(r#"{a="b",,}"#).is_err());
        assert!(parse_labels(r#"{""="b"}"#).is_err());
        assert!(parse_labels(r#"foo{a="b"}"#).is_err());
    }

    #[test]
    fn replacement_character_in_quotes_is_refused_like_prometheus() {
        // Protobuf decoding turns invalid bytes into U+FFFD, and Prometheus' lexer refuses
        // both, in every kind of quotes and in quoted names, at the opening quote.
        for text in [
            "{a=\"caf\u{fffd}\"}",
            "{a='caf\u{fffd}'}",
            "{a=`caf\u{fffd}`}",
            "{a=\"x\\ty\u{fffd}\"}",
            "{a=\"caf\u{fffd}",
            "{\"caf\u{fffd}\"=\"b\"}",
        ] {
            let e = parse_labels(text).unwrap_err();
            assert_eq!(e.msg, "invalid UTF-8 rune", "{text}");
        }
        assert_eq!(
            parse_labels("{a=\"b\", c=\"\u{fffd}\"}")
                .unwrap_err()
                .to_string(),
            "1:11: parse error: invalid UTF-8 rune"
        );
        // An escape is unquoted after lexing, so Prometheus lets it through.
        let l = parse_labels(r#"{a="caf\ufffd"}"#).unwrap();
        assert_eq!(l.get("a"), Some("caf\u{fffd}"));
    }

    #[test]
    fn garbage_never_panics() {
        let samples = [
            "{",
            "}",
            "{a",
            "{a=",
            "{a=\"",
            "{a=\"\\",
            "{a=\"\\x",
            "{a=\"\\x4",
            "{a=\"\\u12",
            "{a=\"\\U0011FFFF\"}",
            "{é=\"x\"}",
            "{a=\"é",
            "{`",
            "{a=`",
            "\u{feff}{}",
            "{a=\"\\0\"}",
            "{\"é\u{301}\"=\"x\"}",
            "{,}",
            "{a=\"b\"}}",
        ];
        for s in samples {
            let _ = parse_labels(s);
        }
        // Every prefix of a tricky valid input.
        let full = "{a=\"\\u00e9\\x41\\101\", \"b.c\"='d', e=`f`}";
        for i in 0..=full.len() {
            if let Some(s) = full.get(..i) {
                let _ = parse_labels(s);
            }
        }
        assert!(parse_labels(full).is_ok());
    }

    #[test]
    fn render_round_trips() {
        let pairs = kv(&[("a", "x\"\\\n\u{1}é"), ("b.c", "1")]);
        let mut s = String::new();
        render_labels(&mut s, &pairs);
        assert_eq!(p(&s), pairs);
    }

    #[test]
    fn size_limit_is_413() {
        let big = format!("{{a=\"{}\"}}", "x".repeat(MAX_LABELS_TEXT_SIZE));
        let e = parse_stream_labels(&big).unwrap_err();
        assert_eq!(e.status(), 413);
        let e = parse_stream_labels("{a=").unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            "couldn't parse labels: 1:4: parse error: unexpected end of input, expected quoted label value"
        );
    }

    #[test]
    fn name_validity() {
        assert!(is_valid_label_name("_a9"));
        assert!(!is_valid_label_name("9a"));
        assert!(!is_valid_label_name("a.b"));
        assert!(!is_valid_label_name(""));
    }
}
