//! Everything the daemon asks the operating system: the time, a caller's
//! /proc entry, accounts and groups. Behind a trait so the service logic
//! can be tested with a scripted host and an injected clock.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use crate::local_files::{Local, LocalFiles, Paths, ShadowEntry};

/// What /proc says about a bus caller (S4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcIdentity {
    pub loginuid: Option<u32>,
    pub sessionid: Option<u32>,
}

/// An account as NSS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub name: String,
}

/// An NSS answer that tells "definitely gone" from "could not ask".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    Gone,
    Unavailable(String),
}

/// What shadow says about an account's usability (S8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowState {
    Usable,
    Locked,
    Expired,
}

pub trait Host: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> i64;
    /// Reads /proc/PID for a caller whose bus uid is `uid`; every Uid
    /// field must match, and anything unreadable is an error.
    /// `setuid_root_ok` admits a set-uid-root program run by another user
    /// (see [`uids_acceptable`]); only the session calls pass true.
    fn proc_identity(
        &self,
        pid: u32,
        uid: u32,
        setuid_root_ok: bool,
    ) -> Result<ProcIdentity, String>;
    fn account_by_uid(&self, uid: u32) -> Lookup<Account>;
    fn account_by_name(&self, name: &str) -> Lookup<Account>;
    /// Shadow state; an error means it could not be determined.
    fn shadow_state(&self, name: &str, today: i64) -> Result<ShadowState, String>;
    fn group_gid(&self, name: &str) -> Option<u32>;
    /// The `quick_` lookups answer only what needs no NSS call and no file
    /// read (see [`crate::local_files`]); `None` means "ask the one above",
    /// on a thread that may block. The daemon's async workers use them.
    /// An account by uid and its shadow state, in one look (one set of
    /// stats): what a key's owner check needs.
    fn quick_account_state(&self, uid: u32, today: i64) -> Option<(Account, ShadowState)>;
    fn quick_group_gid(&self, name: &str) -> Option<u32>;
    /// UID_MIN of /etc/login.defs: below it are system accounts.
    fn uid_min(&self) -> u32;
    /// The kernel's id of this boot: what tells a session of this boot
    /// from one of an earlier boot that reused its audit session id (S5).
    fn boot_id(&self) -> String;
    /// True while some process still belongs to this audit session.
    fn audit_session_alive(&self, sessionid: u32) -> bool;
    /// Every audit session some process belongs to, from one look at
    /// /proc; `None` when that cannot be told.
    fn live_audit_sessions(&self) -> Option<std::collections::HashSet<u32>>;
}

/// The real operating system.
pub struct SystemHost {
    uid_min: u32,
    boot_id: String,
    files: LocalFiles,
    /// Why /etc/shadow cannot be read, if so: found once, at start (the
    /// daemon's groups do not change while it runs), not at every lookup.
    shadow_problem: Option<String>,
}

const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

impl SystemHost {
    pub fn new() -> SystemHost {
        let uid_min = std::fs::read_to_string("/etc/login.defs")
            .ok()
            .and_then(|t| parse_uid_min(&t))
            .unwrap_or(1000);
        // Read once: the boot id cannot change while the daemon runs.
        let boot_id = match std::fs::read_to_string(BOOT_ID_FILE)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_boot_id(&t).ok_or_else(|| "not a boot id".to_string()))
        {
            Ok(id) => id,
            Err(e) => {
                // An id of this daemon run alone: whatever is bound to it
                // dies when the daemon restarts, which errs on the side of
                // ending sessions rather than carrying them into a new boot.
                let id = apikey_proto::token::new_session_handle()
                    .map(|r| format!("daemon-{r}"))
                    .unwrap_or_else(|_| format!("daemon-{}", std::process::id()));
                eprintln!("apikeyd: cannot read {BOOT_ID_FILE} ({e}); using {id} as the boot id");
                id
            }
        };
        // Said once, loudly: without it every key login of a local account
        // without a readable shadow entry is refused (S8 fails closed).
        let shadow_problem =
            crate::privileges::shadow_readable(std::path::Path::new("/etc/shadow")).err();
        if let Some(problem) = &shadow_problem {
            eprintln!("apikeyd: WARNING: {problem}");
        }
        SystemHost {
            uid_min,
            boot_id: test_boot_id().unwrap_or(boot_id),
            files: LocalFiles::new(Paths::default()),
            shadow_problem,
        }
    }
}

