//! The `pattern` syntax shared by the `| pattern "…"` parser and the `|>`/`!>` line filters.
//!
//! A pattern is a sequence of literals and captures. A capture is `<name>` where `name` is an
//! identifier (`[A-Za-z_][A-Za-z0-9_]*`); `<_>` is an unnamed capture. Any other text,
//! including a `<` that does not start a capture, is literal.

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternPart {
    /// Text that must appear as is.
    Literal(String),
    /// `Some(name)` for `<name>`, `None` for `<_>`.
    Capture(Option<String>),
}

/// Why a pattern was rejected. The texts are Loki's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A parser pattern without any named capture.
    #[error("at least one capture is required")]
    NoCapture,
    /// Two captures with no literal between them: the boundary would be ambiguous.
    #[error("found consecutive capture '{0}': invalid expression")]
    ConsecutiveCapture(String),
    /// The same name captured twice.
    #[error("duplicate capture name ({0}): invalid expression")]
    DuplicateCapture(String),
    /// A named capture in a line filter, where captures cannot be used (the capture, `<name>`).
    #[error("named captures are not allowed: found '{0}'")]
    NamedCaptureInFilter(String),
}

/// Splits a pattern into parts. Never fails; adjacent literal text is merged.
pub fn parse_pattern(s: &str) -> Vec<PatternPart> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some((name, len)) = capture_at(rest) {
            if !lit.is_empty() {
                parts.push(PatternPart::Literal(std::mem::take(&mut lit)));
            }
            parts.push(PatternPart::Capture(
                (name != "_").then(|| name.to_string()),
            ));
            rest = &rest[len..];
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                lit.push(c);
            }
            rest = chars.as_str();
        }
    }
    if !lit.is_empty() {
        parts.push(PatternPart::Literal(lit));
    }
    parts
}

/// If `s` starts with `<identifier>`, returns the identifier and the byte length consumed.
fn capture_at(s: &str) -> Option<(&str, usize)> {
    let body = s.strip_prefix('<')?;
    let end = body.find('>')?;
    let name = &body[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some((name, end + 2))
}

fn check_consecutive(parts: &[PatternPart]) -> Result<(), PatternError> {
    for w in parts.windows(2) {
        if let [PatternPart::Capture(_), PatternPart::Capture(c)] = w {
            return Err(PatternError::ConsecutiveCapture(
                c.clone().unwrap_or_else(|| "_".into()),
            ));
        }
    }
    Ok(())
}

/// Validates a `| pattern "…"` parser pattern: at least one named capture, no two captures
/// side by side, no name twice.
pub fn parse_parser_pattern(s: &str) -> Result<Vec<PatternPart>, PatternError> {
    let parts = parse_pattern(s);
    check_consecutive(&parts)?;
    let mut seen: Vec<&str> = Vec::new();
    for p in &parts {
        if let PatternPart::Capture(Some(n)) = p {
            if seen.contains(&n.as_str()) {
                return Err(PatternError::DuplicateCapture(n.clone()));
            }
            seen.push(n);
        }
    }
    if seen.is_empty() {
        return Err(PatternError::NoCapture);
    }
    Ok(parts)
}

/// Validates a `|>`/`!>` line filter pattern: only `<_>` captures, never side by side.
pub fn parse_filter_pattern(s: &str) -> Result<Vec<PatternPart>, PatternError> {
    let parts = parse_pattern(s);
    check_consecutive(&parts)?;
    if let Some(name) = parts.iter().find_map(|p| match p {
        PatternPart::Capture(Some(n)) => Some(n),
        _ => None,
    }) {
        return Err(PatternError::NamedCaptureInFilter(format!("<{name}>")));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> PatternPart {
        PatternPart::Literal(s.into())
    }
    fn cap(s: &str) -> PatternPart {
        PatternPart::Capture(Some(s.into()))
    }

    #[test]
    fn splits_literals_and_captures() {
        assert_eq!(
            parse_pattern("<ip> - <_> [<ts>]"),
            vec![
                cap("ip"),
                lit(" - "),
                PatternPart::Capture(None),
                lit(" ["),
                cap("ts"),
                lit("]")
            ]
        );
        // Not identifiers: literal text.
        assert_eq!(parse_pattern("<1a> <a b> <"), vec![lit("<1a> <a b> <")]);
        assert_eq!(parse_pattern("é<x>"), vec![lit("é"), cap("x")]);
    }

    #[test]
    fn parser_rules() {
        assert!(parse_parser_pattern("<a> <b>").is_ok());
        assert_eq!(
            parse_parser_pattern("<_> x").unwrap_err(),
            PatternError::NoCapture
        );
        assert_eq!(
            parse_parser_pattern("<a><b>").unwrap_err().to_string(),
            "found consecutive capture 'b': invalid expression"
        );
        assert_eq!(
            parse_parser_pattern("<a> <a>").unwrap_err(),
            PatternError::DuplicateCapture("a".into())
        );
    }

    #[test]
    fn filter_rules() {
        assert!(parse_filter_pattern("<_> error <_>").is_ok());
        assert!(parse_filter_pattern("plain").is_ok());
        assert_eq!(
            parse_filter_pattern("<a> x").unwrap_err(),
            PatternError::NamedCaptureInFilter("<a>".into())
        );
        assert!(parse_filter_pattern("<_><_>").is_err());
    }
}
