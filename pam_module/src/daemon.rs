//! The calls the module makes to apikeyd, over the trusted bus only (S1):
//! the bus from the `bus=` argument or the compiled-in system socket, and
//! a daemon whose name is owned by the expected uid. Every call after the
//! ownership check goes to the checked unique name, so the token cannot
//! reach a process that took the name over in between.

use crate::dbus::{BusError, Call, Client, Value};
use apikey_proto::names::{BUS_NAME, ERROR_PREFIX, INTERFACE, OBJECT_PATH};
use std::time::Instant;

/// What the module needs to know about a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonError {
    /// The daemon answered no: the key (or the request) is not accepted.
    Refused,
    /// No trustworthy answer in time: bus down, daemon down, too slow,
    /// name owned by the wrong uid, or the daemon refused us as a verifier.
    Unavailable(String),
}

/// The daemon as the decision code sees it; a fake in unit tests.
pub trait Daemon {
    /// Returns the owner's user name and the key id.
    fn verify(
        &mut self,
        token: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(String, String), DaemonError>;
    /// Is key `id`, which authenticated this login, still good?
    fn check_key(
        &mut self,
        id: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(), DaemonError>;
    fn open_session(
        &mut self,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<String, DaemonError>;
    fn close_session(&mut self, handle: &str) -> Result<(), DaemonError>;
}

pub struct BusDaemon {
    client: Client,
    owner: String,
}

impl BusDaemon {
    /// Connects and checks that `org.apikey.Keys1` is owned by `daemon_uid`.
    pub fn connect(
        address: &str,
        daemon_uid: u32,
        deadline: Instant,
    ) -> Result<BusDaemon, DaemonError> {
        let mut client = Client::connect(address, deadline).map_err(unavailable)?;
        let owner = match bus_call(&mut client, "GetNameOwner", &[BUS_NAME])
            .map_err(unavailable)?
            .first()
        {
            Some(Value::Str(owner)) => owner.clone(),
            _ => return Err(DaemonError::Unavailable("GetNameOwner gave no name".into())),
        };
        let uid = match bus_call(&mut client, "GetConnectionUnixUser", &[&owner])
            .map_err(unavailable)?
            .first()
        {
            Some(Value::U32(uid)) => *uid,
            _ => {
                return Err(DaemonError::Unavailable(
                    "GetConnectionUnixUser gave no uid".into(),
                ))
            }
        };
        if uid != daemon_uid {
            return Err(DaemonError::Unavailable(format!(
                "{BUS_NAME} is owned by uid {uid}, not by the daemon's uid {daemon_uid}; \
                 not sending it anything"
            )));
        }
        Ok(BusDaemon { client, owner })
    }

    fn call(&mut self, member: &str, args: &[&str]) -> Result<Vec<Value>, DaemonError> {
        self.client
            .call(&Call {
                destination: &self.owner,
                path: OBJECT_PATH,
                interface: INTERFACE,
                member,
                args,
            })
            .map_err(|e| match &e {
                BusError::Error { name, .. } if is_refusal(name) => DaemonError::Refused,
                _ => unavailable(e),
            })
    }
}

impl Daemon for BusDaemon {
    fn verify(
        &mut self,
        token: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(String, String), DaemonError> {
        match self
            .call("Verify", &[token, user, service, rhost])?
            .as_slice()
        {
            [Value::Str(owner), Value::Str(id)] => Ok((owner.clone(), id.clone())),
            _ => Err(DaemonError::Unavailable(
                "Verify gave an unexpected reply".into(),
            )),
        }
    }

    fn check_key(
        &mut self,
        id: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(), DaemonError> {
        self.call("CheckKey", &[id, user, service, rhost])
            .map(|_| ())
    }

    fn open_session(
        &mut self,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<String, DaemonError> {
        match self
            .call("OpenSession", &[user, service, rhost, tty, key_id, auth])?
            .as_slice()
        {
            [Value::Str(handle)] => Ok(handle.clone()),
            _ => Err(DaemonError::Unavailable(
                "OpenSession gave an unexpected reply".into(),
            )),
        }
    }

    fn close_session(&mut self, handle: &str) -> Result<(), DaemonError> {
        self.call("CloseSession", &[handle]).map(|_| ())
    }
}

/// Errors that mean "no" rather than "cannot answer". Denied is not one:
/// a caller the daemon will not answer (a web server outside its verifier
/// group) is a configuration problem, reported as unavailable.
fn is_refusal(name: &str) -> bool {
    ["Refused", "InvalidArgument", "NotFound", "PolicyForbids"]
        .iter()
        .any(|n| {
            name.strip_prefix(ERROR_PREFIX)
                .and_then(|r| r.strip_prefix('.'))
                == Some(n)
        })
}

fn bus_call(client: &mut Client, member: &str, args: &[&str]) -> Result<Vec<Value>, BusError> {
    client.call(&Call {
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member,
        args,
    })
}

fn unavailable(e: BusError) -> DaemonError {
    DaemonError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_failures_are_told_apart() {
        assert!(is_refusal("org.apikey.Keys1.Error.Refused"));
        assert!(is_refusal("org.apikey.Keys1.Error.InvalidArgument"));
        assert!(!is_refusal("org.apikey.Keys1.Error.Denied"));
        assert!(!is_refusal("org.apikey.Keys1.Error.Failed"));
        assert!(!is_refusal("org.freedesktop.DBus.Error.ServiceUnknown"));
        assert!(!is_refusal("org.evil.Error.Refused"));
    }
}
