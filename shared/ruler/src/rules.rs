//! Rule groups in Prometheus's format with LogQL expressions, and Loki's checks of them
//! (same conditions, same messages, so the API's 400s read as Loki's).

use std::collections::{BTreeMap, HashSet};

use parquetry_model::duration::{format_prometheus, parse_prometheus_or_go};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rule file: `groups:` and its list.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RuleGroupFile {
    /// The file's groups, in order.
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

/// One group: rules evaluated in order, at one interval.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RuleGroup {
    /// Unique within its namespace.
    #[serde(default)]
    pub name: String,
    /// How often the group runs; `ruler.evaluation_interval` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<RuleDuration>,
    /// Most alerts or series a rule may produce (0: no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: i64,
    /// The rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An alerting (`alert`) or recording (`record`) rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Rule {
    /// The recorded series' name (recording rules).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub record: String,
    /// The alert's name (alerting rules).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alert: String,
    /// The LogQL metric query.
    #[serde(default)]
    pub expr: String,
    /// How long an alert stays pending before it fires.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<RuleDuration>,
    /// How long an alert keeps firing after its query stops returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<RuleDuration>,
    /// Labels added (templates, for alerts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the alert (templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The alert or record name.
    pub fn name(&self) -> &str {
        if self.alert.is_empty() {
            &self.record
        } else {
            &self.alert
        }
    }

    /// An alerting rule rather than a recording rule.
    pub fn is_alert(&self) -> bool {
        !self.alert.is_empty()
    }

    /// `for`, in ns (0 when unset).
    pub fn for_ns(&self) -> i64 {
        self.for_.map(|d| d.0).unwrap_or(0)
    }

    /// `keep_firing_for` in nanoseconds (0 when unset).
    pub fn keep_firing_for_ns(&self) -> i64 {
        self.keep_firing_for.map(|d| d.0).unwrap_or(0)
    }
}

/// A Prometheus duration (`30s`, `1m`, `1h30m`), in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDuration(pub i64);

impl<'de> Deserialize<'de> for RuleDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        let s = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) if n.as_u64() == Some(0) => "0s".into(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "not a valid duration string: {other:?}"
                )));
            }
        };
        match parse_prometheus_or_go(&s) {
            Ok(ns) if ns >= 0 => Ok(RuleDuration(ns)),
            _ => Err(serde::de::Error::custom(format!(
                "not a valid duration string: {s:?}"
            ))),
        }
    }
}

impl Serialize for RuleDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_prometheus(self.0))
    }
}

/// Parses a rule file. A YAML error is returned as the YAML library words it; the groups'
/// own problems come from [`validate_groups`].
pub fn parse_file(text: &str) -> Result<RuleGroupFile, RuleFileYamlError> {
    if text.trim().is_empty() {
        return Ok(RuleGroupFile::default());
    }
    serde_yaml::from_str(text).map_err(RuleFileYamlError)
}

/// A rule file that is not valid YAML for the rule format, worded as Loki's (`yaml: …`).
#[derive(Debug, thiserror::Error)]
#[error("yaml: {0}")]
pub struct RuleFileYamlError(#[source] pub serde_yaml::Error);

/// Why a rule is refused, in Loki's words (Prometheus's `rulefmt` checks).
#[derive(Debug, thiserror::Error)]
pub enum RuleInvalid {
    /// Both `record` and `alert` are set.
    #[error("only one of 'record' and 'alert' must be set")]
    BothKinds,
    /// Neither `record` nor `alert` is set.
    #[error("one of 'record' or 'alert' must be set")]
    NoKind,
    /// `expr` is empty.
    #[error("field 'expr' must be set in rule")]
    NoExpr,
    /// `expr` is not LogQL.
    #[error("could not parse expression for {kind} '{name}' in group '{group}': {source}")]
    Expr {
        /// `alert` or `record`.
        kind: &'static str,
        /// The rule's name.
        name: String,
        /// Its group's name.
        group: String,
        /// The parser's error.
        source: parquetry_logql::ParseError,
    },
    /// A recording rule with annotations.
    #[error("invalid field 'annotations' in recording rule")]
    RecordAnnotations,
    /// A recording rule with `for`.
    #[error("invalid field 'for' in recording rule")]
    RecordFor,
    /// A recording rule whose name is not a metric name.
    #[error("invalid recording rule name: {0}")]
    RecordName(String),
    /// A label name that is not one, or `__name__`.
    #[error("invalid label name: {0}")]
    LabelName(String),
    /// An annotation name that is not a label name.
    #[error("invalid annotation name: {0}")]
    AnnotationName(String),
    /// An alert's label (`what` = `label`) or annotation template that does not compile.
    #[error("{what} \"{key}\": {source}")]
    Template {
        /// `label` or `annotation`.
        what: &'static str,
        /// The label or annotation name.
        key: String,
        /// The template's error.
        source: crate::template::AlertTemplateError,
    },
}

/// Parses one group, the body of the API's POST.
pub fn parse_group(text: &str) -> Result<RuleGroup, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

/// Loki's checks of a file's groups (or of one posted group): every problem, in order.
pub fn validate_groups(groups: &[RuleGroup]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, g) in groups.iter().enumerate() {
        if g.name.is_empty() {
            errs.push(format!("group {i}: Groupname must not be empty"));
        }
        if !seen.insert(g.name.as_str()) {
            errs.push(format!(
                "groupname: \"{}\" is repeated in the same file",
                g.name
            ));
        }
        for r in &g.rules {
            if let Err(e) = validate_rule(r, &g.name) {
                errs.push(e.to_string());
            }
        }
    }
    errs
}

