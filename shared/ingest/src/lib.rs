//! Everything between the bytes of a Loki push request and the streams Parquetry stores.
//!
//! This crate owns the push wire formats and Loki's ingest rules: body size limits and
//! `Content-Encoding` ([`decode`]), the protobuf messages ([`proto`]) and JSON bodies, the
//! neutral decoded model ([`push`]), label text parsing ([`labels`]), validation with
//! partial acceptance, `service_name` discovery and merging ([`validate`](mod@validate)),
//! `detected_level` ([`level`]), OpenTelemetry logs mapped onto the same model ([`otlp`]), and
//! the errors with their HTTP statuses and exact texts
//! ([`error`]).
//!
//! It does no I/O and knows nothing about HTTP frameworks or storage: the API layer passes in
//! the body and headers, calls [`decode_push`] then [`validate()`], stores
//! [`Validated::streams`], and answers 204, or 400 with [`Validated::dropped`], or the
//! [`IngestError`]'s status and text. Tenant ids are checked by the caller with
//! `parquetry_model::validate_tenant_id`. [`Validated::invalid_utf8`] and
//! [`Validated::sanitized_structured_metadata`] are for the caller's metrics: text that was
//! repaired rather than refused, as Loki does.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod decode;
pub mod error;
mod json;
pub mod labels;
pub mod level;
pub mod otlp;
pub mod proto;
pub mod push;
pub mod validate;

pub use decode::{DecodeLimits, decode_push};
pub use error::IngestError;
pub use labels::{LabelParseError, parse_labels};
pub use push::{Entry, InvalidUtf8, PushRequest, PushStream};
pub use validate::{ValidStream, Validated, validate};
