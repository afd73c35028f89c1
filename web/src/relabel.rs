//! Relabeling as Prometheus does it (`relabel_configs`, `metric_relabel_configs`,
//! `alert_relabel_configs`, `write_relabel_configs`), and the preparation of a discovered
//! target's labels before scraping ([`populate_labels`]).
//!
//! A [`RelabelConfig`] reads the YAML fields `source_labels`, `separator` (default `;`),
//! `target_label`, `regex` (default `(.*)`, always anchored at both ends), `modulus`,
//! `replacement` (default `$1`) and `action` (default `replace`, case-insensitive), and is
//! validated on load with Prometheus's rules. [`process`] applies a list of configs in order.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize, Serializer};
use tsdb::{Label, Labels};

/// The relabel actions Prometheus knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Sets `target_label` to the expanded `replacement` when `regex` matches.
    Replace,
    /// Drops the input unless `regex` matches the joined source values.
    Keep,
    /// Drops the input when `regex` matches the joined source values.
    Drop,
    /// Drops the input unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drops the input when the joined source values equal `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to the MD5-based hash of the joined source values modulo `modulus`.
    HashMod,
    /// Copies labels whose names match `regex` to names given by `replacement`.
    LabelMap,
    /// Removes labels whose names match `regex`.
    LabelDrop,
    /// Removes labels whose names do not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the lower-cased joined source values.
    Lowercase,
    /// Sets `target_label` to the upper-cased joined source values.
    Uppercase,
}

