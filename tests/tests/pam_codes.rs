//! The real `pam_apikey.so` loaded by libpam in `pamtester`, against the
//! real daemon: what each kind of password and each kind of trouble turns
//! into at the application's end (the PAM code, the time it takes), and
//! what reaches the daemon and the logs on the way.
//!
//! pamtester reads the password from stdin with one read (libpam_misc's
//! conversation), so "one line on stdin" also proves "one prompt": a
//! second prompt would find nothing and fail the conversation.

mod pam_common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use apikey_proto::Token;
use apikey_tests::prelude::*;
use pam_common::pamtester::*;
use pam_common::{helper_bin, key_or_password_stack, verify_lines, wait_for_verify, Site};

fn services_with(name: &str, text: &str) -> PamServices {
    let services = PamServices::new();
    services.add(name, text);
    services
}

/// The number of verify lines the daemon had logged before a valid login
/// made now: that login's line settles every earlier attempt's, since the
/// daemon answers and logs in order.
#[track_caller]
fn verify_lines_before_a_valid_login(site: &Site, pam: &Pamtester<'_>, service: &str) -> usize {
    pam.login(service, site.alice.name(), &site.alice_key).ok();
    let settled = wait_for_verify(
        &site.world,
        &[
            ("key", &site.alice_key_id),
            ("outcome", "ok"),
            ("service", service),
        ],
    );
    settled.len() - 1
}

/// Runs `attempts` at once (each refusal sleeps libpam's fail delay, so
/// one after the other would take seconds each); results in order.
fn at_once<T: Sync>(items: &[T], attempt: impl Fn(&T) -> Run + Sync) -> Vec<Run> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(|| attempt(item))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn line(s: &str) -> Vec<u8> {
    [s.as_bytes(), b"\n"].concat()
}

const ALL_HOOKS: [&str; 4] = ["authenticate", "acct_mgmt", "open_session", "close_session"];

#[test]
fn a_key_logs_in_and_a_password_still_works_through_the_same_stack() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let password = "akt-Pw-9f3kq2";
    site.alice.set_password(password);
    let services = services_with(SSHD, &key_or_password_stack(&site.module("")));
    let pam = Pamtester::new(&services, site.world.dir());
    let alice = site.alice.name();

    pam.run(SSHD, alice.as_bytes(), &line(&site.alice_key), &ALL_HOOKS)
        .ok();
    let alias = Token::parse(site.alice_key.as_bytes()).unwrap().alias();
    assert!(alias.starts_with("apikey_"));
    pam.login(SSHD, alice, &alias).ok();
    pam.login(SSHD, alice, &site.bob_key)
        .refused()
        .key_stopped_at_the_module();

    // pam_unix below the module checks the same password: one prompt.
    pam.run(SSHD, alice.as_bytes(), &line(password), &ALL_HOOKS)
        .ok();
    pam.login(SSHD, alice, "akt-not-the-password")
        .refused()
        .password_went_to_pam_unix();

    site.world
        .as_user(&site.alice)
        .logged_in()
        .apikey(&["revoke", &site.alice_key_id])
        .ok();
    pam.login(SSHD, alice, &site.alice_key).refused();
    pam.login(SSHD, alice, &alias).refused();
    pam.run(SSHD, alice.as_bytes(), &line(password), &ALL_HOOKS)
        .ok();
}

#[test]
fn a_refused_key_leaves_no_password_for_the_modules_below() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let password = "akt-Pw-3hd8sv";
    site.alice.set_password(password);
    // A careless stack: the module's refusal does not end the login, and
    // pam_unix takes whatever password is left.
    let services = services_with(
        SSHD,
        &format!(
            "auth sufficient {}\nauth required pam_unix.so use_first_pass\n",
            site.module("")
        ),
    );
    let pam = Pamtester::new(&services, site.world.dir());
    let alice = site.alice.name();

    // S10: nothing is left for pam_unix, which says so.
    let no_password = "could not identify password";
    for key in [&site.bob_key, &site.alice_key[..30].to_string()] {
        let run = pam.login(SSHD, alice, key);
        run.refused();
        assert!(
            run.module_logged("key refused") && run.log.iter().any(|l| l.contains(no_password)),
            "{:#?}",
            run.log
        );
    }
    pam.login(SSHD, alice, password).ok();
    let run = pam.login(SSHD, alice, "akt-not-the-password");
    run.refused().password_went_to_pam_unix();
    assert!(
        !run.log.iter().any(|l| l.contains(no_password)),
        "{:#?}",
        run.log
    );
}

