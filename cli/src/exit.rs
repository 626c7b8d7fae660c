//! What a failure means to the caller: the exit status and the one line
//! `apikey: <reason>` on standard error.

use crate::text::{safe, SENTENCE};
use apikey_proto::KeysError;

pub const OK: i32 = 0;
/// Refused or failed.
pub const FAILED: i32 = 1;
/// Usage error. clap reports these itself, before any command runs.
pub const USAGE: i32 = 2;
/// The daemon is unreachable (sysexits EX_UNAVAILABLE).
pub const UNAVAILABLE: i32 = 69;
/// Permission denied (sysexits EX_NOPERM).
pub const NOPERM: i32 = 77;

#[derive(Debug)]
pub enum CliError {
    /// Could not reach the daemon; the detail says why.
    Unreachable(String),
    /// An error reply from the daemon, or from the bus on its behalf.
    Daemon(KeysError),
    /// A local failure. The sentence is shown as it is: whoever builds it
    /// escapes what came from outside.
    Failed(String),
}

impl From<KeysError> for CliError {
    fn from(e: KeysError) -> Self {
        CliError::Daemon(e)
    }
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Unreachable(_) => UNAVAILABLE,
            CliError::Failed(_) => FAILED,
            CliError::Daemon(e) => match e {
                KeysError::Denied(_) => NOPERM,
                KeysError::ZBus(z) => match bus_failure(z) {
                    BusFailure::Unreachable => UNAVAILABLE,
                    BusFailure::AccessDenied => NOPERM,
                    BusFailure::Other => FAILED,
                },
                _ => FAILED,
            },
        }
    }

    /// The reason, without the `apikey: ` prefix, safe to print.
    pub fn message(&self) -> String {
        match self {
            CliError::Unreachable(detail) => unreachable_message(detail),
            CliError::Failed(m) => m.clone(),
            CliError::Daemon(KeysError::ZBus(z)) => {
                let detail = z.to_string();
                match bus_failure(z) {
                    BusFailure::Unreachable => unreachable_message(&detail),
                    BusFailure::AccessDenied => format!(
                        "the system bus refused the request ({})",
                        safe(&detail, SENTENCE)
                    ),
                    BusFailure::Other => format!(
                        "talking to the apikey daemon failed ({})",
                        safe(&detail, SENTENCE)
                    ),
                }
            }
            CliError::Daemon(e) => {
                let m = e.message();
                if m.trim().is_empty() {
                    // A reply without a sentence still has a meaningful name.
                    format!("refused by the daemon ({})", e.short_name())
                } else {
                    safe(&m, SENTENCE)
                }
            }
        }
    }
}

fn unreachable_message(detail: &str) -> String {
    format!(
        "the apikey daemon is not reachable on the system bus ({})",
        safe(detail, SENTENCE)
    )
}

/// Prints the error line and gives the exit status.
pub fn report(err: &CliError) -> i32 {
    eprintln!("apikey: {}", err.message());
    err.exit_code()
}

#[derive(Debug, PartialEq, Eq)]
enum BusFailure {
    /// Nobody answers for the daemon: no bus, no owner of the name, or
    /// activation failed.
    Unreachable,
    /// The bus policy does not let this caller send that call.
    AccessDenied,
    Other,
}

/// zbus reports an error reply whose name it knows as `FDO`, and one it
/// does not know as `MethodError`; both spellings are classified alike.
fn bus_failure(e: &zbus::Error) -> BusFailure {
    match e {
        zbus::Error::InputOutput(_) | zbus::Error::Handshake(_) | zbus::Error::Address(_) => {
            BusFailure::Unreachable
        }
        zbus::Error::FDO(f) => {
            let name = zbus::DBusError::name(f.as_ref());
            classify_name(name.as_str())
        }
        zbus::Error::MethodError(name, _, _) => classify_name(name.as_str()),
        _ => BusFailure::Other,
    }
}

fn classify_name(name: &str) -> BusFailure {
    const BUS: &str = "org.freedesktop.DBus.Error.";
    let Some(short) = name.strip_prefix(BUS) else {
        return BusFailure::Other;
    };
    match short {
        // ServiceUnknown is also how the bus says "not activatable".
        "ServiceUnknown" | "NameHasNoOwner" | "NoServer" | "Disconnected" | "NoReply"
        | "TimedOut" | "Timeout" | "NoNetwork" | "IOError" => BusFailure::Unreachable,
        s if s.starts_with("Spawn.") => BusFailure::Unreachable,
        "AccessDenied" => BusFailure::AccessDenied,
        _ => BusFailure::Other,
    }
}

