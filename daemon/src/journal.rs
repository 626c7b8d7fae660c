//! The audit line as a journal entry, in journald's native protocol
//! (systemd.io/JOURNAL_NATIVE_PROTOCOL): one datagram of `NAME=value`
//! fields, so that `journalctl MESSAGE_ID=... APIKEY_USER=alice` finds
//! them. MESSAGE is the same text syslog gets; every value is the one the
//! line already escaped and capped (S11), never a token.

/// Where journald takes native entries.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// One fixed 128-bit id per event, as journald's catalog expects: stable
/// across releases, so alerts and saved searches keep working.
pub const MESSAGE_IDS: &[(&str, &str)] = &[
    ("verify", "ba76703ea36e42cfb72dec6e9d31965e"),
    ("verify-summary", "070dc72152994e12ba93bacf29552b06"),
    ("refusal-summary", "10844c1429e9495ea724ca12fd8dd8ce"),
    ("account-check", "7704d4283a954b5a8b4855b82ada236c"),
    ("generate", "2340e3b71af34f70aba3e8b2f7e81029"),
    ("rotate", "829f32778eed4d21935b084efc928ac2"),
    ("revoke", "527f57c32428493d9589b3eea6fa1711"),
    ("revoke-by-token", "11ae5bb769274bc4b7cabc7fdf495dec"),
    ("inspect-token", "32467fd547504caeb403791411d24c3e"),
    ("session-key", "b932b906242d43c1896b3df29f613910"),
    ("session-key-end", "0391f07e05e241ff80e53d7e1ece72e1"),
    ("session-open", "34ff350a3b9c4db9a6776bd253373384"),
    ("session-close", "9663f37386614434a8944fed687cdb85"),
    ("settings", "6198bef70d704fe68290609b1e4ffecf"),
    ("backup", "14d2873b8d3447f3ba20a849667104fa"),
    ("prune", "afe08106662e4fedb6fa2012fb5c5ae8"),
    ("store-failing", "c9ea1676b5354569ad2c2ef7f942c700"),
    ("store-recovered", "79880bff1c1e4accbe9eb97bf5e8ad96"),
    ("logind-signal", "6175964d019046b7944d61a6a779f860"),
    ("key-expiring", "4c4fb44dcba146a0b3429ac76f7dc6c2"),
];

/// The id of an event this table does not name (none should exist; a
/// test checks the daemon's sources).
pub const OTHER_EVENT_ID: &str = "e2b1c9a06d3f4c5a8f0e7d6c5b4a3921";

pub fn message_id(event: &str) -> &'static str {
    MESSAGE_IDS
        .iter()
        .find(|(e, _)| *e == event)
        .map_or(OTHER_EVENT_ID, |(_, id)| id)
}

/// The journal field of a line's field: `APIKEY_` and the name in capitals
/// (`key` is `APIKEY_KEY_ID`, the name operators know it by).
pub fn field_name(name: &str) -> String {
    let name = match name {
        "key" => "key_id",
        other => other,
    };
    let mut out = String::with_capacity(7 + name.len());
    out.push_str("APIKEY_");
    for c in name.chars().take(64 - 7) {
        out.push(match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '_',
        });
    }
    out
}