impl Action {
    /// Parses an action name, case-insensitively.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    /// The action's name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A regular expression anchored at both ends, keeping the source text it was written as.
#[derive(Clone, Debug)]
pub struct AnchoredRegex {
    source: String,
    re: Regex,
}

impl AnchoredRegex {
    /// Compiles `s` as `^(?:s)$`.
    pub fn new(s: &str) -> Result<Self, regex::Error> {
        let re = Regex::new(&format!("^(?:{s})$"))?;
        Ok(AnchoredRegex {
            source: s.to_string(),
            re,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled, anchored expression.
    pub fn regex(&self) -> &Regex {
        &self.re
    }
}

impl PartialEq for AnchoredRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for AnchoredRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Default `regex`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// Default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// Default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabelConfig {
    source_labels: Option<Vec<String>>,
    separator: Option<String>,
    target_label: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    replacement: Option<String>,
    action: Option<String>,
}

/// One validated relabeling step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` to form the input value.
    pub source_labels: Vec<String>,
    /// Joins the source values.
    pub separator: String,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`; compared by
    /// `keepequal`/`dropequal`.
    pub target_label: String,
    /// The anchored expression matched against the input value (or label names).
    pub regex: AnchoredRegex,
    /// Modulus for `hashmod`.
    pub modulus: u64,
    /// Template expanded with the regex's groups.
    pub replacement: String,
    /// What to do.
    pub action: Action,
}

impl<'de> Deserialize<'de> for RelabelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRelabelConfig::deserialize(d)?;
        RelabelConfig::from_raw(raw).map_err(serde::de::Error::custom)
    }
}

/// Whether `s` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `s` is a valid relabel target: a label name in which `$name`/`${name}` references
/// may appear.
fn is_valid_relabel_target(s: &str) -> bool {
    // ^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$
    thread_local! {
        static RE: Regex = Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").expect("static regex");
    }
    RE.with(|re| re.is_match(s))
}

impl RelabelConfig {
    fn from_raw(raw: RawRelabelConfig) -> Result<Self, String> {
        let action = match raw.action.as_deref() {
            None => Action::Replace,
            Some("") => return Err("relabel action cannot be empty".to_string()),
            Some(a) => Action::parse(a).ok_or_else(|| format!("unknown relabel action {a:?}"))?,
        };
        let regex_src = raw.regex.unwrap_or_else(|| DEFAULT_REGEX.to_string());
        let regex = AnchoredRegex::new(&regex_src)
            .map_err(|e| format!("invalid regex {regex_src:?}: {e}"))?;
        for l in raw.source_labels.iter().flatten() {
            if !is_valid_label_name(l) {
                return Err(format!("{l:?} is not a valid label name"));
            }
        }
        let c = RelabelConfig {
            source_labels: raw.source_labels.clone().unwrap_or_default(),
            separator: raw
                .separator
                .unwrap_or_else(|| DEFAULT_SEPARATOR.to_string()),
            target_label: raw.target_label.unwrap_or_default(),
            regex,
            modulus: raw.modulus.unwrap_or(0),
            replacement: raw
                .replacement
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string()),
            action,
        };
        c.validate(raw.source_labels.is_some())?;
        Ok(c)
    }

    /// A config from its parts, validated as on load.
    pub fn new(
        action: Action,
        source_labels: &[&str],
        separator: &str,
        target_label: &str,
        regex: &str,
        modulus: u64,
        replacement: &str,
    ) -> Result<Self, String> {
        let regex =
            AnchoredRegex::new(regex).map_err(|e| format!("invalid regex {regex:?}: {e}"))?;
        let c = RelabelConfig {
            source_labels: source_labels.iter().map(|s| s.to_string()).collect(),
            separator: separator.to_string(),
            target_label: target_label.to_string(),
            regex,
            modulus,
            replacement: replacement.to_string(),
            action,
        };
        c.validate(!source_labels.is_empty())?;
        Ok(c)
    }

    fn validate(&self, has_source_labels: bool) -> Result<(), String> {
        let a = self.action;
        if self.modulus == 0 && a == Action::HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            a,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        ) && self.target_label.is_empty()
        {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        if a == Action::Replace && !is_valid_relabel_target(&self.target_label) {
            return Err(format!(
                "{:?} is invalid 'target_label' for {a} action",
                self.target_label
            ));
        }
        if matches!(
            a,
            Action::Lowercase
                | Action::Uppercase
                | Action::HashMod
                | Action::KeepEqual
                | Action::DropEqual
        ) && !is_valid_label_name(&self.target_label)
        {
            return Err(format!(
                "{:?} is invalid 'target_label' for {a} action",
                self.target_label
            ));
        }
        if a == Action::LabelMap && !is_valid_relabel_target(&self.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {a} action",
                self.replacement
            ));
        }
        if matches!(a, Action::LabelDrop | Action::LabelKeep)
            && (has_source_labels
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        if matches!(a, Action::KeepEqual | Action::DropEqual)
            && (self.regex.as_str() != DEFAULT_REGEX
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        Ok(())
    }
}

/// A mutable label set used while relabeling: a small vector searched linearly, where setting
/// an empty value removes the label.
#[derive(Default, Debug)]
struct Builder {
    labels: Vec<Label>,
}

impl Builder {
    fn get(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
            .unwrap_or("")
    }

    fn set(&mut self, name: &str, value: String) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.labels.iter_mut().find(|l| l.name == name) {
            Some(l) => l.value = value,
            None => self.labels.push(Label::new(name, value)),
        }
    }

    fn del(&mut self, name: &str) {
        self.labels.retain(|l| l.name != name);
    }
}

/// The 64-bit value Prometheus takes from an MD5 sum: its last eight bytes, big-endian.
fn md5_sum64(data: &[u8]) -> u64 {
    let d = md5::compute(data).0;
    let mut s = 0u64;
    for b in &d[8..] {
        s = (s << 8) | u64::from(*b);
    }
    s
}

/// Applies `cfgs` in order to `labels`. `None` when a `keep`/`drop`-type step dropped it.
pub fn process(labels: &Labels, cfgs: &[RelabelConfig]) -> Option<Labels> {
    if cfgs.is_empty() {
        return Some(labels.clone());
    }
    let mut b = Builder {
        labels: labels.iter().cloned().collect(),
    };
    for c in cfgs {
        if !apply(&mut b, c) {
            return None;
        }
    }
    Some(Labels::new(b.labels))
}

/// One step; false when the input is dropped.
fn apply(b: &mut Builder, c: &RelabelConfig) -> bool {
    let mut val = String::new();
    for (i, n) in c.source_labels.iter().enumerate() {
        if i > 0 {
            val.push_str(&c.separator);
        }
        val.push_str(b.get(n));
    }
    let re = c.regex.regex();
    match c.action {
        Action::Drop => {
            if re.is_match(&val) {
                return false;
            }
        }
        Action::Keep => {
            if !re.is_match(&val) {
                return false;
            }
        }
        Action::DropEqual => {
            if b.get(&c.target_label) == val {
                return false;
            }
        }
        Action::KeepEqual => {
            if b.get(&c.target_label) != val {
                return false;
            }
        }
        Action::Replace => {
            let Some(caps) = re.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            if res.is_empty() {
                b.del(&target);
            } else {
                b.set(&target, res);
            }
        }
        Action::Lowercase => b.set(&c.target_label, val.to_lowercase()),
        Action::Uppercase => b.set(&c.target_label, val.to_uppercase()),
        Action::HashMod => {
            let m = md5_sum64(val.as_bytes()) % c.modulus;
            b.set(&c.target_label, m.to_string());
        }
        Action::LabelMap => {
            let snapshot: Vec<Label> = b.labels.clone();
            for l in &snapshot {
                if let Some(caps) = re.captures(&l.name) {
                    let mut name = String::new();
                    caps.expand(&c.replacement, &mut name);
                    b.set(&name, l.value.clone());
                }
            }
        }
        Action::LabelDrop => b.labels.retain(|l| !re.is_match(&l.name)),
        Action::LabelKeep => b.labels.retain(|l| re.is_match(&l.name)),
    }
    true
}

/// Label names and prefixes Prometheus uses for targets.
pub mod names {
    /// Host and port to scrape.
    pub const ADDRESS: &str = "__address__";
    /// `http` or `https`.
    pub const SCHEME: &str = "__scheme__";
    /// HTTP path to scrape.
    pub const METRICS_PATH: &str = "__metrics_path__";
    /// Scrape interval of the target.
    pub const SCRAPE_INTERVAL: &str = "__scrape_interval__";
    /// Scrape timeout of the target.
    pub const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
    /// Prefix of URL parameters.
    pub const PARAM_PREFIX: &str = "__param_";
    /// Prefix of discovery metadata, removed after relabeling.
    pub const META_PREFIX: &str = "__meta_";
    /// Prefix of all internal labels.
    pub const RESERVED_PREFIX: &str = "__";
    /// The job label.
    pub const JOB: &str = "job";
    /// The instance label.
    pub const INSTANCE: &str = "instance";
}

/// What a scrape config contributes to a target's labels before relabeling.
#[derive(Clone, Debug)]
pub struct ScrapeLabelDefaults<'a> {
    /// `job_name`.
    pub job_name: &'a str,
    /// The effective scrape interval, formatted as a Prometheus duration.
    pub scrape_interval: String,
    /// The effective scrape timeout, formatted as a Prometheus duration.
    pub scrape_timeout: String,
    /// `metrics_path`.
    pub metrics_path: &'a str,
    /// `scheme`.
    pub scheme: &'a str,
    /// `params`: the first value of each becomes `__param_<name>`.
    pub params: Vec<(&'a str, &'a str)>,
    /// `relabel_configs`.
    pub relabel_configs: &'a [RelabelConfig],
    /// When false (Prometheus 2.x), an address without a port gets `:80`/`:443` from the scheme.
    pub no_default_port: bool,
}

/// The outcome of [`populate_labels`].
#[derive(Clone, Debug, PartialEq)]
pub struct Populated {
    /// The target's labels after relabeling (internal `__*` labels still present, `__meta_*`
    /// removed, `instance` defaulted); `None` when relabeling dropped the target.
    pub labels: Option<Labels>,
    /// The labels before relabeling (shown as "discoveredLabels").
    pub discovered: Labels,
}

/// Splits `host:port` as Go's `net.SplitHostPort`, accepting `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':')?;
        if port.contains(':') {
            return None;
        }
        return Some((&rest[..end], port));
    }
    let i = s.rfind(':')?;
    if s[..i].contains(':') {
        return None;
    }
    Some((&s[..i], &s[i + 1..]))
}

