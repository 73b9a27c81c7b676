//! Loki's `frontend` block: the keys of Loki's query frontend that mean something here. Today
//! that is the slow-query log threshold; Loki's other `frontend` keys are accepted and ignored.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::{format_go, parse_prometheus_or_go};

/// The query-frontend settings Parquetry honours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// Log one line (query, tenant, range, duration, time per stage) for each query that
    /// takes longer than this. Loki's key and default: `0` disables it, a negative duration
    /// logs every query.
    pub log_queries_longer_than: SlowQueryThreshold,
}

/// When a query counts as slow, in Loki's convention for `log_queries_longer_than`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlowQueryThreshold {
    /// `0`: never logged.
    #[default]
    Off,
    /// A negative duration: every query is logged.
    All,
    /// Logged when it takes longer than this.
    Over(Duration),
}

impl SlowQueryThreshold {
    /// Whether a query that took `elapsed` is logged.
    pub fn is_slow(&self, elapsed: Duration) -> bool {
        match self {
            SlowQueryThreshold::Off => false,
            SlowQueryThreshold::All => true,
            SlowQueryThreshold::Over(d) => elapsed > *d,
        }
    }

    fn from_nanos(ns: i64) -> Self {
        match ns {
            0 => SlowQueryThreshold::Off,
            n if n < 0 => SlowQueryThreshold::All,
            n => SlowQueryThreshold::Over(Duration::from_nanos(n.unsigned_abs())),
        }
    }
}

impl fmt::Display for SlowQueryThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlowQueryThreshold::Off => f.write_str("0s"),
            // Any negative value means the same; this is the one Loki's documentation shows.
            SlowQueryThreshold::All => f.write_str("-1s"),
            SlowQueryThreshold::Over(d) => {
                let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
                f.write_str(&format_go(ns))
            }
        }
    }
}

impl<'de> Deserialize<'de> for SlowQueryThreshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        let s = match v {
            serde_yaml::Value::String(s) => s,
            // A bare `0` (or `-1`, which Go's flag parsing refuses, read as seconds) in YAML.
            serde_yaml::Value::Number(n) if n.as_i64() == Some(0) => "0".into(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a duration such as 5s, 0 or -1s, got {other:?}"
                )));
            }
        };
        parse_prometheus_or_go(s.trim())
            .map(SlowQueryThreshold::from_nanos)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{e}: expected a duration such as 5s, 0 (off) or -1s (every query)"
                ))
            })
    }
}

impl Serialize for SlowQueryThreshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<SlowQueryThreshold, serde_yaml::Error> {
        serde_yaml::from_str::<FrontendConfig>(&format!("log_queries_longer_than: {v}"))
            .map(|c| c.log_queries_longer_than)
    }

    #[test]
    fn loki_convention_zero_off_negative_all() {
        assert_eq!(
            FrontendConfig::default().log_queries_longer_than,
            SlowQueryThreshold::Off
        );
        assert_eq!(parse("0").ok(), Some(SlowQueryThreshold::Off));
        assert_eq!(parse("0s").ok(), Some(SlowQueryThreshold::Off));
        assert_eq!(parse("-1s").ok(), Some(SlowQueryThreshold::All));
        assert_eq!(
            parse("1.5s").ok(),
            Some(SlowQueryThreshold::Over(Duration::from_millis(1500)))
        );
        assert!(parse("fast").is_err());
        assert!(parse("5").is_err());
    }

    #[test]
    fn only_longer_queries_are_slow() {
        let t = SlowQueryThreshold::Over(Duration::from_secs(1));
        assert!(!t.is_slow(Duration::from_secs(1)));
        assert!(t.is_slow(Duration::from_millis(1001)));
        assert!(SlowQueryThreshold::All.is_slow(Duration::ZERO));
        assert!(!SlowQueryThreshold::Off.is_slow(Duration::from_secs(3600)));
    }

    #[test]
    fn round_trips_through_its_text() {
        for t in [
            SlowQueryThreshold::Off,
            SlowQueryThreshold::All,
            SlowQueryThreshold::Over(Duration::from_millis(2500)),
        ] {
            assert_eq!(parse(&t.to_string()).ok(), Some(t), "{t}");
        }
    }
}
