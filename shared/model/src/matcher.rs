//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: regexes are anchored at
//! both ends, and a missing label matches as the empty string.

use std::fmt;

use regex::Regex;

use crate::labels::{Labels, write_quoted};

/// A label matcher's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    Neq,
    /// `=~`: the fully anchored regex matches.
    Re,
    /// `!~`: the fully anchored regex does not match.
    Nre,
}

impl MatchOp {
    /// The operator as LogQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// Why a matcher cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The regex does not compile (the compiler's message).
    #[error("error parsing regexp: {0}")]
    Regex(String),
}

/// One matcher, with its regex compiled once.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The value or regex, as written.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}
impl Eq for Matcher {}

impl Matcher {
    /// A matcher, compiling its regex (anchored) for `=~` and `!~`.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let value = value.into();
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| MatcherError::Regex(regex_error_text(&e)))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Whether a label value `v` passes (an absent label is the empty string).
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            // `__error__=""` runs once per line of a parser query: an empty value is told by
            // its length, without a call to `memcmp`.
            (MatchOp::Eq, _) => v.len() == self.value.len() && (v.is_empty() || v == self.value),
            (MatchOp::Neq, _) => v.len() != self.value.len() || (!v.is_empty() && v != self.value),
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::Nre, Some(re)) => !re.is_match(v),
            // Unreachable by construction; fail closed.
            _ => false,
        }
    }

    /// Matches a label set; an absent label is the empty string.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// True if the empty string matches, i.e. the matcher alone would select every stream
    /// lacking the label. Loki requires at least one matcher per selector for which this is false.
    pub fn matches_empty(&self) -> bool {
        self.matches_value("")
    }

    /// The exact value this matcher pins the label to, if it is an equality matcher.
    pub fn equality_value(&self) -> Option<&str> {
        (self.op == MatchOp::Eq).then_some(self.value.as_str())
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

/// True if every matcher matches.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn regex_error_text(e: &regex::Error) -> String {
    // The regex crate's message spans several lines; keep the last, most specific one so the
    // text fits Loki's one-line error bodies.
    let s = e.to_string();
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&s)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_regex_and_absent_labels() {
        let l = Labels::from_pairs([("app", "web-1")]);
        assert!(
            Matcher::new("app", MatchOp::Re, "web.*")
                .unwrap()
                .matches(&l)
        );
        assert!(!Matcher::new("app", MatchOp::Re, "web").unwrap().matches(&l));
        assert!(
            Matcher::new("env", MatchOp::Neq, "prod")
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::new("env", MatchOp::Eq, "").unwrap().matches(&l));
        assert!(
            Matcher::new("app", MatchOp::Re, ".*")
                .unwrap()
                .matches_empty()
        );
        assert!(
            !Matcher::new("app", MatchOp::Re, ".+")
                .unwrap()
                .matches_empty()
        );
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(Matcher::new("a", MatchOp::Re, "(").is_err());
    }
}
