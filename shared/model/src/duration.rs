//! Durations and byte sizes as Loki spells them.
//!
//! Two duration grammars exist: Prometheus (`1h30m`, `500ms`, `2d`, integers only, largest unit
//! first) for `since`, `step` and LogQL ranges, and Go's `time.ParseDuration` (`1.5h`, `300us`)
//! which LogQL `offset` and duration label filters fall back to.

use std::time::Duration;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration in any accepted syntax (the text as given).
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// A unit the syntax does not know.
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole duration text.
        input: String,
    },
}

/// Signed nanoseconds, the unit of every timestamp in Parquetry.
pub type Nanos = i64;

const NS: i128 = 1;
const US: i128 = 1_000;
const MS: i128 = 1_000_000;
const S: i128 = 1_000_000_000;
const M: i128 = 60 * S;
const H: i128 = 60 * M;
const D: i128 = 24 * H;
const W: i128 = 7 * D;
const Y: i128 = 365 * D;

/// Parses a Prometheus duration (`y w d h m s ms`, integer components, largest unit first).
/// `0` alone is accepted.
pub fn parse_prometheus(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let units: [(&str, i128); 7] = [
        ("y", Y),
        ("w", W),
        ("d", D),
        ("h", H),
        ("ms", MS),
        ("m", M),
        ("s", S),
    ];
    // Order of precedence: a unit may only follow a larger one.
    let rank = |u: &str| match u {
        "y" => 0,
        "w" => 1,
        "d" => 2,
        "h" => 3,
        "m" => 4,
        "s" => 5,
        _ => 6,
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i128 = 0;
    let mut last_rank = -1i32;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(invalid());
        }
        let n: i128 = s[start..i].parse().map_err(|_| invalid())?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let Some((_, mult)) = units.iter().find(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                invalid()
            } else {
                DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: s.to_string(),
                }
            });
        };
        let r = rank(unit);
        if r <= last_rank {
            return Err(invalid());
        }
        last_rank = r;
        total = total
            .checked_add(n.checked_mul(*mult).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
    }
    if total > i64::MAX as i128 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Parses a Go duration (`1.5h`, `-300us`, `2h45m`), returning signed nanoseconds.
pub fn parse_go(s: &str) -> Result<Nanos, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err(invalid());
    }
    if let Some(v) = whole_units(body) {
        return Ok(if neg { -v } else { v });
    }
    let mut total: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(invalid());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = match unit {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            "" => return Err(invalid()),
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: s.to_string(),
                });
            }
        };
        total += n * mult as f64;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let v = total.round() as i64;
    Ok(if neg { -v } else { v })
}

/// `body` of [`parse_go`] when it is one whole number and a unit (`250ms`, the common
/// case of a logged duration), read as an integer: the general path's floating point gives
/// the same value for any total up to 2^53 ns, so only those are answered here.
fn whole_units(body: &str) -> Option<Nanos> {
    let b = body.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let (number, unit) = body.split_at(digits);
    let mult: i64 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    let n: i64 = number.parse().ok()?;
    n.checked_mul(mult).filter(|v| *v <= 1 << 53)
}

/// Prometheus first, then Go, as LogQL `offset` and duration filters do.
pub fn parse_prometheus_or_go(s: &str) -> Result<Nanos, DurationError> {
    match parse_prometheus(s) {
        Ok(d) => Ok(d.as_nanos() as i64),
        Err(_) => parse_go(s),
    }
}

