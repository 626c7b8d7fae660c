//! The PAM socket: pam_apikey's login calls (Verify, CheckKey, OpenSession,
//! OpenSessionWith, CloseSession and a Ping) as peer-to-peer D-Bus on a Unix socket of the
//! daemon's own, so that a login does not wait on the bus broker, and a
//! broker that restarts or is flooded stops no key login.
//!
//! The caller is who the kernel says connected (`SO_PEERCRED`, and
//! `SO_PEERGROUPS` for its groups), bound to its process by start time as
//! bus callers are; authorization, throttling and audit lines are the bus
//! methods' own (`login_calls`). Connections are limited per uid, so one
//! user holding many cannot keep root's logins out.

pub mod auth;
pub mod connection;

use crate::caller_binding::{self, ProcessId};
use crate::service::{Caller, KeyService};
use connection::Peer;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections root may hold at once (each PAM handle in sshd, vsftpd, ...).
pub const MAX_ROOT_CONNECTIONS: usize = 256;
/// Connections each other uid may hold at once (a web server's workers).
pub const MAX_USER_CONNECTIONS: usize = 128;
/// Connections all other uids together may hold.
pub const MAX_OTHER_CONNECTIONS: usize = 512;

/// Creates the socket at `path` for everyone to connect to (who may call
/// what is decided per call): its directory is made if missing (0755) and
/// must not be writable by others; a stale socket left by a daemon that
/// died is replaced, a live one is an error (another daemon serves it).
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("{}: the PAM socket needs a directory", path.display()))?;
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} must be a directory that only its owner can write (it is {:o}); pam_apikey \
             would not trust a socket in it",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    if let Ok(old) = std::fs::symlink_metadata(path) {
        if !old.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is served by another process; is apikeyd already running?",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    // Anyone may connect, as anyone may call on the bus; the calls decide.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(listener)
}

/// Accepts connections until the listener fails for good.
pub async fn serve(listener: std::os::unix::net::UnixListener, svc: Arc<KeyService>) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("apikeyd: cannot serve the PAM socket: {e}");
            return;
        }
    };
    let guid = auth::new_guid();
    let counts = Counts::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: the connections we hold
                // end within their deadlines; try again shortly.
                eprintln!("apikeyd: PAM socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(cred) = stream.peer_cred() else {
            continue;
        };
        let uid = cred.uid();
        let slot = match counts.admit(uid) {
            Ok(slot) => slot,
            Err(log) => {
                if log {
                    eprintln!(
                        "apikeyd: PAM socket: uid {uid} holds as many connections as it may \
                         (or all users together do); closing new ones until some end"
                    );
                }
                continue;
            }
        };
        let pid = cred.pid().map(|p| p as u32).unwrap_or(0);
        let peer = Peer {
            caller: Caller {
                uid,
                pid,
                gids: peer_groups(&stream).unwrap_or_else(|| vec![cred.gid()]),
            },
            process: caller_binding::start_time(pid)
                .map(|start_time| ProcessId { pid, start_time }),
        };
        let svc = svc.clone();
        let guid = guid.clone();
        tokio::spawn(async move {
            let _slot = slot;
            connection::serve(stream, peer, svc, guid).await;
        });
    }
}

/// The peer's groups, primary and supplementary, as the kernel noted them
/// at connect (what dbus-daemon reports as UnixGroupIDs).
fn peer_groups(stream: &tokio::net::UnixStream) -> Option<Vec<u32>> {
    let fd = stream.as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer and its length describe `groups`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Some(groups);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || n > 65_536 {
            return None;
        }
        groups = vec![0; n];
    }
    None
}

/// Connections held, per uid.
#[derive(Clone, Default)]
struct Counts {
    inner: Arc<Mutex<CountsInner>>,
}

#[derive(Default)]
struct CountsInner {
    per_uid: HashMap<u32, usize>,
    others: usize,
    /// When each uid's refusal was last logged: once a minute at most, so
    /// a flood of connections is not a flood of log lines.
    logged: HashMap<u32, std::time::Instant>,
}

/// How often a uid's refused connections are logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// A held connection; gives its place back when dropped.
struct Slot {
    counts: Counts,
    uid: u32,
}

impl Counts {
    fn lock(&self) -> std::sync::MutexGuard<'_, CountsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection of `uid`, or `Err(log)` when it has
    /// none: `log` at the first refusal of a uid in a minute.
    fn admit(&self, uid: u32) -> Result<Slot, bool> {
        let mut c = self.lock();
        let held = c.per_uid.get(&uid).copied().unwrap_or(0);
        let allowed = if uid == 0 {
            held < MAX_ROOT_CONNECTIONS
        } else {
            held < MAX_USER_CONNECTIONS && c.others < MAX_OTHER_CONNECTIONS
        };
        if !allowed {
            let now = std::time::Instant::now();
            let due = c
                .logged
                .get(&uid)
                .is_none_or(|at| now.duration_since(*at) >= REFUSAL_LOG_EVERY);
            if due {
                if c.logged.len() >= 1024 {
                    c.logged.clear();
                }
                c.logged.insert(uid, now);
            }
            return Err(due);
        }
        *c.per_uid.entry(uid).or_default() += 1;
        if uid != 0 {
            c.others += 1;
        }
        Ok(Slot {
            counts: self.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
        if self.uid != 0 {
            c.others -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_cannot_take_roots_places_or_everyone_elses() {
        let counts = Counts::default();
        let mut held: Vec<Slot> = (0..MAX_USER_CONNECTIONS)
            .map(|_| counts.admit(1000).unwrap())
            .collect();
        assert!(
            matches!(counts.admit(1000), Err(true)),
            "the limit, logged once"
        );
        assert!(counts.admit(1001).is_ok(), "another user still gets in");
        assert!(counts.admit(0).is_ok(), "root still gets in");
        held.pop();
        let again = counts.admit(1000);
        assert!(again.is_ok(), "a place given back is taken again");
        drop(again);
        drop(held);
        assert!(counts.lock().per_uid.is_empty());
        assert_eq!(counts.lock().others, 0);
    }

    #[test]
    fn all_users_together_are_bounded_and_root_is_apart() {
        let counts = Counts::default();
        let _held: Vec<Slot> = (0..MAX_OTHER_CONNECTIONS)
            .map(|i| {
                counts
                    .admit(2000 + (i / MAX_USER_CONNECTIONS) as u32)
                    .unwrap()
            })
            .collect();
        assert!(counts.admit(9999).is_err());
        let root: Vec<Slot> = (0..MAX_ROOT_CONNECTIONS)
            .map(|_| counts.admit(0).unwrap())
            .collect();
        assert!(counts.admit(0).is_err());
        drop(root);
        assert!(counts.admit(0).is_ok());
    }

    #[test]
    fn a_socket_is_made_for_everyone_in_a_directory_only_its_owner_writes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("run").join("pam.sock");
        let listener = bind(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o666);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o755
        );
        // Served: a second daemon does not take it over.
        let e = bind(&path).unwrap_err();
        assert!(e.contains("already running"), "{e}");
        drop(listener);
        // Stale (nobody listens): replaced.
        assert!(bind(&path).is_ok());
        // Not a socket: left alone.
        let file = dir.path().join("run").join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(bind(&file).unwrap_err().contains("not a socket"));
        // A directory others may write: refused.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = bind(&open.join("pam.sock")).unwrap_err();
        assert!(e.contains("only its owner can write"), "{e}");
    }
}
