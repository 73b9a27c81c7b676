//! The LogQL log pipeline: what happens to one entry after its stream was selected.
//!
//! This crate owns the per-entry evaluation of LogQL pipeline stages, as
//! Loki's LogQL documentation defines them: line filters, the `json`/`logfmt`/`regexp`/`pattern`/`unpack` parsers, label
//! filters, `line_format`/`label_format` with a Go-template interpreter, `drop`/`keep`,
//! `decolorize`, and the `| unwrap` sample extraction of range aggregations. It knows nothing
//! about storage or query planning: the engine compiles a [`Pipeline`] once per query from the
//! parsed stages of [`parquetry_logql`], then feeds it one entry at a time.
//!
//! ```
//! use parquetry_model::Labels;
//! use parquetry_pipeline::{EntryLabels, Pipeline};
//!
//! let expr = parquetry_logql::parse_expr(r#"{app="a"} | json | status >= 500"#).unwrap();
//! let parquetry_logql::Expr::Log(log) = expr else { unreachable!() };
//! let pipeline = Pipeline::new(&log.pipeline).unwrap();
//!
//! let stream = Labels::from_pairs([("app", "a")]);
//! let mut entry = EntryLabels::of_stream(&stream);
//! let line = pipeline.process(0, r#"{"status":503}"#, &mut entry);
//! assert!(line.is_some());
//! assert_eq!(entry.get("status"), Some("503"));
//! ```
//!
//! Errors inside a stage never fail the query: like Loki, the line is kept and labelled with
//! `__error__` and `__error_details__`. Only problems found while compiling (an unknown
//! template function, a malformed JSON path) are [`PipelineError`]s.
// Non-test code never panics on a `Result` or `Option`: errors are typed and returned.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod filter;
mod hints;
mod json;
mod label_filter;
mod labels;
mod logfmt;
mod stage;
pub mod template;
mod unwrap;

pub use hints::{PRESERVE_ERROR_LABEL, ParserHints, SampleGrouping, sample_stages};
pub use json::JsonPathError;
pub use label_filter::{ConversionError, go_parse_bytes as parse_humanized_bytes};
pub use labels::{Category, ERROR_DETAILS_LABEL, ERROR_LABEL, EntryLabels, metadata_name};
pub use stage::Pipeline;
pub use unwrap::{SAMPLE_EXTRACTION_ERR, Unwrapper};

/// The `__error__` values stages produce.
pub mod errors {
    pub use crate::json::JSON_ERR as JSON_PARSER_ERR;
    pub use crate::label_filter::LABEL_FILTER_ERR;
    pub use crate::logfmt::LOGFMT_ERR as LOGFMT_PARSER_ERR;
    pub use crate::stage::TEMPLATE_FORMAT_ERR;
    pub use crate::unwrap::SAMPLE_EXTRACTION_ERR;
}

/// A pipeline that cannot be compiled. The engine reports these as 400 Bad Request.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Loki's text, with Go's `template: <name>:<line>:` prefix (one-line templates).
    #[error("invalid line template: template: line:1: {reason}")]
    LineTemplate {
        /// The template as written.
        template: String,
        /// Why it does not compile.
        #[source]
        reason: template::ParseError,
    },
    /// A `label_format` template that does not compile, with Loki's text.
    #[error("invalid template for label '{label}': template: label:1: {reason}")]
    LabelTemplate {
        /// The label the template would set.
        label: String,
        /// The template as written.
        template: String,
        /// Why it does not compile.
        #[source]
        reason: template::ParseError,
    },
    /// A `json` parser expression that does not parse.
    #[error("invalid JSON expression {expr:?}: {reason}")]
    JsonPath {
        /// The expression.
        expr: String,
        /// Why.
        #[source]
        reason: JsonPathError,
    },
    /// A `regexp` parser or regex filter that does not compile.
    #[error("invalid regular expression: {0}")]
    Regex(#[from] regex::Error),
    /// A `pattern` parser or pattern line filter that is not acceptable.
    #[error("invalid pattern: {0}")]
    Pattern(#[from] parquetry_logql::pattern::PatternError),
    /// An `ip()` filter whose pattern is not an address, CIDR or range.
    #[error("{0}")]
    Ip(#[from] parquetry_logql::ip::IpPatternError),
}
