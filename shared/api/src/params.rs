//! Query parameters exactly as Loki reads them: merged from the URL and a form body, with its
//! timestamp, duration, limit and direction rules and messages.

use std::collections::HashMap;

use chrono::DateTime;
use parquetry_model::duration::parse_prometheus;
use parquetry_query::Direction;

use crate::error::{ApiError, ApiResult};

/// Raw parameters; repeated keys keep every value in order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, Vec<String>>,
}

impl Params {
    /// URL query first, then the form body; for a key in both, the body's values win.
    pub fn from_parts(query: Option<&str>, form_body: Option<&[u8]>) -> ApiResult<Params> {
        let mut p = Params::default();
        if let Some(q) = query {
            p.extend(q.as_bytes())?;
        }
        if let Some(body) = form_body {
            let mut b = Params::default();
            b.extend(body)?;
            for (k, v) in b.values {
                p.values.insert(k, v);
            }
        }
        Ok(p)
    }

    fn extend(&mut self, raw: &[u8]) -> ApiResult<()> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw)
            .map_err(|e| ApiError::BadRequest(format!("invalid parameters: {e}")))?;
        for (k, v) in pairs {
            self.values.entry(k).or_default().push(v);
        }
        Ok(())
    }

    /// The first value of `key`, empty counting as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Parses a Loki timestamp parameter: float seconds (rounded to ms) when it has a `.`,
/// integer seconds when at most 10 characters, integer nanoseconds when longer, else
/// RFC3339(Nano).
pub fn parse_timestamp(s: &str) -> Result<i64, ParamError> {
    if s.contains('.')
        && let Ok(f) = s.parse::<f64>()
    {
        let ms = (f * 1000.0).round();
        return Ok((ms as i64).saturating_mul(1_000_000));
    }
    if let Ok(i) = s.parse::<i64>() {
        return Ok(if s.len() <= 10 {
            i.saturating_mul(1_000_000_000)
        } else {
            i
        });
    }
    DateTime::parse_from_rfc3339(s)
        // Loki reports the integer parse's error when RFC3339 fails too.
        .map_err(|_| {
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                ParamError::IntRange(s.to_string())
            } else {
                ParamError::IntSyntax(s.to_string())
            }
        })
        .and_then(|d| {
            d.timestamp_nanos_opt()
                .ok_or_else(|| ParamError::TimestampRange(s.to_string()))
        })
}

/// `step`/`interval`: float seconds first, then a Prometheus duration. Nanoseconds.
pub fn parse_step(s: &str) -> Result<i64, ParamError> {
    if let Ok(f) = s.parse::<f64>() {
        return Ok((f * 1e9).round() as i64);
    }
    parse_prometheus(s)
        .map(|d| d.as_nanos() as i64)
        .map_err(|_| ParamError::Duration(s.to_string()))
}

/// Why a time or step parameter does not parse, in Loki's words (Go's `strconv` texts for
/// timestamps). Each variant holds the parameter's value; callers prefix the parameter name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// Digits only, but beyond 64 bits.
    #[error("strconv.ParseInt: parsing {0:?}: value out of range")]
    IntRange(String),
    /// Neither a number nor an RFC3339 time.
    #[error("strconv.ParseInt: parsing {0:?}: invalid syntax")]
    IntSyntax(String),
    /// An RFC3339 time outside the nanosecond range of an `i64`.
    #[error("timestamp {0:?} is out of range")]
    TimestampRange(String),
    /// Neither float seconds nor a Prometheus duration.
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
}

fn ts_param(p: &Params, key: &str) -> ApiResult<Option<i64>> {
    p.get(key)
        .map(|s| {
            parse_timestamp(s).map_err(|e| {
                ApiError::BadRequest(format!("could not parse '{key}' parameter: {e}"))
            })
        })
        .transpose()
}

pub use parquetry_model::now_ns;

/// `start`/`end` with Loki's defaults: `end` = now, `start` = min(end, now) − `since` (1h).
pub fn time_range(p: &Params, now: i64) -> ApiResult<(i64, i64)> {
    let end = ts_param(p, "end")?.unwrap_or(now);
    let since = match p.get("since") {
        Some(s) => parse_prometheus(s)
            .map_err(|e| ApiError::BadRequest(format!("could not parse 'since' parameter: {e}")))?
            .as_nanos() as i64,
        None => 3_600_000_000_000,
    };
    let start = match ts_param(p, "start")? {
        Some(s) => s,
        None => end.min(now).saturating_sub(since),
    };
    if end < start {
        return Err(ApiError::BadRequest(
            "end timestamp must not be before or equal to start time".into(),
        ));
    }
    Ok((start, end))
}

/// The range-query parameters every range endpoint validates, including the step rules.
#[derive(Debug, Clone)]
pub struct RangeParams {
    /// Range start (ns).
    pub start: i64,
    /// Range end (ns).
    pub end: i64,
    /// Evaluation step (ns).
    pub step_ns: i64,
    /// `interval`: thinning of log query results (ns).
    pub interval_ns: Option<i64>,
    /// Most entries of a log query.
    pub limit: u32,
    /// Order of a log query's entries.
    pub direction: Direction,
}