/// Turns a bus-level failure into a CliError (for the connection step,
/// where there is no KeysError yet).
pub fn unreachable(e: &zbus::Error) -> CliError {
    CliError::Unreachable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use zbus::fdo;
    use zbus::names::OwnedErrorName;

    fn method_error(name: &str, text: &str) -> zbus::Error {
        let call = zbus::Message::method_call("/org/apikey/Keys1", "Status")
            .build(&())
            .unwrap();
        zbus::Error::MethodError(
            OwnedErrorName::try_from(name).unwrap(),
            Some(text.to_string()),
            call,
        )
    }

    fn code(e: KeysError) -> i32 {
        CliError::Daemon(e).exit_code()
    }

    #[test]
    fn daemon_errors() {
        let m = || "because".to_string();
        assert_eq!(code(KeysError::Denied(m())), NOPERM);
        for e in [
            KeysError::PolicyForbids(m()),
            KeysError::Impersonating(m()),
            KeysError::NotLoggedIn(m()),
            KeysError::NoSession(m()),
            KeysError::QuotaExceeded(m()),
            KeysError::InvalidArgument(m()),
            KeysError::NotFound(m()),
            KeysError::Refused(m()),
            KeysError::Failed(m()),
        ] {
            assert_eq!(code(e), FAILED);
        }
    }

    #[test]
    fn daemon_names_arrive_typed() {
        let e = KeysError::from(method_error("org.apikey.Keys1.Error.Denied", "not yours"));
        assert!(matches!(e, KeysError::Denied(ref s) if s == "not yours"));
        assert_eq!(code(e), NOPERM);
        let e = KeysError::from(method_error(
            "org.apikey.Keys1.Error.PolicyForbids",
            "users may not create keys",
        ));
        assert_eq!(code(e), FAILED);
    }

    #[test]
    fn unreachable_in_both_spellings() {
        for name in [
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NameHasNoOwner",
            "org.freedesktop.DBus.Error.Spawn.ExecFailed",
            "org.freedesktop.DBus.Error.NoReply",
        ] {
            let e = KeysError::from(method_error(name, "The name is not activatable"));
            assert_eq!(code(e), UNAVAILABLE, "{name}");
        }
        for f in [
            fdo::Error::ServiceUnknown("The name is not activatable".into()),
            fdo::Error::NameHasNoOwner("x".into()),
            fdo::Error::SpawnServiceNotFound("x".into()),
            fdo::Error::NoReply("x".into()),
        ] {
            let e = KeysError::from(zbus::Error::FDO(Box::new(f)));
            assert_eq!(code(e), UNAVAILABLE);
        }
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = KeysError::ZBus(zbus::Error::InputOutput(Arc::new(io)));
        assert_eq!(code(e), UNAVAILABLE);
        let err = CliError::Daemon(KeysError::ZBus(zbus::Error::FDO(Box::new(
            fdo::Error::ServiceUnknown("gone".into()),
        ))));
        assert!(err
            .message()
            .starts_with("the apikey daemon is not reachable on the system bus ("));
    }

    #[test]
    fn other_bus_errors() {
        let e = KeysError::from(zbus::Error::FDO(Box::new(fdo::Error::AccessDenied(
            "policy".into(),
        ))));
        assert_eq!(code(e), NOPERM);
        let e = KeysError::from(method_error(
            "org.freedesktop.DBus.Error.UnknownMethod",
            "no such method",
        ));
        assert_eq!(code(e), FAILED);
        let e = KeysError::from(method_error("com.example.Weird", "odd"));
        assert_eq!(code(e), FAILED);
        assert_eq!(CliError::Unreachable("x".into()).exit_code(), UNAVAILABLE);
        assert_eq!(CliError::Failed("x".into()).exit_code(), FAILED);
    }

    #[test]
    fn daemon_text_is_escaped() {
        let err = CliError::Daemon(KeysError::NotFound("no key \u{1b}[2Jhere\n".into()));
        assert_eq!(err.message(), "no key \\x1b[2Jhere\\x0a");
        let err = CliError::Daemon(KeysError::Failed(String::new()));
        assert_eq!(err.message(), "refused by the daemon (Failed)");
    }
}
