//! The key format: `apikey|` + 40 base62 characters of OS randomness + 6
//! base62 characters encoding the CRC32 of those 40 (GitHub's token scheme).
//! `apikey_` is the same key with a shell-friendly prefix.
//!
//! The checksum lets every part reject typos and junk without a lookup; it
//! is not a security measure. What the store keeps is the SHA-256 of the
//! canonical (`apikey|`) spelling.

use rand::rngs::SysRng;
use rand::TryRng;
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

pub const PREFIX: &str = "apikey|";
pub const ALIAS_PREFIX: &str = "apikey_";
pub const SECRET_LEN: usize = 40;
pub const CHECK_LEN: usize = 6;
/// Length of a whole token, prefix included.
pub const TOKEN_LEN: usize = PREFIX.len() + SECRET_LEN + CHECK_LEN;
/// Length of a public key id.
pub const KEY_ID_LEN: usize = 12;
/// Length of a login-session handle: about 131 bits, so that a handle
/// cannot be guessed by a process that was not given it.
pub const SESSION_HANDLE_LEN: usize = 22;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a valid token. Deliberately coarse: callers refuse
/// all of these the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Does not start with `apikey|` or `apikey_`.
    NotKeyShaped,
    /// Key-shaped, but the length or alphabet is wrong.
    Malformed,
    /// Well-formed, but the checksum does not match (a typo or a forgery).
    BadChecksum,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::NotKeyShaped => "not an API key (it must start with apikey| or apikey_)",
            TokenError::Malformed => "malformed API key (wrong length or characters)",
            TokenError::BadChecksum => "API key checksum mismatch (mistyped or truncated)",
        })
    }
}

impl std::error::Error for TokenError {}

/// True when `input` starts with one of the two key prefixes. This is the
/// test the PAM module uses to decide whether a password is meant as a key.
pub fn is_key_shaped(input: &[u8]) -> bool {
    input.starts_with(PREFIX.as_bytes()) || input.starts_with(ALIAS_PREFIX.as_bytes())
}

/// A well-formed token in canonical spelling. The text is wiped from memory
/// when the value is dropped and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// A new random token from the operating system's CSPRNG.
    pub fn generate() -> Result<Token, rand::rngs::SysError> {
        let mut secret = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        secret.push_str(PREFIX);
        let body = random_base62(SECRET_LEN)?;
        secret.push_str(&body);
        secret.push_str(&checksum_chars(body.as_bytes()));
        Ok(Token(secret))
    }

    /// Parses either spelling; checks length, alphabet and checksum.
    pub fn parse(input: &[u8]) -> Result<Token, TokenError> {
        if !is_key_shaped(input) {
            return Err(TokenError::NotKeyShaped);
        }
        if input.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let rest = &input[PREFIX.len()..];
        if !rest.iter().all(u8::is_ascii_alphanumeric) {
            return Err(TokenError::Malformed);
        }
        let (body, check) = rest.split_at(SECRET_LEN);
        if checksum_chars(body).as_bytes() != check {
            return Err(TokenError::BadChecksum);
        }
        let mut canonical = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        canonical.push_str(PREFIX);
        // The alphabet check above makes this valid UTF-8.
        canonical.push_str(std::str::from_utf8(rest).map_err(|_| TokenError::Malformed)?);
        Ok(Token(canonical))
    }

    /// The canonical text, `apikey|...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same key with the `apikey_` prefix, for shells and environments.
    pub fn alias(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{ALIAS_PREFIX}{}", &self.0[PREFIX.len()..]))
    }

    /// What the store keeps: SHA-256 of the canonical text.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A new public key id: random, so it says nothing about the secret.
pub fn new_key_id() -> Result<String, rand::rngs::SysError> {
    Ok(random_base62(KEY_ID_LEN)?.to_string())
}