/// Fleet mode's owners and actors are user names; these are the uids
/// they have on this host.
impl crate::store::postgres::Accounts for SystemHost {
    fn uid_of(&self, name: &str) -> Option<u32> {
        match self.account_by_name(name) {
            Lookup::Found(a) => Some(a.uid),
            _ => None,
        }
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        match self.account_by_uid(uid) {
            Lookup::Found(a) => Some(a.name),
            _ => None,
        }
    }

    fn quick_uid_of(&self, name: &str) -> Option<u32> {
        match self.files.peek_uid_of_name(name) {
            Local::Found(uid) => Some(uid),
            _ => None,
        }
    }
}

impl Default for SystemHost {
    fn default() -> Self {
        SystemHost::new()
    }
}

impl Host for SystemHost {
    fn now(&self) -> i64 {
        apikey_proto::timefmt::now()
    }

    fn proc_identity(
        &self,
        pid: u32,
        uid: u32,
        setuid_root_ok: bool,
    ) -> Result<ProcIdentity, String> {
        // One directory handle for all three files, so they describe the
        // same process even if the pid is reused meanwhile.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(format!("/proc/{pid}"))
            .map_err(|e| format!("cannot open /proc/{pid}: {e}"))?;
        let status = read_at(&dir, "status")?;
        let uids = parse_status_uids(&status).ok_or("no Uid line in status")?;
        if !uids_acceptable(uids, uid, setuid_root_ok) {
            return Err(format!(
                "process {pid} runs with uids {uids:?}, the bus says {uid}"
            ));
        }
        let loginuid = parse_audit_id(&read_at(&dir, "loginuid")?).ok_or("bad loginuid")?;
        let sessionid = parse_audit_id(&read_at(&dir, "sessionid")?).ok_or("bad sessionid")?;
        Ok(ProcIdentity {
            loginuid,
            sessionid,
        })
    }

    // Each lookup answers from the local files where they hold the entry
    // and NSS would answer from them too; everything else asks NSS as
    // before, including every "not found".

    fn account_by_uid(&self, uid: u32) -> Lookup<Account> {
        if let Local::Found(name) = self.files.name_of_uid(uid) {
            return Lookup::Found(Account { uid, name });
        }
        lookup(nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)))
    }

    fn account_by_name(&self, name: &str) -> Lookup<Account> {
        if name.is_empty() || name.contains('\0') {
            return Lookup::Gone;
        }
        if let Local::Found(uid) = self.files.uid_of_name(name) {
            return Lookup::Found(Account {
                uid,
                name: name.to_string(),
            });
        }
        lookup(nix::unistd::User::from_name(name))
    }

    fn shadow_state(&self, name: &str, today: i64) -> Result<ShadowState, String> {
        if let Local::Found(e) = self.files.shadow(name) {
            return Ok(entry_state(e, today));
        }
        let entry = getspnam(name)?;
        match entry {
            // No entry is an account without a password of its own (from
            // a directory, say), unless the local file could not be read
            // at all: then its lock state is unknown, and unknown refuses
            // (S8), like any failed lookup.
            None => match &self.shadow_problem {
                None => Ok(ShadowState::Usable),
                Some(problem) => Err(problem.clone()),
            },
            Some((hash, expire)) => Ok(shadow_state(&hash, expire, today)),
        }
    }

    fn group_gid(&self, name: &str) -> Option<u32> {
        if let Local::Found(gid) = self.files.gid(name) {
            return Some(gid);
        }
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }

    fn quick_account_state(&self, uid: u32, today: i64) -> Option<(Account, ShadowState)> {
        match self.files.peek_account(uid) {
            Local::Found((name, e)) => Some((Account { uid, name }, entry_state(e, today))),
            _ => None,
        }
    }

    fn quick_group_gid(&self, name: &str) -> Option<u32> {
        match self.files.peek_gid(name) {
            Local::Found(gid) => Some(gid),
            _ => None,
        }
    }

    fn uid_min(&self) -> u32 {
        self.uid_min
    }

    fn boot_id(&self) -> String {
        self.boot_id.clone()
    }

    fn audit_session_alive(&self, sessionid: u32) -> bool {
        audit_session_alive(sessionid)
    }

    fn live_audit_sessions(&self) -> Option<std::collections::HashSet<u32>> {
        live_audit_sessions()
    }
}