#[test]
fn a_stopped_daemon_is_authinfo_unavail_and_a_restarted_one_answers() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let mut site = Site::new();
    let services = services_with(SSHD, &key_or_password_stack(&site.module("")));
    let scratch = site.world.dir().to_path_buf();
    let pam = Pamtester::new(&services, &scratch);
    let alice = site.alice.name().to_string();

    site.world.daemon_mut().stop();
    let run = pam.login(SSHD, &alice, &site.alice_key);
    run.fails_with(AUTHINFO_UNAVAIL);
    assert!(!run.pam_unix_ran(), "{:#?}", run.log);
    site.world.daemon_mut().restart();
    pam.login(SSHD, &alice, &site.alice_key).ok();
}

/// SIGSTOP on creation, SIGCONT on drop, a failing assertion included:
/// whatever happens, nothing this test stopped stays stopped.
struct Frozen(i32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        let pid = pid as i32;
        // SAFETY: kill(2) of a process this test's world started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        let frozen = Frozen(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !frozen.stopped() {
            assert!(Instant::now() < deadline, "pid {pid} did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        frozen
    }

    fn stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|r| r.starts_with('T')))
            .unwrap_or(false)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_frozen_daemon_or_bus_costs_a_login_its_timeout_not_a_hang() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let alice = site.alice.name();
    let timeout = Duration::from_millis(500);
    let margin = Duration::from_millis(750);

    // The daemon stopped: its socket takes the connection, nothing ever
    // answers. The bus stopped, on the bus path: the connection is
    // queued, the handshake never answered.
    for (what, pid, extra) in [
        ("daemon", site.world.daemon().pid(), "timeout=500"),
        ("bus", site.world.bus().pid(), "timeout=500 socket=none"),
    ] {
        let module = site.module(extra);
        let services = services_with(SSHD, &key_or_password_stack(&module));
        let pam = Pamtester::new(&services, site.world.dir());
        let frozen = Frozen::new(pid);
        let run = pam.login(SSHD, alice, &site.alice_key);
        run.fails_with(AUTHINFO_UNAVAIL);
        // pamtester sleeps libpam's stretched fail delay after the module
        // gave up; the module's own part is measured below without it.
        let bound = timeout + FAIL_DELAY.mul_f64(LIBPAM_MAX_STRETCH) + margin;
        assert!(
            run.elapsed < bound,
            "frozen {what}: pamtester took {:?} (bound {bound:?})",
            run.elapsed
        );

        // The same login in a process that takes the fail delay itself
        // (as an event-driven server does): the module returns within
        // its timeout.
        let looped = pam_loop(
            &site,
            &services,
            SSHD,
            1,
            PAM_AUTHINFO_UNAVAIL,
            Duration::from_secs(5),
        );
        let phase = &looped["phases"][0];
        assert_eq!(phase["as_expected"], 1, "frozen {what}: {looped}");
        let took = Duration::from_micros(phase["max_us"].as_u64().unwrap());
        assert!(
            took >= timeout && took < timeout + margin,
            "frozen {what}: pam_authenticate took {took:?} with timeout=500"
        );
        // libpam hands the callback the delay already stretched.
        let asked = Duration::from_micros(phase["fail_delay_asked_us"].as_u64().unwrap());
        assert!(
            asked >= FAIL_DELAY.mul_f64(2.0 - LIBPAM_MAX_STRETCH)
                && asked <= FAIL_DELAY.mul_f64(LIBPAM_MAX_STRETCH),
            "frozen {what}: fail delay {asked:?}: {looped}"
        );
        drop(frozen);
        pam.login(SSHD, alice, &site.alice_key).ok();
    }

    // On the socket path a stopped bus stops no key login.
    let module = site.module("timeout=500");
    let services = services_with(SSHD, &key_or_password_stack(&module));
    let pam = Pamtester::new(&services, site.world.dir());
    let frozen = Frozen::new(site.world.bus().pid());
    pam.login(SSHD, alice, &site.alice_key).ok();
    drop(frozen);
}