/// True for text that could be a key id (used to validate arguments).
pub fn is_key_id(text: &str) -> bool {
    text.len() == KEY_ID_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new handle for a registered login session, from the OS CSPRNG. It is
/// what lets only the PAM handle that opened a session close it.
pub fn new_session_handle() -> Result<String, rand::rngs::SysError> {
    Ok(random_base62(SESSION_HANDLE_LEN)?.to_string())
}

/// True for text that could be a session handle (used to validate arguments).
pub fn is_session_handle(text: &str) -> bool {
    text.len() == SESSION_HANDLE_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn checksum_chars(body: &[u8]) -> String {
    let mut n = crc32fast::hash(body) as u64;
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

/// Uniform base62 characters by rejection sampling of OS random bytes.
fn random_base62(len: usize) -> Result<Zeroizing<String>, rand::rngs::SysError> {
    let mut out = Zeroizing::new(String::with_capacity(len));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < len {
        SysRng.try_fill_bytes(&mut buf[..])?;
        for &b in buf.iter() {
            // 248 = 4 * 62: bytes at or above it would bias the result.
            if b < 248 && out.len() < len {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_token_has_the_documented_shape() {
        let t = Token::generate().unwrap();
        let s = t.as_str();
        assert!(s.starts_with("apikey|"));
        assert_eq!(s.len(), 53);
        assert!(s[7..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn alias_spelling_is_the_same_key() {
        let t = Token::generate().unwrap();
        let alias = t.alias();
        assert!(alias.starts_with("apikey_"));
        let parsed = Token::parse(alias.as_bytes()).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.hash(), t.hash());
    }

    #[test]
    fn junk_is_refused_with_the_right_reason() {
        assert_eq!(Token::parse(b"hunter2"), Err(TokenError::NotKeyShaped));
        assert_eq!(Token::parse(b"apikey|short"), Err(TokenError::Malformed));
        let mut long = b"apikey|".to_vec();
        long.resize(1 << 20, b'a');
        assert_eq!(Token::parse(&long), Err(TokenError::Malformed));
        let t = Token::generate().unwrap();
        let mut bad = t.as_str().as_bytes().to_vec();
        bad[20] = 0xff;
        assert_eq!(Token::parse(&bad), Err(TokenError::Malformed));
    }

    /// What the CLI and the logs say about a string that is not a key.
    #[test]
    fn each_refusal_explains_itself() {
        assert_eq!(
            TokenError::NotKeyShaped.to_string(),
            "not an API key (it must start with apikey| or apikey_)"
        );
        assert_eq!(
            TokenError::Malformed.to_string(),
            "malformed API key (wrong length or characters)"
        );
        assert_eq!(
            TokenError::BadChecksum.to_string(),
            "API key checksum mismatch (mistyped or truncated)"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::generate().unwrap();
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn key_ids_are_distinct_and_valid() {
        let a = new_key_id().unwrap();
        let b = new_key_id().unwrap();
        assert!(is_key_id(&a) && is_key_id(&b));
        assert_ne!(a, b);
        assert!(!is_key_id("short"));
        assert!(!is_key_id("abc|defghijk"));
    }

    #[test]
    fn session_handles_are_distinct_and_valid() {
        let a = new_session_handle().unwrap();
        let b = new_session_handle().unwrap();
        assert!(is_session_handle(&a) && is_session_handle(&b));
        assert_ne!(a, b);
        assert!(!is_session_handle(&a[1..]));
        assert!(!is_session_handle(&format!("{}|", &a[1..])));
        assert!(!is_key_id(&a));
    }

    /// Every character of the alphabet turns up, in keys, key ids and
    /// session handles alike: a generator that used only a few of them
    /// would still make well-formed keys with far fewer secret bits.
    #[test]
    fn generated_text_uses_the_whole_alphabet() {
        let mut seen = [false; 256];
        for _ in 0..200 {
            let t = Token::generate().unwrap();
            let body = &t.as_str()[PREFIX.len()..PREFIX.len() + SECRET_LEN];
            for b in body.bytes() {
                seen[b as usize] = true;
            }
        }
        let missing: Vec<char> = BASE62
            .iter()
            .filter(|b| !seen[**b as usize])
            .map(|b| *b as char)
            .collect();
        // 8,000 characters: each of 62 is missing with odds below 1e-50.
        assert!(missing.is_empty(), "never generated: {missing:?}");
        for make in [new_key_id, new_session_handle] {
            let mut seen = [false; 256];
            for _ in 0..800 {
                for b in make().unwrap().bytes() {
                    seen[b as usize] = true;
                }
            }
            assert!(BASE62.iter().all(|b| seen[*b as usize]));
        }
    }

    /// Pearson's chi-square over 62 characters (61 degrees of freedom) for
    /// 400,000 generated characters. A uniform generator exceeds 200 with
    /// odds below 1e-15; one biased towards a single character by a
    /// quarter (a byte value too many kept by the rejection step) scores
    /// about 400.
    #[test]
    fn generated_characters_are_uniform() {
        const N: usize = 400_000;
        let text = random_base62(N).unwrap();
        assert_eq!(text.len(), N);
        let mut counts = [0u64; 256];
        for b in text.bytes() {
            counts[b as usize] += 1;
        }
        let expected = N as f64 / 62.0;
        let chi2: f64 = BASE62
            .iter()
            .map(|b| {
                let d = counts[*b as usize] as f64 - expected;
                d * d / expected
            })
            .sum();
        assert!(
            chi2 < 200.0,
            "chi-square {chi2:.1} over 61 degrees of freedom"
        );
    }

    /// Keys already handed out must keep parsing: checksums of fixed
    /// bodies, computed apart from this code (CRC-32 of zlib, in base62).
    #[test]
    fn the_checksum_is_the_documented_one() {
        let known = [
            "apikey|00000000000000000000000000000000000000002kaqcA",
            "apikey|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN2a8zJO",
            "apikey|zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz2x81PZ",
        ];
        for text in known {
            let t = Token::parse(text.as_bytes());
            assert!(t.is_ok(), "{text}: {t:?}");
            assert_eq!(checksum_chars(&text.as_bytes()[7..47]), &text[47..]);
        }
    }

    fn base62_char() -> impl Strategy<Value = u8> {
        prop::sample::select(BASE62.to_vec())
    }

    proptest! {
        #[test]
        fn every_generated_key_parses(_seed in 0u32..200) {
            let t = Token::generate().unwrap();
            prop_assert_eq!(Token::parse(t.as_str().as_bytes()).unwrap(), t);
        }

        #[test]
        fn every_one_character_change_fails(pos in 7usize..TOKEN_LEN, c in base62_char()) {
            let t = Token::generate().unwrap();
            let mut bytes = t.as_str().as_bytes().to_vec();
            prop_assume!(bytes[pos] != c);
            bytes[pos] = c;
            prop_assert!(Token::parse(&bytes).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..100)) {
            let _ = Token::parse(&input);
        }
    }
}