/// Appends one field: `NAME=value\n`, or for a value with a newline the
/// binary form (`NAME\n`, its length as 64-bit little-endian, the value,
/// `\n`), which journald requires for those.
pub fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The entry: MESSAGE (the syslog text), PRIORITY, the syslog facility
/// and identifier (so `journalctl -t apikeyd` and authpriv filters keep
/// working), MESSAGE_ID, APIKEY_EVENT, then each of the line's fields.
pub fn entry(text: &str, warning: bool, event: &str, fields: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + text.len() * 2);
    push_field(&mut out, "MESSAGE", text.as_bytes());
    push_field(&mut out, "PRIORITY", if warning { b"4" } else { b"6" });
    push_field(&mut out, "SYSLOG_FACILITY", b"10");
    push_field(&mut out, "SYSLOG_IDENTIFIER", b"apikeyd");
    push_field(&mut out, "MESSAGE_ID", message_id(event).as_bytes());
    push_field(&mut out, "APIKEY_EVENT", event.as_bytes());
    for (name, value) in fields {
        push_field(&mut out, &field_name(name), value.as_bytes());
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The native protocol read back, as journald parses it.
    pub(crate) fn parse(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = Vec::new();
        while !data.is_empty() {
            let end = data.iter().position(|b| *b == b'\n' || *b == b'=').unwrap();
            let name = String::from_utf8(data[..end].to_vec()).unwrap();
            if data[end] == b'=' {
                let rest = &data[end + 1..];
                let nl = rest.iter().position(|b| *b == b'\n').unwrap();
                fields.push((name, rest[..nl].to_vec()));
                data = &rest[nl + 1..];
            } else {
                let len = u64::from_le_bytes(data[end + 1..end + 9].try_into().unwrap()) as usize;
                let value = &data[end + 9..end + 9 + len];
                assert_eq!(data[end + 9 + len], b'\n');
                fields.push((name, value.to_vec()));
                data = &data[end + 10 + len..];
            }
        }
        fields
    }

    #[test]
    fn an_entry_carries_the_text_the_id_and_each_field() {
        let fields = vec![
            ("user".to_string(), "alice".to_string()),
            ("key".to_string(), "4fQk9xT2mB7a".to_string()),
            ("caller_uid".to_string(), "0".to_string()),
        ];
        let e = entry("event=verify user=\"alice\"", true, "verify", &fields);
        let got = parse(&e);
        let get = |n: &str| {
            got.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(
            get("MESSAGE").as_deref(),
            Some("event=verify user=\"alice\"")
        );
        assert_eq!(get("PRIORITY").as_deref(), Some("4"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("apikeyd"));
        assert_eq!(get("SYSLOG_FACILITY").as_deref(), Some("10"));
        assert_eq!(
            get("MESSAGE_ID").as_deref(),
            Some("ba76703ea36e42cfb72dec6e9d31965e")
        );
        assert_eq!(get("APIKEY_EVENT").as_deref(), Some("verify"));
        assert_eq!(get("APIKEY_USER").as_deref(), Some("alice"));
        assert_eq!(get("APIKEY_KEY_ID").as_deref(), Some("4fQk9xT2mB7a"));
        assert_eq!(get("APIKEY_CALLER_UID").as_deref(), Some("0"));
    }

    #[test]
    fn a_value_with_a_newline_takes_the_binary_form() {
        let mut out = Vec::new();
        push_field(&mut out, "APIKEY_REASON", b"two\nlines");
        assert_eq!(&out[..14], b"APIKEY_REASON\n");
        assert_eq!(&out[14..22], &9u64.to_le_bytes());
        assert_eq!(&out[22..], b"two\nlines\n");
        assert_eq!(
            parse(&out),
            vec![("APIKEY_REASON".to_string(), b"two\nlines".to_vec())]
        );
    }

    #[test]
    fn field_names_are_what_journald_accepts() {
        assert_eq!(field_name("rhost"), "APIKEY_RHOST");
        assert_eq!(field_name("key"), "APIKEY_KEY_ID");
        assert_eq!(field_name("key_from"), "APIKEY_KEY_FROM");
        assert_eq!(field_name("odd-name.é"), "APIKEY_ODD_NAME__");
        assert!(field_name(&"x".repeat(100)).len() <= 64);
        for (event, id) in MESSAGE_IDS {
            assert_eq!(id.len(), 32, "{event}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{event}");
        }
        let mut ids: Vec<&str> = MESSAGE_IDS.iter().map(|(_, id)| *id).collect();
        ids.push(OTHER_EVENT_ID);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), MESSAGE_IDS.len() + 1, "ids are unique");
    }

    /// Every event the daemon logs has an id of its own.
    #[test]
    fn every_event_in_the_sources_has_a_message_id() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut events = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.to_string_lossy().contains("test") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // What the daemon logs, not what its unit tests do.
                let text = text.split("#[cfg(test)]").next().unwrap();
                for opener in ["Line::new(\"", "holder_line(\""] {
                    for part in text.split(opener).skip(1) {
                        events.push(part.split('"').next().unwrap().to_string());
                    }
                }
            }
        }
        assert!(events.len() > 15, "{events:?}");
        for e in events {
            assert_ne!(
                message_id(&e),
                OTHER_EVENT_ID,
                "event {e} has no MESSAGE_ID"
            );
        }
    }
}
