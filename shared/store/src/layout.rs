//! Object keys.
//!
//! ```text
//! v1/tenant=<tenant>/day=<YYYY-MM-DD>/<label>=<value>/<min_ns>-<max_ns>-<id>.parquet
//! ```
//!
//! - One object holds one tenant, one UTC day and one partition (the values of the configured
//!   partition labels, `service_name` by default), so a LIST of a day prefix plus the file
//!   names is enough to prune by tenant, partition and time without opening anything.
//! - `min_ns`/`max_ns` are the smallest and largest timestamps inside, zero-padded to 19 digits
//!   so lexical order is time order.
//! - Components are escaped: every byte outside `[A-Za-z0-9._-]` becomes `%XX`, a component that
//!   would be `.`, `..` or start with `__` has its first byte escaped too, and an empty value is
//!   `__HIVE_DEFAULT_PARTITION__`, the Hive convention. No tenant id or label value can produce
//!   a `/`, a dot segment or another component's spelling.

use object_store::path::Path;

pub const FORMAT_PREFIX: &str = "v1";
pub const EMPTY_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

/// Escapes one key component.
pub fn escape(value: &str) -> String {
    if value.is_empty() {
        return EMPTY_VALUE.to_string();
    }
    let mut out = String::with_capacity(value.len());
    for (i, b) in value.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
        let force_first = i == 0 && (value == "." || value == ".." || value.starts_with("__"));
        if plain && !force_first {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape`]; `None` for text `escape` cannot have produced.
pub fn unescape(component: &str) -> Option<String> {
    if component == EMPTY_VALUE {
        return Some(String::new());
    }
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = component.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `YYYY-MM-DD` of the UTC day holding `ts_ns`.
pub fn day_of(ts_ns: i64) -> String {
    let day = ts_ns.div_euclid(crate::DAY_NS);
    let date =
        chrono::DateTime::from_timestamp(day * 86_400, 0).map(|d| d.format("%Y-%m-%d").to_string());
    date.unwrap_or_else(|| "0000-00-00".into())
}

/// The prefix holding everything of one tenant.
pub fn tenant_prefix(tenant: &str) -> Path {
    key_path(format!("{FORMAT_PREFIX}/tenant={}", escape(tenant)))
}

/// Our keys are already escaped to a charset `Path` accepts as is; `Path::from` would escape
/// the `%` a second time.
fn key_path(s: String) -> Path {
    Path::parse(&s).unwrap_or_else(|_| Path::from(s))
}

/// The prefix holding one tenant-day.
pub fn day_prefix(tenant: &str, day: &str) -> Path {
    key_path(format!(
        "{FORMAT_PREFIX}/tenant={}/day={}",
        escape(tenant),
        escape(day)
    ))
}

/// Everything a key says about its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub tenant: String,
    pub day: String,
    /// `(label, value)` for each configured partition label, in configuration order.
    pub partition: Vec<(String, String)>,
    pub min_ts: i64,
    pub max_ts: i64,
    pub id: String,
}

impl ObjectKey {
    pub fn to_path(&self) -> Path {
        let mut s = format!(
            "{FORMAT_PREFIX}/tenant={}/day={}",
            escape(&self.tenant),
            self.day
        );
        for (name, value) in &self.partition {
            s.push('/');
            s.push_str(&escape(name));
            s.push('=');
            s.push_str(&escape(value));
        }
        s.push_str(&format!(
            "/{:019}-{:019}-{}.parquet",
            self.min_ts.max(0),
            self.max_ts.max(0),
            escape(&self.id)
        ));
        key_path(s)
    }

    /// Parses a key written by [`ObjectKey::to_path`]; anything else is `None` and ignored by
    /// readers (foreign files in the bucket must not break queries).
    pub fn parse(path: &Path) -> Option<ObjectKey> {
        let parts: Vec<&str> = path.as_ref().split('/').collect();
        if parts.len() < 4 || parts[0] != FORMAT_PREFIX {
            return None;
        }
        let tenant = unescape(parts[1].strip_prefix("tenant=")?)?;
        let day = unescape(parts[2].strip_prefix("day=")?)?;
        let file = parts[parts.len() - 1].strip_suffix(".parquet")?;
        let mut partition = Vec::new();
        for p in &parts[3..parts.len() - 1] {
            let (n, v) = p.split_once('=')?;
            partition.push((unescape(n)?, unescape(v)?));
        }
        let mut it = file.splitn(3, '-');
        let min_ts = it.next()?.parse().ok()?;
        let max_ts = it.next()?.parse().ok()?;
        let id = unescape(it.next()?)?;
        Some(ObjectKey {
            tenant,
            day,
            partition,
            min_ts,
            max_ts,
            id,
        })
    }
}

/// An object found by a listing: its key, where it is and how big.
#[derive(Debug, Clone)]
pub struct DataObject {
    pub key: ObjectKey,
    pub path: Path,
    pub size: u64,
}

impl DataObject {
    /// True if the object may hold entries in `[start, end)`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.key.min_ts < end && self.key.max_ts >= start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_stays_inside() {
        for v in [
            "",
            ".",
            "..",
            "a/b",
            "../../etc",
            "__x",
            "héllo wörld",
            "a%2Fb",
            "ok-1.2_3",
        ] {
            let e = escape(v);
            assert!(!e.contains('/'), "{v:?} -> {e}");
            assert!(e != "." && e != "..", "{v:?} -> {e}");
            assert_eq!(unescape(&e).as_deref(), Some(v), "{v:?} -> {e}");
        }
        assert_ne!(escape(""), escape(EMPTY_VALUE));
        assert_eq!(escape("checkout_api"), "checkout_api");
    }

    #[test]
    fn key_round_trip() {
        let k = ObjectKey {
            tenant: "team/a".into(),
            day: day_of(1_700_000_000_000_000_000),
            partition: vec![("service_name".into(), "web api".into())],
            min_ts: 1_700_000_000_000_000_000,
            max_ts: 1_700_000_001_000_000_000,
            id: "0123abcd".into(),
        };
        let p = k.to_path();
        assert_eq!(
            p.as_ref(),
            "v1/tenant=team%2Fa/day=2023-11-14/service_name=web%20api/1700000000000000000-1700000001000000000-0123abcd.parquet"
        );
        assert_eq!(ObjectKey::parse(&p), Some(k));
        assert!(ObjectKey::parse(&Path::from("v1/tenant=a/day=x/readme.txt")).is_none());
    }
}