/// Formats nanoseconds the way Prometheus prints durations (`1h30m`, `500ms`, `0s`).
pub fn format_prometheus(ns: Nanos) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut v = ns as i128;
    if v < 0 {
        out.push('-');
        v = -v;
    }
    let mut ms = v / MS;
    if ms == 0 {
        return format!("{out}0s");
    }
    for (unit, size) in [
        ("y", Y / MS),
        ("w", W / MS),
        ("d", D / MS),
        ("h", H / MS),
        ("m", M / MS),
        ("s", S / MS),
        ("ms", 1),
    ] {
        // Years and weeks only when they divide exactly, as Prometheus prints `30d1h`.
        if matches!(unit, "y" | "w") && ms % size != 0 {
            continue;
        }
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Formats nanoseconds as Go's `time.Duration.String` does (`800h0m0s`, `1m30s`, `1.5s`,
/// `250ms`), the form Loki's limit errors use for measured durations.
pub fn format_go(ns: Nanos) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let v = (ns as i128).abs();
    let frac = |whole: i128, rest: i128, digits: usize| -> String {
        let f = format!("{rest:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if v < S {
        let (unit, size, digits) = if v < 1_000 {
            ("ns", 1, 0)
        } else if v < MS {
            ("µs", 1_000, 3)
        } else {
            ("ms", MS, 6)
        };
        let whole = if size == 1 {
            v.to_string()
        } else {
            frac(v / size, v % size, digits)
        };
        return format!("{sign}{whole}{unit}");
    }
    let (h, m) = (v / H, v % H / M);
    let secs = frac(v % M / S, v % S, 9);
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// A byte size that does not parse (the text as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid byte size {0:?}")]
pub struct BytesError(pub String);

/// Parses a human byte size: `KB`/`MB`/… are powers of 1000, `KiB`/`MiB`/… of 1024, `B` or no
/// unit is bytes. Decimals are allowed (`1.5KiB`).
pub fn parse_bytes(s: &str) -> Result<u64, BytesError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| BytesError(s.to_string()))?;
    let mult: f64 = match unit.trim() {
        "" | "B" | "b" => 1.0,
        "kB" | "KB" | "k" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        "PB" | "P" => 1e15,
        "KiB" | "Ki" => 1024.0,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "Ti" => 1024f64.powi(4),
        "PiB" | "Pi" => 1024f64.powi(5),
        _ => return Err(BytesError(s.to_string())),
    };
    Ok((n * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus() {
        assert_eq!(
            parse_prometheus("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_prometheus("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_prometheus("2d").unwrap(),
            Duration::from_secs(172_800)
        );
        assert_eq!(
            parse_prometheus("1y").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert!(parse_prometheus("1.5h").is_err());
        assert!(parse_prometheus("30m1h").is_err());
        assert!(parse_prometheus("").is_err());
        assert_eq!(
            parse_prometheus("5minutes").unwrap_err().to_string(),
            r#"unknown unit "minutes" in duration "5minutes""#
        );
    }

    #[test]
    fn whole_numbers_read_as_integers_agree_with_the_general_path() {
        // `N.0unit` takes the floating-point path.
        for unit in ["ns", "us", "µs", "ms", "s", "m", "h"] {
            let mult = parse_go(&format!("1{unit}")).unwrap();
            let edge = (1i64 << 53) / mult;
            for n in [
                0,
                1,
                7,
                250,
                999_999,
                123_456_789_012_345,
                edge - 1,
                edge,
                edge + 1,
            ] {
                for sign in ["", "-", "+"] {
                    let whole = parse_go(&format!("{sign}{n}{unit}"));
                    let general = parse_go(&format!("{sign}{n}.0{unit}"));
                    assert_eq!(whole.ok(), general.ok(), "{sign}{n}{unit}");
                }
            }
        }
        assert!(parse_go("12").is_err());
        assert!(parse_go("12x").is_err());
        assert!(parse_go("1234567890123456789012h").is_err());
    }

    #[test]
    fn go() {
        assert_eq!(parse_go("1.5h").unwrap(), 5400 * 1_000_000_000);
        assert_eq!(parse_go("-300us").unwrap(), -300_000);
        assert_eq!(parse_go("1m0s").unwrap(), 60 * 1_000_000_000);
        assert!(parse_go("1x").is_err());
        assert_eq!(parse_prometheus_or_go("90s").unwrap(), 90_000_000_000);
    }

    #[test]
    fn format() {
        assert_eq!(format_prometheus(5400 * 1_000_000_000), "1h30m");
        assert_eq!(format_prometheus(0), "0s");
        assert_eq!(format_prometheus(721 * 3600 * 1_000_000_000), "30d1h");
        assert_eq!(format_prometheus(14 * 24 * 3600 * 1_000_000_000), "2w");
        let s = 1_000_000_000;
        assert_eq!(format_go(800 * 3600 * s), "800h0m0s");
        assert_eq!(format_go(90 * s), "1m30s");
        assert_eq!(format_go(1_500_000_000), "1.5s");
        assert_eq!(format_go(250_000_000), "250ms");
        assert_eq!(format_go(0), "0s");
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("1KB").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_bytes("20MB").unwrap(), 20_000_000);
        assert!(parse_bytes("1XB").is_err());
    }
}
