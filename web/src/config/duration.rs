//! Prometheus durations (`model.Duration`): `1y2w3d4h5m6s7ms`, units in that order, each at most
//! once, a `y` being 365 days; `0` alone is zero. Formatting gives the shortest such string, with
//! `y` and `w` used only when they divide the duration exactly, and `0s` for zero.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A non-negative duration with millisecond precision, written as Prometheus writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub u64);

impl PromDuration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        PromDuration(ms)
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        PromDuration(s * 1000)
    }

    /// The length in milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// As a `std::time::Duration`.
    pub fn as_std(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Parses a Prometheus duration string; the error names the bad input.
pub fn parse_duration(s: &str) -> Result<PromDuration, String> {
    if s == "0" {
        return Ok(PromDuration(0));
    }
    if s.is_empty() {
        return Err("empty duration string".to_string());
    }
    let bad = || format!("not a valid duration string: {s:?}");
    let b = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0; // index in UNITS the next unit may take at the earliest
    let mut total: u64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let n: u64 = s[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        if idx < next_unit {
            return Err(bad());
        }
        next_unit = idx + 1;
        let add = n
            .checked_mul(UNITS[idx].1)
            .ok_or_else(|| "duration out of range".to_string())?;
        total = total
            .checked_add(add)
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    // Go's time.Duration is an int64 of nanoseconds.
    if total > (i64::MAX as u64) / 1_000_000 {
        return Err("duration out of range".to_string());
    }
    Ok(PromDuration(total))
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (i, (unit, mult)) in UNITS.iter().enumerate() {
            let exact_only = i < 2;
            if exact_only && (ms / mult) * mult != ms {
                continue;
            }
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for PromDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s)
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_table() {
        let cases: &[(&str, u64, &str)] = &[
            ("0", 0, "0s"),
            ("0s", 0, "0s"),
            ("100ms", 100, "100ms"),
            ("1s", 1000, "1s"),
            ("1m30s", 90_000, "1m30s"),
            ("90s", 90_000, "1m30s"),
            ("1h", 3_600_000, "1h"),
            ("2d", 2 * 86_400_000, "2d"),
            ("1w", 7 * 86_400_000, "1w"),
            ("8d", 8 * 86_400_000, "8d"),
            ("1y", 365 * 86_400_000, "1y"),
            ("1h1m1s1ms", 3_661_001, "1h1m1s1ms"),
            ("14d", 14 * 86_400_000, "2w"),
        ];
        for (s, ms, back) in cases {
            let d = parse_duration(s).unwrap();
            assert_eq!(d.0, *ms, "{s}");
            assert_eq!(d.to_string(), *back, "{s}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for s in [
            "", "1", "1x", "s", "1s1m", "1m1m", "-1s", "1.5s", " 1s", "1S",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} accepted");
        }
    }
}
