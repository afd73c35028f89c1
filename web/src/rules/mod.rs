//! Recording and alerting rules: rule files ([`file`]), the alert state machine
//! ([`alerting`]) and group evaluation ([`group`]), independent of the server that drives them.

pub mod alerting;
pub mod api;
pub mod file;
pub mod group;
pub mod notify;

pub use file::{
    check_rule_files, load_rule_file, parse_rules, RuleDef, RuleGroupDef, RuleGroupsFile,
};
