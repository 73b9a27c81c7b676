//! `| json`, `| json a="x.y[0]"` and `| unpack`.
//!
//! The scanning lives in `parquetry_json` (shared with push-time `detected_level`): it reads
//! lines the way Loki's JSON parsers do, so the labels extracted from partial or malformed
//! lines and the `__error_details__` texts are Loki's. This module applies Loki's labelling rules on top: flattened and sanitised names,
//! `_extracted` on clashes, which stage overrides which.

use std::borrow::Cow;

use crate::PipelineError;
use crate::hints::ParserHints;
use crate::labels::EntryLabels;

use parquetry_json as lenient;
use parquetry_json::{JErr, Kind, Val};

/// Nested objects deeper than this are not flattened: a bound on recursion for hostile lines
/// such as `{"a":{"a":{…`, far beyond what real log lines hold.
const MAX_DEPTH: usize = 256;

/// `__error__` of `json`/`unpack` on a line that is not valid JSON.
pub const JSON_ERR: &str = "JSONParserErr";

/// `__error_details__` of `unpack` on a line that does not start with `{`: Loki names the
/// object type by its number in the JSON library it checks with.
const UNPACK_NOT_OBJECT: &str = "expecting json object(6), but it is not";

/// Appends `key` to `out` with every character outside `[A-Za-z0-9_]` replaced by `_`.
pub(crate) fn push_sanitized(out: &mut String, key: &str) {
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
}

/// A parsed key as a label name: trimmed, `_` in front of a leading digit, every character
/// outside `[A-Za-z0-9_]` replaced by `_`. Empty when nothing is left. Borrows the common
/// keys that are label names already.
pub(crate) fn sanitize_key(key: &str) -> Cow<'_, str> {
    // A table lookup per byte: every key of every parsed line passes here.
    const WORD: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            t[i] = b.is_ascii_alphanumeric() || b == b'_';
            i += 1;
        }
        t
    };
    if key.bytes().all(|b| WORD[b as usize]) && !key.starts_with(|c: char| c.is_ascii_digit()) {
        return Cow::Borrowed(key);
    }
    let key = key.trim();
    let mut out = String::with_capacity(key.len() + 1);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    push_sanitized(&mut out, key);
    Cow::Owned(out)
}

/// The flattened name of a nested key: the non-blank parts, sanitised and joined by `_`.
fn flattened(parts: &[Cow<'_, str>]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if i > 0 && !out.is_empty() {
            out.push('_');
        }
        if out.is_empty() && part.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('_');
        }
        push_sanitized(&mut out, part);
    }
    out
}

/// `| json` without parameters: every string, number and boolean becomes a label named by
/// its flattened path; arrays and nulls are skipped. Labels found before a malformed part
/// stay, and the error is recorded with the scanner's message. With `hints` only the wanted
/// labels are extracted, nested objects no wanted name starts with are not read, and reading
/// stops, without error, once every wanted label is there.
pub(crate) fn parse_all(line: &str, entry: &mut EntryLabels, hints: Option<&ParserHints>) {
    let mut walk = Walk {
        entry,
        hints,
        prefix: Vec::new(),
    };
    let res = lenient::object_each(line.as_bytes(), |k, v| walk.member(bytes_str(k), v));
    if let Err(Halt::Failed(e)) = res {
        walk.entry.set_error(JSON_ERR, e.text());
    }
}

/// Why the walk over a line stopped early.
enum Halt {
    /// Every wanted label is extracted: not an error.
    Done,
    Failed(JErr),
}

impl From<JErr> for Halt {
    fn from(e: JErr) -> Self {
        Halt::Failed(e)
    }
}

