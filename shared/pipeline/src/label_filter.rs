//! Label filter expressions: `| status >= 500 and method="GET" or latency > 1s`.

use parquetry_logql::ip::IpPattern;
use parquetry_logql::{CmpOp, LabelFilter};
use parquetry_model::Matcher;

use crate::PipelineError;
use crate::labels::EntryLabels;
use crate::template::value::go_quote;

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
                pattern: IpPattern::parse(pattern)?,
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

    /// Whether the entry passes, with Loki's rules per filter kind:
    /// - a numeric, duration or bytes comparison on an absent label is false, even when an
    ///   earlier stage failed (so `| json | latency_ms > 500` drops non-JSON lines rather
    ///   than keeping them with `__error__` and failing a metric query);
    /// - a value that does not convert keeps the line and records `LabelFilterErr`, unless
    ///   an earlier error is already recorded (that one explains more);
    /// - a value that converts is compared, whatever earlier stages recorded;
    /// - `ip()` lets an entry that already carries an error through, then is false on an
    ///   absent label;
    /// - string matchers compare an absent label as the empty string, and are the only
    ///   filters that see `__error__`.
    pub(crate) fn keep(&self, entry: &mut EntryLabels) -> bool {
        match self {
            CompiledLabelFilter::Matcher(m) => m.matches_value(entry.get(&m.name).unwrap_or("")),
            CompiledLabelFilter::Number { name, op, value } => {
                typed(entry, name, go_parse_float, |x| op.compare(x, *value))
            }
            CompiledLabelFilter::Duration { name, op, value } => {
                typed(entry, name, go_parse_duration, |x| op.compare(x, *value))
            }
            CompiledLabelFilter::Bytes { name, op, value } => {
                typed(entry, name, go_parse_bytes, |x| op.compare(x, *value))
            }
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
    parse: impl Fn(&str) -> Result<T, ConversionError>,
    cmp: impl Fn(T) -> bool,
) -> bool {
    let Some(v) = entry.get(name) else {
        return false;
    };
    match parse(v) {
        Ok(x) => cmp(x),
        Err(details) => {
            if !entry.has_error() {
                entry.set_error(LABEL_FILTER_ERR, &details.to_string());
            }
            true
        }
    }
}

/// Why a label value does not convert to a number, a duration or a byte size. The texts are
/// Go's (`strconv.ParseFloat`, `time.ParseDuration`, `humanize.ParseBytes`): they become
/// `__error_details__`, a label, so they must match Loki's for series to match. Each variant
/// holds the text it read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// A number too large for a float.
    #[error("strconv.ParseFloat: parsing {}: value out of range", go_quote(.0))]
    FloatRange(String),
    /// Not a number.
    #[error("strconv.ParseFloat: parsing {}: invalid syntax", go_quote(.0))]
    FloatSyntax(String),
    /// Not a duration, or one that overflows.
    #[error("time: invalid duration {}", go_quote(.0))]
    Duration(String),
    /// A number without a unit in a duration.
    #[error("time: missing unit in duration {}", go_quote(.0))]
    DurationNoUnit(String),
    /// A duration unit Go does not know.
    #[error("time: unknown unit {} in duration {}", go_quote(.unit), go_quote(.duration))]
    DurationUnit {
        /// The unit as written.
        unit: String,
        /// The whole duration text.
        duration: String,
    },
    /// A byte size unit `humanize` does not know (lower-cased, as `humanize` reports it).
    #[error("unhandled size name: {0}")]
    SizeUnit(String),
    /// A byte size beyond 64 bits.
    #[error("too large: {0}")]
    SizeTooLarge(String),
}

/// Go's `strconv.ParseFloat(v, 64)`, with its error text.
pub(crate) fn go_parse_float(v: &str) -> Result<f64, ConversionError> {
    // Rust also reads forms Go rejects (`infinity` is shared, but not `1_0`, and Go has no
    // `+nan`); the common inputs, decimal numbers and words, agree.
    match v.parse::<f64>() {
        Ok(x) if x.is_infinite() && !is_inf_literal(v) => {
            Err(ConversionError::FloatRange(v.to_string()))
        }
        Ok(x) => Ok(x),
        Err(_) => Err(ConversionError::FloatSyntax(v.to_string())),
    }
}

fn is_inf_literal(v: &str) -> bool {
    let t = v.trim_start_matches(['+', '-']).to_ascii_lowercase();
    t == "inf" || t == "infinity"
}

/// Go's `time.ParseDuration`, in nanoseconds, with Go's error texts.
pub(crate) fn go_parse_duration(v: &str) -> Result<i64, ConversionError> {
    parquetry_model::duration::parse_go(v).map_err(|_| go_duration_error(v))
}

