//! The one logfmt scanner: `| logfmt` in queries and `detected_level` at push time read
//! lines with it, so a level found at ingest is exactly what `| logfmt` extracts.
//!
//! Pairs are `key=value`, `key="quoted value"`, `key=` or a bare `key`, separated by
//! whitespace (any byte up to space). A malformed pair is reported with its position and
//! skipped; a strict caller stops there. Quoted values unescape as Go's `strconv.Unquote`.
//!
//! ```
//! use parquetry_logfmt::{Decoder, Item};
//! let pairs: Vec<_> = Decoder::new(r#"level=info msg="a \"b\"" bare"#)
//!     .filter_map(|i| match i {
//!         Item::Pair(k, v) => Some((k, v.map(|v| v.into_owned()))),
//!         Item::Malformed { .. } => None,
//!     })
//!     .collect();
//! assert_eq!(pairs[0], ("level", Some("info".to_string())));
//! assert_eq!(pairs[1], ("msg", Some("a \"b\"".to_string())));
//! assert_eq!(pairs[2], ("bare", None));
//! ```
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::borrow::Cow;

/// One decoded pair (a bare `key` or `key=` has no value), or why the pair at `pos` is malformed.
pub enum Item<'a> {
    /// A key and its value, unescaped (`None` for a bare key).
    Pair(&'a str, Option<Cow<'a, str>>),
    /// A pair that does not parse.
    Malformed {
        /// Byte offset of the problem.
        pos: usize,
        /// What is wrong.
        msg: &'static str,
    },
}

/// The pairs of one line, in order.
pub struct Decoder<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over line `s`.
    pub fn new(s: &'a str) -> Self {
        Decoder { s, pos: 0 }
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        self.next_item()
    }
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

    fn next_item(&mut self) -> Option<Item<'a>> {
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
pub fn unescape(raw: &str) -> Option<String> {
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
