//! The one JSON scanner: `| json` and `| unpack` in queries and `detected_level` at push time
//! read lines with it, so a level found at ingest is exactly what `| json` extracts.
//!
//! It reads JSON the way Loki's JSON parsers do: a lenient, non-validating scanner that finds
//! values by bracket counting, accepts `{"a":1} trailing` or `{"a":1,}`, types a scalar by its
//! first byte (`-x` is a number), and reports the first structural problem it meets with a
//! fixed set of messages. Those messages become `__error_details__`, a label, and the labels
//! extracted before the problem stay on the entry; so to give the same series as Loki this
//! crate reproduces what that scanner accepts, what it extracts and how it fails, rather than
//! validating JSON strictly. It is also faster than a validating parser on log lines
//! (docs/benchmarks.md, "One JSON scanner").
//!
//! It also owns the one JSON string writer ([`push_str`], [`push_str_html`]).
//!
//! ```
//! use parquetry_json::{object_each, string_value, JErr, Kind};
//! let mut level = None;
//! let r = object_each::<JErr>(br#"{"level":"warn","n":1} trailing"#, |k, v| {
//!     if &*k == b"level" && v.kind == Kind::String {
//!         level = Some(string_value(v.raw).into_owned());
//!     }
//!     Ok(())
//! });
//! assert!(r.is_ok());
//! assert_eq!(level.as_deref(), Some("warn"));
//! ```
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::borrow::Cow;

mod quote;
pub use quote::{push_str, push_str_html};

/// The failures the scanner reports, with the texts Loki shows in `__error_details__`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JErr {
    /// Not JSON at all.
    Malformed,
    /// A string without its closing quote.
    MalformedString,
    /// An array without its closing `]`.
    MalformedArray,
    /// An object without its closing `}`.
    MalformedObject,
    /// A value that starts with no JSON value's first byte.
    UnknownValueType,
    /// A string with an invalid escape sequence.
    MalformedStringEscape,
}

impl JErr {
    /// Loki's text for the failure.
    pub fn text(self) -> &'static str {
        match self {
            JErr::Malformed => "Malformed JSON error",
            JErr::MalformedString => "Value is string, but can't find closing '\"' symbol",
            JErr::MalformedArray => "Value is array, but can't find closing ']' symbol",
            JErr::MalformedObject => "Value looks like object, but can't find closing '}' symbol",
            JErr::UnknownValueType => "Unknown value type",
            JErr::MalformedStringEscape => "Encountered an invalid escape sequence in a string",
        }
    }
}

impl std::fmt::Display for JErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for JErr {}

/// The type of a value, decided by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `"…"`.
    String,
    /// A number.
    Number,
    /// `{…}`.
    Object,
    /// `[…]`.
    Array,
    /// `true` or `false`.
    Boolean,
    /// `null`.
    Null,
}

/// A value: strings without their quotes and still escaped, everything else as written.
#[derive(Debug, Clone, Copy)]
pub struct Val<'a> {
    /// The value's bytes (a string's without its quotes, still escaped).
    pub raw: &'a [u8],
    /// Its type.
    pub kind: Kind,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

/// Index of the first non-whitespace byte.
fn next_token(d: &[u8]) -> Option<usize> {
    d.iter().position(|&c| !is_ws(c))
}

/// End of a scalar: the first whitespace, `,`, `}` or `]`, or the end of the data.
fn token_end(d: &[u8]) -> usize {
    d.iter()
        .position(|&c| is_ws(c) || matches!(c, b',' | b'}' | b']'))
        .unwrap_or(d.len())
}

