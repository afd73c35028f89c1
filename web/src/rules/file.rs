//! Rule files in Prometheus's format, and their validation as `promtool check rules`.
//!
//! ```yaml
//! groups:
//!   - name: <string, unique in the file>
//!     interval: <duration, default evaluation_interval>
//!     limit: <int, 0 = none>
//!     rules:
//!       - record: <metric name>          # recording rule
//!         expr: <PromQL>
//!         labels: {<name>: <value>}
//!       - alert: <name>                  # alerting rule
//!         expr: <PromQL>
//!         for: <duration>
//!         keep_firing_for: <duration>
//!         labels: {<name>: <template>}
//!         annotations: {<name>: <template>}
//! ```
//! Unknown fields fail the load with the line named.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{CheckReport, PromDuration};
use crate::relabel::is_valid_label_name;

/// A whole rule file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleGroupsFile {
    /// The groups, evaluated independently.
    #[serde(default)]
    pub groups: Vec<RuleGroupDef>,
}

/// One group as written in the file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleGroupDef {
    /// Group name.
    pub name: String,
    /// Evaluation interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<PromDuration>,
    /// Maximum alerts / series a rule may produce (0: none).
    #[serde(default)]
    pub limit: u64,
    /// Offset of the evaluation time (3.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<PromDuration>,
    /// Labels added to every rule of the group (3.x).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<RuleDef>,
}

/// One rule as written in the file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Name of the series a recording rule writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of an alerting rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The PromQL expression.
    #[serde(default)]
    pub expr: String,
    /// How long an alert stays pending before firing.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<PromDuration>,
    /// How long an alert keeps firing after its condition cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<PromDuration>,
    /// Labels to add or overwrite (templates for alerts).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl RuleDef {
    /// The rule's name: `alert` or else `record` (as Prometheus names rules in errors).
    pub fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("")
    }
}

/// Whether `s` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Checks one rule; the errors are the messages Prometheus gives.
pub fn validate_rule(r: &RuleDef) -> Vec<String> {
    let mut errs = Vec::new();
    match (&r.record, &r.alert) {
        (Some(_), Some(_)) => errs.push("only one of 'record' and 'alert' must be set".into()),
        (None, None) => errs.push("one of 'record' or 'alert' must be set".into()),
        _ => {}
    }
    if r.expr.is_empty() {
        errs.push("field 'expr' must be set in rule".into());
    } else if let Err(e) = promql_parser::parser::parse(&r.expr) {
        errs.push(format!(
            "could not parse expression: {}",
            e.trim_end().replace('\n', " ")
        ));
    }
    if let Some(rec) = &r.record {
        if !r.annotations.is_empty() {
            errs.push("invalid field 'annotations' in recording rule".into());
        }
        if r.for_.is_some() {
            errs.push("invalid field 'for' in recording rule".into());
        }
        if r.keep_firing_for.is_some() {
            errs.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        if !is_valid_metric_name(rec) {
            errs.push(format!("invalid recording rule name: {rec}"));
        }
    }
    for k in r.labels.keys() {
        if !is_valid_label_name(k) || k == "__name__" {
            errs.push(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !is_valid_label_name(k) {
            errs.push(format!("invalid annotation name: {k}"));
        }
    }
    if r.alert.is_some() {
        for (k, t) in r.labels.iter().chain(r.annotations.iter()) {
            if let Err(e) = crate::template::Template::parse(t) {
                errs.push(format!("template: __alert_{}:1: {e} (in {k:?})", r.name()));
            }
        }
    }
    errs
}

/// Parses rule-file text; on failure returns every error found, each already formatted as
/// `promtool` prints it after the file name.
pub fn parse_rules(text: &str) -> Result<RuleGroupsFile, Vec<String>> {
    let f: RuleGroupsFile = if text.trim().is_empty() {
        RuleGroupsFile::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| vec![e.to_string()])?
    };
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for g in &f.groups {
        if g.name.is_empty() {
            errs.push("Groupname must not be empty".to_string());
        }
        if !seen.insert(g.name.as_str()) {
            errs.push(format!(
                "groupname: {:?} is repeated in the same file",
                g.name
            ));
        }
        for (i, r) in g.rules.iter().enumerate() {
            for e in validate_rule(r) {
                errs.push(format!(
                    "group {:?}, rule {}, {:?}: {e}",
                    g.name,
                    i + 1,
                    r.name()
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(f)
    } else {
        Err(errs)
    }
}

/// Reads and parses a rule file; errors are prefixed with the file name.
pub fn load_rule_file(path: &Path) -> Result<RuleGroupsFile, Vec<String>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    parse_rules(&text).map_err(|v| v.into_iter().map(|e| format!("{shown}: {e}")).collect())
}

/// Checks rule files as `promtool check rules` does.
pub fn check_rule_files(files: &[PathBuf]) -> CheckReport {
    let mut r = CheckReport {
        ok: true,
        ..Default::default()
    };
    for f in files {
        r.stdout.push_str(&format!("Checking {}\n", f.display()));
        match load_rule_file(f) {
            Ok(g) => {
                let n: usize = g.groups.iter().map(|g| g.rules.len()).sum();
                r.stdout.push_str(&format!("  SUCCESS: {n} rules found\n"));
            }
            Err(errs) => {
                r.stderr.push_str("  FAILED:\n");
                for e in errs {
                    r.stderr.push_str(&e);
                    r.stderr.push('\n');
                }
                r.ok = false;
            }
        }
        r.stdout.push('\n');
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("record: a\nexpr: up", None),
            (
                "alert: A\nexpr: up == 0\nfor: 5m\nkeep_firing_for: 1m",
                None,
            ),
            (
                "record: a\nalert: b\nexpr: up",
                Some("only one of 'record' and 'alert'"),
            ),
            ("expr: up", Some("one of 'record' or 'alert' must be set")),
            ("record: a", Some("field 'expr' must be set")),
            ("record: a\nexpr: up +", Some("could not parse expression")),
            (
                "record: a\nexpr: up\nfor: 1m",
                Some("invalid field 'for' in recording rule"),
            ),
            (
                "record: a\nexpr: up\nannotations: {x: y}",
                Some("invalid field 'annotations'"),
            ),
            (
                "record: 'a-b'\nexpr: up",
                Some("invalid recording rule name: a-b"),
            ),
            (
                "alert: A\nexpr: up\nlabels: {__name__: x}",
                Some("invalid label name: __name__"),
            ),
            (
                "alert: A\nexpr: up\nannotations: {'a b': x}",
                Some("invalid annotation name"),
            ),
            (
                "alert: A\nexpr: up\nannotations: {a: '{{ $labels.x '}",
                Some("template"),
            ),
        ];
        for (yaml, want) in cases {
            let r: RuleDef = serde_yaml_ng::from_str(yaml).unwrap();
            let errs = validate_rule(&r);
            match want {
                None => assert!(errs.is_empty(), "{yaml}: {errs:?}"),
                Some(w) => assert!(errs.iter().any(|e| e.contains(w)), "{yaml}: {errs:?}"),
            }
        }
    }

    #[test]
    fn unknown_field_names_line() {
        let err = parse_rules(
            "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    bogus: 1\n",
        )
        .unwrap_err();
        assert!(
            err[0].contains("bogus") && err[0].contains("line 6"),
            "{err:?}"
        );
    }

    #[test]
    fn repeated_group() {
        let err = parse_rules("groups:\n- name: g\n- name: g\n").unwrap_err();
        assert!(err[0].contains("repeated"), "{err:?}");
    }
}
