//! The calls the module makes to apikeyd, to a trusted peer only (S1).
//! First apikeyd's own socket (`socket=`, by default /run/apikey/pam.sock):
//! trusted when its directory and the socket belong to root or the
//! daemon's user, the directory is writable by its owner only, and the
//! kernel says the listening process runs as the daemon's user, all
//! checked before anything is sent. Without that socket (none there, or
//! nobody listening: an older or stopped daemon) the bus from `bus=` or
//! the compiled-in system socket, where the daemon's name must be owned by
//! the daemon's uid; every call after that check goes to the checked
//! unique name, so the token cannot reach a process that took the name
//! over in between. A socket that is there but fails a check is an alarm,
//! not a reason to try the bus: the login is refused as unavailable.

use crate::args::Args;
use crate::dbus::{BusError, Call, Client, Value};
use apikey_proto::names::{BUS_NAME, ERROR_PREFIX, INTERFACE, OBJECT_PATH};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

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
    ) -> Result<OpenedSession, DaemonError>;
    fn close_session(&mut self, handle: &str) -> Result<(), DaemonError>;
}

/// What OpenSessionWith answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSession {
    /// Closes the session (CloseSession).
    pub handle: String,
    /// The key this login used expires in this many seconds, within the
    /// site's `warn_before`; 0 when there is nothing to warn of (or the
    /// daemon predates OpenSessionWith).
    pub key_expires_in: u32,
}

const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

/// A connection to apikeyd, over its socket or the bus.
pub struct DaemonClient {
    client: Client,
    /// The daemon's unique name on the bus; `None` on its own socket.
    owner: Option<String>,
}

impl DaemonClient {
    /// apikeyd over its socket when there is one, else over the bus.
    pub fn open(args: &Args, daemon_uid: u32, deadline: Instant) -> Result<Self, DaemonError> {
        if let Some(path) = &args.socket {
            if let Some(daemon) = DaemonClient::over_socket(path, daemon_uid, deadline)? {
                return Ok(daemon);
            }
        }
        DaemonClient::connect(&args.bus, daemon_uid, deadline)
    }

    /// Connects to apikeyd's socket at `path` if it is there and someone
    /// listens (`Ok(None)` otherwise), and checks it is the daemon's.
    pub fn over_socket(
        path: &str,
        daemon_uid: u32,
        deadline: Instant,
    ) -> Result<Option<DaemonClient>, DaemonError> {
        let refuse = |why: String| {
            DaemonError::Unavailable(format!("{path}: {why}; not sending it anything"))
        };
        let dir = std::path::Path::new(path)
            .parent()
            .ok_or_else(|| refuse("no directory".into()))?;
        let socket = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(refuse(e.to_string())),
        };
        let dir = std::fs::symlink_metadata(dir).map_err(|e| refuse(e.to_string()))?;
        socket_trusted(
            Owned::of(&dir, dir.is_dir()),
            Owned::of(&socket, socket.file_type().is_socket()),
            daemon_uid,
        )
        .map_err(refuse)?;
        let stream = match crate::dbus::connect_by(path, deadline) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(refuse(format!("cannot connect: {e}"))),
        };
        let peer = peer_uid(&stream).map_err(|e| refuse(format!("no peer credentials: {e}")))?;
        if peer != daemon_uid {
            return Err(refuse(format!(
                "the process listening runs as uid {peer}, not as the daemon's uid {daemon_uid}"
            )));
        }
        let client = Client::peer(stream, deadline);
        Ok(Some(DaemonClient {
            client,
            owner: None,
        }))
    }

    /// Connects and checks that `org.apikey.Keys1` is owned by `daemon_uid`.
    pub fn connect(
        address: &str,
        daemon_uid: u32,
        deadline: Instant,
    ) -> Result<DaemonClient, DaemonError> {
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
        Ok(DaemonClient {
            client,
            owner: Some(owner),
        })
    }

    pub fn set_deadline(&mut self, deadline: Instant) {
        self.client.set_deadline(deadline);
    }

    fn call(&mut self, member: &str, args: &[&str]) -> Result<Vec<Value>, DaemonError> {
        self.call_raw(member, args).map_err(daemon_error)
    }

    fn call_raw(&mut self, member: &str, args: &[&str]) -> Result<Vec<Value>, BusError> {
        self.client.call(&Call {
            destination: self.owner.as_deref(),
            path: OBJECT_PATH,
            interface: INTERFACE,
            member,
            args,
        })
    }
}

