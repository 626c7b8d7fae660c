//! Host names in a fleet, and the globs of them `--hosts` takes: one rule
//! for the daemon's configuration, its check of a new key and the command
//! line's usage errors.

/// A name a host may have in a fleet (`[fleet] host`): letters, digits,
/// `-`, `_` and `.`, 1 to 253 of them.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A host name or a glob of one (`*` and `?` besides).
pub fn is_host_pattern(pattern: &str) -> bool {
    is_host_name(&pattern.replace(['*', '?'], "x"))
}

/// What a refused pattern is told.
pub const HOST_PATTERN_RULE: &str =
    "is not a host name or a glob of one (letters, digits, '-', '_', '.', '*' and '?')";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_dns_like_and_bounded() {
        for ok in ["web-1", "db_2.example.org", "A", &"h".repeat(253)] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "web 1",
            "web/1",
            "é",
            "we\nb",
            "web-*",
            &"h".repeat(254),
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn patterns_add_star_and_question_mark() {
        for ok in ["web-*", "h?st", "*", "*.example.org", &"*".repeat(253)] {
            assert!(is_host_pattern(ok), "{ok}");
        }
        for bad in ["", "web[1]", "web 1", "web,1", &"*".repeat(254)] {
            assert!(!is_host_pattern(bad), "{bad:?}");
        }
    }
}
