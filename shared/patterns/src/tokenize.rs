//! Line formats and tokenizers: how a line becomes the token sequence Drain clusters, and
//! how a template of tokens becomes a pattern string again. The rules follow Loki's pattern
//! ingester so that the same lines give the same pattern strings.

use std::sync::LazyLock;

use regex::Regex;

/// The placeholder for a variable token. Adjacent placeholders collapse into one on output.
pub const PARAM: &str = "<_>";

/// JSON fields whose string value is tokenized, first present wins (Loki's default
/// `pattern_ingester_tokenizable_json_fields_default`).
pub const JSON_FIELDS: [&str; 6] = ["log", "message", "msg", "msg_", "_msg", "content"];

/// How a stream's lines are encoded, guessed once from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object: the first tokenizable field's value is mined.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// Free text.
    Unknown,
}

static LOGFMT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    // `\w` is ASCII in Go's RE2 dialect, so spelled out here.
    Regex::new(r#"^([0-9A-Za-z_]+?=([^"]\S*?|".+?") )*?([0-9A-Za-z_]+?=([^"]\S*?|".+?"))+$"#).ok()
});

impl Format {
    /// `{…}` is JSON, a line of `key=value` pairs is logfmt, anything else is free text.
    pub fn detect(line: &str) -> Format {
        let b = line.as_bytes();
        if b.len() < 2 {
            Format::Unknown
        } else if b[0] == b'{' && b[b.len() - 1] == b'}' {
            Format::Json
        } else if LOGFMT.as_ref().is_some_and(|r| r.is_match(line)) {
            Format::Logfmt
        } else {
            Format::Unknown
        }
    }
}

/// A tokenized line. `spaces_after[i] = k` records a space after token `k` (−1: before the
/// first token), so free text is rebuilt with its original spacing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    /// The tokens, in order.
    pub tokens: Vec<String>,
    /// Token indexes followed by a space (−1: before the first).
    pub spaces_after: Vec<isize>,
}

/// Tokenizes `line` in `format`; `None` when the line is skipped (too long, no tokenizable
/// JSON field, malformed logfmt).
pub fn tokenize(format: Format, line: &str, max_len: usize) -> Option<Tokens> {
    match format {
        Format::Unknown => punctuation(line, max_len),
        Format::Json => {
            let field = JSON_FIELDS
                .iter()
                .find_map(|k| json_top_level_string(line, k))?;
            punctuation(field, max_len)
        }
        Format::Logfmt => logfmt(line, max_len),
    }
}

/// The pattern string of a template.
pub fn join(format: Format, t: &Tokens) -> String {
    let s = match format {
        Format::Unknown => join_spaced(t),
        Format::Json => format!("{PARAM}{}{PARAM}", join_spaced(t)),
        Format::Logfmt => join_logfmt(&t.tokens),
    };
    dedup_params(&s)
}

/// Collapses runs of placeholders: `<_><_>` → `<_>`.
pub fn dedup_params(s: &str) -> String {
    let double = "<_><_>";
    if !s.contains(double) {
        return s.to_string();
    }
    let mut out = s.to_string();
    while out.contains(double) {
        out = out.replace(double, PARAM);
    }
    out
}

/// Unicode punctuation (general category P) that splits tokens. ASCII is exact; beyond it
/// the common punctuation blocks, which is where real log lines have any.
fn is_punct(c: char) -> bool {
    if c.is_ascii() {
        return matches!(
            c,
            '!' | '"'
                | '#'
                | '%'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | ','
                | '-'
                | '.'
                | '/'
                | ':'
                | ';'
                | '?'
                | '@'
                | '['
                | '\\'
                | ']'
                | '_'
                | '{'
                | '}'
        );
    }
    matches!(c,
        '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}'
        | '\u{2010}'..='\u{2027}'
        | '\u{2030}'..='\u{205e}'
        | '\u{3001}'..='\u{3003}'
        | '\u{3008}'..='\u{3011}'
        | '\u{ff01}'..='\u{ff0f}'
        | '\u{ff1a}'..='\u{ff20}')
}

/// Lines of more than this many tokens are skipped anyway, so tokenizing stops here.
const TOKEN_CAP: usize = 127;

