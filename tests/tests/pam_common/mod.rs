//! What the tests of the real `pam_apikey.so` share: a world with two
//! users holding one key each, the module's service-file lines, the
//! tests' own helper programs, and reading the daemon's verify lines.

// Each test binary that includes this uses only part of it.
#![allow(dead_code)]

pub mod pamtester;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use apikey_tests::prelude::*;

/// A world where users may make keys, and alice and bob have one each.
pub struct Site {
    pub world: World,
    pub alice: TestUser,
    pub bob: TestUser,
    pub alice_key: String,
    pub alice_key_id: String,
    pub bob_key: String,
    pub bob_key_id: String,
}

impl Site {
    pub fn new() -> Site {
        Site::with_config(|_| {})
    }

    pub fn with_config(edit: impl FnOnce(&mut DaemonConfig)) -> Site {
        let world = World::with_config(edit);
        world
            .as_root()
            .apikey(&["settings", "--allow-user-keys", "yes"])
            .ok();
        let alice = TestUser::create("alice");
        let bob = TestUser::create("bob");
        let (alice_key, alice_key_id) = world.new_key(&alice, &[]);
        let (bob_key, bob_key_id) = world.new_key(&bob, &[]);
        Site {
            world,
            alice,
            bob,
            alice_key,
            alice_key_id,
            bob_key,
            bob_key_id,
        }
    }

    /// The module's path and arguments for this world's bus and daemon.
    pub fn module(&self, extra: &str) -> String {
        apikey_tests::pam::module(self.world.daemon(), extra)
    }
}

pub use apikey_tests::pam::key_or_password_stack;

/// A login through pamtester with docs/pam.md's key-or-password stack,
/// against `world`'s daemon.
pub fn login(world: &World, user: &TestUser, password: &str) -> pamtester::Run {
    let services = PamServices::new();
    services.add(
        pamtester::SSHD,
        &key_or_password_stack(&apikey_tests::pam::module(world.daemon(), "")),
    );
    pamtester::Pamtester::new(&services, world.dir()).login(pamtester::SSHD, user.name(), password)
}

/// [`login`] from `rhost`, as a network service would report it.
pub fn login_from(world: &World, user: &TestUser, password: &str, rhost: &str) -> pamtester::Run {
    let services = PamServices::new();
    services.add(
        pamtester::SSHD,
        &key_or_password_stack(&apikey_tests::pam::module(world.daemon(), "")),
    );
    pamtester::Pamtester::new(&services, world.dir())
        .rhost(rhost)
        .login(pamtester::SSHD, user.name(), password)
}

/// One of the tests' own programs (`src/bin/akt-*.rs`), which Cargo builds
/// with the test binaries into the directory above their `deps/`; copied
/// where test users can run it when that directory is private.
pub fn helper_bin(name: &str, scratch: &Path) -> PathBuf {
    let built = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| apikey_tests::bins::binary(name));
    if apikey_tests::bins::usable_by_others(&built) {
        return built;
    }
    let copy = scratch.join(name);
    std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copy {name}: {e}"));
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// `name="value"` and `name=value` fields of an audit line, unescaped
/// only as far as needed to compare them.
pub fn fields(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        value.push('\\');
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(name, value);
        rest = next;
    }
    out
}

/// The daemon's `event=verify` lines so far, as fields.
pub fn verify_lines(world: &World) -> Vec<BTreeMap<String, String>> {
    world
        .log()
        .messages()
        .iter()
        .filter(|m| m.text.starts_with("event=verify "))
        .map(|m| fields(&m.text))
        .collect()
}

/// Waits for a verify line with these field values; returns all verify
/// lines up to and including it. The daemon answers and logs in order,
/// so this also settles the lines of every attempt made before.
#[track_caller]
pub fn wait_for_verify(world: &World, want: &[(&str, &str)]) -> Vec<BTreeMap<String, String>> {
    let matches = |l: &str| {
        l.contains("event=verify ") && {
            let text = &l[l.find("event=verify ").unwrap_or(0)..];
            let f = fields(text);
            want.iter()
                .all(|(k, v)| f.get(*k).map(String::as_str) == Some(*v))
        }
    };
    world.log().expect(
        &format!("event=verify with {want:?}"),
        matches,
        Duration::from_secs(10),
    );
    let all = verify_lines(world);
    let last = all
        .iter()
        .rposition(|f| {
            want.iter()
                .all(|(k, v)| f.get(*k).map(String::as_str) == Some(*v))
        })
        .expect("the line just seen");
    all[..=last].to_vec()
}
