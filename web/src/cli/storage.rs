//! Opening a data directory read-only for the tools (blocks and head merged into one querier),
//! and turning a PromQL series selector into storage matchers.

use std::path::Path;

use anyhow::{bail, Context, Result};
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use tsdb::block::Block;
use tsdb::db::{Db, Options};
use tsdb::{MatchType, Matcher, Querier, Queryable};

/// A data directory opened read-only: its blocks and its head (WAL and `chunks_head/`
/// replayed into memory), as promtool's `OpenDBReadOnly`.
pub struct DataDir {
    db: Db,
}

impl DataDir {
    /// Opens the data directory `dir` read-only.
    pub fn open(dir: &Path) -> Result<DataDir> {
        let db = Db::open_read_only(dir, Options::default())
            .with_context(|| format!("open data directory {}", dir.display()))?;
        Ok(DataDir { db })
    }

    /// The persistent blocks, sorted by min time.
    pub fn blocks(&self) -> Vec<Block> {
        self.db.blocks()
    }

    /// A querier over `[mint, maxt]` (ms, inclusive) merging the blocks and the head.
    pub fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        self.db
            .querier(mint, maxt)
            .context("query the data directory")
    }
}

/// Parses a series selector (`metric{label="value",…}`) into storage matchers, as promtool's
/// `parser.ParseMetricSelector`.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>> {
    let expr = match promql_parser::parser::parse(s) {
        Ok(e) => e,
        // PromQL rejects selectors whose matchers all match the empty string (promtool's
        // default `{__name__=~'(?s:.*)'}`); a metric selector allows them. Parse again with a
        // placeholder matcher that is dropped below.
        Err(e) if e.contains("at least one non-empty matcher") => with_placeholder(s)
            .and_then(|p| promql_parser::parser::parse(&p).ok())
            .ok_or_else(|| anyhow::anyhow!("invalid series selector {s:?}: {e}"))?,
        Err(e) => bail!("invalid series selector {s:?}: {e}"),
    };
    let Expr::VectorSelector(vs) = expr else {
        bail!("invalid series selector {s:?}: not a plain series selector");
    };
    if vs.offset.is_some() || vs.at.is_some() {
        bail!("invalid series selector {s:?}: offset and @ modifiers are not allowed");
    }
    if !vs.matchers.or_matchers.is_empty() {
        bail!("invalid series selector {s:?}: \"or\" is not supported here");
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        if !vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == tsdb::labels::METRIC_NAME)
        {
            out.push(Matcher::equal(tsdb::labels::METRIC_NAME, name.clone()));
        }
    }
    for m in vs
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name != PLACEHOLDER)
    {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regexp,
            MatchOp::NotRe(_) => MatchType::NotRegexp,
        };
        out.push(Matcher::new(kind, m.name.clone(), m.value.clone())?);
    }
    if out.is_empty() {
        bail!("invalid series selector {s:?}: no matchers");
    }
    Ok(out)
}

/// Label name of the matcher [`with_placeholder`] adds.
const PLACEHOLDER: &str = "__ignis_selector_placeholder__";

/// `s` with a non-empty placeholder matcher added inside its last `{…}`.
fn with_placeholder(s: &str) -> Option<String> {
    let close = s.rfind('}')?;
    let before = s[..close].trim_end();
    let sep = if before.ends_with('{') || before.ends_with(',') {
        ""
    } else {
        ","
    };
    Some(format!("{before}{sep}{PLACEHOLDER}=\"x\"{}", &s[close..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let ms = parse_selector("{__name__=~'(?s:.*)'}").unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].kind, MatchType::Regexp);
        assert!(ms[0].matches("anything\nat all"));
        let ms = parse_selector(r#"up{job="a",instance!~"b.*"}"#).unwrap();
        let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
        assert!(shown.contains(&r#"__name__="up""#.to_string()), "{shown:?}");
        assert!(shown.contains(&r#"job="a""#.to_string()));
        assert!(shown.contains(&r#"instance!~"b.*""#.to_string()));
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("{").is_err());
        let ms = parse_selector(r#"{job=""}"#).unwrap();
        assert_eq!(ms.len(), 1);
        assert!(ms[0].matches(""));
        assert_eq!(parse_selector("up{}").unwrap().len(), 1);
        assert_eq!(parse_selector(r#"{a=~".*",}"#).unwrap().len(), 1);
    }
}