/// Splits on spaces (remembered) and on punctuation (kept as one-character tokens), always
/// on `=`; letters, digits and `_ - . : /` stay inside tokens.
fn punctuation(line: &str, max_len: usize) -> Option<Tokens> {
    if line.len() > max_len {
        return None;
    }
    let mut t = Tokens::default();
    let mut start = 0;
    for (i, c) in line.char_indices() {
        if t.tokens.len() >= TOKEN_CAP {
            break;
        }
        if c.is_alphabetic() || c.is_numeric() || matches!(c, '_' | '-' | '.' | ':' | '/') {
            continue;
        }
        if c == ' ' || c == '=' || is_punct(c) {
            if i > start {
                t.tokens.push(line[start..i].to_string());
            }
            if c == ' ' {
                t.spaces_after.push(t.tokens.len() as isize - 1);
            } else {
                t.tokens.push(line[i..i + c.len_utf8()].to_string());
            }
            start = i + c.len_utf8();
        }
    }
    if start < line.len() {
        t.tokens.push(line[start..].to_string());
    }
    Some(t)
}

fn join_spaced(t: &Tokens) -> String {
    let mut out = String::new();
    let mut si = 0;
    for (i, tok) in t.tokens.iter().enumerate() {
        out.push_str(tok);
        while si < t.spaces_after.len() && t.spaces_after[si] == i as isize {
            out.push(' ');
            si += 1;
        }
    }
    out
}

/// Keys whose values are always variable: replaced by the placeholder at tokenization.
fn is_variable_key(k: &str) -> bool {
    k == "t"
        || k.eq_ignore_ascii_case("ts")
        || k.eq_ignore_ascii_case("traceID")
        || k.eq_ignore_ascii_case("time")
        || k.eq_ignore_ascii_case("timestamp")
}

/// `key, value, key, value, …`; a malformed line is skipped.
fn logfmt(line: &str, max_len: usize) -> Option<Tokens> {
    if line.len() > max_len {
        return None;
    }
    let b = line.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < b.len() && b[pos] <= b' ' {
            pos += 1;
        }
        if pos >= b.len() {
            break;
        }
        let ks = pos;
        while pos < b.len() && b[pos] > b' ' && b[pos] != b'=' && b[pos] != b'"' {
            pos += 1;
        }
        if pos == ks {
            // A pair starting with `=` or `"` has no key.
            return None;
        }
        let key = &line[ks..pos];
        let value = if pos < b.len() && b[pos] == b'=' {
            pos += 1;
            if pos < b.len() && b[pos] == b'"' {
                let (v, next) = quoted(line, pos)?;
                pos = next;
                v
            } else {
                let vs = pos;
                while pos < b.len() && b[pos] > b' ' {
                    if b[pos] == b'"' || b[pos] == b'=' {
                        return None;
                    }
                    pos += 1;
                }
                line[vs..pos].to_string()
            }
        } else if pos < b.len() && b[pos] == b'"' {
            return None;
        } else {
            String::new()
        };
        tokens.push(key.to_string());
        tokens.push(if is_variable_key(key) {
            PARAM.to_string()
        } else {
            value
        });
    }
    Some(Tokens {
        tokens,
        spaces_after: Vec::new(),
    })
}

/// The unescaped value of the quoted string opening at `open`, and the position after it.
fn quoted(line: &str, open: usize) -> Option<(String, usize)> {
    let b = line.as_bytes();
    let mut i = open + 1;
    let mut escaped = false;
    while i < b.len() {
        match b[i] {
            b'\\' if !escaped => escaped = true,
            b'"' if !escaped => {
                let raw = &line[open..=i];
                let v = unescape_quoted(raw)?;
                return Some((v, i + 1));
            }
            _ => escaped = false,
        }
        i += 1;
    }
    None
}

