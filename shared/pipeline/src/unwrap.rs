//! `| unwrap [conv(]label[)] {| label filter}`: turning an entry into a sample value.

use parquetry_logql::{Unwrap, UnwrapConversion};

use crate::PipelineError;
use crate::label_filter::{
    CompiledLabelFilter, ConversionError, go_parse_bytes, go_parse_duration, go_parse_float,
};
use crate::labels::EntryLabels;

/// `__error__` of an unwrapped value that does not convert.
pub const SAMPLE_EXTRACTION_ERR: &str = "SampleExtractionErr";

/// Sample extraction for range aggregations with `| unwrap`.
///
/// ```
/// use parquetry_logql::{Unwrap, UnwrapConversion};
/// use parquetry_model::Labels;
/// use parquetry_pipeline::{EntryLabels, Unwrapper};
///
/// let u = Unwrapper::new(&Unwrap {
///     label: "latency".into(),
///     conversion: Some(UnwrapConversion::Duration),
///     post_filters: vec![],
/// })
/// .unwrap();
/// let stream = Labels::from_pairs([("latency", "250ms")]);
/// let mut e = EntryLabels::of_stream(&stream);
/// assert_eq!(u.extract(&mut e), Some(0.25));
/// u.remove_unwrapped_label(&mut e);
/// assert!(e.all().is_empty());
/// ```
#[derive(Debug)]
pub struct Unwrapper {
    label: String,
    conversion: Option<UnwrapConversion>,
    post_filters: Vec<CompiledLabelFilter>,
}

impl Unwrapper {
    /// Compiles the post filters.
    pub fn new(unwrap: &Unwrap) -> Result<Unwrapper, PipelineError> {
        Ok(Unwrapper {
            label: unwrap.label.clone(),
            conversion: unwrap.conversion,
            post_filters: unwrap
                .post_filters
                .iter()
                .map(CompiledLabelFilter::new)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The unwrapped label's name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The sample value of an entry that went through the pipeline.
    ///
    /// - A missing or empty label skips the entry silently (`None`).
    /// - A value that does not convert sets `__error__="SampleExtractionErr"` and
    ///   `__error_details__`, and yields `Some(0.0)` so the error surfaces as a series label
    ///   (and fails the metric query unless a post filter removes it).
    /// - The post filters run last and may drop the entry (`None`).
    ///
    /// The unwrapped label stays on the entry; call [`Unwrapper::remove_unwrapped_label`]
    /// unless a `by (…)` grouping asks for it.
    pub fn extract(&self, entry: &mut EntryLabels) -> Option<f64> {
        let raw = entry.get(&self.label).filter(|v| !v.is_empty())?;
        let value = match self.convert(raw) {
            Ok(v) => v,
            Err(details) => {
                entry.set_error(SAMPLE_EXTRACTION_ERR, &details.to_string());
                0.0
            }
        };
        for f in &self.post_filters {
            if !f.keep(entry) {
                return None;
            }
        }
        Some(value)
    }

    /// Removes the unwrapped label, as Loki does for the output series.
    pub fn remove_unwrapped_label(&self, entry: &mut EntryLabels) {
        entry.discard(&self.label);
    }

    /// The error texts are Go's (`strconv`, `time`, `humanize`): they become
    /// `__error_details__` and so part of a series' identity.
    fn convert(&self, v: &str) -> Result<f64, ConversionError> {
        match self.conversion {
            None => go_parse_float(v),
            Some(UnwrapConversion::Duration | UnwrapConversion::DurationSeconds) => {
                go_parse_duration(v).map(|ns| ns as f64 / 1e9)
            }
            Some(UnwrapConversion::Bytes) => go_parse_bytes(v).map(|b| b as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquetry_logql::{CmpOp, LabelFilter};
    use parquetry_model::{Labels, MatchOp, Matcher};

    fn entry(pairs: &[(&str, &str)]) -> EntryLabels {
        EntryLabels::of_stream(&Labels::from_pairs(pairs.iter().copied()))
    }

    fn unwrapper(conv: Option<UnwrapConversion>, post: Vec<LabelFilter>) -> Unwrapper {
        Unwrapper::new(&Unwrap {
            label: "v".into(),
            conversion: conv,
            post_filters: post,
        })
        .unwrap()
    }

    #[test]
    fn conversions() {
        let u = unwrapper(None, vec![]);
        assert_eq!(u.extract(&mut entry(&[("v", "1.5")])), Some(1.5));
        assert_eq!(u.extract(&mut entry(&[("v", "")])), None);
        assert_eq!(u.extract(&mut entry(&[])), None);
        let mut e = entry(&[("v", "abc")]);
        assert_eq!(u.extract(&mut e), Some(0.0));
        assert_eq!(e.get("__error__"), Some(SAMPLE_EXTRACTION_ERR));
        assert!(
            e.get("__error_details__")
                .is_some_and(|d| d.contains("abc"))
        );
        let d = unwrapper(Some(UnwrapConversion::Duration), vec![]);
        assert_eq!(d.extract(&mut entry(&[("v", "1m30s")])), Some(90.0));
        assert_eq!(d.extract(&mut entry(&[("v", "250ms")])), Some(0.25));
        let b = unwrapper(Some(UnwrapConversion::Bytes), vec![]);
        assert_eq!(b.extract(&mut entry(&[("v", "1.5KiB")])), Some(1536.0));
        assert_eq!(b.extract(&mut entry(&[("v", "2KB")])), Some(2000.0));
        let mut e = entry(&[("v", "v")]);
        u.remove_unwrapped_label(&mut e);
        assert_eq!(e.get("v"), None);
    }

    #[test]
    fn post_filters() {
        let no_err = LabelFilter::Matcher(Matcher::new("__error__", MatchOp::Eq, "").unwrap());
        let u = unwrapper(None, vec![no_err]);
        assert_eq!(u.extract(&mut entry(&[("v", "bad")])), None);
        assert_eq!(u.extract(&mut entry(&[("v", "2")])), Some(2.0));
        let gt = LabelFilter::Number {
            name: "v".into(),
            op: CmpOp::Gt,
            value: 10.0,
        };
        let u = unwrapper(None, vec![gt]);
        assert_eq!(u.extract(&mut entry(&[("v", "2")])), None);
        assert_eq!(u.extract(&mut entry(&[("v", "20")])), Some(20.0));
    }
}
