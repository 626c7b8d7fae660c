//! Deciding whether an end-to-end test can run here.
//!
//! These tests need root, a real `dbus-daemon`, `useradd` and friends. On a
//! developer's laptop without them a test says `SKIP <test>: <reason>` and
//! passes; in CI (`APIKEY_STRICT_TESTS=1`) a missing prerequisite is a
//! failure, so that a broken machine cannot turn the suite silently green.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use apikey_test_skip::{
    current_test, decide, strict_from_env, strict_value, Verdict, STRICT_ENV,
};

/// One prerequisite of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0.
    Root,
    /// An executable of this name on PATH (or in /usr/sbin, /sbin).
    Program(&'static str),
    /// Writing `/proc/self/loginuid` works (audit support and
    /// CAP_AUDIT_CONTROL), so a test can make a logged-in process.
    LoginUid,
    /// Everything `World::new()` and `TestUser` use.
    World,
    /// The Cockpit web console, the built page (cockpit/dist), Chromium
    /// and the browser driver (`make cockpit` builds the page and installs
    /// the driver from the lock file; `make test-deps` the rest).
    Cockpit,
    /// The .deb and the .rpm in target/packages (`make deb rpm`; `make
    /// test` builds them before the suite).
    Packages,
    /// A root file system with systemd and nspawn to boot it
    /// (`make test-deps`, tests/systemd-root.sh).
    SystemdMachine,
    /// PostgreSQL's server programs, for throwaway clusters (fleet mode).
    Postgres,
}

/// Programs the harness runs; `Need::World` checks all of them.
pub const WORLD_PROGRAMS: &[&str] = &[
    "dbus-daemon",
    "setpriv",
    "useradd",
    "userdel",
    "usermod",
    "groupadd",
    "groupdel",
    "gpasswd",
    "chpasswd",
];

/// The reason the first unmet need is unmet, or `None` when all are met.
pub fn unmet(needs: &[Need]) -> Option<String> {
    needs.iter().find_map(|need| check(*need))
}

fn check(need: Need) -> Option<String> {
    match need {
        Need::Root => apikey_test_skip::unmet_root().map(String::from),
        Need::Program(name) => which(name)
            .is_none()
            .then(|| format!("needs program `{name}` on PATH")),
        Need::LoginUid => apikey_test_skip::unmet_loginuid().map(String::from),
        Need::World => {
            let mut needs = vec![Need::Root, Need::LoginUid];
            needs.extend(WORLD_PROGRAMS.iter().map(|p| Need::Program(p)));
            unmet(&needs)
        }
        Need::Cockpit => crate::cockpit::unmet(),
        Need::SystemdMachine => crate::systemd::unmet(),
        Need::Postgres => crate::fleet::unmet(),
        Need::Packages => ["deb", "rpm"].iter().find_map(|ext| {
            crate::packaging::package(ext).is_none().then(|| {
                format!(
                    "needs the .{ext} in {} (run `make deb rpm`)",
                    crate::packaging::packages_dir().display()
                )
            })
        }),
    }
}

/// Looks a program up on PATH and in the sbin directories, where root's
/// tools live even when PATH lacks them.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    found
}

/// Like [`which`], but panics with a clear message: for programs a test has
/// already declared with `require!`.
pub fn program(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("program `{name}` not found; declare it with require!"))
}

/// Used by [`require!`](crate::require): true when the test should go on.
pub fn proceed(needs: &[Need]) -> bool {
    apikey_test_skip::proceed_unless(unmet(needs).as_deref())
}

/// First statement of every end-to-end test:
/// `require!(Need::World);` or `require!(Need::Root, Need::Program("sshd"));`.
/// Returns from the test (a skip) when something is missing, or panics
/// under `APIKEY_STRICT_TESTS=1`.
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        if !$crate::skip::proceed(&[$($need),+]) {
            return;
        }
    };
}
