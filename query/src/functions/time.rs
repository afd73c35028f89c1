//! Calendar functions of a Unix time in seconds, in UTC: `day_of_month`, `day_of_week`,
//! `day_of_year`, `days_in_month`, `hour`, `minute`, `month`, `year`.
//!
//! Prometheus truncates the sample value to whole seconds (`time.Unix(int64(v), 0)`), so
//! fractions are dropped towards zero. Dates come from the proleptic Gregorian calendar
//! through the days-since-epoch to civil-date conversion, with no time-zone database.

/// Whether `name` is a calendar function.
pub fn is_time_function(name: &str) -> bool {
    matches!(
        name,
        "day_of_month"
            | "day_of_week"
            | "day_of_year"
            | "days_in_month"
            | "hour"
            | "minute"
            | "month"
            | "year"
    )
}

/// Computes calendar function `name` of Unix time `t_seconds`. Without an argument the
/// engine passes the evaluation time in seconds. Unknown names return NaN.
pub fn eval(name: &str, t_seconds: f64) -> f64 {
    let secs = go_float_to_i64(t_seconds);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    match name {
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64, // 1970-01-01 was a Thursday
        "day_of_month" => civil_from_days(days).2 as f64,
        "month" => civil_from_days(days).1 as f64,
        "year" => civil_from_days(days).0 as f64,
        "day_of_year" => {
            let (y, m, d) = civil_from_days(days);
            (days_before_month(y, m) + d) as f64
        }
        "days_in_month" => {
            let (y, m, _) = civil_from_days(days);
            days_in_month(y, m) as f64
        }
        _ => f64::NAN,
    }
}

/// Go's float-to-int64 conversion on amd64: truncation toward zero; NaN and values out of
/// range give `i64::MIN`.
fn go_float_to_i64(v: f64) -> i64 {
    // 2^63 as f64; i64 covers [-2^63, 2^63).
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() || !(-LIMIT..LIMIT).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Whether `y` is a Gregorian leap year.
pub fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Number of days of month `m` (1–12) of year `y`.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_before_month(y: i64, m: u32) -> u32 {
    (1..m).map(|mm| days_in_month(y, mm)).sum()
}

/// Civil date `(year, month 1–12, day 1–31)` of `days` since 1970-01-01 (may be negative).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to an era-based calendar starting on 0000-03-01 (400-year eras of 146097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch() {
        assert_eq!(eval("year", 0.0), 1970.0);
        assert_eq!(eval("month", 0.0), 1.0);
        assert_eq!(eval("day_of_month", 0.0), 1.0);
        assert_eq!(eval("day_of_year", 0.0), 1.0);
        assert_eq!(eval("day_of_week", 0.0), 4.0);
        assert_eq!(eval("hour", 0.0), 0.0);
        assert_eq!(eval("minute", 0.0), 0.0);
        assert_eq!(eval("days_in_month", 0.0), 31.0);
    }

    #[test]
    fn values_from_functions_test() {
        let t = 1136239445.0; // 2006-01-02T22:04:05Z, a Monday
        assert_eq!(eval("year", t), 2006.0);
        assert_eq!(eval("month", t), 1.0);
        assert_eq!(eval("day_of_month", t), 2.0);
        assert_eq!(eval("day_of_year", t), 2.0);
        assert_eq!(eval("day_of_week", t), 1.0);
        assert_eq!(eval("hour", t), 22.0);
        assert_eq!(eval("minute", t), 4.0);
        assert_eq!(eval("year", 1230767999.0), 2008.0);
        assert_eq!(eval("year", 1230768000.0), 2009.0);
        assert_eq!(eval("month", 1456790399.0), 2.0);
        assert_eq!(eval("day_of_month", 1456790399.0), 29.0);
        assert_eq!(eval("month", 1456790400.0), 3.0);
        assert_eq!(eval("day_of_month", 1456790400.0), 1.0);
        assert_eq!(eval("day_of_year", 1483191420.0), 366.0);
        assert_eq!(eval("day_of_year", 1672493820.0), 365.0);
        assert_eq!(eval("days_in_month", 1454284800.0), 29.0);
        assert_eq!(eval("days_in_month", 1485907200.0), 28.0);
    }

    #[test]
    fn negative_and_fractional_times() {
        // 1969-12-31T23:59:59Z, a Wednesday; -0.5 truncates to 0.
        assert_eq!(eval("year", -1.0), 1969.0);
        assert_eq!(eval("day_of_month", -1.0), 31.0);
        assert_eq!(eval("hour", -1.0), 23.0);
        assert_eq!(eval("day_of_week", -1.0), 3.0);
        assert_eq!(eval("year", -0.5), 1970.0);
        assert_eq!(eval("year", 951782400.0), 2000.0); // 2000-02-29
        assert_eq!(eval("day_of_month", 951782400.0), 29.0);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11016), (2000, 2, 29));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }
}
