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

/// Bytes that end a key: whitespace (any byte up to space), `=` and `"`.
const KEY_END: [bool; 256] = byte_class(true);
/// Bytes that end an unquoted value: whitespace and `"` (which makes the pair malformed).
const VALUE_END: [bool; 256] = byte_class(false);

const fn byte_class(key: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i <= b' ' as usize || i == b'"' as usize || (key && i == b'=' as usize);
        i += 1;
    }
    t
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` below `n` (at most 128). Only bytes above a flagged
/// one can be flagged wrongly (by a borrow), so the lowest flag is always right.
#[inline]
fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS
}

/// The high bit of each byte of `x` equal to `b`, with the same guarantee.
#[inline]
fn bytes_equal(x: u64, b: u8) -> u64 {
    bytes_below(x ^ (ONES * u64::from(b)), 1)
}

/// The first position at or after `from` of a byte of `class` ([`KEY_END`] or
/// [`VALUE_END`]), or the end: eight bytes at a time, as keys and values run to tens of
/// bytes and the byte-by-byte loop was a tenth of `| logfmt`.
#[inline]
fn find_end(b: &[u8], from: usize, class: &[bool; 256]) -> usize {
    let key = class[usize::from(b'=')];
    let mut at = from;
    while let Some(chunk) = b.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let mut hits = bytes_below(x, b' ' + 1) | bytes_equal(x, b'"');
        if key {
            hits |= bytes_equal(x, b'=');
        }
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    b.get(at..)
        .and_then(|rest| rest.iter().position(|&c| class[usize::from(c)]))
        .map_or(b.len(), |n| at + n)
}

impl<'a> Decoder<'a> {
    /// The position of the first byte at or after `from` that `stop` accepts, or the end.
    #[inline]
    fn scan_to(&self, from: usize, stop: impl Fn(u8) -> bool) -> usize {
        let b = self.s.as_bytes();
        b.get(from..)
            .and_then(|rest| rest.iter().position(|&c| stop(c)))
            .map_or(b.len(), |n| from + n)
    }

    /// Skips to the next whitespace, past the malformed pair.
    fn recover(&mut self) {
        self.pos = self.scan_to(self.pos, |c| c <= b' ');
    }

    fn next_item(&mut self) -> Option<Item<'a>> {
        self.pos = self.scan_to(self.pos, |c| c > b' ');
        let b = self.s.as_bytes();
        let start = self.pos;
        let first = *b.get(start)?;
        self.pos = find_end(b, start, &KEY_END);
        let key = self.s.get(start..self.pos)?;
        if key.is_empty() {
            let pos = self.pos;
            let msg = if first == b'=' {
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
                        self.pos = find_end(b, vstart, &VALUE_END);
                        if b.get(self.pos) == Some(&b'"') {
                            let pos = self.pos;
                            self.recover();
                            return Some(Item::Malformed {
                                pos,
                                msg: "unexpected '\"'",
                            });
                        }
                        Some(Item::Pair(
                            key,
                            Some(Cow::Borrowed(self.s.get(vstart..self.pos)?)),
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
        while let Some(n) = b
            .get(self.pos..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            self.pos += n;
            if b[self.pos] == b'\\' {
                escaped = true;
                self.pos += 2;
                continue;
            }
            let raw = self.s.get(vstart..self.pos)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight bytes at a time finds what a byte-by-byte search does, wherever the end lies
    /// in a chunk and whatever bytes (ASCII, UTF-8, control) come before and after it.
    #[test]
    fn chunked_search_finds_the_first_end_byte() {
        let alphabet = [
            b'a', b' ', b'=', b'"', b'\t', 0, 0x7f, 0x80, 0xc3, 0xa9, 0xff, b'!', b'#',
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            // Mostly plain bytes, so ends fall anywhere in a chunk.
            let line: Vec<u8> = (0..len)
                .map(|_| match next() % 8 {
                    0 => alphabet[(next() % alphabet.len() as u64) as usize],
                    _ => b'a' + (next() % 26) as u8,
                })
                .collect();
            let from = (next() % (len as u64 + 1)) as usize;
            for class in [&KEY_END, &VALUE_END] {
                let want = line[from..]
                    .iter()
                    .position(|&c| class[usize::from(c)])
                    .map_or(line.len(), |n| from + n);
                assert_eq!(find_end(&line, from, class), want, "{line:?} {from}");
            }
        }
    }
}