/// Tests simulate a reboot by giving the daemon another boot id. Only
/// debug builds (what the test suite runs) honour the variable; in a
/// release build the condition is a constant and the switch is gone.
fn test_boot_id() -> Option<String> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("APIKEYD_TEST_BOOT_ID")
        .ok()
        .filter(|v| !v.is_empty())
}

/// True while some process still belongs to audit session `sessionid`.
pub fn audit_session_alive(sessionid: u32) -> bool {
    match audit_sessions_in_proc() {
        Some(mut ids) => ids.any(|id| id == sessionid),
        // Cannot tell: do not end sessions on a guess.
        None => true,
    }
}

pub fn live_audit_sessions() -> Option<std::collections::HashSet<u32>> {
    audit_sessions_in_proc().map(Iterator::collect)
}

/// The audit session of every process in /proc, one per process (a
/// process that exits meanwhile has nothing to read and is skipped);
/// `None` when /proc cannot be read.
fn audit_sessions_in_proc() -> Option<impl Iterator<Item = u32>> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(dir.flatten().filter_map(|e| {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let text = std::fs::read_to_string(e.path().join("sessionid")).ok()?;
        parse_audit_id(&text).flatten()
    }))
}

/// The boot id as the kernel prints it: a UUID, lower-case hex and dashes.
pub fn parse_boot_id(text: &str) -> Option<String> {
    let id = text.trim();
    let shape_ok = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    shape_ok.then(|| id.to_ascii_lowercase())
}

fn lookup(r: nix::Result<Option<nix::unistd::User>>) -> Lookup<Account> {
    match r {
        Ok(Some(u)) => Lookup::Found(Account {
            uid: u.uid.as_raw(),
            name: u.name,
        }),
        Ok(None) => Lookup::Gone,
        Err(e) => Lookup::Unavailable(e.to_string()),
    }
}

fn read_at(dir: &File, name: &str) -> Result<String, String> {
    use std::os::fd::AsFd;
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("cannot open {name}: {e}"))?;
    let mut text = String::new();
    File::from(fd)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    Ok(text)
}

/// S4: every uid of the caller (real, effective, saved, filesystem) must
/// be the uid the bus reports. One exception, for the PAM session calls
/// only (`setuid_root_ok`): su and sudo are set-uid-root programs that open
/// their PAM session with effective, saved and filesystem uid 0 while the
/// real uid is still the invoking user's. The bus reports 0, which those
/// three match; refusing would leave every su/sudo session unregistered,
/// and with it the rule that a nested session never ends its parent's
/// keys. Making or rotating keys never takes this exception.
pub fn uids_acceptable(uids: [u32; 4], bus_uid: u32, setuid_root_ok: bool) -> bool {
    uids.iter().all(|u| *u == bus_uid)
        || (setuid_root_ok && bus_uid == 0 && uids[1..].iter().all(|u| *u == 0))
}

/// The four ids of the `Uid:` line (real, effective, saved, filesystem).
pub fn parse_status_uids(status: &str) -> Option<[u32; 4]> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let ids: Vec<u32> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    ids.try_into().ok()
}

/// loginuid/sessionid: `None` for the unset value 4294967295; `Some(None)`
/// is never returned, garbage is `None` at the outer level.
pub fn parse_audit_id(text: &str) -> Option<Option<u32>> {
    let n: u32 = text.trim().parse().ok()?;
    Some((n != u32::MAX).then_some(n))
}

