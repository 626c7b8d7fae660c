//! What apikeyd reads from a client of its PAM socket, which anyone on
//! the host may connect to: the authentication lines, then messages that
//! are decoded, routed and checked against the method's arguments.
//! Input: lines up to the first "BEGIN\r\n", the rest one message.

use apikeyd::pam_socket::auth::{Handshake, Step};
use apikeyd::pam_socket::connection::{arguments, Method};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let split = data
            .windows(7)
            .position(|w| w == b"BEGIN\r\n")
            .map_or(data.len(), |i| i + 7);
        let (lines, message) = data.split_at(split);
        let mut handshake = Handshake::new(1000, "0".repeat(32));
        for line in lines.split(|b| *b == b'\n') {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            if let Step::Begin | Step::Close = handshake.answer(text.trim_end_matches('\r')) {
                break;
            }
        }
        if let Ok(mut msg) = apikey_proto::wire::decode(message) {
            if let Ok(method) = Method::of(&msg) {
                let _ = arguments(method, &mut msg);
            }
        }
    });
}
