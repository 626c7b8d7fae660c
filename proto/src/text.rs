//! Text from outside made safe to log or show (S11), for the daemon, the
//! module and the command line alike: one list of the characters that
//! change how a line reads, one escape, and key masking for logs.

use std::borrow::Cow;
use std::fmt::Write;

use crate::token::{ALIAS_PREFIX, PREFIX};

/// Characters that print nothing yet change how the text around them is
/// shown: every Unicode format character (general category Cf, Unicode
/// 15.1), the bidirectional marks and overrides among them (U+061C,
/// U+200E/F, U+202A..E, U+2066..9), and the line and paragraph separators
/// (Zl, Zp). Controls (Cc) are handled apart.
pub fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x2028..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F)
}

/// `text` capped at `max_chars` characters ("..." after), with the
/// backslash doubled, control characters as `\xNN`, format characters as
/// `\u{NNNN}`, and with `quotes` the double quote as `\"` (log fields are
/// quoted; a screen does not need it).
pub fn escape(text: &str, max_chars: usize, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)) + 8);
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push_str("...");
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '"' if quotes => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_format_char(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// What a masked key reads as in a log.
pub const MASKED_KEY: &str = "(an API key)";

/// Every run that starts like a key (`apikey|` or `apikey_`, then base62
/// characters) replaced by [`MASKED_KEY`], wherever it stands: a key
/// pasted into a user name, a remote host or a key's name must not reach
/// a log, whole or with a typo (S11).
pub fn mask_keys(text: &str) -> Cow<'_, str> {
    let starts = |s: &str| s.starts_with(PREFIX) || s.starts_with(ALIAS_PREFIX);
    if !text
        .match_indices("apikey")
        .any(|(i, _)| starts(&text[i..]))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest
        .match_indices("apikey")
        .map(|(i, _)| i)
        .find(|&i| starts(&rest[i..]))
    {
        out.push_str(&rest[..i]);
        let after = &rest[i + PREFIX.len()..];
        let run = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str(MASKED_KEY);
        rest = &after[run..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unicode 15.1's Cf, Zl and Zp characters, from UnicodeData.txt.
    const FORMAT_AND_SEPARATORS: &[u32] = &[
        0x00AD, 0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x061C, 0x06DD, 0x070F, 0x0890,
        0x0891, 0x08E2, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A,
        0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0x2066, 0x2067,
        0x2068, 0x2069, 0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF, 0xFFF9, 0xFFFA,
        0xFFFB, 0x110BD, 0x110CD, 0x13430, 0x1343F, 0x1BCA0, 0x1BCA3, 0x1D173, 0x1D17A, 0xE0001,
        0xE0020, 0xE007F,
    ];

    #[test]
    fn every_format_bidi_and_separator_character_is_escaped() {
        for &cp in FORMAT_AND_SEPARATORS {
            let c = char::from_u32(cp).unwrap();
            let text = format!("a{c}b");
            for quotes in [true, false] {
                let out = escape(&text, 64, quotes);
                assert_eq!(out, format!("a\\u{{{cp:04x}}}b"), "U+{cp:04X}");
            }
        }
        // Ranges in between too (U+2066..U+206F, tags).
        for cp in (0x2066..=0x206F).chain(0xE0020..=0xE007F) {
            assert!(is_format_char(char::from_u32(cp).unwrap()), "U+{cp:04X}");
        }
        for c in ['a', 'é', '中', ' ', '\u{00a0}', '😀'] {
            assert!(!is_format_char(c), "{c:?}");
        }
    }

    #[test]
    fn controls_backslashes_quotes_and_length() {
        assert_eq!(
            escape("a\nb\x1b[2J\u{9b}", 64, true),
            "a\\x0ab\\x1b[2J\\x9b"
        );
        assert_eq!(escape("x\\\"y", 64, true), "x\\\\\\\"y");
        assert_eq!(escape("x\\\"y", 64, false), "x\\\\\"y");
        assert_eq!(escape("abcdef", 3, true), "abc...");
        assert_eq!(escape("abc", 3, true), "abc");
    }

    #[test]
    fn keys_are_masked_wherever_they_stand_and_nothing_else_is() {
        let key = "apikey|b5NxQeZ0aX1yL2kM3nO4pQ5rS6tU7vW8xY9zA0bC1dE2fG3hI4jK5l";
        assert_eq!(mask_keys("alice"), "alice");
        assert!(matches!(mask_keys("alice"), Cow::Borrowed(_)));
        assert_eq!(mask_keys(key), MASKED_KEY);
        assert_eq!(mask_keys(&format!("x {key}")), format!("x {MASKED_KEY}"));
        // A typo, the alias spelling, two keys, a key then more text.
        assert_eq!(mask_keys("apikey|abc"), MASKED_KEY);
        assert_eq!(
            mask_keys("apikey_abc-apikey|Zz9 end"),
            format!("{MASKED_KEY}-{MASKED_KEY} end")
        );
        assert_eq!(mask_keys("my apikey notes"), "my apikey notes");
        assert_eq!(mask_keys("apikey|"), MASKED_KEY);
        assert_eq!(mask_keys("apikeyapikey|q"), format!("apikey{MASKED_KEY}"));
        assert!(!crate::services::printable(&format!("user=\"x {key}\""), 200).contains("b5Nx"));
    }
}
