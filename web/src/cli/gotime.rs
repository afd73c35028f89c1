//! Go-compatible formatting of durations, times and byte sizes, and Prometheus duration parsing,
//! so the tools print exactly what promtool prints.
//!
//! * [`go_duration`]: Go's `time.Duration.String()` (`1h59m45.001s`, `2h0m0s`, `1.5ms`, `0s`).
//! * [`go_time_utc`]: `time.Unix(ms/1000, 0).UTC().String()` (`2024-01-01 00:00:00 +0000 UTC`).
//! * [`base2_bytes`]: `units.Base2Bytes(n).String()` (`382KiB547B`, `1MiB`, `0B`).
//! * [`parse_prom_duration_ms`]: Prometheus durations (`2h`, `1d12h`, `90s`, `500ms`).

/// Go's `time.Duration(ns).String()`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let mut u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Sub-second: one unit with a fraction.
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let frac = frac_digits(u, prec);
        for _ in 0..prec {
            u /= 10;
        }
        out.push_str(&u.to_string());
        out.push_str(&frac);
        out.push_str(unit);
    } else {
        let frac = frac_digits(u, 9);
        let secs = u / 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            out.push_str(&format!("{h}h{m}m"));
        } else if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{s}{frac}s"));
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// The fraction `.ddd` of `v / 10^prec` with trailing zeros removed (empty when zero).
fn frac_digits(v: u64, prec: u32) -> String {
    if prec == 0 {
        return String::new();
    }
    let frac = v % 10u64.pow(prec);
    if frac == 0 {
        return String::new();
    }
    let s = format!("{frac:0width$}", width = prec as usize);
    format!(".{}", s.trim_end_matches('0'))
}

/// Days since 1970-01-01 to a civil (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `time.Unix(ms/1000, 0).UTC().String()` as promtool prints block times with `-r`.
pub fn go_time_utc(ms: i64) -> String {
    // Go's integer division truncates toward zero.
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// `units.Base2Bytes(n).String()`: every non-zero base-1024 component, largest first.
pub fn base2_bytes(n: i64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let mut parts: Vec<String> = Vec::new();
    let mut n = n;
    for (i, unit) in UNITS.iter().enumerate() {
        if n % 1024 != 0 || (i == 0 && n == 0) {
            let suffix = if i == 0 { "B" } else { "iB" };
            parts.push(format!("{}{unit}{suffix}", n % 1024));
        }
        n /= 1024;
        if n == 0 {
            break;
        }
    }
    parts.reverse();
    parts.concat()
}

/// Parses a Prometheus duration (`[Ny][Nw][Nd][Nh][Nm][Ns][Nms]`, units in that order, or `0`)
/// into milliseconds.
pub fn parse_prom_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bad = || format!("not a valid duration string: {s:?}");
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let idx = if rest.starts_with("ms") {
            6
        } else {
            UNITS
                .iter()
                .position(|(u, _)| rest.starts_with(u))
                .ok_or_else(bad)?
        };
        if idx < next_unit {
            return Err(bad());
        }
        next_unit = idx + 1;
        rest = &rest[UNITS[idx].0.len()..];
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(7_185_001 * 1_000_000), "1h59m45.001s");
        assert_eq!(go_duration(7_200_000 * 1_000_000), "2h0m0s");
        assert_eq!(go_duration(90 * 1_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(1_000), "1µs");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(-2_500_000_000), "-2.5s");
        assert_eq!(go_duration(26 * 3600 * 1_000_000_000), "26h0m0s");
    }

    #[test]
    fn times_like_go() {
        assert_eq!(
            go_time_utc(1_704_067_200_000),
            "2024-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time_utc(1_704_074_385_001),
            "2024-01-01 01:59:45 +0000 UTC"
        );
        assert_eq!(go_time_utc(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time_utc(951_782_400_000),
            "2000-02-29 00:00:00 +0000 UTC"
        );
        assert_eq!(go_time_utc(-86_400_000), "1969-12-31 00:00:00 +0000 UTC");
    }

    #[test]
    fn bytes_like_units() {
        assert_eq!(base2_bytes(391_715), "382KiB547B");
        assert_eq!(base2_bytes(0), "0B");
        assert_eq!(base2_bytes(1024), "1KiB");
        assert_eq!(base2_bytes(1024 * 1024 + 5), "1MiB5B");
        assert_eq!(base2_bytes(1023), "1023B");
    }

    #[test]
    fn prom_durations() {
        assert_eq!(parse_prom_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_prom_duration_ms("1d12h"), Ok(129_600_000));
        assert_eq!(parse_prom_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_prom_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_prom_duration_ms("1w"), Ok(604_800_000));
        assert_eq!(parse_prom_duration_ms("0"), Ok(0));
        assert!(parse_prom_duration_ms("1s1h").is_err());
        assert!(parse_prom_duration_ms("h").is_err());
        assert!(parse_prom_duration_ms("").is_err());
        assert!(parse_prom_duration_ms("5x").is_err());
    }
}
