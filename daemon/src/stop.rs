//! `apikeyd --stop`: stops the daemon that owns org.apikey.Keys1, and no
//! other process, where no service manager does it (`make stop`, package
//! removal in a container).
//!
//! The bus reports the pid its owner had when it connected; by the time a
//! signal is sent that number may belong to another process. So the
//! process is pinned with a pidfd first, and the bus is asked again: only
//! when the same connection still owns the name with the same pid, and
//! that process runs as the connection's uid, is the signal sent, through
//! the pidfd, which cannot reach a process that took the number since.

use apikey_proto::names::BUS_NAME;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// What the bus said about the name's owner at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub unique_name: String,
    pub pid: u32,
    pub uid: u32,
}

/// Why nothing was signalled.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name changed hands, or its owner left, between the two looks.
    OwnerChanged,
    /// The pinned process does not run as the bus connection's uid.
    UidMismatch { process: u32, bus: u32 },
}

/// The decision, apart from the system calls: signal only when both looks
/// saw the same owner and the pinned process is that owner's uid.
pub fn may_signal(before: &Owner, after: &Owner, process_uid: u32) -> Result<(), Refusal> {
    if before != after {
        return Err(Refusal::OwnerChanged);
    }
    if process_uid != after.uid {
        return Err(Refusal::UidMismatch {
            process: process_uid,
            bus: after.uid,
        });
    }
    Ok(())
}

async fn owner(dbus: &zbus::fdo::DBusProxy<'_>) -> zbus::Result<Option<Owner>> {
    let name = zbus::names::BusName::try_from(BUS_NAME)?;
    let unique = match dbus.get_name_owner(name.clone()).await {
        Ok(u) => u.to_string(),
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // One answer for that connection, by its unique name: the well-known
    // name could change hands between separate questions.
    let creds = dbus
        .get_connection_credentials(zbus::names::BusName::try_from(unique.as_str())?)
        .await?;
    let (Some(pid), Some(uid)) = (creds.process_id(), creds.unix_user_id()) else {
        return Err(zbus::Error::Failure(
            "the bus did not report the owner's pid and uid".into(),
        ));
    };
    Ok(Some(Owner {
        unique_name: unique,
        pid,
        uid,
    }))
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: plain system call on an fd we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The real uid of the process the pidfd pins, read from /proc by its
/// number; the pidfd is checked to be alive afterwards, so the number
/// still named the same process while /proc was read.
fn pinned_uid(fd: &OwnedFd, pid: u32) -> std::io::Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other("no Uid line"))?;
    // Signal 0: fails with ESRCH once the pinned process has exited.
    pidfd_signal(fd, 0)?;
    Ok(uid)
}

/// Waits until the pinned process has exited (its pidfd turns readable).
fn wait_exit(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return true;
        }
        if rc == 0 || left.is_zero() {
            return false;
        }
    }
}

/// Stops the owner of the name; `Ok(None)` when nothing owns it.
/// Returns the pid that was stopped.
pub async fn stop(timeout: Duration) -> Result<Option<u32>, String> {
    let conn = zbus::connection::Builder::system()
        .build()
        .await
        .map_err(|e| format!("cannot reach the system bus: {e}"))?;
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(|e| format!("cannot talk to the bus daemon: {e}"))?;
    let ask = |what| format!("cannot ask the bus who owns {BUS_NAME} ({what})");
    let Some(before) = owner(&dbus).await.map_err(|e| ask(e.to_string()))? else {
        return Ok(None);
    };
    let fd = match pidfd_open(before.pid) {
        Ok(fd) => fd,
        // Gone already: whatever has the number now is not ours to stop.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(format!("cannot pin process {}: {e}", before.pid)),
    };
    let after = owner(&dbus)
        .await
        .map_err(|e| ask(e.to_string()))?
        .ok_or_else(|| format!("{BUS_NAME} lost its owner meanwhile; nothing stopped"))?;
    let uid = pinned_uid(&fd, before.pid)
        .map_err(|e| format!("process {} is gone or unreadable: {e}", before.pid))?;
    may_signal(&before, &after, uid).map_err(|r| match r {
        Refusal::OwnerChanged => format!("{BUS_NAME} changed hands meanwhile; nothing stopped"),
        Refusal::UidMismatch { process, bus } => format!(
            "process {} runs as uid {process}, the name's owner as uid {bus}; nothing stopped",
            before.pid
        ),
    })?;
    pidfd_signal(&fd, libc::SIGTERM).map_err(|e| format!("cannot signal {}: {e}", before.pid))?;
    if !wait_exit(&fd, timeout) {
        return Err(format!(
            "process {} did not exit within {} s of SIGTERM",
            before.pid,
            timeout.as_secs()
        ));
    }
    Ok(Some(before.pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(unique: &str, pid: u32, uid: u32) -> Owner {
        Owner {
            unique_name: unique.into(),
            pid,
            uid,
        }
    }

    #[test]
    fn the_same_owner_twice_running_as_its_uid_is_signalled() {
        let o = owner(":1.7", 4242, 990);
        assert_eq!(may_signal(&o, &o.clone(), 990), Ok(()));
    }

    #[test]
    fn a_new_owner_a_new_pid_or_another_uid_is_not() {
        let o = owner(":1.7", 4242, 990);
        assert_eq!(
            may_signal(&o, &owner(":1.9", 4242, 990), 990),
            Err(Refusal::OwnerChanged)
        );
        assert_eq!(
            may_signal(&o, &owner(":1.7", 4243, 990), 990),
            Err(Refusal::OwnerChanged)
        );
        assert_eq!(
            may_signal(&o, &o.clone(), 1000),
            Err(Refusal::UidMismatch {
                process: 1000,
                bus: 990
            })
        );
    }

    #[test]
    fn a_pidfd_signals_and_sees_the_exit_of_its_own_process_only() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id()).unwrap();
        assert_eq!(
            pinned_uid(&fd, child.id()).unwrap(),
            nix::unistd::getuid().as_raw()
        );
        assert!(!wait_exit(&fd, Duration::from_millis(50)));
        pidfd_signal(&fd, libc::SIGTERM).unwrap();
        assert!(wait_exit(&fd, Duration::from_secs(10)));
        child.wait().unwrap();
        // Reaped: the number is free, and the pidfd still names the old
        // process, which no signal reaches.
        assert!(pidfd_signal(&fd, 0).is_err());
    }
}