/// A listening Unix socket that never accepts, its backlog of one already
/// taken: what a stuck system bus looks like to the next client once its
/// backlog has filled (dbus-daemon's is somaxconn, 4096 here; held full
/// while it is stopped, the module hangs the same way).
struct StuckListener {
    _listener: std::os::fd::OwnedFd,
    _queued: std::os::unix::net::UnixStream,
    path: PathBuf,
}

impl StuckListener {
    fn new(dir: &Path) -> StuckListener {
        use std::os::fd::FromRawFd;
        let path = dir.join("stuck.sock");
        // SAFETY: plain socket calls on a fresh fd, owned right away.
        let listener = unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (dst, src) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
                *dst = *src as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
                0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::listen(fd, 0), 0);
            owned
        };
        let queued = std::os::unix::net::UnixStream::connect(&path).expect("first connect");
        StuckListener {
            _listener: listener,
            _queued: queued,
            path,
        }
    }
}

#[test]
fn a_bus_that_accepts_no_connection_costs_a_login_its_timeout() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let stuck = StuckListener::new(site.world.dir());
    let module = format!(
        "{} bus=unix:path={} daemon_user=root timeout=500",
        apikey_tests::pam::module_path().display(),
        stuck.path.display()
    );
    let services = services_with(SSHD, &key_or_password_stack(&module));

    // The module must return within its timeout whatever its peer does;
    // connect(2) to a listener with a full backlog waits for room for as
    // long as the socket's send timeout allows, which is forever unless
    // the module sets one.
    let looped = pam_loop(
        &site,
        &services,
        SSHD,
        1,
        PAM_AUTHINFO_UNAVAIL,
        Duration::from_secs(5),
    );
    let phase = &looped["phases"][0];
    assert_eq!(phase["as_expected"], 1, "{looped}");
    let took = Duration::from_micros(phase["max_us"].as_u64().unwrap());
    assert!(
        took < Duration::from_millis(1250),
        "pam_authenticate took {took:?} with timeout=500"
    );
}

#[test]
fn a_key_typed_as_the_user_name_is_refused_and_revoked() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let services = services_with(SSHD, &key_or_password_stack(&site.module("")));
    let pam = Pamtester::new(&services, site.world.dir());

    let run = pam.login(SSHD, &site.alice_key, "akt-anything");
    run.refused();
    assert!(!run.pam_unix_ran(), "{:#?}", run.log);
    let lines = wait_for_verify(&site.world, &[("key", &site.alice_key_id)]);
    let line = lines.last().unwrap();
    assert_eq!(line["outcome"], "refused", "{line:?}");
    let secret = &site.alice_key[apikey_proto::token::PREFIX.len()..];
    assert!(!line["user"].contains(secret), "{line:?}");
    // Leaked into whatever logs user names: spent.
    pam.login(SSHD, site.alice.name(), &site.alice_key)
        .refused();
    assert!(
        !run.log.iter().any(|l| l.contains(secret)),
        "the module logged the user name that is a key:\n{}",
        run.log.join("\n")
    );
    assert!(!site.world.log().contains(secret));

    // A key with a typo in it is still most of a key: when it reaches the
    // daemon as the user name (with a good key as the password), it is
    // not logged either.
    let mut typo = site.alice_key.clone().into_bytes();
    let middle = typo.len() / 2;
    typo[middle] = if typo[middle] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    pam.login(SSHD, &typo, &site.bob_key).refused();
    wait_for_verify(
        &site.world,
        &[("user", "(an API key)"), ("key", &site.bob_key_id)],
    );
    let typo_secret = &typo[apikey_proto::token::PREFIX.len()..];
    assert!(!site.world.log().contains(typo_secret));
}