impl Daemon for DaemonClient {
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
    ) -> Result<OpenedSession, DaemonError> {
        let args = [user, service, rhost, tty, key_id, auth];
        let reply = match self.call_raw("OpenSessionWith", &args) {
            // A daemon older than OpenSessionWith: its session, no warning.
            Err(BusError::Error { name, .. }) if name == UNKNOWN_METHOD => {
                self.call("OpenSession", &args)?
            }
            other => other.map_err(daemon_error)?,
        };
        opened_session(&reply).ok_or_else(|| {
            DaemonError::Unavailable("OpenSessionWith gave an unexpected reply".into())
        })
    }

    fn close_session(&mut self, handle: &str) -> Result<(), DaemonError> {
        self.call("CloseSession", &[handle]).map(|_| ())
    }
}

/// Owner, mode and kind of a file, as the trust check needs them.
#[derive(Debug, Clone, Copy)]
pub struct Owned {
    pub uid: u32,
    pub mode: u32,
    /// The kind expected: a directory, or a socket.
    pub right_kind: bool,
}

impl Owned {
    fn of(meta: &std::fs::Metadata, right_kind: bool) -> Owned {
        Owned {
            uid: meta.uid(),
            mode: meta.mode(),
            right_kind,
        }
    }
}

/// S1 for the socket: the directory and the socket belong to root or the
/// daemon's user, and nobody else can replace the socket (the directory
/// is not writable by its group or others). The socket itself is open to
/// everyone to connect, as the bus is; the daemon decides per call.
pub fn socket_trusted(dir: Owned, socket: Owned, daemon_uid: u32) -> Result<(), String> {
    let trusted = |uid: u32| uid == 0 || uid == daemon_uid;
    if !dir.right_kind {
        return Err("its directory is not a directory".into());
    }
    if !trusted(dir.uid) {
        return Err(format!(
            "its directory belongs to uid {}, not to root or the daemon",
            dir.uid
        ));
    }
    if dir.mode & 0o022 != 0 {
        return Err(format!(
            "its directory can be written by others (mode {:o})",
            dir.mode & 0o7777
        ));
    }
    if !socket.right_kind {
        return Err("it is not a socket".into());
    }
    if !trusted(socket.uid) {
        return Err(format!(
            "it belongs to uid {}, not to root or the daemon",
            socket.uid
        ));
    }
    Ok(())
}

/// The uid of the process at the other end, from the kernel.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer and its length describe `cred`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The connection of one PAM handle: opened at its first call, kept for
/// the handle's later hooks (authenticate, acct_mgmt, the session), never
/// used in another process than the one that opened it. A kept connection
/// the daemon closed meanwhile (it closes idle ones) is opened again once.
pub struct Link {
    args: Args,
    timeout: Duration,
    pid: u32,
    daemon: Option<DaemonClient>,
    /// The connection served an earlier hook.
    reused: bool,
}

impl Link {
    pub fn new(args: &Args) -> Link {
        Link {
            args: args.clone(),
            timeout: Duration::from_millis(args.timeout_ms),
            pid: std::process::id(),
            daemon: None,
            reused: false,
        }
    }

    /// Readies the link for a hook with `args`: a new deadline, and a new
    /// connection if the hook names another daemon or runs in a child.
    pub fn start_hook(&mut self, args: &Args) {
        let same = (&self.args.socket, &self.args.bus, &self.args.daemon_user)
            == (&args.socket, &args.bus, &args.daemon_user);
        if !same || self.pid != std::process::id() {
            *self = Link::new(args);
            return;
        }
        self.timeout = Duration::from_millis(args.timeout_ms);
        self.reused = self.daemon.is_some();
        let deadline = Instant::now() + self.timeout;
        if let Some(d) = &mut self.daemon {
            d.set_deadline(deadline);
        }
    }

