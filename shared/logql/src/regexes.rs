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

/// Loki's text for a regex that does not compile: Go's `error parsing regexp: <code>: `<expr>``,
/// where `re` is the expression as compiled (anchoring included, as Go sees it).
pub(crate) fn regex_error_text(re: &str, e: &regex::Error) -> String {
    use regex_syntax::ast::ErrorKind as K;
    if let Err(err) = regex_syntax::ast::parse::Parser::new().parse(re) {
        let span = err.span();
        let (start, end) = (span.start.offset, span.end.offset);
        let frag = |a: usize, b: usize| re.get(a..b).unwrap_or(re).to_string();
        let code_expr = match err.kind() {
            K::GroupUnclosed => Some(("missing closing )", re.to_string())),
            K::GroupUnopened => Some(("unexpected )", re.to_string())),
            K::ClassUnclosed => Some(("missing closing ]", frag(start, re.len()))),
            K::RepetitionMissing => {
                // The span is empty; Go shows the operator (`*`, `+`, `?` or `{…}`).
                let rest = re.get(start..).unwrap_or("");
                let len = match rest.find('}') {
                    Some(i) if rest.starts_with('{') => i + 1,
                    _ => rest.chars().next().map_or(0, char::len_utf8),
                };
                Some((
                    "missing argument to repetition operator",
                    frag(start, start + len),
                ))
            }
            K::RepetitionCountInvalid
            | K::RepetitionCountUnclosed
            | K::RepetitionCountDecimalEmpty => Some(("invalid repeat count", frag(start, end))),
            K::EscapeUnrecognized => Some(("invalid escape sequence", frag(start, end))),
            K::EscapeUnexpectedEof => {
                Some(("trailing backslash at end of expression", String::new()))
            }
            K::ClassRangeInvalid => Some(("invalid character class range", frag(start, end))),
            K::GroupNameInvalid | K::GroupNameEmpty | K::GroupNameUnexpectedEof => {
                Some(("invalid named capture", frag(start, end)))
            }
            K::GroupNameDuplicate { .. } => {
                Some(("duplicate capture group name", frag(start, end)))
            }
            K::FlagUnrecognized
            | K::FlagUnexpectedEof
            | K::FlagDanglingNegation
            | K::FlagRepeatedNegation { .. }
            | K::FlagDuplicate { .. } => {
                Some(("invalid or unsupported Perl syntax", frag(start, end)))
            }
            _ => None,
        };
        if let Some((code, expr)) = code_expr {
            return format!("error parsing regexp: {code}: `{expr}`");
        }
    }
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
        assert_eq!(
            regex_error_text("(", &e),
            "error parsing regexp: missing closing ): `(`"
        );
        let e = line_filter_regex("*a").unwrap_err();
        assert_eq!(
            regex_error_text("*a", &e),
            "error parsing regexp: missing argument to repetition operator: `*`"
        );
        assert!(!regex_error_text("*a", &e).contains('\n'));
        let e = line_filter_regex(r"\q").unwrap_err();
        assert_eq!(
            regex_error_text(r"\q", &e),
            r"error parsing regexp: invalid escape sequence: `\q`"
        );
    }
}
