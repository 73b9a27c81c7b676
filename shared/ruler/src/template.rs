//! Alert label and annotation templates, as Prometheus expands them: Go `text/template`
//! with `$labels`, `$value` and `$externalLabels` defined, run on the LogQL template engine
//! (the one `line_format` uses, with its function set).

use parquetry_model::Labels;
use parquetry_pipeline::EntryLabels;
use parquetry_pipeline::template::{ParseError, Template};

/// Where the sample value travels into the template: as a label of the data the engine
/// renders against, read back once into `$value` as a number.
const VALUE_KEY: &str = "__alert_value__";

/// Prometheus prepends these definitions to every alert template. `$externalLabels`
/// resolves to the alert's labels, which already hold the external labels.
const DEFS: &str =
    "{{$labels := .}}{{$externalLabels := .}}{{$value := .__alert_value__ | float64}}";

/// An alert template that does not compile, worded as Go's (`template: __alert_<name>:1: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: __alert_{alert}:1: {source}")]
pub struct AlertTemplateError {
    /// The alerting rule's name.
    pub alert: String,
    /// The template engine's parse error.
    pub source: ParseError,
}

/// A compiled label or annotation template of one alerting rule.
#[derive(Debug)]
pub struct AlertTemplate {
    template: Template,
}

impl AlertTemplate {
    /// Compiles `text`; errors are worded as Go's (`template: __alert_<name>:1: …`).
    pub fn compile(alert: &str, text: &str) -> Result<AlertTemplate, AlertTemplateError> {
        let template =
            Template::compile(&format!("{DEFS}{text}")).map_err(|source| AlertTemplateError {
                alert: alert.to_string(),
                source,
            })?;
        Ok(AlertTemplate { template })
    }

    /// Expands against an alert's labels and value at `ts_ns`. On error the text says why,
    /// as Prometheus puts its error into the expanded value.
    pub fn expand(&self, alert: &str, labels: &Labels, value: f64, ts_ns: i64) -> String {
        let meta = [(VALUE_KEY.to_string(), format_value(value))];
        let data = EntryLabels::new(labels, &meta);
        match self.template.render(&data, "", ts_ns) {
            Ok(s) => s,
            Err(e) => format!("<error expanding template: template: __alert_{alert}:1: {e}>"),
        }
    }
}

/// Expands `text` once (compiling it on the way): for callers that keep no compiled form.
pub fn expand(alert: &str, text: &str, labels: &Labels, value: f64, ts_ns: i64) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    match AlertTemplate::compile(alert, text) {
        Ok(t) => t.expand(alert, labels, value, ts_ns),
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// A float exactly as it must survive the trip through a string label (Rust's shortest
/// round-trip form, which `float64` parses back).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_value() {
        let labels = Labels::from_pairs([("app", "api"), ("alertname", "A")]);
        assert_eq!(
            expand(
                "A",
                "{{ $labels.app }} has {{ $value }} errors",
                &labels,
                3.0,
                0
            ),
            "api has 3 errors"
        );
        assert_eq!(expand("A", "{{ $value }}", &labels, 0.25, 0), "0.25");
        assert_eq!(
            expand("A", "{{ printf \"%.1f\" $value }}", &labels, 2.0, 0),
            "2.0"
        );
        assert_eq!(expand("A", "plain", &labels, 1.0, 0), "plain");
        assert!(AlertTemplate::compile("A", "{{ $labels.x ").is_err());
    }
}