/// `d` starts just after an opening quote: the index after the closing quote (one not
/// preceded by an odd number of backslashes), and whether any backslash came before it.
fn string_end(d: &[u8]) -> Option<(usize, bool)> {
    let mut escaped = false;
    for (i, &c) in d.iter().enumerate() {
        match c {
            b'"' => {
                let backslashes = d[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                if backslashes % 2 == 0 {
                    return Some((i + 1, escaped));
                }
            }
            b'\\' => escaped = true,
            _ => {}
        }
    }
    None
}

/// `d` starts at `open`: the index after the matching `close`, skipping strings.
fn block_end(d: &[u8], open: u8, close: u8) -> Option<usize> {
    let mut level = 0usize;
    let mut i = 0;
    while i < d.len() {
        let c = d[i];
        if c == b'"' {
            let (end, _) = string_end(&d[i + 1..])?;
            i += end;
        } else if c == open {
            level += 1;
        } else if c == close {
            level = level.saturating_sub(1);
            if level == 0 {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

/// The value starting exactly at `d[0]`, and the index after it.
fn value_at(d: &[u8]) -> Result<(Val<'_>, usize), JErr> {
    match d[0] {
        b'"' => {
            let (end, _) = string_end(&d[1..]).ok_or(JErr::MalformedString)?;
            Ok((
                Val {
                    raw: &d[1..end],
                    kind: Kind::String,
                },
                end + 1,
            ))
        }
        b'[' => {
            let end = block_end(d, b'[', b']').ok_or(JErr::MalformedArray)?;
            Ok((
                Val {
                    raw: &d[..end],
                    kind: Kind::Array,
                },
                end,
            ))
        }
        b'{' => {
            let end = block_end(d, b'{', b'}').ok_or(JErr::MalformedObject)?;
            Ok((
                Val {
                    raw: &d[..end],
                    kind: Kind::Object,
                },
                end,
            ))
        }
        first => {
            let end = token_end(d);
            let raw = &d[..end];
            let kind = match first {
                b't' | b'f' if raw == b"true" || raw == b"false" => Kind::Boolean,
                b'n' | b'u' if raw == b"null" => Kind::Null,
                b'0'..=b'9' | b'-' => Kind::Number,
                _ => return Err(JErr::UnknownValueType),
            };
            Ok((Val { raw, kind }, end))
        }
    }
}

/// The first value in `d` after whitespace, and the index after it.
pub fn get(d: &[u8]) -> Result<(Val<'_>, usize), JErr> {
    let start = next_token(d).ok_or(JErr::Malformed)?;
    let (v, end) = value_at(&d[start..])?;
    Ok((v, start + end))
}

/// Calls `f(key, value)` for each member of the object at the start of `d` (after
/// whitespace), in order, stopping at the first error of the scan or of `f`. Anything after
/// the closing brace is ignored.
pub fn object_each<'a, E: From<JErr>>(
    d: &'a [u8],
    mut f: impl FnMut(Cow<'a, [u8]>, Val<'a>) -> Result<(), E>,
) -> Result<(), E> {
    let mut at = next_token(d).ok_or(JErr::MalformedObject)?;
    if d[at] != b'{' {
        return Err(JErr::MalformedObject.into());
    }
    at += 1;
    at += next_token(&d[at..]).ok_or(JErr::Malformed)?;
    while at < d.len() {
        match d[at] {
            b'"' => at += 1,
            b'}' => return Ok(()),
            _ => return Err(JErr::MalformedObject.into()),
        }
        let (end, escaped) = string_end(&d[at..]).ok_or(JErr::Malformed)?;
        let raw_key = &d[at..at + end - 1];
        at += end;
        let key = if escaped {
            Cow::Owned(unescape(raw_key).ok_or(JErr::MalformedStringEscape)?)
        } else {
            Cow::Borrowed(raw_key)
        };
        at += next_token(&d[at..]).ok_or(JErr::Malformed)?;
        if d[at] != b':' {
            return Err(JErr::Malformed.into());
        }
        at += 1;
        let (v, end) = get(&d[at..])?;
        f(key, v)?;
        at += end;
        // The scanner reports a missing `,`/`}` at the end of the data as an array error.
        at += next_token(&d[at..]).ok_or(JErr::MalformedArray)?;
        match d[at] {
            b'}' => return Ok(()),
            b',' => at += 1,
            _ => return Err(JErr::MalformedObject.into()),
        }
        at += next_token(&d[at..]).ok_or(JErr::MalformedArray)?;
    }
    Err(JErr::MalformedObject.into())
}

/// Calls `f(value, start)` for each element of the array at the start of `d`; returns the
/// index where the walk stopped (the closing bracket when it completes).
fn array_each<'a>(d: &'a [u8], mut f: impl FnMut(Val<'a>, usize)) -> (usize, Result<(), JErr>) {
    let Some(first) = next_token(d) else {
        return (0, Err(JErr::MalformedObject));
    };
    let mut at = first + 1;
    match next_token(&d[at..]) {
        Some(o) => at += o,
        None => return (at, Err(JErr::Malformed)),
    }
    if d[at] == b']' {
        return (at, Ok(()));
    }
    loop {
        let (v, end) = match get(&d[at..]) {
            Ok(x) => x,
            Err(e) => return (at, Err(e)),
        };
        if end == 0 {
            break;
        }
        // Where the value's text starts: a string's content start is one past its quote.
        let start = at + end - v.raw.len() - usize::from(v.kind == Kind::String);
        f(v, start);
        at += end;
        match next_token(&d[at..]) {
            Some(o) => at += o,
            None => return (at, Err(JErr::MalformedArray)),
        }
        match d[at] {
            b']' => break,
            b',' => at += 1,
            _ => return (at, Err(JErr::MalformedArray)),
        }
    }
    (at, Ok(()))
}

/// `[n]` as an array index; anything else is index 0, as the scanner's `Atoi` error is.
fn index_of(seg: &str) -> usize {
    seg.get(1..seg.len().saturating_sub(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn is_index(seg: &str) -> bool {
    seg.starts_with('[')
}

/// Where the value at `keys` (object keys, or `[n]` for array elements) starts in `d`.
fn search_keys(d: &[u8], keys: &[String]) -> Option<usize> {
    if keys.is_empty() {
        return Some(0);
    }
    let (mut key_level, mut level) = (0usize, 0usize);
    let mut last_matched = true;
    let mut i = 0;
    while i < d.len() {
        match d[i] {
            b'"' => {
                i += 1;
                let begin = i;
                let (end, escaped) = string_end(&d[i..])?;
                i += end;
                let key_end = i - 1;
                i += next_token(&d[i..])?;
                if d[i] == b':' {
                    if level < 1 {
                        return None;
                    }
                    let raw = &d[begin..key_end];
                    let key = if escaped {
                        Cow::Owned(unescape(raw)?)
                    } else {
                        Cow::Borrowed(raw)
                    };
                    if level > keys.len() {
                        return None;
                    }
                    if *key == *keys[level - 1].as_bytes() {
                        last_matched = true;
                        if key_level == level - 1 {
                            key_level += 1;
                            if key_level == keys.len() {
                                return Some(i + 1);
                            }
                        }
                    } else {
                        last_matched = false;
                    }
                } else {
                    i -= 1;
                }
            }
            b'{' => {
                if last_matched {
                    level += 1;
                } else {
                    i += block_end(&d[i..], b'{', b'}')? - 1;
                }
            }
            b'}' => {
                level = level.checked_sub(1)?;
                if level == key_level {
                    key_level = key_level.saturating_sub(1);
                }
            }
            b'[' => {
                if key_level == level && keys.get(level).is_some_and(|k| is_index(k)) {
                    let seg = &keys[level];
                    let want: usize = seg.get(1..seg.len() - 1)?.parse().ok()?;
                    let mut found: Option<(usize, usize)> = None;
                    let mut n = 0;
                    let base = i;
                    // A malformed array just ends the walk: an element not reached is
                    // not found.
                    let _ = array_each(&d[i..], |v, start| {
                        if n == want {
                            // A string element is searched with its quotes.
                            let q = usize::from(v.kind == Kind::String);
                            found = Some((start - q, v.raw.len() + 2 * q));
                        }
                        n += 1;
                    });
                    let (start, len) = found?;
                    let elem = &d[base + start..base + start + len];
                    let sub = search_keys(elem, &keys[level + 1..])?;
                    return Some(base + start + sub);
                }
                i += block_end(&d[i..], b'[', b']')? - 1;
            }
            b':' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Finds every path in one pass, as Loki's extraction parser does: `f(index, value)` is
/// called once per path found (the value or the scanner's error at it), and `f(None, Err)`
/// when the line has a key outside any object. Paths not found are not reported.
pub fn each_key<'a>(
    d: &'a [u8],
    paths: &[Vec<String>],
    mut f: impl FnMut(Option<usize>, Result<Val<'a>, JErr>),
) {
    let max_path = paths.iter().map(Vec::len).max().unwrap_or(0);
    let mut done = vec![false; paths.len()];
    let mut matched = 0;
    let mut stack: Vec<Cow<'a, [u8]>> = vec![Cow::Borrowed(&[]); max_path];
    let mut level: isize = 0;
    let mut i = 0;
    let same_tree = |p: &[String], stack: &[Cow<'a, [u8]>], level: usize| {
        p.iter()
            .zip(&stack[..level])
            .all(|(a, b)| a.as_bytes() == &**b)
    };
    while i < d.len() {
        match d[i] {
            b'"' => {
                i += 1;
                let begin = i;
                let Some((end, escaped)) = string_end(&d[i..]) else {
                    return;
                };
                i += end;
                let key_end = i - 1;
                let Some(o) = next_token(&d[i..]) else {
                    return;
                };
                i += o;
                if d[i] != b':' {
                    i -= 1;
                } else {
                    let raw = &d[begin..key_end];
                    let key = if escaped {
                        match unescape(raw) {
                            Some(k) => Cow::Owned(k),
                            None => return,
                        }
                    } else {
                        Cow::Borrowed(raw)
                    };
                    if level <= max_path as isize {
                        if level < 1 {
                            f(None, Err(JErr::Malformed));
                            return;
                        }
                        let lv = level as usize;
                        stack[lv - 1] = key;
                        for (pi, p) in paths.iter().enumerate() {
                            if p.len() != lv
                                || done[pi]
                                || p[lv - 1].as_bytes() != &*stack[lv - 1]
                                || !same_tree(p, &stack, lv)
                            {
                                continue;
                            }
                            matched += 1;
                            done[pi] = true;
                            f(Some(pi), get(&d[i + 1..]).map(|(v, _)| v));
                            if matched == paths.len() {
                                return;
                            }
                        }
                    }
                }
            }
            b'{' => level += 1,
            b'}' | b']' => level -= 1,
            b'[' => {
                if level < 0 {
                    f(None, Err(JErr::Malformed));
                    return;
                }
                let lv = level as usize;
                let wanted: Vec<usize> = (0..paths.len())
                    .filter(|&pi| {
                        let p = &paths[pi];
                        p.len() > lv
                            && !done[pi]
                            && is_index(&p[lv])
                            && p[lv].len() > 2
                            && same_tree(p, &stack, lv.min(stack.len()))
                    })
                    .collect();
                if wanted.is_empty() {
                    let Some(skip) = block_end(&d[i..], b'[', b']') else {
                        return;
                    };
                    i += skip - 1;
                } else {
                    level += 1;
                    let mut n = 0;
                    let mut found: Vec<(usize, Val<'a>)> = Vec::new();
                    let (stop, _) = array_each(&d[i..], |v, _| {
                        for &pi in &wanted {
                            if index_of(&paths[pi][lv]) == n {
                                found.push((pi, v));
                            }
                        }
                        n += 1;
                    });
                    for (pi, v) in found {
                        matched += 1;
                        done[pi] = true;
                        let rest = &paths[pi][lv + 1..];
                        if let Some(at) = search_keys(v.raw, rest) {
                            if v.kind == Kind::String {
                                f(
                                    Some(pi),
                                    Ok(Val {
                                        raw: &v.raw[at..],
                                        kind: Kind::String,
                                    }),
                                );
                            } else {
                                f(Some(pi), get(&v.raw[at..]).map(|(v, _)| v));
                            }
                        }
                    }
                    if matched == paths.len() {
                        return;
                    }
                    i = (i + stop).saturating_sub(1);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// JSON string escapes; `None` on an invalid one. A surrogate pair that does not decode
/// becomes U+FFFD, as Go's UTF-8 encoder writes for an invalid rune.
pub fn unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1)?;
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let hi = hex4(raw.get(i + 2..i + 6)?)?;
        let (c, len) = if hi <= 0xFFFF && !(0xD800..=0xDFFF).contains(&hi) {
            (char::from_u32(hi), 6)
        } else {
            if raw.get(i + 6..i + 8) != Some(b"\\u") {
                return None;
            }
            let lo = hex4(raw.get(i + 8..i + 12)?)?;
            if lo < 0xDC00 {
                return None;
            }
            let combined = 0x10000 + ((hi.wrapping_sub(0xD800)) << 10) + (lo - 0xDC00);
            (char::from_u32(combined), 12)
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.unwrap_or('\u{FFFD}').encode_utf8(&mut buf).as_bytes());
        i += len;
    }
    Some(out)
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter().try_fold(0u32, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc * 16 + d)
    })
}

/// A string value as Loki stores it in a label: unescaped (an invalid escape gives the
/// empty string) with U+FFFD, and so any invalid UTF-8, turned into spaces.
pub fn string_value(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return blank_replacements(String::from_utf8_lossy(raw));
    }
    match unescape(raw) {
        Some(v) => blank_replacements(Cow::Owned(String::from_utf8_lossy(&v).into_owned())),
        None => Cow::Borrowed(""),
    }
}

fn blank_replacements(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.contains('\u{FFFD}') {
        Cow::Owned(s.replace('\u{FFFD}', " "))
    } else {
        s
    }
}

/// The label value of a scalar: numbers as written, booleans as `true`/`false`.
pub fn scalar_text<'a>(v: &Val<'a>) -> Cow<'a, str> {
    match v.kind {
        Kind::String => string_value(v.raw),
        Kind::Null => Cow::Borrowed(""),
        _ => String::from_utf8_lossy(v.raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(line: &str) -> (Vec<(String, String)>, Option<&'static str>) {
        let mut out = Vec::new();
        let r = object_each::<JErr>(line.as_bytes(), |k, v| {
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(v.raw).into_owned(),
            ));
            Ok(())
        });
        (out, r.err().map(JErr::text))
    }

    #[test]
    fn object_each_is_lenient_and_names_the_first_problem() {
        assert_eq!(members(r#"{"a":1} trailing"#).1, None);
        assert_eq!(members(r#"{"a":1,}"#).1, None);
        assert_eq!(members(r#"  {"a":-}"#).0, vec![("a".into(), "-".into())]);
        let (kv, err) = members(r#"{"a":1"#);
        assert_eq!(kv, vec![("a".into(), "1".into())]);
        assert_eq!(err, Some(JErr::MalformedArray.text()));
        assert_eq!(members("not json").1, Some(JErr::MalformedObject.text()));
        assert_eq!(members("{").1, Some(JErr::Malformed.text()));
        assert_eq!(members(r#"{"a":}"#).1, Some(JErr::UnknownValueType.text()));
        assert_eq!(members(r#"{"a":"x}"#).1, Some(JErr::MalformedString.text()));
        assert_eq!(
            members(r#"{"a":tru}"#).1,
            Some(JErr::UnknownValueType.text())
        );
        assert_eq!(members(r#"{"a" 1}"#).1, Some(JErr::Malformed.text()));
        assert_eq!(
            members(r#"{"a":1 "b":2}"#).1,
            Some(JErr::MalformedObject.text())
        );
        assert_eq!(
            members(r#"{"a":[1,2}"#).1,
            Some(JErr::MalformedArray.text())
        );
        assert_eq!(
            members(r#"{"a\q":1}"#).1,
            Some(JErr::MalformedStringEscape.text())
        );
    }

    #[test]
    fn paths_in_one_pass() {
        let line = r#"{"a":{"b":"v","n":[1,{"c":"x"},"s"]},"k":tru,"e":"\u00e9"}"#;
        let paths: Vec<Vec<String>> = [
            vec!["a", "b"],
            vec!["a", "n", "[1]", "c"],
            vec!["a", "n", "[2]"],
            vec!["k"],
            vec!["e"],
            vec!["missing"],
        ]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
        let mut got = vec![None; paths.len()];
        each_key(line.as_bytes(), &paths, |i, r| {
            if let Some(i) = i {
                got[i] = Some(r.map(|v| scalar_text(&v)).map_err(JErr::text));
            }
        });
        assert_eq!(got[0], Some(Ok("v".into())));
        assert_eq!(got[1], Some(Ok("x".into())));
        assert_eq!(got[2], Some(Ok("s".into())));
        assert_eq!(got[3], Some(Err(JErr::UnknownValueType.text())));
        assert_eq!(got[4], Some(Ok("é".into())));
        assert_eq!(got[5], None);
    }

    #[test]
    fn string_values() {
        assert_eq!(string_value(br#"a\"b"#), "a\"b");
        assert_eq!(string_value(br#"\q"#), "");
        assert_eq!(string_value(br#"\ud83d\ude00"#), "😀");
        assert_eq!(string_value("a\u{FFFD}b".as_bytes()), "a b");
    }
}
