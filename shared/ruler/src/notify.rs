//! Alerts to Alertmanager: `POST <url>/api/v2/alerts` with a JSON list, as Prometheus's
//! notifier sends them (`startsAt` the firing time, `endsAt` the resolve time or, while
//! firing, a validity horizon a few resend intervals ahead so a lost ruler lets the alert
//! expire on its own).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("sending alerts to {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("sending alerts to {url}: status {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
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
