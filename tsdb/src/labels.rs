//! Label sets and label matchers with Prometheus semantics.
//!
//! A [`Labels`] value is a set of name/value pairs sorted by name, with unique names and no
//! empty values (an empty value means "label absent", as in Prometheus). Its [`Labels::hash`] is
//! stable across runs and platforms: xxHash64 over `name 0xff value 0xff` for every pair, the
//! same bytes Prometheus hashes.
//!
//! A [`Matcher`] is one of `=`, `!=`, `=~`, `!~`. Regular expressions are fully anchored and
//! compiled with `(?s)` so `.` matches a newline, as Prometheus does; an absent label matches as
//! the empty string, so `{foo=~".*"}` matches series without `foo`. Common regex shapes take fast
//! paths that skip the regex engine: `.*`, `.+`, literal alternations `a|b|c`, and literal
//! prefixes `abc.*`.
//!
//! Compiling a regex is far dearer than most small queries (the regex crate determinizes a
//! small pattern into a full DFA up front, ~0.1-0.3 ms), and dashboards send the same
//! patterns again and again, so compiled regexes are kept in a process-wide cache keyed by
//! their source ([`REGEX_CACHE_MAX`] entries, emptied when full). A cached regex is shared
//! (`Arc`), so its matching caches are reused by every matcher built from the same source.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// Name of the label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// The stable hash of a label set ([`Labels::hash`]) from borrowed `(name, value)` pairs sorted
/// by name: xxHash64 (seed 0) over `name 0xff value 0xff` for every pair. Sets up to 1 KiB are
/// hashed in one pass over a stack buffer, larger ones streamed; both give the same value.
pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> u64 {
    over_pair_bytes(
        pairs,
        |b| xxhash_rust::xxh64::xxh64(b, 0),
        |feed| {
            let mut h = xxhash_rust::xxh64::Xxh64::new(0);
            feed(&mut |b| h.update(b));
            h.digest()
        },
    )
}

/// A 128-bit hash of label pairs in the order given (xxh3-128 over the same bytes as
/// [`hash_pairs`]): wide enough that two different pair lists practically never share it, so
/// it can stand for the pairs themselves (the remote-write series-reference cache keys on it).
pub fn hash_pairs_128<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> u128 {
    over_pair_bytes(pairs, xxhash_rust::xxh3::xxh3_128, |feed| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        feed(&mut |b| h.update(b));
        h.digest128()
    })
}

/// Hands `name 0xff value 0xff` for every pair to a hash: to `whole` as one slice when it fits
/// a 1 KiB stack buffer, else to `streamed` as a function that feeds the pieces one by one.
#[inline(always)]
fn over_pair_bytes<'a, R>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    whole: impl FnOnce(&[u8]) -> R,
    streamed: impl FnOnce(&dyn Fn(&mut dyn FnMut(&[u8]))) -> R,
) -> R {
    const CAP: usize = 1024;
    let mut buf = [0u8; CAP];
    let mut n = 0;
    for (name, value) in pairs.clone() {
        let (a, b) = (name.as_bytes(), value.as_bytes());
        if n + a.len() + b.len() + 2 > CAP {
            let feed = |f: &mut dyn FnMut(&[u8])| {
                for (name, value) in pairs.clone() {
                    f(name.as_bytes());
                    f(&[0xff]);
                    f(value.as_bytes());
                    f(&[0xff]);
                }
            };
            return streamed(&feed);
        }
        buf[n..n + a.len()].copy_from_slice(a);
        n += a.len();
        buf[n] = 0xff;
        n += 1;
        buf[n..n + b.len()].copy_from_slice(b);
        n += b.len();
        buf[n] = 0xff;
        n += 1;
    }
    whole(&buf[..n])
}

/// One label: a name and its value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
}

