//! Object keys: one function to encode each key component and one to decode it.
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
//! - Escaping can triple a value's length, and a key component must fit a file name (255 bytes
//!   on every common filesystem) and the whole key S3's 1,024 bytes. So a label value whose
//!   escaped form is longer than [`MAX_VALUE_COMPONENT`] is written `__L<hash>_<prefix>`: a
//!   hash of the whole value and a readable escaped prefix. The value cannot be read back from
//!   such a component; readers treat it as "may be anything" except for an equality matcher,
//!   whose value they encode the same way and compare. A tenant id must be read back (the
//!   compactor walks tenants by listing), and Loki caps it at 150 bytes, so a long escaped
//!   tenant is written `__B<base64url of the id>` instead, at most 203 bytes. Since plain
//!   escaping never produces a component starting with `__` (except the empty value), neither
//!   form can collide with an escaped one, and every key written before these forms existed
//!   keeps its spelling.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use object_store::path::Path;
use parquetry_model::matcher::{MatchOp, Matcher};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// First key component of every data object: the layout version.
pub const FORMAT_PREFIX: &str = "v1";
/// Partition value of entries without the partition label (Hive's spelling).
pub const EMPTY_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";
/// Longest escaped label value kept as is. With `name=` in front it leaves room for long
/// label names and, with several partition labels, for S3's 1,024-byte key limit.
pub const MAX_VALUE_COMPONENT: usize = 128;
/// Longest escaped tenant id kept as is (the base64 form of a 150-byte id is 200 bytes).
const MAX_TENANT_COMPONENT: usize = 200;
const HASHED_PREFIX: &str = "__L";
const BASE64_PREFIX: &str = "__B";
/// The value of every partition label of an object that holds many partitions (see
/// `storage.max_partitions_per_push`): readers treat it as "may be anything".
pub const MIXED_VALUE: &str = "__MIXED__";

/// Bytes kept literally: what S3, every filesystem and `object_store`'s `Path` accept without
/// escaping of their own, and what is readable in a listing.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Escapes one key component (no length limit: see [`encode_value`] and [`encode_tenant`]).
pub fn escape(value: &str) -> String {
    if value.is_empty() {
        return EMPTY_VALUE.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let rest = if value == "." || value == ".." || value.starts_with("__") {
        // The first byte is ASCII here, so slicing after it is on a char boundary.
        out.push_str(&format!("%{:02X}", value.as_bytes()[0]));
        &value[1..]
    } else {
        value
    };
    out.extend(utf8_percent_encode(rest, KEEP));
    out
}

/// Reverses [`escape`]; `None` for text `escape` cannot have produced.
pub fn unescape(component: &str) -> Option<String> {
    if component == EMPTY_VALUE {
        return Some(String::new());
    }
    // A `%` must start a complete escape; percent_decode passes a stray one through.
    let b = component.as_bytes();
    let complete = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    });
    if !complete {
        return None;
    }
    percent_decode_str(component)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A tenant id as a key component: escaped, or base64 when escaping makes it too long.
pub fn encode_tenant(tenant: &str) -> String {
    let escaped = escape(tenant);
    if escaped.len() <= MAX_TENANT_COMPONENT {
        escaped
    } else {
        format!("{BASE64_PREFIX}{}", URL_SAFE_NO_PAD.encode(tenant))
    }
}

/// Reverses [`encode_tenant`] (and [`escape`], for days).
pub fn decode_tenant(component: &str) -> Option<String> {
    match component.strip_prefix(BASE64_PREFIX) {
        Some(b64) => String::from_utf8(URL_SAFE_NO_PAD.decode(b64).ok()?).ok(),
        None => unescape(component),
    }
}

/// A partition label's value as an object key records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartValue {
    /// The value itself.
    Exact(String),
    /// A value too long for a key, known only by its component (hash and readable prefix).
    Long(String),
    /// The object holds streams of many partitions (see [`MIXED_VALUE`]).
    Mixed,
}

