//! The token parser and the text helpers every logged field goes through.

use apikey_proto::login_auth;
use apikey_proto::services::printable;
use apikey_proto::token::{is_key_shaped, Token};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let shaped = is_key_shaped(data);
        if let Ok(token) = Token::parse(data) {
            assert!(shaped, "a token that parses is key-shaped");
            // Both spellings parse to the same key.
            let again = Token::parse(token.alias().as_bytes()).expect("the alias parses");
            assert_eq!(again.hash(), token.hash());
        }
        let text = String::from_utf8_lossy(data);
        let shown = printable(&text, 64);
        assert!(
            !shown.chars().any(|c| c.is_control()),
            "printable let a control character through: {shown:?}"
        );
        let methods = login_auth::ssh_methods(&text);
        assert!(login_auth::is_valid(&methods), "{methods:?}");
    });
}
