//! `limits_config.otlp_config`: which OpenTelemetry attributes become stream labels, which
//! structured metadata, and which are dropped, in Loki's vocabulary and with Loki's defaults.
//!
//! Rules are tried in order and the first whose `attributes` list holds the name, or whose
//! `regex` matches it (anchored, as Prometheus relabel regexes are), decides; an attribute no
//! rule names is structured metadata. Unless `resource_attributes.ignore_defaults` is set, an
//! `index_label` rule for [`DEFAULT_INDEX_LABEL_ATTRIBUTES`] comes before the configured ones.

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Resource attributes that become stream labels unless configured otherwise (Loki's
/// `distributor.otlp_config.default_resource_attributes_as_index_labels`).
pub const DEFAULT_INDEX_LABEL_ATTRIBUTES: [&str; 18] = [
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// `otlp_config`, per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Rules for resource attributes.
    pub resource_attributes: ResourceAttributesConfig,
    /// `index_label` is refused here, as in Loki: scopes do not identify streams.
    #[serde(deserialize_with = "scope_rules")]
    pub scope_attributes: Vec<AttributesConfig>,
    /// Rules for log record attributes (`index_label` refused, as for scopes).
    pub log_attributes: Vec<AttributesConfig>,
    /// Also index `severity_text` as a stream label (it is always structured metadata).
    pub severity_text_as_label: bool,
}

/// `otlp_config.resource_attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceAttributesConfig {
    /// Leave out the default `index_label` rule for [`DEFAULT_INDEX_LABEL_ATTRIBUTES`].
    pub ignore_defaults: bool,
    /// The rules, first match wins.
    pub attributes_config: Vec<AttributesConfig>,
}

/// What happens to an attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpAction {
    /// Becomes a stream label.
    IndexLabel,
    /// Becomes structured metadata (the default).
    #[default]
    StructuredMetadata,
    /// Is dropped.
    Drop,
}

/// One rule: an action for the attributes named in `attributes` or matched by `regex`
/// (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributesConfig {
    /// What happens to the matched attributes.
    pub action: OtlpAction,
    /// Attribute names matched exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// A fully anchored regex the attribute names are matched against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<AnchoredRegex>,
}

impl AttributesConfig {
    fn matches(&self, name: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.0.is_match(name))
            || self.attributes.iter().any(|a| a == name)
    }
}

impl<'de> Deserialize<'de> for AttributesConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            action: OtlpAction,
            #[serde(default)]
            attributes: Vec<String>,
            #[serde(default)]
            regex: Option<AnchoredRegex>,
        }
        let raw = Raw::deserialize(d)?;
        // Loki's texts for the same mistakes.
        match (raw.attributes.is_empty(), raw.regex.is_none()) {
            (true, true) => Err(serde::de::Error::custom("attributes or regex must be set")),
            (false, false) => Err(serde::de::Error::custom(
                "only one of attributes or regex must be set",
            )),
            _ => Ok(AttributesConfig {
                action: raw.action,
                attributes: raw.attributes,
                regex: raw.regex,
            }),
        }
    }
}

/// A regex matched against the whole attribute name, as Prometheus relabel regexes are.
#[derive(Debug, Clone)]
pub struct AnchoredRegex(Regex, String);

impl AnchoredRegex {
    /// Compiles `pattern`, anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(AnchoredRegex(
            Regex::new(&format!("^(?:{pattern})$"))?,
            pattern.to_string(),
        ))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.1
    }
}

impl PartialEq for AnchoredRegex {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}

impl Eq for AnchoredRegex {}

impl Serialize for AnchoredRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.1)
    }
}

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AnchoredRegex::new(&s).map_err(serde::de::Error::custom)
    }
}

impl OtlpConfig {
    /// The action for a resource attribute, defaults included unless ignored.
    pub fn resource_action(&self, name: &str) -> OtlpAction {
        let ra = &self.resource_attributes;
        if !ra.ignore_defaults && DEFAULT_INDEX_LABEL_ATTRIBUTES.contains(&name) {
            return OtlpAction::IndexLabel;
        }
        first_match(&ra.attributes_config, name)
    }

    /// The action for a scope attribute: `index_label` is not allowed, so never returned.
    pub fn scope_action(&self, name: &str) -> OtlpAction {
        match first_match(&self.scope_attributes, name) {
            OtlpAction::IndexLabel => OtlpAction::StructuredMetadata,
            a => a,
        }
    }

    /// The action for a log record attribute.
    pub fn log_action(&self, name: &str) -> OtlpAction {
        first_match(&self.log_attributes, name)
    }
}

/// Scope rules, refusing `index_label` with Loki's text.
fn scope_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AttributesConfig>, D::Error> {
    let rules = Vec::<AttributesConfig>::deserialize(d)?;
    if rules.iter().any(|c| c.action == OtlpAction::IndexLabel) {
        return Err(serde::de::Error::custom(
            "index_label action is only supported for resource_attributes",
        ));
    }
    Ok(rules)
}

fn first_match(rules: &[AttributesConfig], name: &str) -> OtlpAction {
    rules
        .iter()
        .find(|r| r.matches(name))
        .map_or(OtlpAction::StructuredMetadata, |r| r.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<OtlpConfig, serde_yaml::Error> {
        serde_yaml::from_str(y)
    }

    #[test]
    fn defaults_rules_and_order() {
        let c = OtlpConfig::default();
        assert_eq!(c.resource_action("k8s.pod.name"), OtlpAction::IndexLabel);
        assert_eq!(
            c.resource_action("host.name"),
            OtlpAction::StructuredMetadata
        );

        let c = parse(
            "resource_attributes:\n  attributes_config:\n    - action: index_label\n      attributes: [host.name]\n    - action: drop\n      regex: 'k8s\\..*|process\\..*'\nlog_attributes:\n  - action: drop\n    regex: 'http\\.'\n",
        )
        .unwrap();
        assert_eq!(c.resource_action("host.name"), OtlpAction::IndexLabel);
        // The defaults come first.
        assert_eq!(c.resource_action("k8s.pod.name"), OtlpAction::IndexLabel);
        assert_eq!(c.resource_action("k8s.node.name"), OtlpAction::Drop);
        // Anchored: `http\.` does not match `http.route`.
        assert_eq!(c.log_action("http.route"), OtlpAction::StructuredMetadata);

        let c = parse(
            "resource_attributes:\n  ignore_defaults: true\n  attributes_config:\n    - action: drop\n      regex: 'k8s\\..*'\n",
        )
        .unwrap();
        assert_eq!(c.resource_action("k8s.pod.name"), OtlpAction::Drop);
        assert_eq!(
            c.resource_action("service.name"),
            OtlpAction::StructuredMetadata
        );
    }

    #[test]
    fn invalid_rules() {
        let e = parse("log_attributes:\n  - action: drop\n").unwrap_err();
        assert!(
            e.to_string().contains("attributes or regex must be set"),
            "{e}"
        );
        let e = parse("log_attributes:\n  - attributes: [a]\n    regex: b\n").unwrap_err();
        assert!(e.to_string().contains("only one of"), "{e}");
        assert!(parse("log_attributes:\n  - action: promote\n    attributes: [a]\n").is_err());
        let e =
            parse("scope_attributes:\n  - action: index_label\n    attributes: [a]\n").unwrap_err();
        assert!(e.to_string().contains("only supported for resource"), "{e}");
    }
}
