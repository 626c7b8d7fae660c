//! Times for people ("in 29 days", "3 minutes ago") and for programs
//! (RFC 3339 in UTC), from Unix seconds. 0 means "never" on the bus.

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// `t` relative to `now`, rounded to the nearest whole unit: minutes,
/// hours, days up to 90 days (so "expires in 30 days" and "in 90 days"
/// read as the policy's choices do), then months, then years.
pub fn relative(now: i64, t: i64) -> String {
    if t == 0 {
        return "never".to_string();
    }
    let delta = t.saturating_sub(now);
    let secs = delta.unsigned_abs();
    if secs < MINUTE as u64 {
        return "just now".to_string();
    }
    let nearest = |unit: u64| (secs + unit / 2) / unit;
    let days = nearest(DAY as u64);
    let (n, unit) = if nearest(MINUTE as u64) < 60 {
        (nearest(MINUTE as u64), "minute")
    } else if nearest(HOUR as u64) < 24 {
        (nearest(HOUR as u64), "hour")
    } else if days <= 90 {
        (days, "day")
    } else if days < 335 {
        // A month is 30.44 days on average; 91 days is "3 months", and
        // 11 months stay months.
        ((days * 100 + 1_522) / 3_044, "month")
    } else {
        // A year is 365.25 days on average.
        (((days * 100 + 18_262) / 36_525).max(1), "year")
    };
    let plural = if n == 1 { "" } else { "s" };
    if delta > 0 {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(DAY);
    let secs = t.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / HOUR,
        secs % HOUR / MINUTE,
        secs % MINUTE
    )
}

/// `Some(rfc3339(t))`, or `None` for 0 ("never", "not yet").
pub fn rfc3339_opt(t: i64) -> Option<String> {
    (t != 0).then(|| rfc3339(t))
}

/// Proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's civil_from_days), exact for every i64 day count we can get.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the Unix epoch now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn never_and_just_now() {
        assert_eq!(relative(NOW, 0), "never");
        assert_eq!(relative(NOW, NOW), "just now");
        assert_eq!(relative(NOW, NOW - 59), "just now");
        assert_eq!(relative(NOW, NOW + 59), "just now");
    }

    #[test]
    fn past() {
        assert_eq!(relative(NOW, NOW - 60), "1 minute ago");
        assert_eq!(relative(NOW, NOW - 3 * 60 - 20), "3 minutes ago");
        assert_eq!(relative(NOW, NOW - 3 * 60 - 40), "4 minutes ago");
        assert_eq!(relative(NOW, NOW - 59 * 60 - 40), "1 hour ago");
        assert_eq!(relative(NOW, NOW - HOUR), "1 hour ago");
        assert_eq!(relative(NOW, NOW - 23 * HOUR - 59 * 60), "1 day ago");
        assert_eq!(relative(NOW, NOW - 23 * HOUR), "23 hours ago");
        assert_eq!(relative(NOW, NOW - DAY), "1 day ago");
        assert_eq!(relative(NOW, NOW - 59 * DAY), "59 days ago");
        assert_eq!(relative(NOW, NOW - 90 * DAY), "90 days ago");
        assert_eq!(relative(NOW, NOW - 91 * DAY), "3 months ago");
        assert_eq!(relative(NOW, NOW - 200 * DAY), "7 months ago");
        assert_eq!(relative(NOW, NOW - 334 * DAY), "11 months ago");
        assert_eq!(relative(NOW, NOW - 335 * DAY), "1 year ago");
        assert_eq!(relative(NOW, NOW - 364 * DAY), "1 year ago");
        assert_eq!(relative(NOW, NOW - 365 * DAY), "1 year ago");
        assert_eq!(relative(NOW, NOW - 3 * 365 * DAY), "3 years ago");
    }

    #[test]
    fn future() {
        assert_eq!(relative(NOW, NOW + 60), "in 1 minute");
        assert_eq!(relative(NOW, NOW + 2 * HOUR), "in 2 hours");
        // A key made a few seconds ago with a 7-day or 90-day expiry.
        assert_eq!(relative(NOW, NOW + 7 * DAY - 5), "in 7 days");
        assert_eq!(relative(NOW, NOW + 30 * DAY - 5), "in 30 days");
        assert_eq!(relative(NOW, NOW + 30 * DAY), "in 30 days");
        assert_eq!(relative(NOW, NOW + 90 * DAY - 5), "in 90 days");
        assert_eq!(relative(NOW, NOW + 90 * DAY), "in 90 days");
        assert_eq!(relative(NOW, NOW + 365 * DAY - 5), "in 1 year");
        assert_eq!(relative(NOW, NOW + 800 * DAY), "in 2 years");
    }

    #[test]
    fn extremes_do_not_overflow() {
        assert!(relative(i64::MAX, i64::MIN).ends_with("years ago"));
        assert!(relative(i64::MIN, i64::MAX).starts_with("in "));
        assert!(rfc3339(i64::MAX).ends_with('Z'));
        assert!(rfc3339(i64::MIN).ends_with('Z'));
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(NOW), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_opt(0), None);
        assert_eq!(rfc3339_opt(60).as_deref(), Some("1970-01-01T00:01:00Z"));
    }

    fn days_in_month(y: i64, m: u32) -> u32 {
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    #[test]
    fn rfc3339_walks_every_day_of_a_leap_cycle() {
        // Consecutive days must give consecutive, valid dates.
        let mut prev = civil_from_days(-1);
        for day in 0..(400 * 366) {
            let cur = civil_from_days(day);
            let (y, m, d) = prev;
            let next_day = (y, m, d + 1);
            let next_month = (y, m + 1, 1);
            let next_year = (y + 1, 1, 1);
            let month_ended = d == days_in_month(y, m);
            assert!(
                (!month_ended && cur == next_day)
                    || (month_ended && m < 12 && cur == next_month)
                    || (month_ended && m == 12 && cur == next_year),
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
    }

    #[test]
    fn now_is_the_clocks() {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now() - clock).abs() <= 2, "{} vs {clock}", now());
    }
}