pub fn parse_uid_min(login_defs: &str) -> Option<u32> {
    login_defs.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("UID_MIN"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// `usermod -L` puts a `!` in front of a real hash; a bare `!`, `!!`, `*`
/// or `!*` only means "no password" and does not lock key logins. The
/// shadow expiry is in days since the epoch, -1 for none; pam_unix treats
/// the account as expired from that day on.
pub fn shadow_state(hash: &str, expire_day: i64, today: i64) -> ShadowState {
    let rest = hash.trim_start_matches('!');
    let locked = hash.starts_with('!') && !rest.is_empty() && rest != "*";
    entry_state(ShadowEntry { locked, expire_day }, today)
}

/// [`shadow_state`] of an entry already reduced to lock and expiry.
pub fn entry_state(e: ShadowEntry, today: i64) -> ShadowState {
    if e.locked {
        return ShadowState::Locked;
    }
    if e.expire_day >= 0 && today >= e.expire_day {
        return ShadowState::Expired;
    }
    ShadowState::Usable
}

/// getspnam_r: `Ok(None)` when the account has no shadow entry (NSS
/// sources without shadow data), an error when shadow cannot be read.
fn getspnam(name: &str) -> Result<Option<(String, i64)>, String> {
    // SAFETY: the arguments are what getspnam_with hands over: live,
    // correctly sized memory.
    getspnam_with(name, |name, entry, buf, result| unsafe {
        libc::getspnam_r(name.as_ptr(), entry, buf.as_mut_ptr(), buf.len(), result)
    })
}

/// Largest buffer offered to getspnam_r: an entry longer than this is not
/// one a system has.
const MAX_SHADOW_BUFFER: usize = 1 << 20;

/// The loop around a getspnam_r-like `call`: a buffer four times larger
/// while it answers ERANGE, up to `MAX_SHADOW_BUFFER`.
fn getspnam_with(
    name: &str,
    mut call: impl FnMut(&CString, &mut libc::spwd, &mut [libc::c_char], &mut *mut libc::spwd) -> i32,
) -> Result<Option<(String, i64)>, String> {
    let cname = CString::new(name).map_err(|_| "user name contains NUL".to_string())?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: an all-zero spwd is a valid value of the C struct.
        let mut entry: libc::spwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::spwd = std::ptr::null_mut();
        let rc = call(&cname, &mut entry, &mut buf, &mut result);
        if rc == libc::ERANGE && buf.len() < MAX_SHADOW_BUFFER {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc == libc::ENOENT || (rc == 0 && result.is_null()) {
            return Ok(None);
        }
        if rc != 0 {
            return Err(format!(
                "cannot read the shadow entry of {}: {}",
                apikey_proto::services::printable(name, 32),
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        // SAFETY: on success sp_pwdp points into `buf` and is NUL-terminated.
        let hash = unsafe { std::ffi::CStr::from_ptr(entry.sp_pwdp) }
            .to_string_lossy()
            .into_owned();
        return Ok(Some((hash, entry.sp_expire as i64)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_uids() {
        let status = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\n";
        assert_eq!(parse_status_uids(status), Some([1000; 4]));
        assert_eq!(
            parse_status_uids("Uid:\t1000\t0\t1000\t1000\n"),
            Some([1000, 0, 1000, 1000])
        );
        assert_eq!(parse_status_uids("Uid:\t1000\n"), None);
        assert_eq!(parse_status_uids("Gid:\t1\t1\t1\t1\n"), None);
    }

    #[test]
    fn audit_ids() {
        assert_eq!(parse_audit_id("4294967295"), Some(None));
        assert_eq!(parse_audit_id("1000\n"), Some(Some(1000)));
        assert_eq!(parse_audit_id("junk"), None);
    }

    #[test]
    fn uid_min_from_login_defs() {
        let defs = "# UID_MIN 5\nUID_MIN\t\t\t 1000\nUID_MAX 60000\n";
        assert_eq!(parse_uid_min(defs), Some(1000));
        assert_eq!(parse_uid_min("UID_MAX 1\n"), None);
    }

    #[test]
    fn locked_means_a_bang_in_front_of_a_real_hash() {
        assert_eq!(shadow_state("!$y$j9T$abc", -1, 100), ShadowState::Locked);
        assert_eq!(shadow_state("!!$6$abc", -1, 100), ShadowState::Locked);
        for no_password in ["!", "!!", "*", "!*", ""] {
            assert_eq!(
                shadow_state(no_password, -1, 100),
                ShadowState::Usable,
                "{no_password}"
            );
        }
        assert_eq!(shadow_state("$y$j9T$abc", -1, 100), ShadowState::Usable);
    }

    #[test]
    fn expiry_day_counts_from_that_day() {
        assert_eq!(shadow_state("*", 100, 99), ShadowState::Usable);
        assert_eq!(shadow_state("*", 100, 100), ShadowState::Expired);
        assert_eq!(shadow_state("*", 0, 100), ShadowState::Expired);
    }

    #[test]
    fn boot_ids() {
        let id = "0f6c5a8e-3b1d-4c2a-9e7f-1a2b3c4d5e6f";
        assert_eq!(parse_boot_id(&format!("{id}\n")).as_deref(), Some(id));
        assert_eq!(parse_boot_id(""), None);
        assert_eq!(parse_boot_id("0f6c5a8e-3b1d-4c2a-9e7f-1a2b3c4d5e6"), None);
        assert_eq!(parse_boot_id("0f6c5a8e_3b1d-4c2a-9e7f-1a2b3c4d5e6f"), None);
        let host = SystemHost::new();
        assert_eq!(host.boot_id(), host.boot_id());
        if std::path::Path::new(BOOT_ID_FILE).exists() {
            assert!(
                parse_boot_id(&host.boot_id()).is_some(),
                "{}",
                host.boot_id()
            );
        }
    }

    #[test]
    fn own_process_is_readable() {
        let host = SystemHost::new();
        let me = std::process::id();
        let uid = nix::unistd::getuid().as_raw();
        assert!(host.proc_identity(me, uid, false).is_ok());
        assert!(host.proc_identity(me, uid + 1, false).is_err());
        assert!(host.proc_identity(u32::MAX - 1, uid, false).is_err());
    }

    #[test]
    fn answers_from_the_files_are_what_nss_says() {
        let host = SystemHost::new();
        for uid in [0, 1, 65534] {
            let nss = lookup(nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)));
            assert_eq!(host.account_by_uid(uid), nss, "{uid}");
            if let Lookup::Found(a) = nss {
                assert_eq!(host.account_by_name(&a.name), Lookup::Found(a));
            }
        }
        let root = nix::unistd::Group::from_name("root")
            .unwrap()
            .map(|g| g.gid.as_raw());
        assert_eq!(host.group_gid("root"), root);
        assert_eq!(host.account_by_name("no-such-user-here"), Lookup::Gone);
    }

    #[test]
    fn only_session_calls_accept_a_setuid_root_caller() {
        let su = [1000, 0, 0, 0];
        assert!(!uids_acceptable(su, 0, false));
        assert!(uids_acceptable(su, 0, true));
        assert!(uids_acceptable([0; 4], 0, false));
        assert!(uids_acceptable([1000; 4], 1000, false));
        // Only the real uid may differ, and only towards root.
        assert!(!uids_acceptable([1000, 0, 1000, 0], 0, true));
        assert!(!uids_acceptable([0, 1000, 1000, 1000], 1000, true));
        assert!(!uids_acceptable([1000, 1001, 1001, 1001], 1001, true));
    }

    #[test]
    fn the_clock_is_the_systems() {
        let clock = apikey_proto::timefmt::now();
        assert!((SystemHost::new().now() - clock).abs() <= 2);
    }

    #[test]
    fn uid_min_is_the_sites() {
        let expected = std::fs::read_to_string("/etc/login.defs")
            .ok()
            .and_then(|t| parse_uid_min(&t))
            .unwrap_or(1000);
        assert_eq!(SystemHost::new().uid_min(), expected);
    }

    /// A name NSS cannot even be asked about is no account, not an
    /// unavailable directory.
    #[test]
    fn impossible_names_are_no_accounts() {
        let host = SystemHost::new();
        assert_eq!(host.account_by_name(""), Lookup::Gone);
        assert_eq!(host.account_by_name("ro\0ot"), Lookup::Gone);
    }

    /// The system host with a file cache that trusts files changed just
    /// now: the end-to-end tests add users beside these tests, and the
    /// usual two seconds of settling would leave the quick path unused.
    fn host_trusting_fresh_files() -> SystemHost {
        SystemHost {
            files: LocalFiles::new(Paths::default()).with_settle(std::time::Duration::ZERO),
            ..SystemHost::new()
        }
    }

    /// The quick path's first answer after the files were read, tried
    /// again while another process rewrites them between the two looks.
    fn answered_quickly<T>(mut look: impl FnMut() -> Option<T>) -> Option<T> {
        for _ in 0..100 {
            if let Some(answer) = look() {
                return Some(answer);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Groups by name, from the files and without a file read once they
    /// have been read: a group other than root's, and one that is not.
    #[test]
    fn groups_are_found_by_name() {
        let group = std::fs::read_to_string("/etc/group").unwrap();
        let (name, gid) = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
            })
            .find(|(_, gid)| *gid > 1)
            .expect("a group with a gid above 1 in /etc/group");
        let host = host_trusting_fresh_files();
        assert_eq!(host.group_gid(&name), Some(gid));
        let quick = answered_quickly(|| {
            host.group_gid(&name);
            host.quick_group_gid(&name)
        });
        assert_eq!(quick, Some(gid));
        assert_eq!(host.group_gid("no-such-group-here"), None);
        assert_eq!(host.quick_group_gid("no-such-group-here"), None);
    }

    /// Fleet owners by name, from the files without a read once they have
    /// been read: an account other than root's, and none for a name the
    /// files do not hold (which may still be NSS's).
    #[test]
    fn a_fleet_owners_uid_comes_quickly_from_the_files() {
        use crate::store::postgres::Accounts;
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let (name, uid) = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
            })
            .find(|(_, uid)| *uid > 1)
            .expect("an account with a uid above 1 in /etc/passwd");
        let host = host_trusting_fresh_files();
        assert_eq!(host.uid_of(&name), Some(uid));
        let quick = answered_quickly(|| {
            host.uid_of(&name);
            host.quick_uid_of(&name)
        });
        assert_eq!(quick, Some(uid));
        assert_eq!(host.quick_uid_of("no-such-user-here"), None);
    }

    /// The owner check's quick path: root's account and shadow entry in
    /// one look once the files have been read (root reads /etc/shadow).
    #[test]
    fn an_account_and_its_shadow_entry_come_in_one_look() {
        if !apikey_test_skip::proceed_unless(apikey_test_skip::unmet_root()) {
            return;
        }
        let host = host_trusting_fresh_files();
        let today = host.now() / 86400;
        let Lookup::Found(root) = host.account_by_uid(0) else {
            panic!("no uid 0")
        };
        let state = host.shadow_state(&root.name, today).unwrap();
        let quick = answered_quickly(|| {
            host.account_by_uid(0);
            host.shadow_state("root", today).ok()?;
            host.quick_account_state(0, today)
        });
        assert_eq!(quick, Some((root, state)));
        assert_eq!(host.quick_account_state(4_000_000_000, today), None);
    }

    /// Fleet mode's owners are names: the system host gives their uids
    /// here, and the names of uids.
    #[test]
    fn fleet_names_and_uids_are_the_systems() {
        use crate::store::postgres::Accounts;
        let host = SystemHost::new();
        assert_eq!(host.uid_of("root"), Some(0));
        assert_eq!(host.uid_of("no-such-user-here"), None);
        assert_eq!(host.name_of(0).as_deref(), Some("root"));
        assert_eq!(host.name_of(4_000_000_000), None);
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(host.uid_of("nobody"), Some(nobody.uid.as_raw()));
        assert_eq!(host.name_of(nobody.uid.as_raw()).as_deref(), Some("nobody"));
    }

    /// Only debug builds (the tests') take another boot id from the
    /// environment, and only a non-empty one.
    #[test]
    fn tests_may_simulate_a_reboot() {
        std::env::set_var("APIKEYD_TEST_BOOT_ID", "");
        assert_eq!(test_boot_id(), None);
        std::env::set_var("APIKEYD_TEST_BOOT_ID", "another-boot");
        assert_eq!(test_boot_id().as_deref(), Some("another-boot"));
        assert_eq!(SystemHost::new().boot_id(), "another-boot");
        std::env::remove_var("APIKEYD_TEST_BOOT_ID");
        assert_eq!(test_boot_id(), None);
    }

    /// read_at reads a file whole, up to 64 KiB.
    #[test]
    fn files_are_read_whole_up_to_their_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("small"), "x".repeat(5000)).unwrap();
        std::fs::write(dir.path().join("big"), "y".repeat(100_000)).unwrap();
        let handle = File::open(dir.path()).unwrap();
        assert_eq!(read_at(&handle, "small").unwrap().len(), 5000);
        assert_eq!(read_at(&handle, "big").unwrap().len(), 64 * 1024);
        assert!(read_at(&handle, "missing").is_err());
    }

    /// A process that belongs to an audit session keeps it alive; once it
    /// is gone, so is the session. The session is a child's own: writing
    /// its loginuid gives it a new one (root, with audit support).
    #[test]
    fn audit_sessions_live_while_a_process_belongs_to_them() {
        let unmet = apikey_test_skip::unmet_root().or_else(apikey_test_skip::unmet_loginuid);
        if !apikey_test_skip::proceed_unless(unmet) {
            return;
        }
        let path = std::ffi::CString::new("/proc/self/loginuid").unwrap();
        // SAFETY: the child makes only async-signal-safe calls (open,
        // write, pause) before it is killed.
        let child = unsafe {
            let pid = libc::fork();
            if pid == 0 {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"4242".as_ptr().cast(), 4) != 4 {
                    libc::_exit(1);
                }
                libc::close(fd);
                loop {
                    libc::pause();
                }
            }
            pid
        };
        assert!(child > 0);
        let read_session = || {
            std::fs::read_to_string(format!("/proc/{child}/sessionid"))
                .ok()
                .and_then(|t| parse_audit_id(&t))
                .flatten()
        };
        let start = std::time::Instant::now();
        let session = loop {
            if let Some(id) = read_session().filter(|_| {
                std::fs::read_to_string(format!("/proc/{child}/loginuid")).unwrap() == "4242"
            }) {
                break id;
            }
            assert!(start.elapsed().as_secs() < 5, "the child never logged in");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let host = SystemHost::new();
        let alive = host.audit_session_alive(session);
        let listed = host
            .live_audit_sessions()
            .is_some_and(|s| s.contains(&session));
        // SAFETY: our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        assert!(alive && listed, "session {session}: {alive} {listed}");
        assert!(!host.audit_session_alive(session));
        assert!(!host.live_audit_sessions().unwrap().contains(&session));
    }

    /// The buffer grows fourfold while getspnam_r says ERANGE, up to
    /// 1 MiB; then the lookup fails rather than growing without end.
    #[test]
    fn shadow_lookups_grow_their_buffer_as_asked() {
        let answer = |needs: usize| {
            let mut sizes = Vec::new();
            let got = getspnam_with("alice", |_, entry, buf, result| {
                sizes.push(buf.len());
                if buf.len() < needs {
                    return libc::ERANGE;
                }
                let hash = b"$y$hash\0";
                for (d, s) in buf.iter_mut().zip(hash) {
                    *d = *s as libc::c_char;
                }
                entry.sp_pwdp = buf.as_mut_ptr();
                entry.sp_expire = 19_000;
                *result = entry;
                0
            });
            (got, sizes)
        };
        assert_eq!(
            answer(10_000),
            (Ok(Some(("$y$hash".into(), 19_000))), vec![4096, 16384])
        );
        assert_eq!(answer(0).1, vec![4096]);
        let (got, sizes) = answer(usize::MAX);
        assert_eq!(sizes, vec![4096, 16384, 65536, 262144, 1048576]);
        assert!(got
            .unwrap_err()
            .contains("cannot read the shadow entry of alice"));
        let none = getspnam_with("alice", |_, _, _, _| libc::ENOENT);
        assert_eq!(none, Ok(None));
        let none = getspnam_with("alice", |_, _, _, _| 0);
        assert_eq!(none, Ok(None));
        let failed = getspnam_with("alice", |_, _, _, _| libc::EIO);
        assert!(failed.unwrap_err().contains("alice"));
        assert!(getspnam_with("a\0b", |_, _, _, _| 0).is_err());
    }

    /// The real getspnam_r agrees with /etc/shadow (root reads it).
    #[test]
    fn shadow_entries_are_read_through_nss() {
        if !apikey_test_skip::proceed_unless(apikey_test_skip::unmet_root()) {
            return;
        }
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
        let root: Vec<&str> = shadow
            .lines()
            .find(|l| l.starts_with("root:"))
            .expect("root in /etc/shadow")
            .split(':')
            .collect();
        let expire = root[7].parse::<i64>().unwrap_or(-1);
        assert_eq!(getspnam("root"), Ok(Some((root[1].to_string(), expire))));
        assert_eq!(getspnam("no-such-user-here"), Ok(None));
    }
}