fn bytes_str(b: Cow<'_, [u8]>) -> Cow<'_, str> {
    match b {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

struct Walk<'e, 'h, 'a> {
    entry: &'e mut EntryLabels,
    hints: Option<&'h ParserHints>,
    prefix: Vec<Cow<'a, str>>,
}

impl<'a> Walk<'_, '_, 'a> {
    fn wants(&self, name: &str) -> bool {
        self.hints.is_none_or(|h| h.wants(name))
    }

    fn member(&mut self, key: Cow<'a, str>, v: Val<'a>) -> Result<(), Halt> {
        match v.kind {
            Kind::String | Kind::Number | Kind::Boolean => self.scalar(key, &v),
            Kind::Object if self.prefix.len() < MAX_DEPTH => {
                self.prefix.push(key);
                let wanted = self
                    .hints
                    .is_none_or(|h| h.wants_prefix(&flattened(&self.prefix)));
                let r = if wanted {
                    lenient::object_each(v.raw, |k, v| self.member(bytes_str(k), v))
                } else {
                    Ok(())
                };
                self.prefix.pop();
                // Inner members already stop the walk when everything is found.
                return r;
            }
            _ => {}
        }
        match self.hints {
            Some(h) if h.all_extracted(self.entry) => Err(Halt::Done),
            _ => Ok(()),
        }
    }

    fn scalar(&mut self, key: Cow<'a, str>, v: &Val<'a>) {
        if self.prefix.is_empty() {
            let name = sanitize_key(&key);
            let name = self.entry.parsed_name(&name);
            if !name.is_empty() && self.wants(&name) {
                self.entry.add_parsed_exact(&name, &lenient::scalar_text(v));
            }
            return;
        }
        let name = {
            self.prefix.push(key);
            let mut name = flattened(&self.prefix);
            if self.entry.clashes(&name) {
                if let Some(last) = self.prefix.last_mut() {
                    *last = Cow::Owned(format!("{last}_extracted"));
                }
                name = flattened(&self.prefix);
            }
            self.prefix.pop();
            name
        };
        if !name.is_empty() && self.wants(&name) {
            self.entry.add_parsed_exact(&name, &lenient::scalar_text(v));
        }
    }
}

/// `| unpack`: string members become labels and `_entry` replaces the line. As in Loki the
/// labels are only applied to lines that carry `_entry` (lines packed by Promtail's `pack`
/// stage); a line that is not an object records `JSONParserErr` and keeps its labels.
pub(crate) fn unpack<'l>(
    line: &'l str,
    entry: &mut EntryLabels,
    hints: Option<&ParserHints>,
) -> Option<Cow<'l, str>> {
    if line.is_empty() {
        return None;
    }
    if !line.starts_with('{') {
        entry.set_error(JSON_ERR, UNPACK_NOT_OBJECT);
        return None;
    }
    let mut new_line: Option<String> = None;
    let mut found: Vec<(String, String)> = Vec::new();
    let res = lenient::object_each::<JErr>(line.as_bytes(), |k, v| {
        if v.kind != Kind::String {
            return Ok(());
        }
        let key = bytes_str(k);
        if key == "_entry" {
            let text = lenient::unescape(v.raw).ok_or(JErr::MalformedStringEscape)?;
            new_line = Some(String::from_utf8_lossy(&text).into_owned());
            return Ok(());
        }
        let key = if entry.clashes(&key) {
            Cow::Owned(format!("{key}_extracted"))
        } else {
            key
        };
        if !entry.is_parsed(&key) && hints.is_none_or(|h| h.wants(&key)) {
            found.push((
                sanitize_key(&key).into_owned(),
                lenient::string_value(v.raw).into_owned(),
            ));
        }
        Ok(())
    });
    if let Err(e) = res {
        entry.set_error(JSON_ERR, e.text());
        return None;
    }
    let new_line = new_line?;
    for (name, value) in found {
        entry.set_parsed(&name, &value);
    }
    Some(Cow::Owned(new_line))
}

/// One step of a `json` extraction path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

/// Why a `json` extraction path does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    /// `["a` without its closing quote.
    #[error("unterminated string in brackets")]
    UnterminatedString,
    /// `[x]`: neither a number nor a quoted key.
    #[error("expected an index or a quoted key in brackets")]
    BadBracket,
    /// `[0` without its `]`.
    #[error("expected ']'")]
    MissingBracket,
    /// `a..b`, `.a` after a segment, or a trailing `.`.
    #[error("empty field name")]
    EmptyField,
    /// `[0]a`.
    #[error("expected '.' or '[' after ']'")]
    MissingSeparator,
    /// Nothing at all.
    #[error("empty path")]
    EmptyPath,
}

