//! Module arguments from the PAM service file. Nothing is read from the
//! environment (S1): the bus is `bus=` or the compiled-in system socket.

use apikey_proto::names::{PAM_SOCKET, SYSTEM_BUS_ADDRESS};

pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
const MAX_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAP_NAME: &str = "apikey";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub debug: bool,
    pub timeout_ms: u64,
    pub bus: String,
    /// apikeyd's own socket, tried before the bus; `None` (`socket=none`)
    /// goes to the bus only.
    pub socket: Option<String>,
    pub daemon_user: String,
    /// `map_user` / `map_user=NAME`: the user name that stands for "the
    /// key's owner" (LabKey's `.netrc` form `login apikey`).
    pub map_user: Option<String>,
    /// Arguments we did not understand; the module then refuses keys.
    pub errors: Vec<String>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            debug: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            bus: SYSTEM_BUS_ADDRESS.into(),
            socket: Some(PAM_SOCKET.into()),
            daemon_user: "apikeyd".into(),
            map_user: None,
            errors: vec![],
        }
    }
}

impl Args {
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> Args {
        let mut out = Args::default();
        for raw in args {
            let Ok(arg) = std::str::from_utf8(raw) else {
                out.errors.push("an argument is not valid UTF-8".into());
                continue;
            };
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            match (name, value) {
                ("debug", None) => out.debug = true,
                // libpam's pam_get_authtok reads these itself.
                ("use_first_pass" | "try_first_pass", None) => {}
                ("timeout", Some(v)) => match v.parse::<u64>() {
                    Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => out.timeout_ms = ms,
                    _ => out
                        .errors
                        .push(format!("timeout={v}: give 1 to {MAX_TIMEOUT_MS} ms")),
                },
                ("bus", Some(v)) if v.starts_with("unix:path=/") => out.bus = v.into(),
                ("bus", Some(v)) => out
                    .errors
                    .push(format!("bus={v}: only unix:path=/... is supported")),
                ("socket", Some("none")) => out.socket = None,
                ("socket", Some(v)) if v.starts_with('/') && v.len() < 108 && !v.contains('\0') => {
                    out.socket = Some(v.into())
                }
                ("socket", Some(v)) => out.errors.push(format!(
                    "socket={}: give an absolute path (shorter than 108 bytes) or none",
                    apikey_proto::services::printable(v, 64)
                )),
                ("daemon_user", Some(v)) if valid_name(v) => out.daemon_user = v.into(),
                ("map_user", None) => out.map_user = Some(DEFAULT_MAP_NAME.into()),
                ("map_user", Some(v)) if valid_name(v) => out.map_user = Some(v.into()),
                _ => out.errors.push(format!(
                    "unknown argument '{}'",
                    apikey_proto::services::printable(arg, 64)
                )),
            }
        }
        out
    }
}

fn valid_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::parse(args.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn defaults() {
        let a = parse(&[]);
        assert_eq!(a, Args::default());
        assert_eq!(a.bus, "unix:path=/run/dbus/system_bus_socket");
        assert_eq!(a.timeout_ms, 3000);
        assert_eq!(a.socket.as_deref(), Some("/run/apikey/pam.sock"));
    }

    #[test]
    fn the_socket_is_a_path_or_none_and_the_last_word_counts() {
        assert_eq!(
            parse(&["socket=/tmp/x/pam.sock"]).socket.as_deref(),
            Some("/tmp/x/pam.sock")
        );
        assert_eq!(parse(&["socket=none"]).socket, None);
        assert_eq!(parse(&["socket=/a", "socket=none"]).socket, None);
        for bad in [
            "socket=pam.sock",
            "socket=",
            &format!("socket=/{}", "x".repeat(120)),
        ] {
            assert_eq!(parse(&[bad]).errors.len(), 1, "{bad}");
        }
    }

    #[test]
    fn every_argument() {
        let a = parse(&[
            "debug",
            "timeout=500",
            "bus=unix:path=/tmp/x/bus.sock",
            "daemon_user=root",
            "map_user",
            "try_first_pass",
        ]);
        assert!(a.debug && a.errors.is_empty());
        assert_eq!(
            (a.timeout_ms, a.bus.as_str()),
            (500, "unix:path=/tmp/x/bus.sock")
        );
        assert_eq!(a.daemon_user, "root");
        assert_eq!(a.map_user.as_deref(), Some("apikey"));
        assert_eq!(
            parse(&["map_user=token"]).map_user.as_deref(),
            Some("token")
        );
    }

    #[test]
    fn mistakes_are_collected_not_ignored() {
        for bad in [
            "timeout=0",
            "timeout=x",
            "bus=tcp:host=1.2.3.4",
            "map_user=a b",
            "nodelay",
            "daemon_user=",
        ] {
            assert_eq!(parse(&[bad]).errors.len(), 1, "{bad}");
        }
        assert_eq!(Args::parse([&b"\xff"[..]]).errors.len(), 1);
    }
}
