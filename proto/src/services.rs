//! PAM service names and the patterns that select them (`sshd`, `nginx*`),
//! and the services that must never accept a key (S2).

/// Services where a key must never log anyone in, whatever the site
/// configuration says: a leaked key must not become root or a desktop.
pub const NEVER_KEY_SERVICES: &[&str] = &[
    "su",
    "su-l",
    "sudo",
    "sudo-i",
    "runuser",
    "runuser-l",
    "doas",
    "login",
    "polkit-1",
    "polkit*",
    "pkexec",
    "passwd",
    "chpasswd",
    "newusers",
    "chsh",
    "chfn",
    "chage",
    "cockpit",
    "systemd-user",
    "gdm*",
    "lightdm*",
    "sddm*",
    "xdm",
    "lxdm",
    "kde*",
    "kdm",
    "mdm",
    "greetd*",
    "nodm",
    "slim",
    "wdm",
    "ly",
    "lemurs",
    "emptty",
    // Remote desktop and remote terminal logins (xrdp; login's `remote`
    // for telnet/rlogin).
    "xrdp*",
    "remote",
    "xscreensaver",
    "gnome-screensaver",
    "cinnamon-screensaver",
    "mate-screensaver",
    "xfce4-screensaver",
    "budgie-screensaver",
    "ukui-screensaver*",
    "light-locker",
    "xsecurelock",
    "kscreensaver",
    "kscreenlocker*",
    "i3lock",
    "swaylock",
    "vlock",
    "xlock",
    "physlock",
    "screen",
    "tmux",
];

/// Longest service name or pattern accepted anywhere.
pub const MAX_SERVICE_LEN: usize = 64;

/// A pattern is a service name, or a prefix followed by `*`.
pub fn is_valid_pattern(pattern: &str) -> bool {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    !name.is_empty() && is_valid_service(name)
}

/// Service names as PAM uses them: file names in /etc/pam.d.
pub fn is_valid_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SERVICE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+'))
}

pub fn pattern_matches(pattern: &str, service: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => service.starts_with(prefix),
        None => pattern == service,
    }
}

pub fn any_matches(patterns: &[String], service: &str) -> bool {
    patterns.iter().any(|p| pattern_matches(p, service))
}

/// True when every service `pattern` can match is also matched by one of
/// `allowed`: how a key's scope is checked against the site's list.
pub fn pattern_within(pattern: &str, allowed: &[String]) -> bool {
    let (name, wild) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    allowed.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => !wild && a == name,
    })
}

/// True for services of S2 (never a key).
pub fn is_never_key_service(service: &str) -> bool {
    NEVER_KEY_SERVICES
        .iter()
        .any(|p| pattern_matches(p, service))
}

/// Text made safe for one log field or one screen cell (S11): anything
/// key-shaped masked (see [`crate::text::mask_keys`]), then escaped and
/// capped by [`crate::text::escape`] with double quotes escaped, as log
/// fields are quoted. Every logged field of the daemon and the module
/// goes through here.
pub fn printable(text: &str, max_chars: usize) -> String {
    crate::text::escape(&crate::text::mask_keys(text), max_chars, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_match_names_and_prefixes() {
        assert!(pattern_matches("sshd", "sshd"));
        assert!(!pattern_matches("sshd", "sshd-apikey"));
        assert!(pattern_matches("sshd*", "sshd-apikey"));
        assert!(!pattern_matches("nginx*", "sshd"));
    }

    #[test]
    fn narrowing_stays_inside_the_site_list() {
        let site = v(&["sshd*", "vsftpd", "nginx*"]);
        assert!(pattern_within("sshd", &site));
        assert!(pattern_within("sshd-x*", &site));
        assert!(pattern_within("vsftpd", &site));
        assert!(!pattern_within("vsftpd*", &site));
        assert!(!pattern_within("su", &site));
        assert!(!pattern_within("ss*", &site));
    }

    #[test]
    fn s2_services_are_recognised() {
        for s in [
            "su",
            "sudo",
            "login",
            "polkit-1",
            "gdm-password",
            "cockpit",
            "passwd",
        ] {
            assert!(is_never_key_service(s), "{s}");
        }
        for s in ["sshd", "vsftpd", "nginx", "sudoku"] {
            assert!(!is_never_key_service(s), "{s}");
        }
    }

    #[test]
    fn validation() {
        assert!(is_valid_pattern("nginx*"));
        assert!(!is_valid_pattern("*"));
        assert!(!is_valid_pattern("ng*inx"));
        assert!(!is_valid_pattern("a b"));
        assert!(!is_valid_pattern(&"a".repeat(65)));
    }

    #[test]
    fn printable_escapes_and_caps() {
        assert_eq!(printable("a\nb\x1b", 10), "a\\x0ab\\x1b");
        assert_eq!(printable("abcdef", 3), "abc...");
        assert_eq!(printable("say \"hi\"", 20), "say \\\"hi\\\"");
        assert_eq!(printable("a\u{202e}b", 10), "a\\u{202e}b");
    }

    /// Every login, display manager, screen locker and privilege change
    /// PAM service that Debian's packages ship refuses keys (S2).
    #[test]
    fn every_login_and_locker_service_debian_ships_refuses_keys() {
        let list = include_str!("debian-login-services.txt");
        let mut checked = 0;
        for line in list
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (package, service) = line.split_once(' ').expect("package service");
            assert!(
                is_never_key_service(service),
                "{service} (from {package}) would accept keys"
            );
            checked += 1;
        }
        assert!(checked >= 50, "{checked}");
        for allowed in ["sshd", "sshd-apikey", "vsftpd", "nginx", "cron"] {
            assert!(!is_never_key_service(allowed), "{allowed}");
        }
    }
}
