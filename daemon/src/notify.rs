//! The service manager's readiness protocol (sd_notify), without libsystemd.
//!
//! The unit is `Type=notify`: the daemon says `READY=1` once it owns its
//! bus name. With `Type=dbus` systemd itself watches the name and stops
//! the unit when it sees the name go, which is what happens for a moment
//! whenever dbus-daemon restarts; the daemon then comes back on the new
//! bus by itself (main.rs), and systemd must not have stopped it meanwhile.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where `NOTIFY_SOCKET` points: a path, or an abstract name ('@' first).
#[derive(Debug, PartialEq, Eq)]
pub enum NotifyTarget {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

/// Parses `NOTIFY_SOCKET`; anything but an absolute path or an abstract
/// name is ignored, as libsystemd ignores it.
pub fn target(value: &std::ffi::OsStr) -> Option<NotifyTarget> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'/' => Some(NotifyTarget::Path(value.into())),
        b'@' => Some(NotifyTarget::Abstract(bytes[1..].to_vec())),
        _ => None,
    }
}

/// Sends `state` (e.g. "READY=1") to the service manager, if one asked
/// for it. Returns whether a message was sent.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET").and_then(|v| target(&v)) {
        Some(target) => send(&target, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends one notification datagram to `target`.
pub fn send(target: &NotifyTarget, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let addr = match target {
        NotifyTarget::Path(p) => SocketAddr::from_pathname(p)?,
        NotifyTarget::Abstract(name) => SocketAddr::from_abstract_name(name)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn paths_and_abstract_names_are_taken_and_anything_else_ignored() {
        assert_eq!(
            target(OsStr::new("/run/systemd/notify")),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            target(OsStr::new("@sd-notify")),
            Some(NotifyTarget::Abstract(b"sd-notify".to_vec()))
        );
        assert_eq!(target(OsStr::new("")), None);
        assert_eq!(target(OsStr::new("relative/path")), None);
    }

    #[test]
    fn a_ready_message_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        send(&target(path.as_os_str()).unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("apikeyd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        send(
            &target(OsStr::new(&format!("@{name}"))).unwrap(),
            "STOPPING=1",
        )
        .unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