/// Parses `a.b[0]`, `a["k"].c`, `["a b"]`.
pub(crate) fn parse_path(expr: &str) -> Result<Vec<PathSeg>, PipelineError> {
    let bad = |reason: JsonPathError| PipelineError::JsonPath {
        expr: expr.to_string(),
        reason,
    };
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    let mut expect_field = true;
    while i < b.len() {
        match b[i] {
            b'[' => {
                i += 1;
                match b.get(i) {
                    Some(b'"') | Some(b'\'') => {
                        let q = b[i];
                        i += 1;
                        let mut key = String::new();
                        loop {
                            match b.get(i) {
                                Some(&c) if c == q => break,
                                Some(b'\\') if b.get(i + 1).is_some() => {
                                    let rest = &expr[i + 1..];
                                    let c = rest.chars().next().unwrap_or('\\');
                                    key.push(c);
                                    i += 1 + c.len_utf8();
                                }
                                Some(_) => {
                                    let rest = &expr[i..];
                                    let c = rest.chars().next().unwrap_or(' ');
                                    key.push(c);
                                    i += c.len_utf8();
                                }
                                None => return Err(bad(JsonPathError::UnterminatedString)),
                            }
                        }
                        i += 1;
                        out.push(PathSeg::Key(key));
                    }
                    _ => {
                        let start = i;
                        while b.get(i).is_some_and(u8::is_ascii_digit) {
                            i += 1;
                        }
                        let n = expr[start..i]
                            .parse()
                            .map_err(|_| bad(JsonPathError::BadBracket))?;
                        out.push(PathSeg::Index(n));
                    }
                }
                if b.get(i) != Some(&b']') {
                    return Err(bad(JsonPathError::MissingBracket));
                }
                i += 1;
                expect_field = false;
            }
            b'.' => {
                if expect_field && !out.is_empty() {
                    return Err(bad(JsonPathError::EmptyField));
                }
                i += 1;
                expect_field = true;
                if i == b.len() {
                    return Err(bad(JsonPathError::EmptyField));
                }
            }
            _ => {
                if !expect_field {
                    return Err(bad(JsonPathError::MissingSeparator));
                }
                let start = i;
                while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                    i += 1;
                }
                out.push(PathSeg::Key(expr[start..i].to_string()));
                expect_field = false;
            }
        }
    }
    if out.is_empty() {
        return Err(bad(JsonPathError::EmptyPath));
    }
    Ok(out)
}

/// `| json a="x.y", b`: compiled extraction list.
#[derive(Debug)]
pub(crate) struct JsonExtract {
    names: Vec<String>,
    /// Each path as the scanner matches it: object keys, and `[n]` for array indexes.
    paths: Vec<Vec<String>>,
}

impl JsonExtract {
    pub(crate) fn new(ex: &[parquetry_logql::LabelExtraction]) -> Result<Self, PipelineError> {
        let mut names = Vec::with_capacity(ex.len());
        let mut paths = Vec::with_capacity(ex.len());
        for e in ex {
            names.push(e.name.clone());
            paths.push(
                parse_path(e.path())?
                    .into_iter()
                    .map(|seg| match seg {
                        PathSeg::Key(k) => k,
                        PathSeg::Index(n) => format!("[{n}]"),
                    })
                    .collect(),
            );
        }
        Ok(JsonExtract { names, paths })
    }