/// One run of `akt-pam-loop`: `count` logins of alice with her key; its
/// JSON report. Killed after `limit`, failing the test with where in the
/// kernel it was waiting.
fn pam_loop(
    site: &Site,
    services: &PamServices,
    service: &str,
    count: usize,
    expected: i64,
    limit: Duration,
) -> serde_json::Value {
    let bin = helper_bin("akt-pam-loop", site.world.dir());
    let mut cmd = Command::new(&bin);
    cmd.arg(services.dir())
        .args([service, site.alice.name(), "0"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("spawn akt-pam-loop");
    let phase = format!("logins\t{count}\t{expected}\t{}\n", site.alice_key);
    let mut stdin = child.stdin.take().expect("stdin pipe");
    stdin.write_all(phase.as_bytes()).expect("write phases");
    drop(stdin);
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let proc = |f: &str| {
                std::fs::read_to_string(format!("/proc/{}/{f}", child.id())).unwrap_or_default()
            };
            let (wchan, syscall) = (proc("wchan"), proc("syscall"));
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pam_authenticate had not returned after {limit:?}; it was waiting in \
                 the kernel at {wchan} (syscall {})",
                syscall.split(' ').next().unwrap_or("?")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("akt-pam-loop output");
    assert!(
        out.status.success(),
        "akt-pam-loop: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("akt-pam-loop prints JSON")
}

#[test]
fn odd_passwords_are_refused_cleanly_and_bad_keys_without_a_bus_call() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    site.alice.set_password("akt-Pw-77ab1x");
    let services = services_with(SSHD, &key_or_password_stack(&site.module("")));
    let pam = Pamtester::new(&services, site.world.dir());
    let alice = site.alice.name().as_bytes();
    let key = site.alice_key.as_bytes();

    let mut bad_checksum = site.alice_key.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    assert!(Token::parse(&bad_checksum).is_err());
    let mut big_key = b"apikey|".to_vec();
    big_key.resize(1 << 20, b'A');
    // (what, password, is it key-shaped as the module will see it)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("1 MiB password", vec![b'x'; 1 << 20], false),
        ("1 MiB key-shaped password", big_key, true),
        (
            "NUL inside a key",
            [&key[..20], b"\0", &key[20..]].concat(),
            true,
        ),
        ("NUL before a key", [b"\0", key].concat(), false),
        ("empty password", Vec::new(), false),
        ("bad checksum", bad_checksum, true),
        ("key-shaped junk", b"apikey|not-a-key".to_vec(), true),
        ("prefix alone", b"apikey_".to_vec(), true),
    ];
    let runs = at_once(&cases, |(_, password, _)| {
        pam.run(
            SSHD,
            alice,
            &[&password[..], b"\n"].concat(),
            &["authenticate"],
        )
    });
    for ((what, _, key_shaped), run) in cases.iter().zip(&runs) {
        assert_eq!(run.code, 1, "{what}: {run:#?}");
        run.refused();
        if *key_shaped {
            run.key_stopped_at_the_module();
        } else {
            run.password_went_to_pam_unix();
        }
    }
    // None of them was worth a bus call.
    assert_eq!(
        verify_lines_before_a_valid_login(&site, &pam, SSHD),
        0,
        "{:#?}",
        verify_lines(&site.world)
    );
}

#[test]
fn user_names_that_are_not_utf8_are_refused_cleanly() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let services = services_with(SSHD, &key_or_password_stack(&site.module("")));
    let pam = Pamtester::new(&services, site.world.dir());
    let names: Vec<Vec<u8>> = vec![
        b"\xff\xfe".to_vec(),
        [site.alice.name().as_bytes(), b"\xff"].concat(),
        [b"\xc3", site.alice.name().as_bytes()].concat(),
        b"\xed\xa0\x80".to_vec(),
    ];
    let key_line = line(&site.alice_key);
    let with_key = at_once(&names, |name| {
        pam.run(SSHD, name, &key_line, &["authenticate"])
    });
    let with_password = at_once(&names, |name| {
        pam.run(SSHD, name, b"akt-whatever\n", &["authenticate"])
    });
    for run in &with_key {
        run.refused().key_stopped_at_the_module();
    }
    for run in &with_password {
        // pam_unix knows no such user.
        run.fails_with(USER_UNKNOWN).password_went_to_pam_unix();
    }
    assert_eq!(verify_lines_before_a_valid_login(&site, &pam, SSHD), 0);
}

