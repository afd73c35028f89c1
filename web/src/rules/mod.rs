//! Recording and alerting rules: rule files ([`file`]), the alert state machine
//! ([`alerting`]) and group evaluation ([`group`]), independent of the server that drives them.

// The server drives these building blocks; until it does, parts are used only by tests.
#![allow(dead_code)]

pub mod alerting;
pub mod api;
pub mod file;
pub mod group;
pub mod notify;

#[allow(unused_imports)]
pub use file::{
    check_rule_files, load_rule_file, parse_rules, RuleDef, RuleGroupDef, RuleGroupsFile,
};
