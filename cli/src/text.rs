//! Making text from the daemon or from other users safe to put on a
//! screen (S11): a hostile key name or daemon message must not move the
//! cursor, change colours, or make a line read differently from what it
//! holds.

use std::fmt::Write;

/// Cap for one table cell or one field inside a sentence.
pub const FIELD: usize = 64;
/// Cap for a whole sentence from the daemon.
pub const SENTENCE: usize = 512;

/// Text capped at `max_chars` characters and escaped for a screen:
/// proto's `printable` rule (backslash doubled, control characters as
/// `\xNN`) plus escapes for characters it lets through that still change
/// how the line around them is shown: bidirectional overrides (which can
/// make text read backwards), zero-width characters and the Unicode line
/// separators. Unlike `printable` it leaves double quotes alone: they do
/// nothing on a screen, and the daemon's sentences use them.
pub fn safe(text: &str, max_chars: usize) -> String {
    apikey_proto::text::escape(text, max_chars, false)
}

/// JSON text with every character a terminal might act on written as a
/// `\u` escape. serde_json escapes only U+0000..U+001F, which leaves DEL,
/// the C1 controls (U+009B is CSI on some terminals) and the invisible
/// characters above. Such characters can only occur inside JSON strings,
/// where the escape means the same character, so the data is unchanged.
pub fn json_safe(json: &str) -> String {
    if !json.chars().any(needs_json_escape) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if needs_json_escape(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_json_escape(c: char) -> bool {
    c.is_control() || apikey_proto::text::is_format_char(c)
}

/// Width of text on screen, for aligning columns. Escaped text is ASCII
/// except for ordinary printable characters, each counted as one column.
pub fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi() {
        assert_eq!(safe("ok", FIELD), "ok");
        assert_eq!(safe("a\u{1b}[31mb", FIELD), "a\\x1b[31mb");
        assert_eq!(safe("abc\u{202e}fed", FIELD), "abc\\u{202e}fed");
        assert_eq!(safe("x\u{200b}y", FIELD), "x\\u{200b}y");
        assert_eq!(safe("\u{9b}2J", FIELD), "\\x9b2J");
        assert_eq!(safe(&"a".repeat(100), 4), "aaaa...");
        assert_eq!(safe("Grüße", FIELD), "Grüße");
    }

    #[test]
    fn agrees_with_printable_except_for_quotes() {
        use apikey_proto::services::printable;
        for sample in [
            "plain",
            "tab\there",
            "back\\slash",
            "\u{1b}[0m",
            "\u{85}x",
            "ü",
            "",
        ] {
            assert_eq!(safe(sample, 5), printable(sample, 5), "{sample:?}");
        }
        assert_eq!(safe("key \"ci\" not found", FIELD), "key \"ci\" not found");
    }

    #[test]
    fn json_stays_json() {
        let raw = serde_json::to_string(&"a\u{7f}b\u{9b}c\u{202e}d\u{1f600}\n").unwrap();
        let out = json_safe(&raw);
        assert!(out.is_ascii() || !out.chars().any(needs_json_escape));
        assert!(!out.contains('\u{7f}') && !out.contains('\u{9b}') && !out.contains('\u{202e}'));
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\u{7f}b\u{9b}c\u{202e}d\u{1f600}\n");
    }
}