#[test]
fn su_and_sudo_refuse_keys_without_a_bus_call_and_pass_passwords_on() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let password = "akt-Pw-5mz0pq";
    site.alice.set_password(password);
    let module = site.module("");
    let services = PamServices::new();
    let stack = format!(
        "auth [success=done ignore=ignore default=die] {module}\n\
         auth required pam_unix.so try_first_pass\n\
         account required pam_unix.so\n"
    );
    services.add("su", &stack).add("sudo", &stack);
    services.add(SSHD, &key_or_password_stack(&module));
    let pam = Pamtester::new(&services, site.world.dir());
    let alice = site.alice.name();
    let alias = Token::parse(site.alice_key.as_bytes()).unwrap().alias();

    let cases: Vec<(&str, &str, bool)> = ["su", "sudo"]
        .into_iter()
        .flat_map(|service| {
            [
                (service, site.alice_key.as_str(), false),
                (service, alias.as_str(), false),
                (service, "akt-not-the-password", false),
                (service, password, true),
            ]
        })
        .collect();
    let runs = at_once(&cases, |(service, password, _)| {
        pam.run(
            service,
            alice.as_bytes(),
            &line(password),
            &["authenticate", "acct_mgmt"],
        )
    });
    for ((_, password, works), run) in cases.iter().zip(&runs) {
        if *works {
            run.ok();
        } else if password.starts_with("apikey") {
            run.refused().key_stopped_at_the_module();
        } else {
            run.refused().password_went_to_pam_unix();
        }
    }
    assert_eq!(
        verify_lines_before_a_valid_login(&site, &pam, SSHD),
        0,
        "{:#?}",
        verify_lines(&site.world)
    );
}

/// `akt-fake-keys` running as `user` on `bus`, killed on drop.
struct FakeDaemon {
    child: Child,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FakeDaemon {
    fn start(bus: &PrivateBus, user: &TestUser, owner: &str, scratch: &Path) -> FakeDaemon {
        let bin = helper_bin("akt-fake-keys", scratch);
        let mut cmd = Command::new(apikey_tests::skip::program("setpriv"));
        cmd.arg(format!("--reuid={}", user.uid()))
            .arg(format!("--regid={}", user.gid()))
            .args(["--init-groups", "--"])
            .arg(&bin)
            .arg(owner)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn akt-fake-keys");
        let stdout = child.stdout.take().expect("stdout pipe");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line == "ready" {
                        let _ = ready_tx.send(());
                    } else {
                        calls.lock().unwrap().push(line);
                    }
                }
            });
        }
        let mut fake = FakeDaemon { child, calls };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let status = fake.child.try_wait();
            panic!("akt-fake-keys did not own the name ({status:?})");
        }
        fake
    }

    /// Calls it has printed so far. It prints a call's line before it
    /// replies, so after a login that used it the line is one read away.
    fn calls(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(100));
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bus whose policy lets anyone own `org.apikey.Keys1`: what an
/// attacker's own bus would be.
fn open_bus(scratch: &Path) -> PrivateBus {
    let policy = scratch.join("anyone-owns-keys1.conf");
    std::fs::write(
        &policy,
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy context="default">
    <allow own="org.apikey.Keys1"/>
    <allow send_destination="org.apikey.Keys1"/>
  </policy>
</busconfig>
"#,
    )
    .expect("write policy");
    PrivateBus::start_with(&BusOptions {
        permissive: false,
        policy_files: vec![policy],
    })
}