    fn open(&mut self) -> Result<&mut DaemonClient, DaemonError> {
        if self.daemon.is_none() {
            let deadline = Instant::now() + self.timeout;
            let daemon_uid = crate::handle::uid_of(&self.args.daemon_user).ok_or_else(|| {
                DaemonError::Unavailable(format!(
                    "no account {} for the daemon",
                    self.args.daemon_user
                ))
            })?;
            self.daemon = Some(DaemonClient::open(&self.args, daemon_uid, deadline)?);
        }
        Ok(self.daemon.as_mut().expect("opened above"))
    }

    /// Runs `call` on the connection, on a new one if a kept connection
    /// turns out closed. A connection that failed is not kept.
    fn with<T>(
        &mut self,
        call: impl Fn(&mut DaemonClient) -> Result<T, DaemonError>,
    ) -> Result<T, DaemonError> {
        let result = call(self.open()?);
        match result {
            Err(DaemonError::Unavailable(_)) if std::mem::take(&mut self.reused) => {
                self.daemon = None;
                let again = call(self.open()?);
                if matches!(again, Err(DaemonError::Unavailable(_))) {
                    self.daemon = None;
                }
                again
            }
            Err(DaemonError::Unavailable(m)) => {
                self.daemon = None;
                Err(DaemonError::Unavailable(m))
            }
            other => other,
        }
    }
}

impl Daemon for Link {
    fn verify(
        &mut self,
        token: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(String, String), DaemonError> {
        self.with(|d| d.verify(token, user, service, rhost))
    }

    fn check_key(
        &mut self,
        id: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(), DaemonError> {
        self.with(|d| d.check_key(id, user, service, rhost))
    }

    fn open_session(
        &mut self,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<OpenedSession, DaemonError> {
        self.with(|d| d.open_session(user, service, rhost, tty, key_id, auth))
    }

    fn close_session(&mut self, handle: &str) -> Result<(), DaemonError> {
        self.with(|d| d.close_session(handle))
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

/// OpenSessionWith's reply (handle, expires_in), or OpenSession's (handle).
fn opened_session(reply: &[Value]) -> Option<OpenedSession> {
    match reply {
        [Value::Str(handle), Value::U32(left)] => Some(OpenedSession {
            handle: handle.clone(),
            key_expires_in: *left,
        }),
        [Value::Str(handle)] => Some(OpenedSession {
            handle: handle.clone(),
            key_expires_in: 0,
        }),
        _ => None,
    }
}

fn bus_call(client: &mut Client, member: &str, args: &[&str]) -> Result<Vec<Value>, BusError> {
    client.call(&Call {
        destination: Some("org.freedesktop.DBus"),
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member,
        args,
    })
}

/// A failed call as the decision code sees it: a refusal, or no answer.
fn daemon_error(e: BusError) -> DaemonError {
    match &e {
        BusError::Error { name, .. } if is_refusal(name) => DaemonError::Refused,
        _ => unavailable(e),
    }
}

fn unavailable(e: BusError) -> DaemonError {
    DaemonError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(uid: u32, mode: u32) -> Owned {
        Owned {
            uid,
            mode,
            right_kind: true,
        }
    }

    #[test]
    fn a_socket_is_trusted_only_where_root_or_the_daemon_keeps_it() {
        let daemon = 107;
        let dir = owned(daemon, 0o40755);
        let sock = owned(0, 0o140666);
        assert_eq!(socket_trusted(dir, sock, daemon), Ok(()));
        assert_eq!(
            socket_trusted(owned(0, 0o40700), owned(daemon, 0o140600), daemon),
            Ok(())
        );
        let refused = [
            (owned(1000, 0o40755), sock, "directory belongs to uid 1000"),
            (owned(0, 0o41777), sock, "written by others"),
            (owned(0, 0o40775), sock, "written by others"),
            (dir, owned(1000, 0o140666), "belongs to uid 1000"),
            (
                Owned {
                    right_kind: false,
                    ..sock
                },
                sock,
                "not a directory",
            ),
            (
                dir,
                Owned {
                    right_kind: false,
                    ..sock
                },
                "not a socket",
            ),
        ];
        for (d, s, why) in refused {
            let e = socket_trusted(d, s, daemon).unwrap_err();
            assert!(e.contains(why), "{e} / {why}");
        }
    }

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

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod daemon_tests;