impl Label {
    /// A label from a name and value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A sorted set of labels identifying one series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from labels in any order. Pairs with empty values are dropped; for a
    /// repeated name the last one wins.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        // keep the last of equal names
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// Builds a label set from `(name, value)` string pairs.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Self {
        Labels::new(
            pairs
                .iter()
                .map(|(n, v)| Label::new(n.as_ref(), v.as_ref()))
                .collect(),
        )
    }

    /// Wraps labels already sorted by name with unique names and non-empty values.
    /// Debug builds check the invariant.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "labels not sorted"
        );
        Labels(labels)
    }

    /// Builds a label set from `(name, value)` pairs already sorted by name with unique names
    /// and non-empty values (see [`Labels::from_sorted`]).
    pub fn from_sorted_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Labels::from_sorted(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Whether label `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// The labels as a sorted slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Consumes the set into its sorted labels.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Stable 64-bit hash of the whole set (see the module docs).
    pub fn hash(&self) -> u64 {
        hash_pairs(self.0.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Replaces the labels with `pairs` (sorted by name, unique names, non-empty values: the
    /// caller checks), reusing the allocations of the current labels' strings. Lets a hot
    /// loop fill one `Labels` per series without allocating once its strings are long enough.
    pub fn assign_sorted<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut n = 0;
        for (name, value) in pairs {
            match self.0.get_mut(n) {
                Some(l) => {
                    l.name.clear();
                    l.name.push_str(name);
                    l.value.clear();
                    l.value.push_str(value);
                }
                None => self.0.push(Label::new(name, value)),
            }
            n += 1;
        }
        self.0.truncate(n);
        debug_assert!(
            self.0.windows(2).all(|w| w[0].name < w[1].name),
            "labels not sorted"
        );
    }

    /// Hash over only the labels whose names are in `names` (`by` grouping). `names` need not
    /// be sorted.
    pub fn hash_for(&self, names: &[impl AsRef<str>]) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for l in self
            .0
            .iter()
            .filter(|l| names.iter().any(|n| n.as_ref() == l.name))
        {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    /// Hash over the labels whose names are not in `names` and are not `__name__`
    /// (`without` grouping).
    pub fn hash_without(&self, names: &[impl AsRef<str>]) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for l in self
            .0
            .iter()
            .filter(|l| l.name != METRIC_NAME && !names.iter().any(|n| n.as_ref() == l.name))
        {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    /// A copy keeping only the labels named in `names`.
    pub fn keep(&self, names: &[impl AsRef<str>]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.iter().any(|n| n.as_ref() == l.name))
                .cloned()
                .collect(),
        )
    }

    /// A copy without the labels named in `names`.
    pub fn drop_names(&self, names: &[impl AsRef<str>]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.iter().any(|n| n.as_ref() == l.name))
                .cloned()
                .collect(),
        )
    }

    /// A copy without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        self.drop_names(&[METRIC_NAME])
    }

    /// A copy with label `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v = self.0.clone();
        match v.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(i, Label::new(name, value)),
        }
        Labels(v)
    }

    /// Bytes used by the label strings, for memory accounting.
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|l| l.name.len() + l.value.len()).sum()
    }

    /// Checks the invariants a stored series needs: at least one label, valid non-empty names,
    /// no duplicates.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.0.is_empty() {
            return Err(crate::Error::InvalidLabels("empty label set".into()));
        }
        for w in self.0.windows(2) {
            if w[0].name == w[1].name {
                return Err(crate::Error::InvalidLabels(format!(
                    "duplicate label name {:?}",
                    w[0].name
                )));
            }
        }
        if let Some(l) = self.0.iter().find(|l| l.name.is_empty()) {
            return Err(crate::Error::InvalidLabels(format!(
                "empty label name for value {:?}",
                l.value
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Labels {
    /// Prometheus's text form: `{a="1", b="2"}` with Go-style quoting of values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.name, go_quote(&l.value))?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<Label> for Labels {
    fn from_iter<T: IntoIterator<Item = Label>>(iter: T) -> Self {
        Labels::new(iter.into_iter().collect())
    }
}

/// Quotes a string the way Go's `strconv.Quote` does: `\"`, `\\`, `\n`, `\t`, `\r`, other
/// control characters as `\x..`/`\u....`, printable Unicode kept as is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The comparison a [`Matcher`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regexp,
    /// `!~`
    NotRegexp,
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        })
    }
}

/// A label matcher: `name op "value"`.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The comparison.
    pub kind: MatchType,
    /// The label name.
    pub name: String,
    /// The literal value or regular expression source.
    pub value: String,
    re: Option<FastRegex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl Matcher {
    /// Builds a matcher, compiling the regex for `=~` and `!~`.
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> crate::Result<Self> {
        let value = value.into();
        let re = match kind {
            MatchType::Regexp | MatchType::NotRegexp => Some(FastRegex::new(&value)?),
            _ => None,
        };
        Ok(Matcher {
            kind,
            name: name.into(),
            value,
            re,
        })
    }

    /// `name = value`; never fails.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            kind: MatchType::Equal,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    /// Whether the (possibly empty, meaning absent) label value `v` matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchType::Equal => self.value == v,
            MatchType::NotEqual => self.value != v,
            MatchType::Regexp => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchType::NotRegexp => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the matcher matches the empty string, i.e. also series without the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether a label set matches.
    pub fn matches_labels(&self, ls: &Labels) -> bool {
        self.matches(ls.get(&self.name).unwrap_or(""))
    }

    /// For `=~`, the literal values the regex is a plain alternation of (`a|b|c`), if it is.
    pub fn set_matches(&self) -> Option<&[String]> {
        match (&self.kind, &self.re) {
            (
                MatchType::Regexp,
                Some(FastRegex {
                    kind: FastKind::Set(s),
                    ..
                }),
            ) => Some(s.as_slice()),
            _ => None,
        }
    }

    /// For `=~`/`!~`, a literal prefix every match starts with.
    pub fn prefix(&self) -> Option<&str> {
        match &self.re {
            Some(FastRegex {
                kind: FastKind::Prefix(p),
                ..
            }) => Some(&**p),
            _ => None,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.kind, go_quote(&self.value))
    }
}

