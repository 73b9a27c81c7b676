//! Test and bench support shared by every crate of the workspace: the clock and day helpers
//! tests build timestamps from, free loopback ports, keys no other test uses, the S3 test
//! environment ([`s3`]), process figures for benches ([`bench`]), and the seeded log generator
//! ([`loggen`]).
//!
//! It depends on nothing but the standard library and the dependency-free generator, so a
//! crate low in the graph (model, store) can dev-depend on it without a cycle. Everything here
//! panics on failure: it runs only in tests and benches, where a panic is the report.

pub mod bench;
pub mod s3;

/// The seeded generator of realistic log streams: same seed, same logs.
pub use parquetry_loggen as loggen;

/// Nanoseconds in a day.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// 01:00 UTC yesterday: a whole closed day, neither in the future nor past any retention a
/// test configures, so compaction and retention treat it like settled data.
pub fn early_yesterday() -> i64 {
    (now_ns().div_euclid(DAY_NS) - 1) * DAY_NS + 3_600_000_000_000
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A storage key prefix no other test, process or earlier run uses: `kind/`, then the running
/// test's name (for finding its objects when debugging), the process id, the time and a
/// counter.
pub fn unique_prefix(kind: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let test = std::thread::current()
        .name()
        .unwrap_or("test")
        .rsplit("::")
        .next()
        .unwrap_or("test")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>();
    format!(
        "{kind}/{test}-{}-{}-{}",
        std::process::id(),
        now_ns(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_differ_within_one_test() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        assert!(a.starts_with("t/prefixes-differ-within-one-test-"), "{a}");
    }

    #[test]
    fn early_yesterday_is_one_hour_into_the_day_before_today() {
        let t = early_yesterday();
        let today = now_ns().div_euclid(DAY_NS) * DAY_NS;
        assert_eq!(today - t, DAY_NS - 3_600_000_000_000);
    }
}
