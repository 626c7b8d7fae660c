//! How a login session was authenticated, as pam_apikey reports it to the
//! daemon's OpenSession. S6 rests on it: keys are made only in a session
//! with positive evidence of a login that was not made with a key, never
//! merely because no key mark was found (a registration that failed, a
//! cron job and a systemd --user service all have none).

/// The session was opened with an API key.
pub const KEY: &str = "key";
/// pam_apikey's authenticate saw a password that is not a key and left it
/// to the modules below it, which let the login in.
pub const PASSWORD: &str = "password";
/// Longest `auth` OpenSession takes.
pub const MAX_LEN: usize = 128;

/// The methods sshd completed, from `SSH_AUTH_INFO_0` (one line per method:
/// the method, `/submethod` for keyboard-interactive, then the public key
/// or other details, which are dropped): `publickey`, `password`,
/// `publickey,keyboard-interactive/pam`. Empty when it names none; anything
/// that is not a plain method name is dropped rather than reported.
pub fn ssh_methods(info: &str) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for line in info.lines() {
        let method = line.split(' ').next().unwrap_or_default();
        if is_method_name(method) && !methods.contains(&method) {
            methods.push(method);
        }
    }
    let mut out = String::new();
    for m in methods {
        if out.len() + m.len() + 1 > MAX_LEN {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(m);
    }
    out
}

fn is_method_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 64
        && m.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'/' | b'@' | b'.')
        })
}

/// What OpenSession accepts as `auth`: empty (nothing seen) or method
/// names separated by commas.
pub fn is_valid(auth: &str) -> bool {
    auth.is_empty() || (auth.len() <= MAX_LEN && auth.split(',').all(is_method_name))
}

/// True when `auth` is evidence of a login that was not made with a key.
pub fn is_non_key_login(auth: &str) -> bool {
    is_valid(auth) && !auth.is_empty() && !is_key_login(auth)
}

/// True when `auth` names a key among its methods.
pub fn is_key_login(auth: &str) -> bool {
    auth.split(',').any(|m| m == KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_methods_are_read_without_their_keys() {
        assert_eq!(
            ssh_methods("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n"),
            "publickey"
        );
        assert_eq!(ssh_methods("password\n"), "password");
        assert_eq!(
            ssh_methods("publickey ssh-rsa AAAA\nkeyboard-interactive/pam\n"),
            "publickey,keyboard-interactive/pam"
        );
        assert_eq!(ssh_methods("gssapi-with-mic\n"), "gssapi-with-mic");
        // Repeats once; junk is dropped, never passed on.
        assert_eq!(ssh_methods("password\npassword\n"), "password");
        assert_eq!(ssh_methods("Pass;word\n\n \n"), "");
        assert_eq!(ssh_methods(""), "");
    }

    #[test]
    fn the_method_list_stays_within_its_cap() {
        let info: String = (0..40).map(|i| format!("method-{i:02}\n")).collect();
        let methods = ssh_methods(&info);
        assert!(methods.len() <= MAX_LEN, "{methods}");
        assert!(is_valid(&methods));
        assert!(methods.starts_with("method-00,method-01,"));
        // A list exactly at the cap is kept whole.
        let (a, b) = ("a".repeat(64), "b".repeat(MAX_LEN - 65));
        assert_eq!(ssh_methods(&format!("{a}\n{b}\n")), format!("{a},{b}"));
    }

    #[test]
    fn only_a_named_non_key_method_is_evidence() {
        for auth in [PASSWORD, "publickey", "publickey,keyboard-interactive/pam"] {
            assert!(is_non_key_login(auth), "{auth}");
        }
        for auth in [
            "",
            KEY,
            "password,key",
            "pass word",
            "PASSWORD",
            ",",
            "password,",
        ] {
            assert!(!is_non_key_login(auth), "{auth:?}");
        }
        assert!(is_key_login(KEY) && is_key_login("password,key"));
        assert!(!is_key_login("keyboard-interactive/pam") && !is_key_login(""));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        assert!(is_valid(""));
    }
}
