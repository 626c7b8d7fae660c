//! pam_apikey over apikeyd's own socket: whom it trusts there (S1), when it
//! goes to the bus instead, that key logins no longer depend on the bus
//! broker, and that a hostile client on the socket stops no one else.

mod pam_common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use apikey_tests::prelude::*;
use pam_common::pamtester::*;
use pam_common::{helper_bin, key_or_password_stack, Site};

const SSHD: &str = "sshd-akt";

/// `akt-socket` run by root or by `user`, its output lines read as they
/// come.
struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Helper {
    fn start(world: &World, user: Option<&TestUser>, args: &[&str]) -> Helper {
        let program = helper_bin("akt-socket", world.dir());
        let mut child = match user {
            Some(u) => world.as_user(u).spawn(program.to_str().unwrap(), args),
            None => Command::new(&program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start akt-socket"),
        };
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Helper { child, lines }
    }

    fn line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Every line printed until `within` has passed without one.
    fn rest(&self, within: Duration) -> Vec<String> {
        std::iter::from_fn(|| self.line(within)).collect()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A root-owned 0755 directory for a fake socket.
fn socket_dir(scratch: &Path, name: &str, mode: u32) -> PathBuf {
    let dir = scratch.join(name);
    std::fs::create_dir(&dir).expect("socket dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

fn module_at(site: &Site, socket: &Path, daemon_user: &str) -> String {
    site.module(&format!(
        "socket={} daemon_user={daemon_user} timeout=500",
        socket.display()
    ))
}

#[test]
fn a_socket_that_is_not_the_daemons_gets_no_token_and_the_bus_is_not_tried() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let scratch = site.world.dir();
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let alice = &site.alice;

    struct Case {
        what: &'static str,
        dir_mode: u32,
        /// The socket file handed to this uid after it is made.
        socket_owner: Option<u32>,
        /// The listener runs as this uid.
        listener: Option<u32>,
        /// Whether the module connects before it refuses (peer check).
        connects: bool,
    }
    let cases = [
        Case {
            what: "a socket owned by another user",
            dir_mode: 0o755,
            socket_owner: Some(alice.uid()),
            listener: None,
            connects: false,
        },
        Case {
            what: "a directory others can write",
            dir_mode: 0o1777,
            socket_owner: None,
            listener: None,
            connects: false,
        },
        Case {
            what: "a listener that is not the daemon's user",
            dir_mode: 0o755,
            socket_owner: None,
            listener: Some(alice.uid()),
            connects: true,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let dir = socket_dir(scratch, &format!("fake{i}"), case.dir_mode);
        let path = dir.join("pam.sock");
        let uid = case.listener.map(|u| u.to_string());
        let mut args = vec!["fake", path.to_str().unwrap()];
        args.extend(uid.as_deref());
        let fake = Helper::start(&site.world, None, &args);
        assert_eq!(fake.line(Duration::from_secs(10)).as_deref(), Some("ready"));
        if let Some(owner) = case.socket_owner {
            std::os::unix::fs::lchown(&path, Some(owner), None).unwrap();
        }
        let services = PamServices::new();
        services.add(
            SSHD,
            &key_or_password_stack(&module_at(&site, &path, "root")),
        );
        let pam = Pamtester::new(&services, scratch);
        // A real key the real daemon (on the bus) would accept: refused,
        // so the module did not go on to the bus either.
        let run = pam.login(SSHD, alice.name(), &site.alice_key);
        run.fails_with(AUTHINFO_UNAVAIL);
        assert!(
            run.module_logged("not sending it anything"),
            "{}: {:#?}",
            case.what,
            run.log
        );
        let seen = fake.rest(Duration::from_millis(500));
        let expected: Vec<String> = if case.connects {
            vec!["connection".into(), "bytes 0".into()]
        } else {
            vec![]
        };
        assert_eq!(seen, expected, "{}", case.what);
    }

    // The control: the last fake, declared as the daemon's user, is
    // believed and gets the Verify call (it never answers it).
    let dir = socket_dir(scratch, "control", 0o755);
    let path = dir.join("pam.sock");
    let uid = alice.uid().to_string();
    let fake = Helper::start(&site.world, None, &["fake", path.to_str().unwrap(), &uid]);
    assert_eq!(fake.line(Duration::from_secs(10)).as_deref(), Some("ready"));
    let services = PamServices::new();
    services.add(
        SSHD,
        &key_or_password_stack(&module_at(&site, &path, alice.name())),
    );
    Pamtester::new(&services, scratch)
        .login(SSHD, alice.name(), &site.alice_key)
        .fails_with(AUTHINFO_UNAVAIL);
    let seen = fake.rest(Duration::from_millis(500));
    assert_eq!(
        seen.first().map(String::as_str),
        Some("connection"),
        "{seen:?}"
    );
    let sent: usize = seen
        .get(1)
        .and_then(|l| l.strip_prefix("bytes "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        sent > site.alice_key.len(),
        "the control got no call: {seen:?}"
    );
}

#[test]
fn without_its_socket_the_module_goes_to_the_bus() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let scratch = site.world.dir();
    // Nobody listens on a socket left behind by a daemon that died.
    let stale = scratch.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let services = PamServices::new();
    for (name, socket) in [
        (
            "sshd-missing",
            format!("socket={}", scratch.join("none.sock").display()),
        ),
        ("sshd-stale", format!("socket={}", stale.display())),
        ("sshd-none", "socket=none".to_string()),
    ] {
        services.add(name, &key_or_password_stack(&site.module(&socket)));
    }
    let pam = Pamtester::new(&services, scratch);
    for service in ["sshd-missing", "sshd-stale", "sshd-none"] {
        pam.login(service, site.alice.name(), &site.alice_key).ok();
    }
}

/// `n` key logins, each a new pamtester; returns how many succeeded.
fn logins(pam: &Pamtester<'_>, site: &Site, n: usize) -> usize {
    (0..n)
        .filter(|_| pam.login(SSHD, site.alice.name(), &site.alice_key).code == 0)
        .count()
}

#[test]
fn key_logins_over_the_socket_need_no_bus_broker() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let mut site = Site::new();
    let scratch = site.world.dir().to_path_buf();
    let services = PamServices::new();
    services.add(SSHD, &key_or_password_stack(&site.module("")));
    services.add(
        "sshd-bus",
        &key_or_password_stack(&site.module("socket=none")),
    );
    let pam = Pamtester::new(&services, &scratch);

    // An unprivileged user holds 2,000 connections to the bus.
    let bus_socket = site.world.bus().socket_path().to_str().unwrap().to_string();
    let holder = Helper::start(&site.world, Some(&site.bob), &["hold", &bus_socket, "2000"]);
    let held = holder.line(Duration::from_secs(30)).unwrap_or_default();
    assert!(held.starts_with("held "), "{held}");
    assert_eq!(
        logins(&pam, &site, 12),
        12,
        "while bob holds the bus ({held})"
    );
    drop(holder);

    // The bus is gone: over the socket every key login still works; over
    // the bus, the control, none does.
    site.world.bus_mut().kill();
    assert_eq!(logins(&pam, &site, 12), 12, "with the bus killed");
    Pamtester::new(&services, &scratch)
        .login("sshd-bus", site.alice.name(), &site.alice_key)
        .fails_with(AUTHINFO_UNAVAIL);
}

#[test]
fn a_hostile_client_on_the_socket_stops_no_root_login() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let scratch = site.world.dir().to_path_buf();
    let services = PamServices::new();
    services.add(SSHD, &key_or_password_stack(&site.module("")));
    let pam = Pamtester::new(&services, &scratch);
    let socket = site.world.daemon().pam_socket();
    let socket = socket.to_str().unwrap();
    let daemon = site.world.daemon().pid();
    let before = apikey_tests::daemon::vm_kib(daemon, "VmRSS:");

    let holder = Helper::start(&site.world, Some(&site.bob), &["hold", socket, "5000"]);
    // Another user: bob's place is full, so his would be closed at once.
    let never_reads = Helper::start(&site.world, Some(&site.alice), &["noread", socket]);
    let flood = Helper::start(&site.world, Some(&site.alice), &["flood", socket, "1024"]);
    let held = holder.line(Duration::from_secs(60)).unwrap_or_default();
    let kept: usize = held
        .strip_prefix("held ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(kept <= 128, "bob kept {kept} of 5000 connections");
    assert_eq!(logins(&pam, &site, 10), 10, "root's logins meanwhile");

    let flooded = flood.line(Duration::from_secs(60)).unwrap_or_default();
    let sent: usize = flooded
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        sent < 16 << 20,
        "the daemon took {sent} bytes of a 1 GiB message"
    );
    let closed = never_reads
        .line(Duration::from_secs(60))
        .unwrap_or_default();
    assert!(closed.starts_with("closed after "), "{closed}");
    assert_eq!(logins(&pam, &site, 3), 3, "root's logins after");
    let after = apikey_tests::daemon::vm_kib(daemon, "VmRSS:");
    assert!(
        after < before + 32 * 1024,
        "the daemon grew from {before} KiB to {after} KiB"
    );
}
