//! `| json`, `| json a="x.y[0]"` and `| unpack`.
//!
//! A small pull scanner over the line's bytes rather than `serde_json::Value`: the parsers only
//! need scalars as text and objects/arrays as raw slices, so building a tree per line would
//! allocate for nothing on the hottest parser of all.

use std::borrow::Cow;

use crate::PipelineError;
use crate::labels::EntryLabels;

/// Bounds recursion on hostile input such as `[[[[…`.
const MAX_DEPTH: usize = 256;

/// `__error__` of `json`/`unpack` on a line that is not valid JSON.
pub const JSON_ERR: &str = "JSONParserErr";

#[derive(Debug)]
pub(crate) struct JsonError(String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A scalar or raw composite value.
#[derive(Debug, PartialEq)]
pub(crate) enum JsonValue<'a> {
    Str(Cow<'a, str>),
    /// Numbers and `true`/`false`, as written.
    Literal(&'a str),
    Null,
    /// An object or array, as its raw JSON text.
    Raw(&'a str),
}

impl<'a> JsonValue<'a> {
    pub(crate) fn as_text(&self) -> &str {
        match self {
            JsonValue::Str(s) => s,
            JsonValue::Literal(s) | JsonValue::Raw(s) => s,
            JsonValue::Null => "",
        }
    }
}

pub(crate) struct Scanner<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Scanner {
            src,
            b: src.as_bytes(),
            pos: 0,
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, JsonError> {
        Err(match self.b.get(self.pos) {
            Some(_) => {
                let c = self.src[self.pos..].chars().next().unwrap_or('?');
                JsonError(format!("{what}: unexpected {c:?} at offset {}", self.pos))
            }
            None => JsonError(format!("{what}: unexpected end of input")),
        })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// After the whole value: only whitespace may remain.
    pub(crate) fn end(&mut self) -> Result<(), JsonError> {
        if self.peek().is_some() {
            return self.err("trailing data after JSON value");
        }
        Ok(())
    }

    /// Reads a string starting at its opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"', "expected string")?;
        let start = self.pos;
        // Fast path: no escapes, borrow from the line.
        loop {
            match self.b.get(self.pos) {
                Some(b'"') => {
                    let s = &self.src[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => return self.err("control character in string"),
                Some(_) => self.pos += 1,
                None => return self.err("unterminated string"),
            }
        }
        let mut out = String::from(&self.src[start..self.pos]);
        loop {
            match self.b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&e) = self.b.get(self.pos) else {
                        return self.err("unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi)
                                && self.b.get(self.pos) == Some(&b'\\')
                                && self.b.get(self.pos + 1) == Some(&b'u')
                            {
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(c.unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.pos -= 1;
                            return self.err("invalid escape");
                        }
                    }
                }
                Some(c) if *c < 0x20 => return self.err("control character in string"),
                Some(_) => {
                    let rest = &self.src[self.pos..];
                    let n = rest.find(['"', '\\']).unwrap_or(rest.len());
                    out.push_str(&rest[..n]);
                    self.pos += n;
                }
                None => return self.err("unterminated string"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(h) = self.src.get(self.pos..self.pos + 4) else {
            return self.err("invalid unicode escape");
        };
        match u32::from_str_radix(h, 16) {
            Ok(v) if h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.pos += 4;
                Ok(v)
            }
            _ => self.err("invalid unicode escape"),
        }
    }

    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        let b = self.b;
        let digits = |p: &mut usize| {
            let s = *p;
            while b.get(*p).is_some_and(u8::is_ascii_digit) {
                *p += 1;
            }
            *p > s
        };
        let mut p = self.pos;
        if b.get(p) == Some(&b'-') {
            p += 1;
        }
        if !digits(&mut p) {
            self.pos = p;
            return self.err("invalid number");
        }
        if b.get(p) == Some(&b'.') {
            p += 1;
            if !digits(&mut p) {
                self.pos = p;
                return self.err("invalid number");
            }
        }
        if let Some(b'e' | b'E') = b.get(p) {
            p += 1;
            if let Some(b'+' | b'-') = b.get(p) {
                p += 1;
            }
            if !digits(&mut p) {
                self.pos = p;
                return self.err("invalid number");
            }
        }
        self.pos = p;
        Ok(&self.src[start..p])
    }

    fn word(&mut self, w: &'static str) -> Result<&'a str, JsonError> {
        if self.b[self.pos..].starts_with(w.as_bytes()) {
            let s = &self.src[self.pos..self.pos + w.len()];
            self.pos += w.len();
            Ok(s)
        } else {
            self.err("invalid literal")
        }
    }

    /// Reads any value; objects and arrays come back raw.
    pub(crate) fn value(&mut self) -> Result<JsonValue<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(JsonValue::Str),
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.skip(0)?;
                Ok(JsonValue::Raw(&self.src[start..self.pos]))
            }
            Some(b't') => self.word("true").map(JsonValue::Literal),
            Some(b'f') => self.word("false").map(JsonValue::Literal),
            Some(b'n') => self.word("null").map(|_| JsonValue::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(JsonValue::Literal),
            _ => self.err("expected value"),
        }
    }

    /// Skips one value, validating it.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.string()?;
                    self.expect(b':', "expected ':'")?;
                    self.skip(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            _ => self.value().map(|_| ()),
        }
    }

    /// Iterates the members of the object at the cursor, calling `f(scanner, key)` with the
    /// cursor on each value; `f` must consume the value.
    fn members(
        &mut self,
        mut f: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.expect(b'{', "expected object")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':', "expected ':'")?;
            f(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }
}

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

/// `| json` without parameters: every scalar becomes a label named by its flattened path.
pub(crate) fn parse_all(line: &str, entry: &mut EntryLabels) {
    let mut sc = Scanner::new(line);
    if sc.peek() != Some(b'{') {
        let e = sc.err::<()>("expected JSON object").err();
        entry.set_error(JSON_ERR, &e.map(|e| e.0).unwrap_or_default());
        return;
    }
    let mut key = String::new();
    let res = flatten(&mut sc, &mut key, entry, 0).and_then(|()| sc.end());
    if let Err(e) = res {
        entry.set_error(JSON_ERR, &e.0);
    }
}

fn flatten(
    sc: &mut Scanner<'_>,
    prefix: &mut String,
    entry: &mut EntryLabels,
    depth: usize,
) -> Result<(), JsonError> {
    if depth > MAX_DEPTH {
        return sc.err("nesting too deep");
    }
    sc.members(|sc, k| {
        let len = prefix.len();
        if len > 0 {
            prefix.push('_');
        }
        push_sanitized(prefix, &k);
        let r = match sc.peek() {
            Some(b'{') => flatten(sc, prefix, entry, depth + 1),
            Some(b'[') => sc.skip(depth + 1),
            _ => {
                let v = sc.value()?;
                if !k.is_empty() && !matches!(v, JsonValue::Null) {
                    add_label(entry, prefix, v.as_text());
                }
                Ok(())
            }
        };
        prefix.truncate(len);
        r
    })
}

/// Label names may not start with a digit; Loki prefixes such keys with `_`.
fn add_label(entry: &mut EntryLabels, name: &str, value: &str) {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        entry.add_parsed(&format!("_{name}"), value);
    } else {
        entry.add_parsed(name, value);
    }
}

/// `| unpack`: string members become labels; `_entry` replaces the line.
pub(crate) fn unpack<'l>(line: &'l str, entry: &mut EntryLabels) -> Option<Cow<'l, str>> {
    let mut sc = Scanner::new(line);
    let mut new_line = None;
    let mut name = String::new();
    let res = sc
        .members(|sc, k| {
            match sc.value()? {
                JsonValue::Str(v) if k == "_entry" => new_line = Some(v),
                JsonValue::Str(v) => {
                    name.clear();
                    push_sanitized(&mut name, &k);
                    if !name.is_empty() {
                        add_label(entry, &name, &v);
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .and_then(|()| sc.end());
    match res {
        Ok(()) => new_line,
        Err(e) => {
            entry.set_error(JSON_ERR, &e.0);
            None
        }
    }
}

/// One step of a `json` extraction path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

/// Parses `a.b[0]`, `a["k"].c`, `["a b"]`.
pub(crate) fn parse_path(expr: &str) -> Result<Vec<PathSeg>, PipelineError> {
    let bad = |why: &str| PipelineError::JsonPath {
        expr: expr.to_string(),
        reason: why.to_string(),
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
                                None => return Err(bad("unterminated string in brackets")),
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
                            .map_err(|_| bad("expected an index or a quoted key in brackets"))?;
                        out.push(PathSeg::Index(n));
                    }
                }
                if b.get(i) != Some(&b']') {
                    return Err(bad("expected ']'"));
                }
                i += 1;
                expect_field = false;
            }
            b'.' => {
                if expect_field && !out.is_empty() {
                    return Err(bad("empty field name"));
                }
                i += 1;
                expect_field = true;
                if i == b.len() {
                    return Err(bad("empty field name"));
                }
            }
            _ => {
                if !expect_field {
                    return Err(bad("expected '.' or '[' after ']'"));
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
        return Err(bad("empty path"));
    }
    Ok(out)
}

/// Finds `path` in the JSON text; `Ok(None)` when absent. The caller validated the text.
pub(crate) fn lookup<'a>(
    src: &'a str,
    path: &[PathSeg],
) -> Result<Option<JsonValue<'a>>, JsonError> {
    let mut sc = Scanner::new(src);
    for seg in path {
        match (seg, sc.peek()) {
            (PathSeg::Key(want), Some(b'{')) => {
                let mut found = false;
                sc.pos += 1;
                if sc.peek() == Some(b'}') {
                    return Ok(None);
                }
                loop {
                    let k = sc.string()?;
                    sc.expect(b':', "expected ':'")?;
                    if k == want.as_str() {
                        found = true;
                        break;
                    }
                    sc.skip(0)?;
                    match sc.peek() {
                        Some(b',') => sc.pos += 1,
                        _ => break,
                    }
                }
                if !found {
                    return Ok(None);
                }
            }
            (PathSeg::Index(n), Some(b'[')) => {
                sc.pos += 1;
                if sc.peek() == Some(b']') {
                    return Ok(None);
                }
                for _ in 0..*n {
                    sc.skip(0)?;
                    match sc.peek() {
                        Some(b',') => sc.pos += 1,
                        _ => return Ok(None),
                    }
                }
            }
            _ => return Ok(None),
        }
    }
    sc.value().map(Some)
}

/// `| json a="x.y", b`: compiled extraction list.
#[derive(Debug)]
pub(crate) struct JsonExtract {
    fields: Vec<(String, Vec<PathSeg>)>,
}

impl JsonExtract {
    pub(crate) fn new(ex: &[parquetry_logql::LabelExtraction]) -> Result<Self, PipelineError> {
        let fields = ex
            .iter()
            .map(|e| Ok((e.name.clone(), parse_path(e.path())?)))
            .collect::<Result<_, PipelineError>>()?;
        Ok(JsonExtract { fields })
    }

    pub(crate) fn process(&self, line: &str, entry: &mut EntryLabels) {
        let mut sc = Scanner::new(line);
        if let Err(e) = sc.skip(0).and_then(|()| sc.end()) {
            entry.set_error(JSON_ERR, &e.0);
            return;
        }
        for (name, path) in &self.fields {
            match lookup(line, path) {
                Ok(v) => {
                    let text = v.as_ref().map(JsonValue::as_text).unwrap_or("");
                    entry.add_parsed(name, text);
                }
                Err(e) => {
                    entry.set_error(JSON_ERR, &e.0);
                    return;
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
        let mut e = EntryLabels::new(&Labels::from_pairs(stream.iter().copied()), &[]);
        parse_all(line, &mut e);
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
        for bad in ["", "a.", "a[", "a[x]", "a..b", "a[0]b"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
        let src = r#"{"a":{"b":[10,{"c":"x"},[1, 2]]},"k":{"x y":"q"}}"#;
        let get = |p: &str| {
            lookup(src, &parse_path(p).unwrap())
                .unwrap()
                .map(|v| v.as_text().to_string())
        };
        assert_eq!(get("a.b[0]").as_deref(), Some("10"));
        assert_eq!(get("a.b[1].c").as_deref(), Some("x"));
        assert_eq!(get("a.b[2]").as_deref(), Some("[1, 2]"));
        assert_eq!(get("a.b[1]").as_deref(), Some(r#"{"c":"x"}"#));
        assert_eq!(get(r#"k["x y"]"#).as_deref(), Some("q"));
        assert_eq!(get("a.b[5]"), None);
        assert_eq!(get("a.z"), None);
        assert_eq!(get("k.x"), None);
    }

    #[test]
    fn unpack_entry() {
        let mut e = EntryLabels::new(&Labels::from_pairs([("job", "j")]), &[]);
        let out = unpack(r#"{"_entry":"the line","job":"x","n":5,"c":"v"}"#, &mut e);
        assert_eq!(out.as_deref(), Some("the line"));
        assert_eq!(e.get("job_extracted"), Some("x"));
        assert_eq!(e.get("c"), Some("v"));
        assert_eq!(e.get("n"), None);
        let mut e = EntryLabels::default();
        assert!(unpack("nope", &mut e).is_none());
        assert_eq!(e.get("__error__"), Some("JSONParserErr"));
    }
}
