//! The one error type of the crate, printed exactly as Loki prints `logqlmodel.ParseError`.

use std::fmt;

/// A syntax or validation error.
///
/// Loki prints errors that carry a position as
/// `parse error at line L, col C: <msg>` and errors without one (semantic validation, size
/// limit, regex compilation) as `parse error : <msg>` — note the space before the colon.
/// A position of `0, 0` means "no position", exactly as in Loki.
///
/// Lines and columns are 1-based and columns count characters, not bytes. Loki reports
/// **line 0** for tokens its lexer had to read rune by rune (ranges `[5m]`, durations and byte
/// sizes with a unit, two-character operators such as `!=` or `|=`, parser flags); the column
/// is still the token's first character. We reproduce that quirk so error texts match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    msg: String,
    line: usize,
    col: usize,
}

impl ParseError {
    /// An error at a position (`line`/`col` as Loki reports them, see the type docs).
    pub fn new(msg: impl Into<String>, line: usize, col: usize) -> Self {
        ParseError {
            msg: msg.into(),
            line,
            col,
        }
    }

    /// A position-less error, printed `parse error : <msg>`.
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::new(msg, 0, 0)
    }

    /// The message without the `parse error …:` prefix.
    pub fn message(&self) -> &str {
        &self.msg
    }

    /// The line reported (0 for tokens Loki reads rune by rune).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column reported.
    pub fn col(&self) -> usize {
        self.col
    }

    /// True for errors that carry no position (validation errors, size limit).
    pub fn is_positionless(&self) -> bool {
        self.line == 0 && self.col == 0
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_positionless() {
            write!(f, "parse error : {}", self.msg)
        } else {
            write!(
                f,
                "parse error at line {}, col {}: {}",
                self.line, self.col, self.msg
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        assert_eq!(
            ParseError::new("syntax error: unexpected IDENTIFIER", 1, 1).to_string(),
            "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER"
        );
        assert_eq!(
            ParseError::validation("boom").to_string(),
            "parse error : boom"
        );
        // Line 0 with a column is still a positioned error (Loki's rune-by-rune tokens).
        assert_eq!(
            ParseError::new("syntax error: unexpected RANGE", 0, 20).to_string(),
            "parse error at line 0, col 20: syntax error: unexpected RANGE"
        );
    }
}
