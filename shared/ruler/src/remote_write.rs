//! Recording rules' samples out through Prometheus remote write 1.0: a snappy-compressed
//! protobuf `WriteRequest`, the wire format every Prometheus-compatible receiver takes.
//! Only the few `prompb` messages a sample needs are defined.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;

/// Prometheus remote write 1.0's `WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series written.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series with its samples.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Its samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label pair.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One sample.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a remote-write request failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The request failed.
    #[error("remote write to {url}: {source}")]
    Http {
        /// The endpoint.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The endpoint answered with an error status.
    #[error("remote write to {url}: status {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// Its status code.
        status: u16,
        /// Its answer's body.
        body: String,
    },
    /// The request could not be compressed.
    #[error("remote write: snappy: {0}")]
    Snappy(#[from] snap::Error),
}

/// One sample of a series, labels in any order.
pub fn series(labels: &BTreeMap<String, String>, value: f64, ts_ns: i64) -> TimeSeries {
    TimeSeries {
        // A BTreeMap iterates in name order, the order the protocol requires.
        labels: labels
            .iter()
            .map(|(k, v)| Label {
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
        samples: vec![Sample {
            value,
            timestamp: ts_ns.div_euclid(1_000_000),
        }],
    }
}

/// The request body: protobuf, snappy block-compressed.
pub fn encode(req: &WriteRequest) -> Result<Vec<u8>, RemoteWriteError> {
    Ok(snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?)
}

/// One client endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The remote-write URL.
    pub url: String,
    /// Extra headers on each request.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// Posts `series` to `endpoint`, with `X-Scope-OrgID` when `tenant` is given.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    tenant: Option<&str>,
    series: Vec<TimeSeries>,
) -> Result<(), RemoteWriteError> {
    if series.is_empty() {
        return Ok(());
    }
    let body = encode(&WriteRequest { timeseries: series })?;
    let mut req = client
        .post(&endpoint.url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", "parquetry-ruler")
        .timeout(endpoint.timeout);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    for (k, v) in &endpoint.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.body(body).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            Err(RemoteWriteError::Status {
                url: endpoint.url.clone(),
                status,
                body,
            })
        }
        Err(source) => Err(RemoteWriteError::Http {
            url: endpoint.url.clone(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let labels = BTreeMap::from([
            ("__name__".to_string(), "x:rate".to_string()),
            ("app".to_string(), "api".to_string()),
        ]);
        let req = WriteRequest {
            timeseries: vec![series(&labels, 1.5, 1_700_000_000_123_456_789)],
        };
        let body = encode(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.timeseries[0].samples[0].timestamp, 1_700_000_000_123);
        assert_eq!(back.timeseries[0].labels[0].name, "__name__");
    }
}
