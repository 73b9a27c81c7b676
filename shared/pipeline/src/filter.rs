//! Line filters (`|=`, `!=`, `|~`, `!~`, `|>`, `!>`, `ip(…)`) and the pattern matcher they
//! share with the `pattern` parser.

use std::net::IpAddr;

use memchr::memmem;
use parquetry_logql::ip::IpPattern;
use parquetry_logql::pattern::PatternPart;
use parquetry_logql::{LineFilter, LineFilterOp, LineFilterValue};
use regex::Regex;

use crate::PipelineError;

#[derive(Debug)]
enum Test {
    /// Precompiled so the substring search does not rebuild its tables per line.
    Contains(Box<memmem::Finder<'static>>),
    Regex(Regex),
    Pattern(Pattern),
    Ip(IpPattern),
}

impl Test {
    fn matches(&self, line: &str) -> bool {
        match self {
            Test::Contains(f) => f.find(line.as_bytes()).is_some(),
            Test::Regex(r) => r.is_match(line),
            Test::Pattern(p) => p.matches(line),
            Test::Ip(p) => contains_ip(line, p),
        }
    }
}

/// A compiled line filter with its `or` alternatives.
#[derive(Debug)]
pub(crate) struct CompiledLineFilter {
    negative: bool,
    tests: Vec<Test>,
}

impl CompiledLineFilter {
    pub(crate) fn new(f: &LineFilter) -> Result<Self, PipelineError> {
        let tests = f
            .values
            .iter()
            .map(|v| {
                Ok(match (f.op, v) {
                    (_, LineFilterValue::Ip(p)) => Test::Ip(IpPattern::parse(p)?),
                    (
                        LineFilterOp::Contains | LineFilterOp::NotContains,
                        LineFilterValue::Str(s),
                    ) => Test::Contains(Box::new(memmem::Finder::new(s.as_bytes()).into_owned())),
                    (LineFilterOp::Regex | LineFilterOp::NotRegex, LineFilterValue::Str(s)) => {
                        Test::Regex(parquetry_logql::regexes::line_filter_regex(s)?)
                    }
                    (LineFilterOp::Pattern | LineFilterOp::NotPattern, LineFilterValue::Str(s)) => {
                        let parts = parquetry_logql::pattern::parse_filter_pattern(s)?;
                        Test::Pattern(Pattern::new(parts, true))
                    }
                })
            })
            .collect::<Result<_, PipelineError>>()?;
        Ok(CompiledLineFilter {
            negative: f.op.is_negative(),
            tests,
        })
    }

    pub(crate) fn keep(&self, line: &str) -> bool {
        let any = self.tests.iter().any(|t| t.matches(line));
        any != self.negative
    }
}

/// True if any IP address in `text` falls in `p`. Candidates are maximal runs of the
/// characters an address can contain; a run that does not parse is searched for dotted-quad
/// sub-runs, so `ip:10.0.0.1` and `10.0.0.1.` still count.
pub(crate) fn contains_ip(text: &str, p: &IpPattern) -> bool {
    let b = text.as_bytes();
    let is_ip_char = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut i = 0;
    while i < b.len() {
        if !is_ip_char(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ip_char(b[i]) {
            i += 1;
        }
        let run = &text[start..i];
        if !run.contains(['.', ':']) {
            continue;
        }
        if let Ok(ip) = run.parse::<IpAddr>() {
            if p.contains(ip) {
                return true;
            }
            continue;
        }
        for cand in run.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
            let cand = cand.trim_matches('.');
            if let Ok(ip) = cand.parse::<IpAddr>()
                && p.contains(ip)
            {
                return true;
            }
        }
    }
    false
}

/// A compiled `pattern` expression.
#[derive(Debug)]
pub(crate) struct Pattern {
    parts: Vec<PatternPart>,
    /// Filters require every `<_>` to match at least one character and the whole line to be
    /// consumed; the parser stops at the first literal it cannot find.
    filter: bool,
}

impl Pattern {
    pub(crate) fn new(parts: Vec<PatternPart>, filter: bool) -> Self {
        Pattern { parts, filter }
    }

    pub(crate) fn captures(&self) -> impl Iterator<Item = Option<&str>> {
        self.parts.iter().filter_map(|p| match p {
            PatternPart::Capture(c) => Some(c.as_deref()),
            PatternPart::Literal(_) => None,
        })
    }

