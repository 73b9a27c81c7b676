//! The two ways LogQL compiles regular expressions, shared by validation and engines so that
//! "validated at parse time" really means "compiles later".
//!
//! Stream selectors and label-filter matchers use [`parquetry_model::Matcher`], which anchors
//! its regex itself.

use regex::Regex;

/// A line filter (`|~`, `!~`) or `regexp` parser regex: unanchored, `.` does not match `\n`
/// unless `(?s)` is given (RE2 semantics, which the `regex` crate shares).
pub fn line_filter_regex(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(re)
}

/// A fully anchored regex, as `label_replace` uses: `^(?:re)$`.
pub fn anchored_regex(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{re})$"))
}

/// Loki-style one-line text for a regex error: `error parsing regexp: <detail>`.
pub(crate) fn regex_error_text(e: &regex::Error) -> String {
    // The regex crate's message spans several lines (source, caret, detail); the last
    // non-empty line is the specific one and fits Loki's one-line error bodies.
    let s = e.to_string();
    let detail = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&s)
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    format!("error parsing regexp: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchoring() {
        assert!(line_filter_regex("b").unwrap().is_match("abc"));
        assert!(!anchored_regex("b").unwrap().is_match("abc"));
        assert!(anchored_regex("a|abc").unwrap().is_match("abc"));
        let e = line_filter_regex("(").unwrap_err();
        assert!(regex_error_text(&e).starts_with("error parsing regexp: "));
        assert!(!regex_error_text(&e).contains('\n'));
    }
}
