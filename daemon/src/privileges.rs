//! `apikeyd --run-as USER [--log FILE]`: started as root by something
//! that cannot give the daemon its account and groups itself (D-Bus
//! activation without systemd, whose helper drops supplementary groups;
//! `make start`), the daemon takes them on before it does anything else:
//! the account's uid and gid, the group `shadow` where one exists (S8:
//! locked and expired accounts), no other group, and no way back
//! (no-new-privileges).
//!
//! Also the check every start makes: can the daemon read the lock state
//! of local accounts at all? Without it every key login is refused (host.rs),
//! and the daemon says why, once, at start.

use nix::unistd::{Gid, Uid, User};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The group that may read /etc/shadow on Debian.
pub const SHADOW_GROUP: &str = "shadow";

/// Who the daemon becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: shadow's gid, or none.
    pub groups: Vec<u32>,
}

/// The identity for `user`, refusing accounts that must never run the
/// daemon: root (it would defeat the drop) and unknown names.
pub fn identity(user: &str) -> Result<Identity, String> {
    let account = User::from_name(user)
        .map_err(|e| format!("cannot look up the account {user}: {e}"))?
        .ok_or_else(|| format!("no account {user}"))?;
    if account.uid.is_root() {
        return Err(format!("{user} is root; the daemon does not run as root"));
    }
    let shadow = nix::unistd::Group::from_name(SHADOW_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    Ok(Identity {
        uid: account.uid.as_raw(),
        gid: account.gid.as_raw(),
        groups: shadow.into_iter().collect(),
    })
}

/// Sends stderr (the daemon's own messages, and audit lines when no
/// syslog listens) to `path`, appended, mode 0640. Opened before the drop,
/// so the file may stay root's.
pub fn log_to(path: &Path) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open the log {}: {e}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: both are open descriptors; fd 2 is replaced atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(format!(
            "cannot log to {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Becomes `id` for good: groups, gid, uid, then no-new-privileges; checks
/// that none of the old ids is left.
pub fn drop_to(id: &Identity) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("--run-as needs to be started as root".into());
    }
    let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    let gid = Gid::from_raw(id.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    let uid = Uid::from_raw(id.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "no-new-privileges: {}",
            std::io::Error::last_os_error()
        ));
    }
    let ids = nix::unistd::getresuid().map_err(|e| e.to_string())?;
    if [ids.real, ids.effective, ids.saved]
        .iter()
        .any(|u| *u != uid)
        || nix::unistd::setuid(Uid::from_raw(0)).is_ok()
    {
        return Err("the drop to the daemon's account did not hold".into());
    }
    Ok(())
}

/// Whether the lock state of local accounts is readable: /etc/shadow is
/// absent (nothing to read), or opens. `Err` names the problem.
pub fn shadow_readable(shadow: &Path) -> Result<(), String> {
    match std::fs::File::open(shadow) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot read {} ({e}): locked and expired accounts cannot be told apart, so \
             every key login of an account without a readable lock state is refused. Give \
             the daemon the group {SHADOW_GROUP} (the unit does; without systemd, start it \
             as root with --run-as apikeyd, as make start and bus activation do)",
            shadow.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_accounts_are_refused() {
        assert!(identity("root").unwrap_err().contains("root"));
        assert!(identity("no-such-account-apikey").is_err());
    }

    #[test]
    fn a_missing_or_readable_shadow_file_is_no_problem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(shadow_readable(&dir.path().join("missing")).is_ok());
        let file = dir.path().join("shadow");
        std::fs::write(&file, "x").unwrap();
        assert!(shadow_readable(&file).is_ok());
        // Unreadable: the end-to-end tests run the daemon without the
        // group (root, which runs these, reads every file).
    }
}