    /// Runs the pattern, calling `emit(capture_index, value)` for each capture reached.
    /// Returns false if the line does not match (a leading literal is missing or, for
    /// filters, any requirement fails).
    pub(crate) fn run<'l>(&self, line: &'l str, mut emit: impl FnMut(usize, &'l str)) -> bool {
        let mut pos = 0;
        let mut cap = 0;
        let mut parts = self.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                PatternPart::Literal(lit) => {
                    // Only a leading literal: later literals were consumed by their capture.
                    if !line[pos..].starts_with(lit.as_str()) {
                        return false;
                    }
                    pos += lit.len();
                }
                PatternPart::Capture(_) => {
                    let rest = &line[pos..];
                    match parts.next() {
                        Some(PatternPart::Literal(lit)) => {
                            // A filter capture is non-empty, so search from the second char.
                            let skip = if self.filter {
                                rest.chars().next().map_or(rest.len(), char::len_utf8)
                            } else {
                                0
                            };
                            match rest.get(skip..).and_then(|r| r.find(lit.as_str())) {
                                Some(i) => {
                                    emit(cap, &rest[..skip + i]);
                                    pos += skip + i + lit.len();
                                }
                                None => {
                                    if self.filter {
                                        return false;
                                    }
                                    emit(cap, rest);
                                    return true;
                                }
                            }
                        }
                        _ => {
                            if self.filter && rest.is_empty() {
                                return false;
                            }
                            emit(cap, rest);
                            pos = line.len();
                        }
                    }
                    cap += 1;
                }
            }
        }
        !self.filter || pos == line.len()
    }

    pub(crate) fn matches(&self, line: &str) -> bool {
        self.run(line, |_, _| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_logql::pattern::parse_pattern;

    fn lf(op: LineFilterOp, vals: &[&str]) -> CompiledLineFilter {
        CompiledLineFilter::new(&LineFilter {
            op,
            values: vals
                .iter()
                .map(|v| LineFilterValue::Str(v.to_string()))
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn contains_regex_or() {
        assert!(lf(LineFilterOp::Contains, &["err"]).keep("an error"));
        assert!(!lf(LineFilterOp::Contains, &["Err"]).keep("an error"));
        assert!(lf(LineFilterOp::Contains, &["x", "err"]).keep("an error"));
        assert!(!lf(LineFilterOp::NotContains, &["x", "err"]).keep("an error"));
        assert!(lf(LineFilterOp::NotContains, &["x", "y"]).keep("an error"));
        assert!(lf(LineFilterOp::Regex, &["e.r"]).keep("an error"));
        assert!(lf(LineFilterOp::Regex, &["(?i)ERROR"]).keep("an error"));
        assert!(!lf(LineFilterOp::NotRegex, &["^an"]).keep("an error"));
        assert!(lf(LineFilterOp::Contains, &[""]).keep("anything"));
    }

    #[test]
    fn pattern_filter() {
        let f = lf(LineFilterOp::Pattern, &["<_> error <_>"]);
        assert!(f.keep("GET error 500"));
        assert!(!f.keep(" error 500"), "leading <_> must be non-empty");
        assert!(!f.keep("GET error "), "trailing <_> must be non-empty");
        assert!(!f.keep("GET warn 500"));
        let f = lf(LineFilterOp::Pattern, &["GET <_> 200"]);
        assert!(f.keep("GET /x 200"));
        assert!(!f.keep("GET /x 200 extra"));
        assert!(!f.keep("POST /x 200"));
        assert!(lf(LineFilterOp::NotPattern, &["GET <_>"]).keep("POST /"));
    }

    #[test]
    fn pattern_parser_semantics() {
        let p = Pattern::new(parse_pattern("<ip> - <user> [<ts>]"), false);
        let mut got = Vec::new();
        assert!(p.run("1.2.3.4 - bob [now] tail", |i, v| got.push((i, v))));
        assert_eq!(got, vec![(0, "1.2.3.4"), (1, "bob"), (2, "now")]);
        got.clear();
        p.run("1.2.3.4 - bob no bracket", |i, v| got.push((i, v)));
        assert_eq!(got, vec![(0, "1.2.3.4"), (1, "bob no bracket")]);
        let p = Pattern::new(parse_pattern("level=<l> "), false);
        got.clear();
        assert!(!p.run("x level=a ", |i, v| got.push((i, v))));
        assert!(got.is_empty());
    }

    #[test]
    fn ip_filter() {
        let f = CompiledLineFilter::new(&LineFilter {
            op: LineFilterOp::Contains,
            values: vec![LineFilterValue::Ip("10.0.0.0/8".into())],
        })
        .unwrap();
        assert!(f.keep("client ip:10.1.2.3 connected"));
        assert!(f.keep("from 10.1.2.3."));
        assert!(!f.keep("from 11.1.2.3 and 1.2.3.4"));
        assert!(!f.keep("version 10.1"));
        let p = IpPattern::parse("2001:db8::/32").unwrap();
        assert!(contains_ip("addr=2001:db8::1 ok", &p));
    }
}