impl PartValue {
    /// How `value` is recorded.
    pub fn of(value: &str) -> PartValue {
        let escaped = escape(value);
        if escaped.len() <= MAX_VALUE_COMPONENT {
            return PartValue::Exact(value.to_string());
        }
        let hash = twox_hash::XxHash64::oneshot(0, value.as_bytes());
        // Cut the readable prefix between escapes, never inside one.
        let mut cut = MAX_VALUE_COMPONENT - HASHED_PREFIX.len() - 17;
        let b = escaped.as_bytes();
        while cut > 0 && (b[cut - 1] == b'%' || (cut >= 2 && b[cut - 2] == b'%')) {
            cut -= 1;
        }
        PartValue::Long(format!("{HASHED_PREFIX}{hash:016x}_{}", &escaped[..cut]))
    }

    /// The key component.
    pub fn component(&self) -> String {
        match self {
            PartValue::Exact(v) => escape(v),
            PartValue::Long(c) => c.clone(),
            PartValue::Mixed => MIXED_VALUE.to_string(),
        }
    }

    /// Reverses [`PartValue::component`]; `None` for text it cannot have produced.
    pub fn from_component(component: &str) -> Option<PartValue> {
        if component == MIXED_VALUE {
            return Some(PartValue::Mixed);
        }
        if let Some(rest) = component.strip_prefix(HASHED_PREFIX) {
            let (hash, prefix) = rest.split_at_checked(16)?;
            let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.%".contains(&b);
            if !hash.bytes().all(|b| b.is_ascii_hexdigit())
                || !prefix.starts_with('_')
                || !prefix.bytes().all(plain)
            {
                return None;
            }
            return Some(PartValue::Long(component.to_string()));
        }
        unescape(component).map(PartValue::Exact)
    }

    /// The value, when the key records it.
    pub fn exact(&self) -> Option<&str> {
        match self {
            PartValue::Exact(v) => Some(v),
            _ => None,
        }
    }

    /// False only when no stream of an object with this value can match `m`.
    pub fn may_match(&self, m: &Matcher) -> bool {
        match self {
            PartValue::Exact(v) => m.matches_value(v),
            // Equal encodings are necessary for equal values; a hash collision may only keep
            // an object, never drop one.
            PartValue::Long(_) => m.op != MatchOp::Eq || PartValue::of(&m.value) == *self,
            PartValue::Mixed => true,
        }
    }
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
    key_path(format!("{FORMAT_PREFIX}/tenant={}", encode_tenant(tenant)))
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
        encode_tenant(tenant),
        escape(day)
    ))
}

/// Everything a key says about its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    /// The tenant id.
    pub tenant: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// `(label, value)` for each configured partition label, in configuration order.
    pub partition: Vec<(String, PartValue)>,
    /// The oldest entry (Unix ns).
    pub min_ts: i64,
    /// The newest entry (Unix ns).
    pub max_ts: i64,
    /// Unique per write (`c_…` for compacted objects).
    pub id: String,
}

