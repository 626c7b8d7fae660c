//! Real local users and groups, made with the shadow tools and removed on
//! drop. The daemon resolves callers through NSS and reads shadow for
//! locked and expired accounts, so nothing short of real accounts tests it.
//!
//! Names are `akt`/`akg` + random suffix, unique across parallel test
//! processes and unlike any name a person or package would pick.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::Duration;

use crate::{skip, tmp};

pub const USER_PREFIX: &str = "akt";
pub const GROUP_PREFIX: &str = "akg";
/// Longer names are cut in `ps`, `w` and utmp; keep them whole.
const MAX_NAME: usize = 16;
const SUFFIX_LEN: usize = 6;
/// GECOS of every test user: who made it, so a later run can remove the
/// users of a test process that was killed before its Drop ran.
const GECOS_MARK: &str = "apikey-tests";

/// A local user, deleted (home and all) on drop.
#[derive(Debug)]
pub struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl TestUser {
    /// `useradd -m -U -s /bin/sh akt<prefix><random>`; `prefix` (e.g.
    /// "alice") only makes failures easier to read and is shortened to fit.
    pub fn create(prefix: &str) -> TestUser {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_users);

        let prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .take(MAX_NAME - USER_PREFIX.len() - SUFFIX_LEN)
            .collect();
        let gecos = format!("{GECOS_MARK} {}", tmp::owner_tag());
        for _ in 0..5 {
            let name = format!("{USER_PREFIX}{prefix}{}", random_suffix());
            let out = shadow_tool(
                "useradd",
                &["-m", "-U", "-s", "/bin/sh", "-c", &gecos, &name],
                None,
            );
            match out.status.code() {
                Some(0) => return TestUser::lookup(&name),
                // 9: name taken (by a parallel test); pick another.
                Some(9) => continue,
                _ => panic!("useradd {name} failed: {}", describe(&out)),
            }
        }
        panic!("useradd: no free name after 5 tries");
    }

    fn lookup(name: &str) -> TestUser {
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("user {name} was created but NSS cannot find it"));
        TestUser {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The user's own group (useradd -U).
    pub fn gid(&self) -> u32 {
        self.gid
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Sets a real password hash (needed before `lock`: locking a bare `!`
    /// is not a lock, see S8).
    pub fn set_password(&self, password: &str) {
        let line = format!("{}:{password}\n", self.name);
        let out = shadow_tool("chpasswd", &[], Some(line.as_bytes()));
        check("chpasswd", &out);
    }

    /// `usermod -L`: a `!` in front of the hash.
    pub fn lock(&self) {
        self.usermod(&["-L"]);
    }

    /// `usermod -U`.
    pub fn unlock(&self) {
        self.usermod(&["-U"]);
    }

    /// Shadow expiry date in the past. Day 1 (1970-01-02), not 0: shadow(5)
    /// says 0 may be read as "never expires".
    pub fn expire(&self) {
        self.usermod(&["-e", "1970-01-02"]);
    }

    /// Removes the expiry date again.
    pub fn unexpire(&self) {
        self.usermod(&["-e", ""]);
    }

    pub fn usermod(&self, args: &[&str]) {
        let mut all: Vec<&str> = args.to_vec();
        all.push(&self.name);
        let out = shadow_tool("usermod", &all, None);
        check("usermod", &out);
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // -f: even if a test left a process running as the user.
        let out = shadow_tool("userdel", &["-r", "-f", &self.name], None);
        // 12: home could not be removed, 6: already gone; the account
        // itself is what matters.
        if !matches!(out.status.code(), Some(0 | 6 | 12)) {
            eprintln!("userdel {} failed: {}", self.name, describe(&out));
        }
    }
}

/// A local group, deleted on drop.
#[derive(Debug)]
pub struct TestGroup {
    name: String,
    gid: u32,
}

impl TestGroup {
    pub fn create() -> TestGroup {
        for _ in 0..5 {
            let name = format!("{GROUP_PREFIX}{}", random_suffix());
            let out = shadow_tool("groupadd", &[&name], None);
            match out.status.code() {
                Some(0) => {
                    let group = nix::unistd::Group::from_name(&name)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| panic!("group {name} created but not found"));
                    return TestGroup {
                        name,
                        gid: group.gid.as_raw(),
                    };
                }
                Some(9) => continue,
                _ => panic!("groupadd {name} failed: {}", describe(&out)),
            }
        }
        panic!("groupadd: no free name after 5 tries");
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Adds `user` as a supplementary member. Processes started afterwards
    /// (with `setpriv --init-groups`) carry the group.
    pub fn add_member(&self, user: &TestUser) {
        let out = shadow_tool("gpasswd", &["-a", user.name(), &self.name], None);
        check("gpasswd -a", &out);
    }

    pub fn remove_member(&self, user: &TestUser) {
        let out = shadow_tool("gpasswd", &["-d", user.name(), &self.name], None);
        check("gpasswd -d", &out);
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let out = shadow_tool("groupdel", &[&self.name], None);
        // 6: already gone.
        if !matches!(out.status.code(), Some(0 | 6)) {
            eprintln!("groupdel {} failed: {}", self.name, describe(&out));
        }
    }
}

/// Runs a shadow tool, retrying while another test holds the lock on
/// /etc/passwd, /etc/shadow or /etc/group (they do not wait for it).
fn shadow_tool(tool: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let program = skip::program(tool);
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {tool}: {e}"));
        if let Some(bytes) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(bytes).expect("write to stdin");
        }
        let out = child.wait_with_output().expect("wait for shadow tool");
        if out.status.success() || attempt >= 40 || !is_lock_failure(&out) {
            return out;
        }
        std::thread::sleep(delay + jitter());
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

fn is_lock_failure(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    out.status.code() == Some(10) || stderr.contains("cannot lock") || stderr.contains("try again")
}

fn check(what: &str, out: &Output) {
    if !out.status.success() {
        panic!("{what} failed: {}", describe(out));
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes::<SUFFIX_LEN>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn jitter() -> Duration {
    Duration::from_millis(u64::from(random_bytes::<1>()[0]) % 50)
}

/// Removes test users whose creating process is gone: a test killed by a
/// timeout or a signal never ran its Drop.
fn sweep_stale_users() {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return;
    };
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 5 || !fields[0].starts_with(USER_PREFIX) {
            continue;
        }
        let Some(mark) = fields[4].strip_prefix(GECOS_MARK) else {
            continue;
        };
        let Some((pid, start)) = mark.trim().split_once('.') else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) else {
            continue;
        };
        if !tmp::owner_alive(pid, start) {
            let _ = shadow_tool("userdel", &["-r", "-f", fields[0]], None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_short_and_distinct() {
        let a = random_suffix();
        let b = random_suffix();
        assert_eq!(a.len(), SUFFIX_LEN);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