#[test]
fn a_daemon_that_is_not_the_daemon_user_gets_no_token() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let bus = open_bus(site.world.dir());
    let fake = FakeDaemon::start(&bus, &site.alice, site.alice.name(), site.world.dir());
    let module_path = apikey_tests::pam::module_path();
    let stack = |daemon_user: &str| {
        key_or_password_stack(&format!(
            "{} bus={} daemon_user={daemon_user}",
            module_path.display(),
            bus.address()
        ))
    };
    let services = PamServices::new();
    services.add("sshd-root", &stack("root"));
    services.add("sshd-alice", &stack(site.alice.name()));
    let pam = Pamtester::new(&services, site.world.dir());
    // Any well-formed key: the impostor accepts everything.
    let stranger_key = Token::generate().unwrap().as_str().to_string();

    pam.login("sshd-root", site.alice.name(), &stranger_key)
        .fails_with(AUTHINFO_UNAVAIL);
    assert_eq!(fake.calls(), Vec::<String>::new(), "the impostor was asked");

    // The same impostor, declared as the daemon's user, is believed: the
    // refusal above came from the owner check, not from a broken fake.
    pam.login("sshd-alice", site.alice.name(), &stranger_key)
        .ok();
    let calls = fake.calls();
    assert!(
        calls.len() == 1 && calls[0].starts_with("verify "),
        "{calls:?}"
    );
}

#[test]
fn the_environment_cannot_point_the_module_at_another_bus() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let bus = open_bus(site.world.dir());
    let fake = FakeDaemon::start(&bus, &site.alice, site.alice.name(), site.world.dir());
    // Were the environment followed, the owner check would pass: the
    // impostor runs as the daemon user named here.
    let module = format!(
        "{} daemon_user={}",
        apikey_tests::pam::module_path().display(),
        site.alice.name()
    );
    let services = services_with(SSHD, &key_or_password_stack(&module));
    let pam = Pamtester::new(&services, site.world.dir())
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
        .env("DBUS_STARTER_ADDRESS", bus.address())
        .env("DBUS_STARTER_BUS_TYPE", "system");
    let stranger_key = Token::generate().unwrap().as_str().to_string();

    let run = pam.login(SSHD, site.alice.name(), &stranger_key);
    assert_ne!(run.code, 0, "{run:#?}");
    let system_socket = "/run/dbus/system_bus_socket";
    if !Path::new(system_socket).exists() {
        // It went for the compiled-in socket, and found nothing there.
        run.fails_with(AUTHINFO_UNAVAIL);
        assert!(run.module_logged(system_socket), "{:#?}", run.log);
    }
    assert_eq!(fake.calls(), Vec::<String>::new(), "the impostor was asked");
}