    /// Loki's extraction parser: a line must start with `{`, `[` or `"` (otherwise
    /// `JSONParserErr` without details); each path found sets its label, overriding earlier
    /// stages; a path whose value the scanner cannot read records the error with its
    /// message; every requested label that is still absent is set to the empty string.
    pub(crate) fn process(&self, line: &str, entry: &mut EntryLabels) {
        let Some(first) = line.bytes().next() else {
            return;
        };
        if !matches!(first, b'{' | b'[' | b'"') {
            entry.set_error_kind(JSON_ERR);
            return;
        }
        let mut matches = 0;
        lenient::each_key(line.as_bytes(), &self.paths, |i, r| match (i, r) {
            (_, Err(e)) => entry.set_error(JSON_ERR, e.text()),
            (Some(i), Ok(v)) => {
                let name = &self.names[i];
                let value = match v.kind {
                    Kind::Null => Cow::Borrowed(""),
                    Kind::Object => String::from_utf8_lossy(v.raw),
                    _ => lenient::string_value(v.raw),
                };
                if entry.clashes(name) {
                    entry.set_parsed(&format!("{name}_extracted"), &value);
                } else {
                    entry.set_parsed(name, &value);
                }
                matches += 1;
            }
            (None, Ok(_)) => {}
        });
        if matches < self.names.len() {
            for name in &self.names {
                if entry.get(name).is_none() {
                    entry.set_parsed(name, "");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_model::Labels;

    fn run_all(line: &str, stream: &[(&str, &str)]) -> EntryLabels {
        let mut e = EntryLabels::of_stream(&Labels::from_pairs(stream.iter().copied()));
        parse_all(line, &mut e, None);
        e
    }

    #[test]
    fn flattens_and_sanitizes() {
        let e = run_all(
            r#"{"a":1.50,"b":{"c":"x\"y","d-e":{"f":true}},"arr":[1,{"z":2}],"n":null,"9k":"v","héllo":"h","s":"","u":"\u00e9\ud83d\ude00"}"#,
            &[],
        );
        assert_eq!(e.get("a"), Some("1.50"));
        assert_eq!(e.get("b_c"), Some("x\"y"));
        assert_eq!(e.get("b_d_e_f"), Some("true"));
        assert_eq!(e.get("arr"), None);
        assert_eq!(e.get("arr_z"), None);
        assert_eq!(e.get("n"), None);
        assert_eq!(e.get("_9k"), Some("v"));
        assert_eq!(e.get("h_llo"), Some("h"));
        assert_eq!(e.get("s"), Some(""));
        assert_eq!(e.get("u"), Some("é😀"));
        assert!(!e.has_error());
    }

    #[test]
    fn clashes_duplicates_errors() {
        let e = run_all(r#"{"app":"x","k":"first","k":"second"}"#, &[("app", "a")]);
        assert_eq!(e.get("app"), Some("a"));
        assert_eq!(e.get("app_extracted"), Some("x"));
        assert_eq!(e.get("k"), Some("first"));
        for bad in [
            "not json",
            "[1,2]",
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a":"x}"#,
            "",
        ] {
            let e = run_all(bad, &[]);
            assert_eq!(e.get("__error__"), Some("JSONParserErr"), "{bad}");
            assert!(!e.get("__error_details__").unwrap_or("").is_empty());
        }
    }

    /// `| json` over lines that are not quite JSON: the labels and error details Loki 3.8
    /// gave each line (`{app="bad"} | json`), stream labels left out.
    const RECORDED: &[(&str, &str)] = &[
        (
            r#"not json"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (
            r#"{"a":1"#,
            r#"{__error__="JSONParserErr", __error_details__="Value is array, but can't find closing ']' symbol", a="1"}"#,
        ),
        (
            r#"{"a":}"#,
            r#"{__error__="JSONParserErr", __error_details__="Unknown value type"}"#,
        ),
        (
            r#"{"a":"x}"#,
            r#"{__error__="JSONParserErr", __error_details__="Value is string, but can't find closing '\"' symbol"}"#,
        ),
        (
            r#"[1,2]"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (
            r#"{oops}"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (r#"{"a":1} trailing"#, r#"{a="1"}"#),
        (r#"{"a":1,}"#, r#"{a="1"}"#),
        (r#"{"a":"\q"}"#, r#"{a=""}"#),
        (
            r#"{"a":tru}"#,
            r#"{__error__="JSONParserErr", __error_details__="Unknown value type"}"#,
        ),
        (
            r#"{"a":1 "b":2}"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol", a="1"}"#,
        ),
        (
            r#"123"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (
            r#"{"a":{"b":1}"#,
            r#"{__error__="JSONParserErr", __error_details__="Value is array, but can't find closing ']' symbol", a_b="1"}"#,
        ),
        (
            r#"{"a":[1,2}"#,
            r#"{__error__="JSONParserErr", __error_details__="Value is array, but can't find closing ']' symbol"}"#,
        ),
        (r#"   {"a":1}"#, r#"{a="1"}"#),
        (
            r#"{"a":"ok","b":nul}"#,
            r#"{__error__="JSONParserErr", __error_details__="Unknown value type", a="ok"}"#,
        ),
        (r#"{"a":1}}"#, r#"{a="1"}"#),
        (
            r#"{"#,
            r#"{__error__="JSONParserErr", __error_details__="Malformed JSON error"}"#,
        ),
        (r#"{"a":"\u12"}"#, r#"{a=""}"#),
        (r#"{"a":-}"#, r#"{a="-"}"#),
        (r#"{"a":1.}"#, r#"{a="1."}"#),
        (
            r#"{"a" 1}"#,
            r#"{__error__="JSONParserErr", __error_details__="Malformed JSON error"}"#,
        ),
        (
            r#"{1:2}"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (
            r#"{"a":1,"b"}"#,
            r#"{__error__="JSONParserErr", __error_details__="Malformed JSON error", a="1"}"#,
        ),
        (
            r#""str""#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (
            r#"null"#,
            r#"{__error__="JSONParserErr", __error_details__="Value looks like object, but can't find closing '}' symbol"}"#,
        ),
        (r#"{"a":"b", "c":{"d":[1,{"e":2}]}}"#, r#"{a="b"}"#),
        (r#"{"a":01}"#, r#"{a="01"}"#),
        (r#"{"x":1e5,"y":-0.5}"#, r#"{x="1e5", y="-0.5"}"#),
        (r#"{"k":"first","k":"second"}"#, r#"{k="first"}"#),
        (
            r#"{" spaced key ":1,"9lives":2,"a.b":{"c d":3}}"#,
            r#"{_9lives="2", a_b_c_d="3", spaced_key="1"}"#,
        ),
        (r#"{"u":"bad�char"}"#, r#"{u="bad char"}"#),
        (r#"{"a":1}x{"b":2}"#, r#"{a="1"}"#),
        (
            r#"{"a":"x","b":{"c":1,"d":}}"#,
            r#"{__error__="JSONParserErr", __error_details__="Unknown value type", a="x", b_c="1"}"#,
        ),
        (r#"{"user":{"id":5}}"#, r#"{user_id="5"}"#),
        (r#"{"a":{}}"#, r#"{}"#),
        (
            r#"{"n":null,"t":true,"f":false,"arr":[1,{"z":2}]}"#,
            r#"{f="false", t="true"}"#,
        ),
    ];

    #[test]
    fn lines_as_loki_reads_them() {
        for (line, want) in RECORDED {
            let e = run_all(line, &[]);
            assert_eq!(e.parsed().to_string(), *want, "{line}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path(r#"a.b[0]["c d"]"#).unwrap(),
            vec![
                PathSeg::Key("a".into()),
                PathSeg::Key("b".into()),
                PathSeg::Index(0),
                PathSeg::Key("c d".into())
            ]
        );
        assert_eq!(
            parse_path(r#"["a"].b"#).unwrap(),
            vec![PathSeg::Key("a".into()), PathSeg::Key("b".into())]
        );
        use JsonPathError::*;
        for (bad, why) in [
            ("", EmptyPath),
            ("a.", EmptyField),
            ("a[", BadBracket),
            ("a[\"k", UnterminatedString),
            ("a[0", MissingBracket),
            ("a[x]", BadBracket),
            ("a..b", EmptyField),
            ("a[0]b", MissingSeparator),
        ] {
            match parse_path(bad) {
                Err(PipelineError::JsonPath { expr, reason }) => {
                    assert_eq!((expr.as_str(), reason), (bad, why));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let src = r#"{"a":{"b":[10,{"c":"x"},[1, 2]]},"k":{"x y":"q"}}"#;
        let get = |p: &str| {
            let ex = JsonExtract::new(&[parquetry_logql::LabelExtraction {
                name: "v".into(),
                expression: Some(p.into()),
            }])
            .unwrap();
            let mut e = EntryLabels::default();
            ex.process(src, &mut e);
            assert!(!e.has_error(), "{p}");
            e.get("v").map(str::to_string)
        };
        assert_eq!(get("a.b[0]").as_deref(), Some("10"));
        assert_eq!(get("a.b[1].c").as_deref(), Some("x"));
        assert_eq!(get("a.b[2]").as_deref(), Some("[1, 2]"));
        assert_eq!(get("a.b[1]").as_deref(), Some(r#"{"c":"x"}"#));
        assert_eq!(get(r#"k["x y"]"#).as_deref(), Some("q"));
        assert_eq!(get("a.b[5]").as_deref(), Some(""));
        assert_eq!(get("a.z").as_deref(), Some(""));
        assert_eq!(get("k.x").as_deref(), Some(""));
    }

    #[test]
    fn unpack_entry() {
        let mut e = EntryLabels::of_stream(&Labels::from_pairs([("job", "j")]));
        let out = unpack(
            r#"{"_entry":"the line","job":"x","n":5,"c":"v"}"#,
            &mut e,
            None,
        );
        assert_eq!(out.as_deref(), Some("the line"));
        assert_eq!(e.get("job_extracted"), Some("x"));
        assert_eq!(e.get("c"), Some("v"));
        assert_eq!(e.get("n"), None);
        let mut e = EntryLabels::default();
        assert!(unpack("nope", &mut e, None).is_none());
        assert_eq!(e.get("__error__"), Some("JSONParserErr"));
    }
}
