//! Durations as people write them in configuration and on the command
//! line: `90s`, `30m`, `12h`, `7d`.

/// Parses `N` followed by one of `s`, `m`, `h`, `d` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' needs a unit: s, m, h or d (e.g. 30m)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 30m, 12h or 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("'{text}': unknown unit '{unit}', use s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|s| *s <= 100 * 365 * 86400)
        .ok_or_else(|| format!("'{text}' is too long"))
}

/// Writes seconds back in the largest unit that divides them exactly.
pub fn format_duration(secs: u64) -> String {
    for (unit, scale) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs.is_multiple_of(scale) {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("12h"), Ok(43200));
        assert_eq!(parse_duration("7d"), Ok(604800));
        // The longest accepted: a hundred years.
        assert_eq!(parse_duration("36500d"), Ok(36500 * 86400));
    }

    #[test]
    fn refuses_junk() {
        for bad in [
            "",
            "m",
            "30",
            "30x",
            "-5m",
            "1.5h",
            "99999999999999999999d",
            "36501d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in [0, 59, 60, 3600, 5400, 86400, 43200] {
            assert_eq!(parse_duration(&format_duration(s)), Ok(s));
        }
        assert_eq!(format_duration(1800), "30m");
    }
}
