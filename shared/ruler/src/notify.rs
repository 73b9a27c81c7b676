//! Alerts to Alertmanager: `POST <url>/api/v2/alerts` with a JSON list, as Prometheus's
//! notifier sends them (`startsAt` the firing time, `endsAt` the resolve time or, while
//! firing, a validity horizon a few resend intervals ahead so a lost ruler lets the alert
//! expire on its own).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// One alert as Alertmanager's API v2 takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostableAlert {
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The alert's annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it became active (RFC 3339).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// When it stops being valid unless re-sent, or when it resolved (RFC 3339).
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// A link to the expression.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Why alerts could not be delivered to one Alertmanager.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request failed.
    #[error("sending alerts to {url}: {source}")]
    Http {
        /// The Alertmanager URL.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// Alertmanager answered with an error status.
    #[error("sending alerts to {url}: status {status}: {body}")]
    Status {
        /// The Alertmanager URL.
        url: String,
        /// Its status code.
        status: u16,
        /// Its answer's body.
        body: String,
    },
    /// The alerts could not be encoded.
    #[error("encoding alerts: {0}")]
    Encode(#[from] serde_json::Error),
}

/// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Posts `alerts` to every Alertmanager. Succeeds when at least one took them (Prometheus
/// counts an alert as sent once any Alertmanager accepted it); the errors of the others are
/// returned for logging.
pub async fn send(
    client: &reqwest::Client,
    urls: &[String],
    alerts: &[PostableAlert],
    timeout: Duration,
) -> (bool, Vec<NotifyError>) {
    if alerts.is_empty() || urls.is_empty() {
        return (true, Vec::new());
    }
    let body = match serde_json::to_vec(alerts) {
        Ok(b) => b,
        Err(e) => return (false, vec![e.into()]),
    };
    let mut ok = false;
    let mut errs = Vec::new();
    for base in urls {
        let url = format!("{base}/api/v2/alerts");
        let r = client
            .post(&url)
            .header("Content-Type", "application/json")
            .timeout(timeout)
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => ok = true,
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                errs.push(NotifyError::Status { url, status, body });
            }
            Err(source) => errs.push(NotifyError::Http { url, source }),
        }
    }
    (ok, errs)
}
