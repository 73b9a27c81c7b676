//! Writing JSON string literals, for every response and line that quotes text the way Go's
//! `encoding/json` does (API bodies, the legacy tail stream, logfmt values in patterns).
//!
//! Two dialects on purpose: [`push_str`] is JSON as our HTTP responses write it, and
//! [`push_str_html`] also escapes `<`, `>`, `&`, U+2028 and U+2029, which Go's encoder does by
//! default and the legacy tail stream keeps byte for byte.

use std::fmt::Write;

/// Appends `s` as a JSON string literal, quotes included.
pub fn push_str(out: &mut String, s: &str) {
    push_quoted::<false>(out, s);
}

/// [`push_str`] with Go's HTML-safe escapes as well.
pub fn push_str_html(out: &mut String, s: &str) {
    push_quoted::<true>(out, s);
}

// A const parameter rather than a flag so the response writer's hot loop has no extra branch.
fn push_quoted<const HTML: bool>(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if HTML => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(f: fn(&mut String, &str), s: &str) -> String {
        let mut out = String::new();
        f(&mut out, s);
        out
    }

    #[test]
    fn plain_and_html_dialects() {
        let s = "a\"b\\c\nd\re\tf\u{1}<&>\u{2028}é";
        assert_eq!(
            quoted(push_str, s),
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001<&>\u{2028}é\""
        );
        assert_eq!(
            quoted(push_str_html, s),
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001\\u003c\\u0026\\u003e\\u2028é\""
        );
    }

    #[test]
    fn plain_output_is_what_serde_json_reads_back() {
        let s = "x\u{0}y\u{1f}z\"\\\u{7f}";
        let back: String = serde_json::from_str(&quoted(push_str, s)).unwrap();
        assert_eq!(back, s);
        let back: String = serde_json::from_str(&quoted(push_str_html, "<a&b>")).unwrap();
        assert_eq!(back, "<a&b>");
    }
}
