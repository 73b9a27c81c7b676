//! Label filter expressions: `| status >= 500 and method="GET" or latency > 1s`.

use parquetry_logql::ip::IpPattern;
use parquetry_logql::{CmpOp, LabelFilter};
use parquetry_model::Matcher;

use crate::PipelineError;
use crate::labels::EntryLabels;

/// `__error__` of a numeric, duration or bytes filter on a value that does not convert.
pub const LABEL_FILTER_ERR: &str = "LabelFilterErr";

#[derive(Debug)]
pub(crate) enum CompiledLabelFilter {
    Matcher(Matcher),
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    Duration {
        name: String,
        op: CmpOp,
        value: i64,
    },
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
    Ip {
        name: String,
        negated: bool,
        pattern: IpPattern,
    },
    And(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
    Or(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
}

impl CompiledLabelFilter {
    pub(crate) fn new(f: &LabelFilter) -> Result<Self, PipelineError> {
        Ok(match f {
            LabelFilter::Matcher(m) => CompiledLabelFilter::Matcher(m.clone()),
            LabelFilter::Number { name, op, value } => CompiledLabelFilter::Number {
                name: name.clone(),
                op: *op,
                value: *value,
            },
            LabelFilter::Duration { name, op, value } => CompiledLabelFilter::Duration {
                name: name.clone(),
                op: *op,
                value: *value,
            },
            LabelFilter::Bytes { name, op, value } => CompiledLabelFilter::Bytes {
                name: name.clone(),
                op: *op,
                value: *value,
            },
            LabelFilter::Ip {
                name,
                negated,
                pattern,
            } => CompiledLabelFilter::Ip {
                name: name.clone(),
                negated: *negated,
                pattern: IpPattern::parse(pattern).map_err(|e| PipelineError::Ip(e.to_string()))?,
            },
            LabelFilter::And(l, r) => CompiledLabelFilter::And(
                Box::new(CompiledLabelFilter::new(l)?),
                Box::new(CompiledLabelFilter::new(r)?),
            ),
            LabelFilter::Or(l, r) => CompiledLabelFilter::Or(
                Box::new(CompiledLabelFilter::new(l)?),
                Box::new(CompiledLabelFilter::new(r)?),
            ),
        })
    }

    /// Whether the entry passes. Typed comparisons let entries that already carry an error
    /// through, so that the error reaches the user instead of silently dropping the line;
    /// only string matchers can filter on `__error__`. A missing label fails a typed
    /// comparison, whatever the operator.
    pub(crate) fn keep(&self, entry: &mut EntryLabels) -> bool {
        match self {
            CompiledLabelFilter::Matcher(m) => m.matches_value(entry.get(&m.name).unwrap_or("")),
            CompiledLabelFilter::Number { name, op, value } => typed(
                entry,
                name,
                |v| {
                    v.parse::<f64>()
                        .map_err(|e| format!("strconv.ParseFloat: parsing {v:?}: {e}"))
                },
                |x| op.compare(x, *value),
            ),
            CompiledLabelFilter::Duration { name, op, value } => typed(
                entry,
                name,
                |v| parquetry_model::duration::parse_go(v).map_err(|e| e.to_string()),
                |x| op.compare(x, *value),
            ),
            CompiledLabelFilter::Bytes { name, op, value } => typed(
                entry,
                name,
                |v| {
                    parse_human_bytes(v)
                        .ok_or_else(|| format!("strconv.ParseFloat: parsing {v:?}: invalid syntax"))
                },
                |x| op.compare(x, *value),
            ),
            CompiledLabelFilter::Ip {
                name,
                negated,
                pattern,
            } => {
                if entry.has_error() {
                    return true;
                }
                match entry.get(name) {
                    Some(v) => crate::filter::contains_ip(v, pattern) != *negated,
                    None => false,
                }
            }
            // Both sides always run, so an error set by the right side is not lost when the
            // left side already decided.
            CompiledLabelFilter::And(l, r) => {
                let a = l.keep(entry);
                let b = r.keep(entry);
                a && b
            }
            CompiledLabelFilter::Or(l, r) => l.keep(entry) || r.keep(entry),
        }
    }
}

fn typed<T>(
    entry: &mut EntryLabels,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    cmp: impl Fn(T) -> bool,
) -> bool {
    if entry.has_error() {
        return true;
    }
    let Some(v) = entry.get(name) else {
        return false;
    };
    match parse(v) {
        Ok(x) => cmp(x),
        Err(details) => {
            entry.set_error(LABEL_FILTER_ERR, &details);
            true
        }
    }
}

/// A byte size as humans write it in log lines: `42`, `1.5KB`, `10 MiB`, `3kib`. Units are
/// case-insensitive; `K`/`KB` are 1000 and `Ki`/`KiB` 1024.
pub(crate) fn parse_human_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    // Thousands separators are allowed (`1,024 KB`).
    let n: f64 = if num.contains(',') {
        num.replace(',', "").parse().ok()?
    } else {
        num.parse().ok()?
    };
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "e" | "eb" => 1e18,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        "ei" | "eib" => 1024f64.powi(6),
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_model::{Labels, MatchOp};

    fn entry(pairs: &[(&str, &str)]) -> EntryLabels {
        EntryLabels::new(&Labels::from_pairs(pairs.iter().copied()), &[])
    }

    fn num(name: &str, op: CmpOp, value: f64) -> LabelFilter {
        LabelFilter::Number {
            name: name.into(),
            op,
            value,
        }
    }

    #[test]
    fn numeric() {
        let f = CompiledLabelFilter::new(&num("status", CmpOp::Gte, 500.0)).unwrap();
        assert!(f.keep(&mut entry(&[("status", "503")])));
        assert!(!f.keep(&mut entry(&[("status", "200")])));
        assert!(!f.keep(&mut entry(&[])), "missing label drops");
        let ne = CompiledLabelFilter::new(&num("status", CmpOp::Neq, 0.0)).unwrap();
        assert!(
            !ne.keep(&mut entry(&[])),
            "missing label drops, even for !="
        );
        let mut e = entry(&[("status", "abc")]);
        assert!(f.keep(&mut e));
        assert_eq!(e.get("__error__"), Some(LABEL_FILTER_ERR));
        assert!(e.get("__error_details__").is_some());
        // An entry that already failed passes typed filters untouched.
        let mut e = entry(&[("status", "100")]);
        e.set_error("JSONParserErr", "x");
        assert!(f.keep(&mut e));
        assert_eq!(e.get("__error__"), Some("JSONParserErr"));
    }

    #[test]
    fn duration_bytes_ip() {
        let d = CompiledLabelFilter::new(&LabelFilter::Duration {
            name: "lat".into(),
            op: CmpOp::Gt,
            value: 250_000_000,
        })
        .unwrap();
        assert!(d.keep(&mut entry(&[("lat", "1.5s")])));
        assert!(!d.keep(&mut entry(&[("lat", "20ms")])));
        let mut e = entry(&[("lat", "fast")]);
        assert!(d.keep(&mut e));
        assert_eq!(e.get("__error__"), Some(LABEL_FILTER_ERR));
        let b = CompiledLabelFilter::new(&LabelFilter::Bytes {
            name: "size".into(),
            op: CmpOp::Gte,
            value: 20_000_000,
        })
        .unwrap();
        assert!(b.keep(&mut entry(&[("size", "20MB")])));
        assert!(b.keep(&mut entry(&[("size", "1 GiB")])));
        assert!(!b.keep(&mut entry(&[("size", "19mb")])));
        let ip = CompiledLabelFilter::new(&LabelFilter::Ip {
            name: "addr".into(),
            negated: false,
            pattern: "192.168.0.0/16".into(),
        })
        .unwrap();
        assert!(ip.keep(&mut entry(&[("addr", "192.168.1.1")])));
        assert!(!ip.keep(&mut entry(&[("addr", "10.0.0.1")])));
        assert!(!ip.keep(&mut entry(&[])));
    }

    #[test]
    fn and_or_and_error_matchers() {
        let m = |n: &str, op, v: &str| LabelFilter::Matcher(Matcher::new(n, op, v).unwrap());
        let f = CompiledLabelFilter::new(&LabelFilter::Or(
            Box::new(LabelFilter::And(
                Box::new(m("a", MatchOp::Eq, "1")),
                Box::new(num("n", CmpOp::Gt, 5.0)),
            )),
            Box::new(m("b", MatchOp::Re, "x.*")),
        ))
        .unwrap();
        assert!(f.keep(&mut entry(&[("a", "1"), ("n", "6")])));
        assert!(!f.keep(&mut entry(&[("a", "1"), ("n", "4")])));
        assert!(f.keep(&mut entry(&[("b", "xyz")])));
        assert!(
            !f.keep(&mut entry(&[("b", "axyz")])),
            "matchers are anchored"
        );
        let err = CompiledLabelFilter::new(&m("__error__", MatchOp::Eq, "")).unwrap();
        let mut e = entry(&[]);
        assert!(err.keep(&mut e));
        e.set_error("JSONParserErr", "x");
        assert!(!err.keep(&mut e));
    }

    #[test]
    fn human_bytes() {
        assert_eq!(parse_human_bytes("42"), Some(42));
        assert_eq!(parse_human_bytes("1.5KiB"), Some(1536));
        assert_eq!(parse_human_bytes("2 kb"), Some(2000));
        assert_eq!(parse_human_bytes("1,024 B"), Some(1024));
        assert_eq!(parse_human_bytes("x"), None);
        assert_eq!(parse_human_bytes("1 XB"), None);
    }
}
