//! Federation, `GET /federate?match[]=…`: the latest sample of every series matching any
//! `match[]` selector, within the lookback delta before now, in the Prometheus text format
//! 0.0.4, grouped by metric name with a `# TYPE <name> untyped` line per group:
//!
//! ```text
//! # TYPE up untyped
//! up{instance="localhost:9090",job="prometheus"} 1 1704081607000
//! ```
//!
//! Values are formatted like Go's `strconv.FormatFloat(v, 'g', -1, 64)` (`1e+06`, `NaN`,
//! `+Inf`); timestamps are milliseconds. Stale samples and samples older than the lookback
//! delta are left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tsdb::chunkenc::{is_stale_nan, ValueType};
use tsdb::labels::Labels;
use tsdb::querier::SelectHints;

use crate::api::params::Params;
use crate::api::query::now_ms;
use crate::server::state::SharedState;

use crate::gofmt::format_g;

fn escape_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A series and its latest sample.
type Entry<'a> = (&'a Labels, (i64, f64));

/// Renders series with their latest sample in the text format, grouped by metric name.
pub fn render(series: &BTreeMap<Labels, (i64, f64)>) -> String {
    // Group by metric name, series within a group in label order.
    let mut groups: BTreeMap<&str, Vec<Entry<'_>>> = BTreeMap::new();
    for (l, s) in series {
        groups
            .entry(l.metric_name().unwrap_or(""))
            .or_default()
            .push((l, *s));
    }
    let mut out = String::new();
    for (name, items) in groups {
        let _ = writeln!(out, "# TYPE {name} untyped");
        for (l, (t, v)) in items {
            out.push_str(name);
            let mut first = true;
            for lb in l.iter().filter(|lb| lb.name != tsdb::labels::METRIC_NAME) {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(&lb.name);
                out.push_str("=\"");
                escape_value(&mut out, &lb.value);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            let _ = writeln!(out, " {} {t}", format_g(v));
        }
    }
    out
}

/// `GET /federate`
pub async fn federate(State(st): State<SharedState>, p: Params) -> Response {
    let sets = match p.matcher_sets() {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e.msg + "\n").into_response(),
    };
    let maxt = now_ms();
    let mint = maxt - st.args.query_lookback_delta.as_millis() as i64;
    let res = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let q = st
            .storage
            .queryable()
            .querier(mint, maxt)
            .map_err(|e| e.to_string())?;
        let hints = SelectHints {
            start: mint,
            end: maxt,
            func: Some("series".into()),
            ..Default::default()
        };
        let mut latest: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
        for set in &sets {
            for s in q.select(true, Some(&hints), set) {
                let s = s.map_err(|e| e.to_string())?;
                if latest.contains_key(s.labels()) {
                    continue;
                }
                let mut it = s.iter();
                let mut last = None;
                let mut vt = it.seek(mint);
                while vt != ValueType::None {
                    let (t, v) = it.at();
                    if t > maxt {
                        break;
                    }
                    last = Some((t, v));
                    vt = it.next();
                }
                if let Some(e) = it.err() {
                    return Err(e.to_string());
                }
                if let Some((t, v)) = last {
                    if !is_stale_nan(v) {
                        latest.insert(s.labels().clone(), (t, v));
                    }
                }
            }
        }
        Ok(render(&latest))
    })
    .await;
    match res {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("federation failed: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("federation failed: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_go() {
        assert_eq!(format_g(1.0), "1");
        assert_eq!(format_g(123456.0), "123456");
        assert_eq!(format_g(1234567.0), "1.234567e+06");
        assert_eq!(format_g(1e6), "1e+06");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(0.00001), "1e-05");
        assert_eq!(format_g(1.5e-7), "1.5e-07");
        assert_eq!(format_g(-2.5), "-2.5");
        assert_eq!(format_g(1e100), "1e+100");
        assert_eq!(format_g(f64::NAN), "NaN");
        assert_eq!(format_g(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn renders_groups_with_type_lines() {
        let mut m = BTreeMap::new();
        m.insert(
            Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")]),
            (1000, 1.0),
        );
        m.insert(
            Labels::from_pairs(&[("__name__", "up"), ("job", "c")]),
            (2000, 0.0),
        );
        m.insert(Labels::from_pairs(&[("__name__", "bare")]), (3000, 2e6));
        let text = render(&m);
        assert_eq!(
            text,
            "# TYPE bare untyped\nbare 2e+06 3000\n# TYPE up untyped\nup{job=\"a\\\"b\"} 1 1000\nup{job=\"c\"} 0 2000\n"
        );
    }
}