/// Prepares a discovered target's labels as Prometheus's `PopulateLabels`: adds `job`,
/// `__scrape_interval__`, `__scrape_timeout__`, `__metrics_path__`, `__scheme__` where unset and
/// `__param_*`; applies `relabel_configs`; checks the address (adding a default port in 2.x
/// mode), interval and timeout; drops `__meta_*`; defaults `instance` to the address.
pub fn populate_labels(
    discovered: &Labels,
    d: &ScrapeLabelDefaults<'_>,
) -> Result<Populated, String> {
    use names::*;
    let mut b = Builder {
        labels: discovered.iter().cloned().collect(),
    };
    for (n, v) in [
        (JOB, d.job_name),
        (SCRAPE_INTERVAL, d.scrape_interval.as_str()),
        (SCRAPE_TIMEOUT, d.scrape_timeout.as_str()),
        (METRICS_PATH, d.metrics_path),
        (SCHEME, d.scheme),
    ] {
        if b.get(n).is_empty() {
            b.set(n, v.to_string());
        }
    }
    for (k, v) in &d.params {
        b.set(&format!("{PARAM_PREFIX}{k}"), v.to_string());
    }
    let pre = Labels::new(b.labels);
    let Some(lset) = process(&pre, d.relabel_configs) else {
        return Ok(Populated {
            labels: None,
            discovered: pre,
        });
    };
    let mut addr = lset.get(ADDRESS).unwrap_or("").to_string();
    if addr.is_empty() {
        return Err("no address".to_string());
    }
    let mut b = Builder {
        labels: lset.iter().cloned().collect(),
    };
    if !d.no_default_port
        && split_host_port(&addr).is_none()
        && split_host_port(&format!("{addr}:1234")).is_some()
    {
        match lset.get(SCHEME).unwrap_or("") {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            s => return Err(format!("invalid scheme: {s:?}")),
        }
        b.set(ADDRESS, addr.clone());
    }
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval = lset.get(SCRAPE_INTERVAL).unwrap_or("");
    let iv = crate::config::parse_duration(interval)
        .map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if iv.is_zero() {
        return Err("scrape interval cannot be 0".to_string());
    }
    let timeout = lset.get(SCRAPE_TIMEOUT).unwrap_or("");
    let tv = crate::config::parse_duration(timeout)
        .map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if tv.is_zero() {
        return Err("scrape timeout cannot be 0".to_string());
    }
    if tv > iv {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"
        ));
    }
    b.labels.retain(|l| !l.name.starts_with(META_PREFIX));
    if b.get(INSTANCE).is_empty() {
        b.set(INSTANCE, addr);
    }
    Ok(Populated {
        labels: Some(Labels::new(b.labels)),
        discovered: pre,
    })
}