/// `"…"` with JSON-style escapes (what logfmt writers emit) to its text.
///
/// Not `parquetry_logfmt::unescape`: that one fails a pair on an unknown escape (the query
/// parser must report it), while a pattern only needs a stable token, so here an unknown
/// escape keeps its character and the line is still mined as logfmt.
fn unescape_quoted(raw: &str) -> Option<String> {
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains('\\') {
        return Some(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let v = u32::from_str_radix(&hex, 16).ok()?;
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// logfmt-encodes `key=value` pairs the way Go's logfmt encoder does: values with spaces,
/// `=`, `"` or control characters are quoted; an invalid key makes the whole pattern empty.
fn join_logfmt(tokens: &[String]) -> String {
    let mut out = String::new();
    for (i, pair) in tokens.chunks(2).enumerate() {
        let key = &pair[0];
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        if key.is_empty() || key.chars().any(needs_quote) {
            return String::new();
        }
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        if value.chars().any(needs_quote) {
            // Go's logfmt encoder quotes values with `encoding/json`'s string escapes.
            parquetry_json::push_str(&mut out, value);
        } else {
            out.push_str(value);
        }
    }
    out
}

fn needs_quote(c: char) -> bool {
    c <= ' ' || c == '=' || c == '"' || c == '\u{fffd}'
}

/// The raw (still escaped) contents of the top-level string field `key` of a JSON object,
/// or `None` when absent, not a string, or the text is not an object.
fn json_top_level_string<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let b = line.as_bytes();
    let mut p = skip_ws(b, 0);
    if b.get(p) != Some(&b'{') {
        return None;
    }
    p += 1;
    loop {
        p = skip_ws(b, p);
        match b.get(p)? {
            b'}' => return None,
            b',' => {
                p += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let kend = string_end(b, p)?;
        let k = &line[p + 1..kend];
        p = skip_ws(b, kend + 1);
        if b.get(p) != Some(&b':') {
            return None;
        }
        p = skip_ws(b, p + 1);
        if k == key {
            if b.get(p) != Some(&b'"') {
                return None;
            }
            let vend = string_end(b, p)?;
            return Some(&line[p + 1..vend]);
        }
        p = skip_value(b, p)?;
    }
}

fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && matches!(b[p], b' ' | b'\t' | b'\n' | b'\r') {
        p += 1;
    }
    p
}

/// Position of the closing quote of the string opening at `p`.
fn string_end(b: &[u8], p: usize) -> Option<usize> {
    let mut i = p + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Position just after the value starting at `p`.
fn skip_value(b: &[u8], p: usize) -> Option<usize> {
    match b.get(p)? {
        b'"' => string_end(b, p).map(|e| e + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = p;
            while i < b.len() {
                match b[i] {
                    b'"' => i = string_end(b, i)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = p;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(line: &str) -> Vec<String> {
        punctuation(line, 3000)
            .map(|t| t.tokens)
            .unwrap_or_default()
    }

    #[test]
    fn punctuation_splits_like_loki() {
        assert_eq!(
            toks("GET /api/v1/users?id=42 took 3.5ms"),
            [
                "GET",
                "/api/v1/users",
                "?",
                "id",
                "=",
                "42",
                "took",
                "3.5ms"
            ]
        );
        assert_eq!(
            toks("user_id=abc-1 [warn] a+b"),
            ["user_id", "=", "abc-1", "[", "warn", "]", "a+b"]
        );
        let t = punctuation("a  b, c", 3000).unwrap();
        assert_eq!(join_spaced(&t), "a  b, c");
        assert!(punctuation(&"x".repeat(3001), 3000).is_none());
    }

    #[test]
    fn formats() {
        assert_eq!(Format::detect("{\"a\":1}"), Format::Json);
        assert_eq!(
            Format::detect("level=info msg=\"hello world\" n=1"),
            Format::Logfmt
        );
        assert_eq!(Format::detect("plain text line"), Format::Unknown);
        assert_eq!(Format::detect("x"), Format::Unknown);
    }

    #[test]
    fn logfmt_tokens_and_join() {
        let t = logfmt("ts=2024-01-01 level=info msg=\"a b\" ok", 3000).unwrap();
        assert_eq!(
            t.tokens,
            ["ts", PARAM, "level", "info", "msg", "a b", "ok", ""]
        );
        assert_eq!(
            join(Format::Logfmt, &t),
            "ts=<_> level=info msg=\"a b\" ok="
        );
        assert!(logfmt("a=b\"c", 3000).is_none());
    }

    #[test]
    fn json_field_is_tokenized() {
        let line = r#"{"level":"info","nested":{"msg":"no"},"msg":"user 42 logged in"}"#;
        let t = tokenize(Format::Json, line, 3000).unwrap();
        assert_eq!(t.tokens, ["user", "42", "logged", "in"]);
        assert_eq!(join(Format::Json, &t), "<_>user 42 logged in<_>");
        assert!(tokenize(Format::Json, r#"{"other":"x"}"#, 3000).is_none());
        assert_eq!(
            json_top_level_string(r#"{"a":[1,{"b":"}"}],"log":"x\"y"}"#, "log"),
            Some("x\\\"y")
        );
    }

    #[test]
    fn placeholders_collapse() {
        assert_eq!(dedup_params("a <_><_><_> b<_><_>"), "a <_> b<_>");
    }
}