/// The message `time.ParseDuration` gives for an input it rejects: Go names the first
/// problem it meets while reading number-unit pairs from the left.
fn go_duration_error(orig: &str) -> ConversionError {
    let invalid = || ConversionError::Duration(orig.to_string());
    let mut s = orig.strip_prefix(['+', '-']).unwrap_or(orig);
    if s.is_empty() {
        return invalid();
    }
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return invalid();
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut i = int_len;
        let mut frac_len = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            frac_len = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            i += frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return invalid();
        }
        let unit_len = b[i..]
            .iter()
            .take_while(|c| !(**c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return ConversionError::DurationNoUnit(orig.to_string());
        }
        let unit = &s[i..i + unit_len];
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return ConversionError::DurationUnit {
                unit: unit.to_string(),
                duration: orig.to_string(),
            };
        }
        s = &s[i + unit_len..];
    }
    // Every pair read well: the value overflowed.
    invalid()
}

/// `humanize.ParseBytes`, the byte-size reader of Loki's bytes filters, with its error texts.
pub fn go_parse_bytes(v: &str) -> Result<u64, ConversionError> {
    // The number is the leading run of digits, dots and commas; everything after it,
    // trimmed, is the unit.
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n = go_parse_float(&num.replace(',', ""))?;
    let unit = unit.trim().to_ascii_lowercase();
    let Some(mult) = byte_unit(&unit) else {
        return Err(ConversionError::SizeUnit(unit));
    };
    let b = n * mult;
    if b >= u64::MAX as f64 {
        return Err(ConversionError::SizeTooLarge(v.to_string()));
    }
    Ok(b as u64)
}

fn byte_unit(unit: &str) -> Option<f64> {
    Some(match unit {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_model::{Labels, MatchOp};

    fn entry(pairs: &[(&str, &str)]) -> EntryLabels {
        EntryLabels::of_stream(&Labels::from_pairs(pairs.iter().copied()))
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
        assert_eq!(
            e.get("__error_details__"),
            Some(r#"strconv.ParseFloat: parsing "abc": invalid syntax"#)
        );
    }

    /// Loki decides typed filters on the label alone: an earlier parser error neither lets
    /// an absent or failing label through nor hides a matching one.
    #[test]
    fn typed_filters_ignore_earlier_errors() {
        let failed = |pairs: &[(&str, &str)]| {
            let mut e = entry(pairs);
            e.set_error("JSONParserErr", "x");
            e
        };
        let f = CompiledLabelFilter::new(&num("latency_ms", CmpOp::Gt, 500.0)).unwrap();
        assert!(!f.keep(&mut failed(&[])), "absent label drops the line");
        assert!(!f.keep(&mut failed(&[("latency_ms", "100")])));
        assert!(f.keep(&mut failed(&[("latency_ms", "900")])));
        // Unconvertible: kept, and the earlier error stays.
        let mut e = failed(&[("latency_ms", "fast")]);
        assert!(f.keep(&mut e));
        assert_eq!(e.get("__error__"), Some("JSONParserErr"));
        assert_eq!(e.get("__error_details__"), Some("x"));
        let d = CompiledLabelFilter::new(&LabelFilter::Duration {
            name: "d".into(),
            op: CmpOp::Gt,
            value: 1_000_000_000,
        })
        .unwrap();
        assert!(!d.keep(&mut failed(&[])));
        assert!(d.keep(&mut failed(&[("d", "2s")])));
        let b = CompiledLabelFilter::new(&LabelFilter::Bytes {
            name: "b".into(),
            op: CmpOp::Gt,
            value: 1000,
        })
        .unwrap();
        assert!(!b.keep(&mut failed(&[])));
        assert!(!b.keep(&mut failed(&[("b", "10B")])));
        // ip() alone lets failed entries through, as in Loki.
        let ip = CompiledLabelFilter::new(&LabelFilter::Ip {
            name: "addr".into(),
            negated: false,
            pattern: "10.0.0.0/8".into(),
        })
        .unwrap();
        assert!(ip.keep(&mut failed(&[])));
        assert!(!ip.keep(&mut entry(&[])));
    }

    #[test]
    fn go_error_texts() {
        let text = |r: Result<i64, ConversionError>| r.map_err(|e| e.to_string());
        assert_eq!(
            go_parse_float("1e400").map_err(|e| e.to_string()),
            Err(r#"strconv.ParseFloat: parsing "1e400": value out of range"#.into())
        );
        assert_eq!(go_parse_float("-Inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(
            text(go_parse_duration("fast")),
            Err(r#"time: invalid duration "fast""#.into())
        );
        assert_eq!(
            text(go_parse_duration("5")),
            Err(r#"time: missing unit in duration "5""#.into())
        );
        assert_eq!(
            text(go_parse_duration("5x")),
            Err(r#"time: unknown unit "x" in duration "5x""#.into())
        );
        assert_eq!(go_parse_duration("1m30s"), Ok(90_000_000_000));
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
        assert_eq!(go_parse_bytes("42"), Ok(42));
        assert_eq!(go_parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(go_parse_bytes("2 kb"), Ok(2000));
        assert_eq!(go_parse_bytes("1,024 B"), Ok(1024));
        assert_eq!(
            go_parse_bytes("x").map_err(|e| e.to_string()),
            Err(r#"strconv.ParseFloat: parsing "": invalid syntax"#.into())
        );
        assert_eq!(
            go_parse_bytes("1 XB").map_err(|e| e.to_string()),
            Err("unhandled size name: xb".into())
        );
    }
}