/// The labels a target's series carry: its labels without the internal `__*` ones.
pub fn target_series_labels(target: &Labels) -> Labels {
    Labels::from_sorted(
        target
            .iter()
            .filter(|l| !l.name.starts_with(names::RESERVED_PREFIX))
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_sum64_takes_low_bytes() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(md5_sum64(b""), 0xe9800998ecf8427e);
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:1"), Some(("a", "1")));
        assert_eq!(split_host_port("[::1]:9"), Some(("::1", "9")));
        assert_eq!(split_host_port("a"), None);
        assert_eq!(split_host_port("::1"), None);
    }

    #[test]
    fn relabel_target_syntax() {
        assert!(is_valid_relabel_target("foo_${1}"));
        assert!(is_valid_relabel_target("$1"));
        assert!(!is_valid_relabel_target("1abc"));
        assert!(!is_valid_relabel_target("a-b"));
    }

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    fn cfg(yaml: &str) -> RelabelConfig {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn every_action_table() {
        let input = ls(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")]);
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, Option<&[(&str, &str)]>)] = &[
            // replace with defaults: copy a to d
            ("{source_labels: [a], target_label: d}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("d", "foo")])),
            // regex groups, separator, ${1} and named groups
            ("{source_labels: [a, b], regex: 'f(.*);(?P<x>.*)', target_label: d, replacement: '${1}-$x'}",
             Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("d", "oo-bar")])),
            // no match: unchanged
            ("{source_labels: [a], regex: 'nomatch', target_label: d}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            // anchored: 'fo' does not match 'foo'
            ("{source_labels: [a], regex: 'fo', target_label: d, replacement: x}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            // empty replacement deletes the target
            ("{source_labels: [a], target_label: b, replacement: ''}", Some(&[("a", "foo"), ("c", "baz"), ("__meta_x", "m1")])),
            // target label from a group; invalid result name leaves the set unchanged
            ("{source_labels: [a], regex: '(.*)', target_label: 'l_$1', replacement: v}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("l_foo", "v")])),
            ("{source_labels: [a], regex: '(.*)', target_label: '${1}', replacement: v, separator: ';'}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("foo", "v")])),
            // $1x is the group named "1x": empty
            ("{source_labels: [a], regex: '(.*)', target_label: d, replacement: '$1x'}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            ("{source_labels: [a], regex: 'f.*', action: keep}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            ("{source_labels: [a], regex: 'b.*', action: keep}", None),
            ("{source_labels: [a], regex: 'f.*', action: drop}", None),
            ("{source_labels: [a], regex: 'b.*', action: Drop}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            // missing label reads as empty
            ("{source_labels: [zz], regex: '', action: drop}", None),
            ("{source_labels: [a], target_label: b, action: keepequal}", None),
            ("{source_labels: [a], target_label: a, action: keepequal}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            ("{source_labels: [a], target_label: a, action: dropequal}", None),
            ("{source_labels: [a], target_label: b, action: dropequal}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1")])),
            ("{regex: '__meta_(.*)', action: labelmap}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("x", "m1")])),
            ("{regex: '(a|b)', replacement: 'new_$1', action: labelmap}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("new_a", "foo"), ("new_b", "bar")])),
            ("{regex: '[ab]', action: labeldrop}", Some(&[("c", "baz"), ("__meta_x", "m1")])),
            ("{regex: '[ab]', action: labelkeep}", Some(&[("a", "foo"), ("b", "bar")])),
            ("{source_labels: [a, b], target_label: d, action: uppercase}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("d", "FOO;BAR")])),
            ("{source_labels: [__meta_x], target_label: d, action: lowercase}", Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("__meta_x", "m1"), ("d", "m1")])),
        ];
        for (yaml, want) in cases {
            let got = process(&input, &[cfg(yaml)]);
            assert_eq!(got, want.map(ls), "{yaml}");
        }
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8: low 8 bytes 0xedef654fccc4a4d8
        let c = cfg("{source_labels: [a], target_label: h, modulus: 1000, action: hashmod}");
        let got = process(&ls(&[("a", "foo")]), &[c]).unwrap();
        let want = (0xedef654fccc4a4d8u64 % 1000).to_string();
        assert_eq!(got.get("h"), Some(want.as_str()));
    }

    #[test]
    fn config_validation_table() {
        let bad: &[(&str, &str)] = &[
            ("{action: nope}", "unknown relabel action"),
            (
                "{source_labels: [a], action: hashmod, target_label: h}",
                "non-zero modulus",
            ),
            ("{source_labels: [a]}", "requires 'target_label'"),
            (
                "{source_labels: [a], target_label: '1x'}",
                "invalid 'target_label'",
            ),
            (
                "{source_labels: [a], target_label: 'a$', action: lowercase}",
                "invalid 'target_label'",
            ),
            (
                "{regex: a, target_label: x, action: labeldrop}",
                "requires only 'regex'",
            ),
            (
                "{source_labels: [a], target_label: b, regex: x, action: keepequal}",
                "requires only 'source_labels'",
            ),
            ("{regex: '(', action: keep}", "invalid regex"),
            (
                "{regex: a, replacement: '1bad', action: labelmap}",
                "invalid 'replacement'",
            ),
            (
                "{source_labels: ['a-b'], action: keep}",
                "not a valid label name",
            ),
            ("{source_labels: [a], bogus: 1}", "unknown field `bogus`"),
        ];
        for (yaml, want) in bad {
            let e = serde_yaml_ng::from_str::<RelabelConfig>(yaml)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let c = cfg("{target_label: x}");
        assert_eq!(c.action, Action::Replace);
        assert_eq!(c.separator, ";");
        assert_eq!(c.regex.as_str(), "(.*)");
        assert_eq!(c.replacement, "$1");
    }

    fn defaults<'a>(relabel: &'a [RelabelConfig]) -> ScrapeLabelDefaults<'a> {
        ScrapeLabelDefaults {
            job_name: "node",
            scrape_interval: "15s".into(),
            scrape_timeout: "10s".into(),
            metrics_path: "/metrics",
            scheme: "http",
            params: vec![("module", "m")],
            relabel_configs: relabel,
            no_default_port: false,
        }
    }

    #[test]
    fn populate_labels_as_prometheus() {
        let disc = ls(&[
            ("__address__", "h:9100"),
            ("__meta_dc", "eu"),
            ("team", "x"),
        ]);
        let rl = [cfg("{source_labels: [__meta_dc], target_label: dc}")];
        let p = populate_labels(&disc, &defaults(&rl)).unwrap();
        let got = p.labels.unwrap();
        assert_eq!(
            got,
            ls(&[
                ("__address__", "h:9100"),
                ("__metrics_path__", "/metrics"),
                ("__param_module", "m"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "15s"),
                ("__scrape_timeout__", "10s"),
                ("dc", "eu"),
                ("instance", "h:9100"),
                ("job", "node"),
                ("team", "x"),
            ])
        );
        assert_eq!(p.discovered.get("__meta_dc"), Some("eu"));
        assert_eq!(p.discovered.get("job"), Some("node"));
        assert_eq!(
            target_series_labels(&got),
            ls(&[
                ("dc", "eu"),
                ("instance", "h:9100"),
                ("job", "node"),
                ("team", "x")
            ])
        );
    }

    #[test]
    fn populate_labels_ports_drops_and_errors() {
        let d = defaults(&[]);
        let p = populate_labels(&ls(&[("__address__", "h")]), &d).unwrap();
        assert_eq!(p.labels.unwrap().get("instance"), Some("h:80"));
        let p = populate_labels(&ls(&[("__address__", "h"), ("__scheme__", "https")]), &d).unwrap();
        assert_eq!(p.labels.unwrap().get("__address__"), Some("h:443"));
        let mut d3 = defaults(&[]);
        d3.no_default_port = true;
        let p = populate_labels(&ls(&[("__address__", "h")]), &d3).unwrap();
        assert_eq!(p.labels.unwrap().get("instance"), Some("h"));
        // explicit instance kept; job from the target kept
        let p = populate_labels(
            &ls(&[("__address__", "h:1"), ("instance", "i"), ("job", "j")]),
            &d,
        )
        .unwrap();
        let l = p.labels.unwrap();
        assert_eq!((l.get("instance"), l.get("job")), (Some("i"), Some("j")));
        let rl = [cfg(
            "{source_labels: [__address__], regex: 'h:1', action: drop}",
        )];
        assert_eq!(
            populate_labels(&ls(&[("__address__", "h:1")]), &defaults(&rl))
                .unwrap()
                .labels,
            None
        );
        assert_eq!(
            populate_labels(&ls(&[("x", "y")]), &d).unwrap_err(),
            "no address"
        );
        assert!(populate_labels(&ls(&[("__address__", "h/x:1")]), &d)
            .unwrap_err()
            .contains("not a valid hostname"));
        let rl = [cfg("{target_label: __scrape_timeout__, replacement: 1m}")];
        assert!(
            populate_labels(&ls(&[("__address__", "h:1")]), &defaults(&rl))
                .unwrap_err()
                .contains("greater than scrape interval")
        );
        let rl = [cfg(
            "{target_label: __scrape_interval__, replacement: '0s'}",
        )];
        assert!(
            populate_labels(&ls(&[("__address__", "h:1")]), &defaults(&rl))
                .unwrap_err()
                .contains("cannot be 0")
        );
    }
}