impl ObjectKey {
    /// The partition's path components as the key spells them (`service_name=api`).
    pub fn partition_components(&self) -> impl Iterator<Item = String> + '_ {
        self.partition
            .iter()
            .map(|(name, value)| format!("{}={}", escape(name), value.component()))
    }

    /// The object's path in the store.
    pub fn to_path(&self) -> Path {
        let mut s = format!(
            "{FORMAT_PREFIX}/tenant={}/day={}",
            encode_tenant(&self.tenant),
            self.day
        );
        for part in self.partition_components() {
            s.push('/');
            s.push_str(&part);
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
        let tenant = decode_tenant(parts[1].strip_prefix("tenant=")?)?;
        let day = unescape(parts[2].strip_prefix("day=")?)?;
        let file = parts[parts.len() - 1].strip_suffix(".parquet")?;
        let mut partition = Vec::new();
        for p in &parts[3..parts.len() - 1] {
            let (n, v) = p.split_once('=')?;
            partition.push((unescape(n)?, PartValue::from_component(v)?));
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
    /// What its key says.
    pub key: ObjectKey,
    /// Its path in the store.
    pub path: Path,
    /// Its size in bytes.
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
            partition: vec![("service_name".into(), PartValue::of("web api"))],
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

    /// Every label value Loki accepts (any UTF-8 up to 2,048 bytes) and every tenant id it
    /// accepts round-trips through a key that fits a file name and S3's key limit.
    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn key(tenant: String, values: Vec<String>) -> ObjectKey {
            ObjectKey {
                tenant,
                day: "2024-02-29".into(),
                partition: values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("label_{i}"), PartValue::of(v)))
                    .collect(),
                min_ts: 1_709_164_800_000_000_000,
                max_ts: 1_709_251_199_999_999_999,
                id: "c_0123456789abcdef0123456789abcdef".into(),
            }
        }

        fn check(tenant: String, values: Vec<String>) {
            let k = key(tenant, values.clone());
            let path = k.to_path();
            let s = path.as_ref();
            assert!(s.len() <= 1024, "{} bytes: {s}", s.len());
            for part in s.split('/') {
                assert!(part.len() <= 255, "{} bytes: {part}", part.len());
                assert!(part != "." && part != "..");
            }
            // Path::parse accepted the key as is: object_store will not escape it again.
            assert_eq!(Path::parse(s).ok().as_ref(), Some(&path));
            let back = ObjectKey::parse(&path).expect("parses");
            assert_eq!(back, k);
            for ((_, pv), v) in back.partition.iter().zip(&values) {
                let eq = Matcher::new("x", MatchOp::Eq, v).expect("matcher");
                assert!(pv.may_match(&eq), "{v:?} -> {pv:?}");
                if escape(v).len() <= MAX_VALUE_COMPONENT {
                    assert_eq!(pv.exact(), Some(v.as_str()));
                }
            }
        }

        proptest! {
            #[test]
            fn any_value_and_tenant_round_trips(
                tenant in "[A-Za-z0-9!\\-_.*'()]{1,150}",
                values in proptest::collection::vec(any::<String>(), 1..4),
            ) {
                prop_assume!(tenant != "." && tenant != "..");
                check(tenant, values);
            }

            #[test]
            fn long_unicode_values_round_trip(
                tenant in "[*'()]{140,150}",
                v in "\\PC{600,700}",
            ) {
                check(tenant, vec![v]);
            }
        }

        #[test]
        fn the_cases_that_once_broke() {
            for v in [
                "My App",
                "a:b",
                "a/b",
                "a.b",
                "100%",
                "%25",
                "héllo wörld",
                "日本語",
                "",
                "__HIVE_DEFAULT_PARTITION__",
                "__MIXED__",
                "__L0123456789abcdef_x",
                "__Bxx",
            ] {
                check("fake".into(), vec![v.to_string()]);
            }
            check("a*b".into(), vec!["x".repeat(243)]);
            check("(a)".into(), vec!["é".repeat(1024)]);
            check("*".repeat(150), vec!["x".into()]);
            // Values that share a long prefix stay apart.
            let a = PartValue::of(&format!("{}a", "x".repeat(300)));
            let b = PartValue::of(&format!("{}b", "x".repeat(300)));
            assert_ne!(a, b);
            let eq_b = Matcher::new("x", MatchOp::Eq, format!("{}b", "x".repeat(300))).unwrap();
            assert!(!a.may_match(&eq_b));
            assert!(PartValue::Mixed.may_match(&eq_b));
        }

        #[test]
        fn keys_written_before_long_forms_keep_their_spelling() {
            assert_eq!(encode_tenant("a*b"), "a%2Ab");
            assert_eq!(PartValue::of("My App").component(), "My%20App");
            assert_eq!(decode_tenant("a%2Ab").as_deref(), Some("a*b"));
        }
    }
}
