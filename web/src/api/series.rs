//! `series`, `labels` and `label/<name>/values`, with `match[]`, `start`, `end` and `limit`.
//! Results are sorted and, when more than `limit` exist, truncated with the warning
//! `results truncated due to limit`.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::response::Response;
use tsdb::labels::Labels;
use tsdb::querier::SelectHints;

use super::error::ApiError;
use super::json::{self, write_labels};
use super::params::{Params, MAX_TIME, MIN_TIME};
use super::{blocking, json_response};
use crate::server::state::SharedState;

const TRUNCATED: &str = "results truncated due to limit";

fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.time_or("start", MIN_TIME)?;
    let end = p.time_or("end", MAX_TIME)?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

/// `GET|POST /api/v1/series`
pub async fn series(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    if p.get_all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let sets = p.matcher_sets()?;
    let (start, end) = time_range(&p)?;
    let limit = p.limit()?;
    let (found, truncated) = blocking(move || {
        let q = st.storage.queryable().querier(start, end)?;
        let hints = SelectHints {
            start,
            end,
            func: Some("series".into()),
            limit,
            ..Default::default()
        };
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        for set in &sets {
            for s in q.select(true, Some(&hints), set) {
                all.insert(s?.labels().clone());
            }
        }
        let truncated = limit > 0 && all.len() > limit;
        Ok((
            all.into_iter()
                .take(if limit > 0 { limit } else { usize::MAX })
                .collect::<Vec<_>>(),
            truncated,
        ))
    })
    .await?;
    let mut data = String::with_capacity(found.len() * 64 + 2);
    data.push('[');
    for (i, l) in found.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_labels(&mut data, l);
    }
    data.push(']');
    let warnings = if truncated {
        vec![TRUNCATED.to_string()]
    } else {
        vec![]
    };
    Ok(json_response(json::success(&data, &warnings, &[])))
}

/// `DELETE /api/v1/series`: not supported, as in Prometheus.
pub async fn delete_not_allowed() -> ApiError {
    ApiError::internal("not implemented")
}

fn list_response(mut items: Vec<String>, limit: usize) -> Response {
    items.sort();
    items.dedup();
    let truncated = limit > 0 && items.len() > limit;
    if truncated {
        items.truncate(limit);
    }
    let mut data = String::new();
    json::write_str_array(&mut data, &items);
    let warnings = if truncated {
        vec![TRUNCATED.to_string()]
    } else {
        vec![]
    };
    json_response(json::success(&data, &warnings, &[]))
}

/// `GET|POST /api/v1/labels`
pub async fn labels(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    let sets = p.matcher_sets()?;
    let (start, end) = time_range(&p)?;
    let limit = p.limit()?;
    // Ask for one more than the limit to know whether the answer was truncated.
    let ask = if limit > 0 { limit + 1 } else { 0 };
    let names = blocking(move || {
        let q = st.storage.queryable().querier(start, end)?;
        let mut names = Vec::new();
        if sets.is_empty() {
            names = q.label_names(&[], ask)?;
        } else {
            for set in &sets {
                names.extend(q.label_names(set, ask)?);
            }
        }
        Ok(names)
    })
    .await?;
    Ok(list_response(names, limit))
}

/// Whether `name` is acceptable as a label name in a URL path (any non-empty UTF-8, as
/// Prometheus 3.x allows).
fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// Undoes Prometheus's `U__` escaping of label names in URL paths: after the prefix, `__` is
/// `_`, `_<hex>_` is the character with that code point, anything else stands for itself.
/// Names without the prefix, or that do not decode, are returned unchanged.
pub fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return name.to_string(),
            }
        }
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(ch) => out.push(ch),
            None => return name.to_string(),
        }
    }
    out
}

/// `GET /api/v1/label/<name>/values`
pub async fn label_values(
    State(st): State<SharedState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let name = unescape_label_name(&name);
    if !valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = p.matcher_sets()?;
    let (start, end) = time_range(&p)?;
    let limit = p.limit()?;
    let ask = if limit > 0 { limit + 1 } else { 0 };
    let values = blocking(move || {
        let q = st.storage.queryable().querier(start, end)?;
        let mut vals = Vec::new();
        if sets.is_empty() {
            vals = q.label_values(&name, &[], ask)?;
        } else {
            for set in &sets {
                vals.extend(q.label_values(&name, set, ask)?);
            }
        }
        Ok(vals)
    })
    .await?;
    Ok(list_response(values, limit))
}

#[cfg(test)]
mod tests {
    use super::unescape_label_name;

    #[test]
    fn label_names_unescape() {
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(unescape_label_name("U__foo_2e_bar"), "foo.bar");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
        assert_eq!(unescape_label_name("U__caf_e9_"), "café");
        assert_eq!(unescape_label_name("U__bad_zz_"), "U__bad_zz_");
    }
}
