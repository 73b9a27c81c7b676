//! Hardening: every case here was once a way to lose acknowledged data or take the server
//! down. Each replays over HTTP against a real server, on the local directory and (with
//! `PARQUETRY_TEST_BACKEND=s3`) on the S3 server scripts/test.sh starts.

mod http;
mod keys;
mod push;
mod query;
mod unreadable;

/// `start`/`end` one minute either side of `t0` plus `query`.
pub(crate) fn around(t0: i64, query: &str) -> Vec<(&'static str, String)> {
    vec![
        ("start", (t0 - 60_000_000_000).to_string()),
        ("end", (t0 + 60_000_000_000).to_string()),
        ("query", query.to_string()),
    ]
}