/// A fully anchored regex with fast paths for common shapes.
#[derive(Clone, Debug)]
struct FastRegex {
    kind: FastKind,
}

#[derive(Clone, Debug)]
enum FastKind {
    /// `.*`: matches everything.
    Any,
    /// `.+`: matches every non-empty string.
    NonEmpty,
    /// Alternation of literals.
    Set(Arc<Vec<String>>),
    /// `literal.*`
    Prefix(Arc<str>),
    /// Anything else; shared with the cache so its matching caches are reused.
    Regex(Arc<regex::Regex>),
}

const META: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

/// How many compiled regexes the process-wide cache keeps; when full it is emptied and
/// starts again (a dashboard's working set is far smaller, and this bounds the memory a
/// client sending ever new patterns can pin).
pub const REGEX_CACHE_MAX: usize = 1024;

fn regex_cache() -> &'static Mutex<HashMap<String, FastRegex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, FastRegex>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl FastRegex {
    /// The matcher for `src`, from the cache or compiled (and then cached). Invalid patterns
    /// are not cached.
    fn new(src: &str) -> crate::Result<Self> {
        if let Some(r) = regex_cache().lock().get(src) {
            return Ok(r.clone());
        }
        let r = Self::compile(src)?;
        let mut cache = regex_cache().lock();
        if cache.len() >= REGEX_CACHE_MAX {
            cache.clear();
        }
        cache.insert(src.to_string(), r.clone());
        Ok(r)
    }

    fn compile(src: &str) -> crate::Result<Self> {
        let anchored = format!("^(?s:{src})$");
        let re = regex::Regex::new(&anchored).map_err(|e| {
            crate::Error::InvalidArgument(format!("invalid regular expression {src:?}: {e}"))
        })?;
        let kind = if src == ".*" {
            FastKind::Any
        } else if src == ".+" {
            FastKind::NonEmpty
        } else if !src.contains(META) {
            FastKind::Set(Arc::new(vec![src.to_string()]))
        } else if let Some(p) = src.strip_suffix(".*").filter(|p| !p.contains(META)) {
            FastKind::Prefix(Arc::from(p))
        } else if src.contains('|') && src.split('|').all(|alt| !alt.contains(META)) {
            FastKind::Set(Arc::new(src.split('|').map(str::to_string).collect()))
        } else {
            FastKind::Regex(Arc::new(re))
        };
        Ok(FastRegex { kind })
    }

    fn is_match(&self, v: &str) -> bool {
        match &self.kind {
            FastKind::Any => true,
            FastKind::NonEmpty => !v.is_empty(),
            FastKind::Set(s) => s.iter().any(|x| x == v),
            FastKind::Prefix(p) => v.starts_with(&**p),
            FastKind::Regex(r) => r.is_match(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: MatchType, v: &str) -> Matcher {
        Matcher::new(kind, "foo", v).unwrap()
    }

    fn streamed_hash(ls: &Labels) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for l in ls.iter() {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    #[test]
    fn hash_one_pass_equals_streamed_for_small_and_large_sets() {
        let small = Labels::from_pairs(&[("__name__", "up"), ("job", "node")]);
        assert_eq!(small.hash(), streamed_hash(&small));
        let long = "x".repeat(700);
        let large = Labels::from_pairs(&[("a", long.as_str()), ("b", long.as_str())]);
        assert_eq!(large.hash(), streamed_hash(&large));
        assert_ne!(small.hash(), large.hash());
        // Exactly at the buffer size and one past it.
        for extra in [0usize, 1] {
            let v = "v".repeat(1024 - 4 - 2 + extra);
            let ls = Labels::from_pairs(&[("ab", v.as_str())]);
            assert_eq!(ls.hash(), streamed_hash(&ls));
        }
        assert_eq!(
            hash_pairs([("__name__", "up"), ("job", "node")].into_iter()),
            small.hash()
        );
    }

    #[test]
    fn assign_sorted_replaces_and_reuses() {
        let mut ls = Labels::from_pairs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        ls.assign_sorted([("__name__", "up"), ("job", "node")]);
        assert_eq!(
            ls,
            Labels::from_pairs(&[("__name__", "up"), ("job", "node")])
        );
        ls.assign_sorted([("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
        assert_eq!(ls.len(), 4);
        assert_eq!(ls.get("d"), Some("4"));
        ls.assign_sorted(std::iter::empty());
        assert!(ls.is_empty());
    }

    #[test]
    fn labels_sorted_and_deduped() {
        let ls = Labels::from_pairs(&[("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(ls.len(), 2);
        assert_eq!(ls.get("a"), Some("3"));
        assert_eq!(ls.to_string(), r#"{a="3", b="2"}"#);
        assert_eq!(ls.with("c", "x").get("c"), Some("x"));
        assert_eq!(ls.with("a", "").len(), 1);
    }

    #[test]
    fn hash_is_stable_and_order_independent() {
        let a = Labels::from_pairs(&[("a", "1"), ("b", "2")]);
        let b = Labels::from_pairs(&[("b", "2"), ("a", "1")]);
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), Labels::from_pairs(&[("a", "12")]).hash());
        assert_eq!(a.hash_for(&["a"]), Labels::from_pairs(&[("a", "1")]).hash());
    }

    #[test]
    fn regex_is_anchored_and_dotall() {
        assert!(m(MatchType::Regexp, "b.r").matches("bar"));
        assert!(!m(MatchType::Regexp, "b.r").matches("xbarx"));
        assert!(m(MatchType::Regexp, "a.b").matches("a\nb"));
        assert!(m(MatchType::Regexp, ".*").matches(""));
        assert!(!m(MatchType::Regexp, ".+").matches(""));
        assert!(m(MatchType::NotRegexp, "x|y").matches("z"));
        assert!(m(MatchType::Regexp, "x|yy").matches("yy"));
        assert!(!m(MatchType::Regexp, "x|yy").matches("y"));
        assert!(m(MatchType::Regexp, "ab.*").matches("abc"));
        assert!(!m(MatchType::Regexp, "ab.*").matches("a"));
        assert!(m(MatchType::Regexp, "(a|b)c").matches("bc"));
        assert!(Matcher::new(MatchType::Regexp, "foo", "(").is_err());
        assert_eq!(
            m(MatchType::Regexp, "a|b").set_matches().unwrap(),
            &["a", "b"]
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\nd\te"), r#""a\"b\\c\nd\te""#);
        assert_eq!(go_quote("日本"), "\"日本\"");
    }

    #[test]
    fn compiled_regexes_are_cached_and_shared() {
        let src = "cache_test_(a|b)+x?";
        let shared = |a: &Matcher, b: &Matcher| match (&a.re, &b.re) {
            (
                Some(FastRegex {
                    kind: FastKind::Regex(ra),
                }),
                Some(FastRegex {
                    kind: FastKind::Regex(rb),
                }),
            ) => Arc::ptr_eq(ra, rb),
            other => panic!("expected compiled regexes, got {other:?}"),
        };
        // A test running beside this one may empty the cache between the two builds; it
        // cannot do so every time.
        let (mut a, mut b) = (m(MatchType::Regexp, src), m(MatchType::NotRegexp, src));
        for _ in 0..5 {
            if shared(&a, &b) {
                break;
            }
            (a, b) = (m(MatchType::Regexp, src), m(MatchType::NotRegexp, src));
        }
        assert!(
            shared(&a, &b),
            "the second matcher did not reuse the cached regex"
        );
        assert!(a.matches("cache_test_abx") && !b.matches("cache_test_abx"));
        assert!(!a.matches("cache_test_") && b.matches("cache_test_"));
        // Invalid patterns fail every time (they are never cached).
        for _ in 0..2 {
            assert!(Matcher::new(MatchType::Regexp, "foo", "cache_test_(").is_err());
        }
    }

    #[test]
    fn regex_cache_stays_bounded_and_correct_past_its_size() {
        for i in 0..REGEX_CACHE_MAX + 10 {
            let v = format!("bound_{i}.x");
            let mm = m(MatchType::Regexp, &v);
            assert!(mm.matches(&format!("bound_{i}ax")));
            assert!(!mm.matches(&format!("bound_{i}a")));
        }
        assert!(regex_cache().lock().len() <= REGEX_CACHE_MAX);
        let again = m(MatchType::Regexp, "bound_0.x");
        assert!(again.matches("bound_0zx") && !again.matches("bound_1zx"));
    }
}
