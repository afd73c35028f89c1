//! Warnings and infos a query returns beside its value, with Prometheus's texts
//! (`PromQL warning: …`, `PromQL info: …`).

/// Deduplicated warnings and infos of one query, in the order first raised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    /// Warning texts, each starting with `PromQL warning: `.
    pub warnings: Vec<String>,
    /// Info texts, each starting with `PromQL info: `.
    pub infos: Vec<String>,
}

/// Prefix of every warning text.
pub const WARNING_PREFIX: &str = "PromQL warning: ";
/// Prefix of every info text.
pub const INFO_PREFIX: &str = "PromQL info: ";

impl Annotations {
    /// Adds a warning; `msg` is the text after the `PromQL warning: ` prefix.
    pub fn warn(&mut self, msg: impl AsRef<str>) {
        let s = format!("{WARNING_PREFIX}{}", msg.as_ref());
        if !self.warnings.contains(&s) {
            self.warnings.push(s);
        }
    }

    /// Adds an info; `msg` is the text after the `PromQL info: ` prefix.
    pub fn info(&mut self, msg: impl AsRef<str>) {
        let s = format!("{INFO_PREFIX}{}", msg.as_ref());
        if !self.infos.contains(&s) {
            self.infos.push(s);
        }
    }

    /// Adds a full text, sorting it by its prefix (unknown prefixes count as warnings).
    pub fn add_full(&mut self, s: String) {
        if s.starts_with(INFO_PREFIX) {
            if !self.infos.contains(&s) {
                self.infos.push(s);
            }
        } else if !self.warnings.contains(&s) {
            self.warnings.push(s);
        }
    }

    /// Adds all annotations of `other`.
    pub fn merge(&mut self, other: Annotations) {
        for w in other.warnings {
            self.add_full(w);
        }
        for i in other.infos {
            self.add_full(i);
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_and_prefixes() {
        let mut a = Annotations::default();
        a.warn("x");
        a.warn("x");
        a.info("y");
        a.add_full("PromQL info: y".into());
        assert_eq!(a.warnings, vec!["PromQL warning: x"]);
        assert_eq!(a.infos, vec!["PromQL info: y"]);
    }
}
