//! The server side of D-Bus authentication on the PAM socket: EXTERNAL
//! only, and only for the uid the kernel reports for the peer. A plain
//! state machine over lines, so every answer is unit-tested without a
//! socket.

/// What to do after a line from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this line (with `\r\n`) and read the next.
    Reply(String),
    /// The client said BEGIN after a successful AUTH: messages follow.
    Begin,
    /// Close the connection: nothing more to talk about.
    Close,
}

/// Longest line a client may send; ours are about 30 bytes.
pub const MAX_LINE: usize = 256;
/// Lines a client may send before it must have begun.
pub const MAX_LINES: usize = 8;

#[derive(Debug)]
pub struct Handshake {
    peer_uid: u32,
    guid: String,
    authenticated: bool,
    /// `AUTH EXTERNAL` came without an identity: the next line is DATA.
    waiting_for_data: bool,
}

impl Handshake {
    pub fn new(peer_uid: u32, guid: String) -> Handshake {
        Handshake {
            peer_uid,
            guid,
            authenticated: false,
            waiting_for_data: false,
        }
    }

    /// Answers one line (without its `\r\n`).
    pub fn answer(&mut self, line: &str) -> Step {
        let mut words = line.split(' ');
        let command = words.next().unwrap_or_default();
        match (command, self.authenticated) {
            ("AUTH", false) => match (words.next(), words.next(), words.next()) {
                (Some("EXTERNAL"), Some(identity), None) => self.identify(identity),
                (Some("EXTERNAL"), None, None) => {
                    self.waiting_for_data = true;
                    Step::Reply("DATA".into())
                }
                _ => Step::Reply("REJECTED EXTERNAL".into()),
            },
            ("DATA", false) if self.waiting_for_data => {
                self.waiting_for_data = false;
                match (words.next(), words.next()) {
                    // An empty DATA: "use what the socket says".
                    (None, None) | (Some(""), None) => self.accept(),
                    (Some(identity), None) => self.identify(identity),
                    _ => Step::Reply("REJECTED EXTERNAL".into()),
                }
            }
            ("CANCEL", false) => {
                self.waiting_for_data = false;
                Step::Reply("REJECTED EXTERNAL".into())
            }
            // No descriptors travel on this socket.
            ("NEGOTIATE_UNIX_FD", true) => Step::Reply("ERROR no file descriptors here".into()),
            ("BEGIN", true) => Step::Begin,
            ("BEGIN", false) => Step::Close,
            _ => Step::Reply("ERROR".into()),
        }
    }

    /// EXTERNAL's identity is the uid in decimal, hex-encoded; it must be
    /// the peer's own.
    fn identify(&mut self, hex: &str) -> Step {
        match decode_uid(hex) {
            Some(uid) if uid == self.peer_uid => self.accept(),
            _ => Step::Reply("REJECTED EXTERNAL".into()),
        }
    }

    fn accept(&mut self) -> Step {
        self.authenticated = true;
        Step::Reply(format!("OK {}", self.guid))
    }
}

fn decode_uid(hex: &str) -> Option<u32> {
    if hex.is_empty() || hex.len() > 20 || !hex.len().is_multiple_of(2) {
        return None;
    }
    let digits: Option<String> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(hex.get(i..i + 2)?, 16)
                .ok()
                .map(char::from)
        })
        .collect();
    let digits = digits?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A fresh server GUID: 32 hex digits.
pub fn new_guid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs() -> Handshake {
        Handshake::new(1000, "0123456789abcdef0123456789abcdef".into())
    }

    #[test]
    fn the_peers_own_uid_is_accepted_and_begin_ends_it() {
        let mut h = hs();
        // "1000" as hex of its ASCII digits.
        assert_eq!(
            h.answer("AUTH EXTERNAL 31303030"),
            Step::Reply("OK 0123456789abcdef0123456789abcdef".into())
        );
        assert_eq!(
            h.answer("NEGOTIATE_UNIX_FD"),
            Step::Reply("ERROR no file descriptors here".into())
        );
        assert_eq!(h.answer("BEGIN"), Step::Begin);
    }

    #[test]
    fn another_uid_or_mechanism_is_rejected() {
        let mut h = hs();
        assert_eq!(
            h.answer("AUTH EXTERNAL 30"),
            Step::Reply("REJECTED EXTERNAL".into())
        );
        assert_eq!(
            h.answer("AUTH EXTERNAL 3x"),
            Step::Reply("REJECTED EXTERNAL".into())
        );
        assert_eq!(
            h.answer("AUTH EXTERNAL 3130303"),
            Step::Reply("REJECTED EXTERNAL".into())
        );
        assert_eq!(
            h.answer("AUTH DBUS_COOKIE_SHA1 31"),
            Step::Reply("REJECTED EXTERNAL".into())
        );
        assert_eq!(
            h.answer("AUTH ANONYMOUS"),
            Step::Reply("REJECTED EXTERNAL".into())
        );
        assert_eq!(h.answer("AUTH"), Step::Reply("REJECTED EXTERNAL".into()));
        assert_eq!(h.answer("NEGOTIATE_UNIX_FD"), Step::Reply("ERROR".into()));
        assert_eq!(h.answer("BEGIN"), Step::Close, "BEGIN before OK");
    }

    #[test]
    fn external_without_identity_takes_it_from_data() {
        let mut h = hs();
        assert_eq!(h.answer("AUTH EXTERNAL"), Step::Reply("DATA".into()));
        assert!(matches!(h.answer("DATA"), Step::Reply(ok) if ok.starts_with("OK ")));
        let mut h = hs();
        h.answer("AUTH EXTERNAL");
        assert!(matches!(h.answer("DATA 31303030"), Step::Reply(ok) if ok.starts_with("OK ")));
        let mut h = hs();
        h.answer("AUTH EXTERNAL");
        assert_eq!(h.answer("DATA 30"), Step::Reply("REJECTED EXTERNAL".into()));
        assert_eq!(
            h.answer("DATA"),
            Step::Reply("ERROR".into()),
            "DATA out of turn"
        );
    }

    #[test]
    fn guids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_guid(), new_guid());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