fn validate_rule(r: &Rule, group: &str) -> Result<(), RuleInvalid> {
    if !r.record.is_empty() && !r.alert.is_empty() {
        return Err(RuleInvalid::BothKinds);
    }
    if r.record.is_empty() && r.alert.is_empty() {
        return Err(RuleInvalid::NoKind);
    }
    if r.expr.is_empty() {
        return Err(RuleInvalid::NoExpr);
    }
    if let Err(source) = parquetry_logql::parse_expr(&r.expr) {
        return Err(RuleInvalid::Expr {
            kind: if r.is_alert() { "alert" } else { "record" },
            name: r.name().to_string(),
            group: group.to_string(),
            source,
        });
    }
    if !r.record.is_empty() {
        if !r.annotations.is_empty() {
            return Err(RuleInvalid::RecordAnnotations);
        }
        if r.for_ns() != 0 {
            return Err(RuleInvalid::RecordFor);
        }
        if !is_metric_name(&r.record) {
            return Err(RuleInvalid::RecordName(r.record.clone()));
        }
    }
    for k in r.labels.keys() {
        if !is_label_name(k) || k == "__name__" {
            return Err(RuleInvalid::LabelName(k.clone()));
        }
    }
    for k in r.annotations.keys() {
        if !is_label_name(k) {
            return Err(RuleInvalid::AnnotationName(k.clone()));
        }
    }
    if r.is_alert() {
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(source) = crate::template::AlertTemplate::compile(&r.alert, v) {
                    return Err(RuleInvalid::Template {
                        what,
                        key: k.clone(),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Whether `s` is a Prometheus metric name.
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(yaml: &str) -> RuleGroup {
        parse_group(yaml).unwrap()
    }

    #[test]
    fn lokis_messages() {
        let g = group("name: g1\nrules:\n- alert: A\n  expr: sum(rate({app=\"x\"[1m])) > 0\n");
        assert_eq!(
            validate_groups(&[g]),
            [
                "could not parse expression for alert 'A' in group 'g1': parse error at line 0, col 18: syntax error: unexpected RANGE, expecting } or ,"
            ]
        );
        let g = group("name: g1\nrules:\n- record: a-b\n  expr: sum(rate({app=\"x\"}[1m]))\n");
        assert_eq!(validate_groups(&[g]), ["invalid recording rule name: a-b"]);
        let g = group("name: g1\nrules:\n- alert: A\n  record: b\n  expr: x\n");
        assert_eq!(
            validate_groups(&[g]),
            ["only one of 'record' and 'alert' must be set"]
        );
        let g = group("rules: []\n");
        assert_eq!(
            validate_groups(&[g]),
            ["group 0: Groupname must not be empty"]
        );
        let f = parse_file("groups:\n- name: g1\n  rules: []\n- name: g1\n  rules: []\n").unwrap();
        assert_eq!(
            validate_groups(&f.groups),
            ["groupname: \"g1\" is repeated in the same file"]
        );
        let g = group(
            "name: g1\nrules:\n- alert: A\n  expr: sum(rate({app=\"x\"}[1m]))\n  annotations:\n    s: \"{{ $labels.x \"\n",
        );
        let errs = validate_groups(&[g]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("annotation \"s\": template: __alert_A:1: "),
            "{errs:?}"
        );
    }

    #[test]
    fn round_trip() {
        let text = "name: g1\ninterval: 10s\nrules:\n- alert: HighErrors\n  expr: sum by (app) (count_over_time({app=\"x\"} |= \"error\" [1m])) > 0\n  for: 1m\n  labels:\n    severity: page\n  annotations:\n    summary: '{{ $labels.app }} has {{ $value }} errors'\n";
        let g = group(text);
        assert_eq!(g.rules[0].for_ns(), 60_000_000_000);
        assert_eq!(g.interval, Some(RuleDuration(10_000_000_000)));
        let back = serde_yaml::to_string(&g).unwrap();
        assert_eq!(group(&back), g);
        assert!(back.contains("for: 1m"), "{back}");
    }
}