#[test]
fn map_user_logs_in_as_the_owner_unless_the_name_is_an_account() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    assert!(
        nix::unistd::User::from_name("apikey").unwrap().is_none(),
        "an account named apikey exists here: map_user would be refused"
    );
    let services = PamServices::new();
    services.add("vsftpd-x", &key_or_password_stack(&site.module("map_user")));
    services.add(
        "vsftpd-y",
        &key_or_password_stack(&site.module(&format!("map_user={}", site.bob.name()))),
    );
    services.add(SSHD, &key_or_password_stack(&site.module("")));
    let pam = Pamtester::new(&services, site.world.dir());
    let key_line = line(&site.alice_key);

    // acct_mgmt passing is already telling: pam_unix knows no "apikey"
    // and the module denies a user name still equal to the mapping name.
    pam.run("vsftpd-x", b"apikey", &key_line, &ALL_HOOKS).ok();
    let lines = wait_for_verify(
        &site.world,
        &[("key", &site.alice_key_id), ("service", "vsftpd-x")],
    );
    let verify = lines.last().unwrap();
    assert_eq!(verify["user"], "", "{verify:?}");
    assert_eq!(verify["outcome"], "ok", "{verify:?}");
    // The session was opened for the owner: PAM_USER was changed.
    let session = site.world.log().expect(
        "for the mapped login's session",
        |l| l.contains("event=session-open") && l.contains("vsftpd-x"),
        Duration::from_secs(10),
    );
    assert!(
        session.contains(&format!("user=\"{}\"", site.alice.name())),
        "{session}"
    );

    // bob exists: mapping his name would log the client in as bob.
    let before = verify_lines(&site.world).len();
    pam.run(
        "vsftpd-y",
        site.bob.name().as_bytes(),
        &key_line,
        &ALL_HOOKS,
    )
    .refused()
    .key_stopped_at_the_module();
    assert_eq!(
        verify_lines_before_a_valid_login(&site, &pam, "vsftpd-x"),
        before,
        "the mapping was refused only after a bus call: {:#?}",
        verify_lines(&site.world)
    );

    // Without map_user the mapping name is just a name, and not alice's.
    pam.login(SSHD, "apikey", &site.alice_key).refused();
    let lines = wait_for_verify(&site.world, &[("user", "apikey"), ("outcome", "refused")]);
    assert_eq!(lines.last().unwrap()["key"], site.alice_key_id);
}

#[test]
fn every_attempt_is_audited_once_and_no_token_reaches_any_log() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let services = services_with(SSHD, &key_or_password_stack(&site.module("debug")));
    let pam = Pamtester::new(&services, site.world.dir());
    let alice = site.alice.name();
    let alias = Token::parse(site.alice_key.as_bytes()).unwrap().alias();
    let (spare_key, spare_id) = site.world.new_key(&site.alice, &[]);
    site.world
        .as_user(&site.alice)
        .logged_in()
        .apikey(&["revoke", &spare_id])
        .ok();

    // (password, the key id the daemon should name, outcome)
    let attempts: Vec<(String, String, &str)> = vec![
        (site.alice_key.clone(), site.alice_key_id.clone(), "ok"),
        (alias.to_string(), site.alice_key_id.clone(), "ok"),
        (site.bob_key.clone(), site.bob_key_id.clone(), "refused"),
        (spare_key.clone(), spare_id.clone(), "refused"),
    ];
    let mut module_lines = Vec::new();
    for (password, _, outcome) in &attempts {
        let run = pam.login(SSHD, alice, password);
        if *outcome == "ok" {
            run.ok();
        } else {
            run.refused();
        }
        module_lines.extend(run.log);
    }

    let lines = wait_for_verify(&site.world, &[("key", &spare_id), ("outcome", "refused")]);
    assert_eq!(lines.len(), attempts.len(), "{lines:#?}");
    for (line, (_, id, outcome)) in lines.iter().zip(&attempts) {
        assert_eq!(line["key"], *id, "{line:?}");
        assert_eq!(line["outcome"], *outcome, "{line:?}");
        assert_eq!(line["user"], alice, "{line:?}");
        assert_eq!(line["service"], SSHD, "{line:?}");
        // pamtester sets no PAM_RHOST.
        assert_eq!(line["rhost"], "", "{line:?}");
    }

    // The module did log (so the check below is not vacuous), by key id.
    let accepted = format!("key {} accepted", site.alice_key_id);
    assert!(
        module_lines
            .iter()
            .any(|l| l.contains("libpam_apikey(") && l.contains(&accepted)),
        "{module_lines:#?}"
    );
    let daemon_lines = site.world.log().lines();
    for token in [&site.alice_key, &site.bob_key, &spare_key] {
        let secret = &token[apikey_proto::token::PREFIX.len()..];
        // Half the secret is far more than any id or checksum could
        // share with it by chance.
        let half = &secret[..secret.len() / 2];
        for (name, lines) in [("daemon", &daemon_lines), ("module", &module_lines)] {
            assert!(
                !lines.iter().any(|l| l.contains(half)),
                "part of a token reached the {name}'s log:\n{}",
                lines.join("\n")
            );
        }
    }
}
