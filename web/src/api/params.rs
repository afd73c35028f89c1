//! Request parameters as Prometheus reads them: the URL query and, for POST, a
//! `application/x-www-form-urlencoded` body (body values first, as Go's `FormValue`); times as
//! RFC 3339 or float Unix seconds; durations as float seconds or Prometheus durations; `match[]`
//! series selectors parsed with `promql-parser` into `tsdb` matchers.

use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use promql_parser::label::{MatchOp, Matcher as PMatcher};
use promql_parser::parser::{Expr, VectorSelector};
use tsdb::labels::{MatchType, Matcher};

use super::error::ApiError;

/// Earliest time the API accepts (Go's minimum `time.Time` as Prometheus uses it), in ms.
pub const MIN_TIME: i64 = -9_223_309_901_257_974;
/// Latest time the API accepts, in ms.
pub const MAX_TIME: i64 = 9_223_309_901_257_974;

/// Largest accepted request body for form parameters.
const MAX_FORM_BODY: usize = 32 << 20;

/// All parameters of a request in order: body (POST form) values first, then the URL query.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parameters from a URL query string and an optional form body.
    pub fn from_parts(query: Option<&str>, body: Option<&[u8]>) -> Self {
        let mut pairs = Vec::new();
        if let Some(b) = body {
            pairs.extend(form_urlencoded::parse(b).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Params { pairs }
    }

    /// The first value of `name`, if given (an empty value counts as not given).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Parses time parameter `name`, or `default` (ms) when absent.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(s) => parse_time(s).map_err(|e| ApiError::invalid_param(name, e)),
        }
    }

    /// Parses duration parameter `name` (ms), if present.
    pub fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(s) => parse_duration(s)
                .map(Some)
                .map_err(|e| ApiError::invalid_param(name, e)),
        }
    }

    /// The `limit` parameter: 0 (no limit) when absent.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(0),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n as usize),
                Ok(_) => Err(ApiError::invalid_param(
                    "limit",
                    "limit must be non-negative",
                )),
                Err(_) => Err(ApiError::invalid_param(
                    "limit",
                    format!("cannot parse {s:?} to a valid limit"),
                )),
            },
        }
    }

    /// The `match[]` selectors, each as its alternatives of matcher lists.
    pub fn matcher_sets(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        let mut out = Vec::new();
        for s in self.get_all("match[]") {
            out.extend(parse_selector(s).map_err(ApiError::bad_data)?);
        }
        Ok(out)
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_string);
        let is_form = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let body = if is_form {
            let limited = axum::body::to_bytes(req.into_body(), MAX_FORM_BODY);
            Some(
                limited
                    .await
                    .map_err(|e| ApiError::bad_data(format!("error parsing form values: {e}")))?,
            )
        } else {
            let _ = state;
            None
        };
        Ok(Params::from_parts(query.as_deref(), body.as_deref()))
    }
}

/// Parses an API time: float Unix seconds or RFC 3339, into ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let ms = (f * 1000.0).round();
            if ms >= MIN_TIME as f64 && ms <= MAX_TIME as f64 {
                return Ok(ms as i64);
            }
        }
        return Err(format!("cannot parse {s:?} to a valid timestamp"));
    }
    // Go's formatted min/max times, which clients echo back.
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME),
        _ => {}
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.timestamp_millis()),
        Err(_) => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// Parses an API duration: float seconds or a Prometheus duration (`5m`, `1h30m`), into ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if !ms.is_finite() || ms.abs() >= i64::MAX as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms.round() as i64);
    }
    crate::server::flags::parse_duration_ms(s)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// Parses one series selector (`up{job="a"}`) into its alternatives of matcher lists (more
/// than one only for selectors with `or` inside braces). At least one matcher of each must
/// not match the empty string.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = promql_parser::parser::parse(s)?;
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        _ => {
            return Err(format!(
                "parse error: expected a series selector, got {s:?}"
            ))
        }
    };
    let sets = selector_matchers(&vs)?;
    for set in &sets {
        if set.iter().all(|m| m.matches_empty()) {
            return Err("match[] must contain at least one non-empty matcher".into());
        }
    }
    Ok(sets)
}

/// The matcher lists of a parsed vector selector, with its metric name as a `__name__`
/// matcher. Several lists when the selector uses `or` inside braces.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, String> {
    let groups: Vec<&[PMatcher]> = if vs.matchers.or_matchers.is_empty() {
        vec![&vs.matchers.matchers[..]]
    } else {
        vs.matchers.or_matchers.iter().map(|g| &g[..]).collect()
    };
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut set = Vec::with_capacity(g.len() + 1);
        if let Some(name) = &vs.name {
            set.push(Matcher::equal(tsdb::labels::METRIC_NAME, name.clone()));
        }
        for m in g {
            set.push(convert_matcher(m)?);
        }
        out.push(set);
    }
    Ok(out)
}

/// Converts a `promql-parser` matcher into a `tsdb` one.
pub fn convert_matcher(m: &PMatcher) -> Result<Matcher, String> {
    let kind = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::Re(_) => MatchType::Regexp,
        MatchOp::NotRe(_) => MatchType::NotRegexp,
    };
    Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_seconds_or_rfc3339() {
        assert_eq!(parse_time("1704081607").unwrap(), 1_704_081_607_000);
        assert_eq!(parse_time("1704081607.123").unwrap(), 1_704_081_607_123);
        assert_eq!(
            parse_time("2024-01-01T00:00:00Z").unwrap(),
            1_704_067_200_000
        );
        assert_eq!(
            parse_time("2024-01-01T01:00:00.5+01:00").unwrap(),
            1_704_067_200_500
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(
            parse_time("292277025-08-18T07:12:54.999999999Z").unwrap(),
            MAX_TIME
        );
    }

    #[test]
    fn durations_parse_as_seconds_or_units() {
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("1e300").unwrap_err().contains("overflows"));
    }

    #[test]
    fn params_merge_body_and_query() {
        let p = Params::from_parts(Some("match%5B%5D=a&x=1"), Some(b"match%5B%5D=b&x=2"));
        assert_eq!(p.get("x"), Some("2"));
        assert_eq!(p.get_all("match[]"), vec!["b", "a"]);
    }

    #[test]
    fn selectors_become_matchers() {
        let sets = parse_selector(r#"up{job="a",i=~"x.*"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        let s = &sets[0];
        assert_eq!(s.len(), 3);
        assert!(s.iter().any(|m| m.name == "__name__" && m.value == "up"));
        assert!(s
            .iter()
            .any(|m| m.kind == MatchType::Regexp && m.value == "x.*"));
        assert!(parse_selector(r#"{job=~".*"}"#).is_err());
        assert!(parse_selector("sum(up)").is_err());
        assert!(parse_selector("up{").is_err());
    }
}