/// `step` (or the default for the range), in nanoseconds, checked as Loki checks it: positive,
/// and at most 11,000 points over `[start, end]`. With `whole_ms` the positivity check sees the
/// step truncated to whole milliseconds, as Loki's detected-fields endpoint keeps it.
pub(crate) fn step_param(p: &Params, start: i64, end: i64, whole_ms: bool) -> ApiResult<i64> {
    let step_ns = match p.get("step") {
        Some(s) => parse_step(s).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => default_step(start, end),
    };
    let checked = if whole_ms {
        step_ns / 1_000_000
    } else {
        step_ns
    };
    if checked <= 0 {
        return Err(ApiError::BadRequest(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if end.saturating_sub(start) / step_ns > 11_000 {
        return Err(ApiError::BadRequest(
            "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter".into(),
        ));
    }
    Ok(step_ns)
}

/// Reads and validates the range parameters as Loki does.
pub fn range_params(p: &Params, now: i64) -> ApiResult<RangeParams> {
    let (start, end) = time_range(p, now)?;
    let limit = limit(p)?;
    let direction = direction(p)?;
    let step_ns = step_param(p, start, end, false)?;
    let interval_ns = match p.get("interval") {
        Some(s) => {
            let v = parse_step(s).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if v < 0 {
                return Err(ApiError::BadRequest("interval must be >= 0".into()));
            }
            Some(v)
        }
        None => None,
    };
    Ok(RangeParams {
        start,
        end,
        step_ns,
        interval_ns,
        limit,
        direction,
    })
}

/// `max(floor((end − start) / 250 s), 1)` seconds.
pub fn default_step(start: i64, end: i64) -> i64 {
    let secs = ((end - start) / 250) / 1_000_000_000;
    secs.max(1) * 1_000_000_000
}

/// `limit`, with Loki's default and checks.
pub fn limit(p: &Params) -> ApiResult<u32> {
    let Some(s) = p.get("limit") else {
        return Ok(100);
    };
    // Loki's text is Go's `strconv.Atoi` error.
    let v: i128 = s.parse().map_err(|_| {
        ApiError::BadRequest(format!("strconv.Atoi: parsing {s:?}: invalid syntax"))
    })?;
    if v <= 0 {
        return Err(ApiError::BadRequest(
            "limit must be a positive value".into(),
        ));
    }
    u32::try_from(v).map_err(|_| {
        ApiError::BadRequest(format!("limit value {v} is out of range [0, 4294967295]"))
    })
}

/// `direction` (`backward` by default).
pub fn direction(p: &Params) -> ApiResult<Direction> {
    match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(_) => Err(ApiError::BadRequest(format!(
            "invalid direction '{}'",
            p.get("direction").unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_like_loki() {
        assert_eq!(
            parse_timestamp("1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        // Ten characters or fewer is seconds, even when the caller meant nanoseconds.
        assert_eq!(
            parse_timestamp("4000000000").unwrap(),
            4_000_000_000_000_000_000
        );
        assert_eq!(parse_timestamp("17000000000").unwrap(), 17_000_000_000);
        assert_eq!(
            parse_timestamp("1700000000.1234").unwrap(),
            1_700_000_000_123_000_000
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500_000_000
        );
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn steps_and_defaults() {
        assert_eq!(parse_step("15").unwrap(), 15_000_000_000);
        assert_eq!(parse_step("0.25").unwrap(), 250_000_000);
        assert_eq!(parse_step("1m0s").unwrap(), 60_000_000_000);
        assert_eq!(parse_step("250ms").unwrap(), 250_000_000);
        assert!(parse_step("1.5m").is_err());
        assert_eq!(default_step(0, 3_600_000_000_000), 14_000_000_000);
        assert_eq!(default_step(0, 10), 1_000_000_000);
    }

    #[test]
    fn range_validation_messages() {
        let p = |q: &str| Params::from_parts(Some(q), None).unwrap();
        let now = 1_700_000_000_000_000_000;
        let err = |q: &str| range_params(&p(q), now).unwrap_err().to_string();
        assert_eq!(
            err("start=20&end=10"),
            "end timestamp must not be before or equal to start time"
        );
        assert!(range_params(&p("start=10&end=10"), now).is_ok());
        assert_eq!(err("limit=0"), "limit must be a positive value");
        assert_eq!(
            err("limit=5000000000"),
            "limit value 5000000000 is out of range [0, 4294967295]"
        );
        assert_eq!(err("direction=sideways"), "invalid direction 'sideways'");
        assert_eq!(
            err("step=0"),
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        );
        assert!(
            err("start=0&end=100000&step=1").starts_with("exceeded maximum resolution of 11,000")
        );
        assert_eq!(err("interval=-1"), "interval must be >= 0");
        assert!(err("start=abc").starts_with("could not parse 'start' parameter: "));
        let r = range_params(&p("direction=FORWARD&since=5m"), now).unwrap();
        assert_eq!(r.direction, Direction::Forward);
        assert_eq!(r.end - r.start, 300_000_000_000);
    }

    #[test]
    fn body_values_win_and_repeats_are_kept() {
        let p = Params::from_parts(Some("query=a&match[]=x&match[]=y"), Some(b"query=b")).unwrap();
        assert_eq!(p.get("query"), Some("b"));
        assert_eq!(p.all("match[]"), ["x", "y"]);
    }
}
