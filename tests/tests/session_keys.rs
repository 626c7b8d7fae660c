//! Session keys (S5, S6) end to end: a user logs in to the real sshd with
//! her password, runs the real `apikey session` inside that login, and the
//! key she gets logs in from a second connection only as long as the
//! first login lasts, and only as whoever she was when she made it.
//!
//! The sshd stack has `session required pam_loginuid.so` before the
//! module, as Debian's has: that is what gives each ssh login its own
//! loginuid and audit session, the identity a session key is bound to.
//! The key travels in `SSHPASS` (`sshpass -e`), never in argv; a refused
//! login shows as sshpass exit 5 (ssh asked for the password again).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use apikey_proto::Token;
use apikey_tests::pam;
use apikey_tests::prelude::*;
use apikey_tests::services::{Sshd, SANDBOX_PROGRAM};

/// The PAM service (and argv[0]) of the test sshd; the default
/// `key_services` entry `sshd*` covers it.
const SERVICE: &str = "sshd-apikey";
const PASSWORD: &str = "Session-keys-4-test";
/// sshpass: "invalid password", i.e. the server asked again.
const SSHPASS_REFUSED: i32 = 5;
/// The CLI's exit status for `Denied`.
const EXIT_DENIED: i32 = 77;
const LOG_WAIT: Duration = Duration::from_secs(10);
/// How long a held login may take to answer (an ssh login, a bus call).
const LOGIN_WAIT: Duration = Duration::from_secs(60);
/// A boot id no machine has: the daemon takes it for a new boot.
const OTHER_BOOT_ID: &str = "00000000-0000-4000-8000-5e5510a4b007";

macro_rules! require_sshd {
    ($($more:expr),* $(,)?) => {
        require!(
            Need::World,
            Need::Program("sshd"),
            Need::Program("ssh"),
            Need::Program("ssh-keygen"),
            Need::Program("sshpass"),
            Need::Program(SANDBOX_PROGRAM),
            Need::LoginUid,
            $($more),*
        )
    };
}

/// Debian's sshd stack in short, with pam_apikey as docs/pam.md
/// recommends. pam_loginuid comes before the module so that, by the time
/// the module registers the session, the login has its own audit session.
fn sshd_stack(module: &str) -> String {
    format!(
        "auth [success=done ignore=ignore default=die] {module}\n\
         auth required pam_unix.so try_first_pass\n\
         account required pam_unix.so\n\
         account required {module}\n\
         session required pam_loginuid.so\n\
         session optional {module}\n"
    )
}

/// `su` as a stack of its own for a login that has no terminal to type a
/// password on: authentication is not what these tests are about, so
/// pam_permit stands in for it. The file exists only in the test sshd's
/// mount namespace. No pam_loginuid: su keeps the login's loginuid and
/// audit session, as on a real host. The module's session line is what
/// registers su's nested session with the daemon; pam_unix's is there as
/// in Debian's common-session: libpam fails a stack in which no line
/// decided, which is all an optional line that fails leaves.
fn su_stack(module: &str) -> String {
    format!(
        "auth sufficient pam_rootok.so\n\
         auth required pam_permit.so\n\
         account required pam_permit.so\n\
         session required pam_unix.so\n\
         session optional {module}\n"
    )
}

/// An sshd using [`sshd_stack`], on a site whose users may make keys.
/// Fields drop in order: sshd before the service files it reads.
struct Site {
    sshd: Sshd,
    _pam: PamServices,
}

impl Site {
    fn start(world: &World) -> Site {
        Site::start_with(world, Sshd::start)
    }

    /// For logins that run `su`: bwrap would forbid it to gain root.
    fn start_allowing_setuid(world: &World) -> Site {
        Site::start_with(world, Sshd::start_allowing_setuid)
    }

    fn start_with(world: &World, start: fn(&PamServices, &str) -> Sshd) -> Site {
        world.allow_user_keys();
        let module = pam::module(world.daemon(), "");
        let services = PamServices::new();
        services.add(SERVICE, &sshd_stack(&module));
        services.add("su", &su_stack(&module));
        let sshd = start(&services, SERVICE);
        Site {
            sshd,
            _pam: services,
        }
    }
}

impl Site {
    /// The session line's module cannot reach the daemon (S1 refuses it:
    /// the wrong daemon_user): every login goes on unregistered, as when
    /// OpenSession fails or stalls past the module's timeout.
    fn start_unregistered(world: &World) -> Site {
        world.allow_user_keys();
        let module = pam::module(world.daemon(), "");
        let lost = format!(
            "{} bus={} daemon_user=nobody",
            pam::module_path().display(),
            world.bus().address()
        );
        let stack = sshd_stack(&module).replace(
            &format!("session optional {module}\n"),
            &format!("session optional {lost}\n"),
        );
        assert!(stack.contains(&lost), "{stack}");
        let services = PamServices::new();
        services.add(SERVICE, &stack);
        let sshd = Sshd::start(&services, SERVICE);
        Site {
            sshd,
            _pam: services,
        }
    }
}

fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The shell command that runs the world's `apikey` CLI on its bus.
fn apikey_command(world: &World, args: &str) -> String {
    format!(
        "/usr/bin/env DBUS_SYSTEM_BUS_ADDRESS={} {} {args}",
        sh_quote(world.bus().address()),
        sh_quote(&world.apikey_bin().to_string_lossy()),
    )
}

/// `ssh login@127.0.0.1 COMMAND` as `client`, answering every password
/// prompt with `password`.
fn ssh(sshd: &Sshd, client: &TestUser, login: &str, password: &str, command: &[&str]) -> Output {
    let mut args = vec!["-e".to_string()];
    args.extend(sshd.ssh_args("password", login, command));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    As::user(client)
        .env("SSHPASS", password)
        .timeout(Duration::from_secs(90))
        .run("sshpass", &args)
}

#[track_caller]
fn assert_logs_in(sshd: &Sshd, user: &TestUser, key: &str) {
    let out = ssh(sshd, user, user.name(), key, &["id", "-un"]);
    if out.code() != 0 || out.stdout_trimmed() != user.name() {
        panic!(
            "{}: expected a login as {}, got exit {}\nstdout:\n{}\nstderr:\n{}\nsshd log:\n{}",
            out.description,
            user.name(),
            out.code(),
            out.stdout,
            out.stderr,
            sshd.log_text()
        );
    }
}

#[track_caller]
fn assert_refused(sshd: &Sshd, user: &TestUser, key: &str) {
    let out = ssh(sshd, user, user.name(), key, &["id", "-un"]);
    if out.code() != SSHPASS_REFUSED || !out.stdout.is_empty() {
        panic!(
            "{}: expected a refusal (sshpass exit {SSHPASS_REFUSED}, no output), got exit {}\n\
             stdout:\n{}\nstderr:\n{}\nsshd log:\n{}",
            out.description,
            out.code(),
            out.stdout,
            out.stderr,
            sshd.log_text()
        );
    }
}

/// Ids of `user`'s active session keys, as the daemon tells root.
fn session_key_ids(world: &World, user: &TestUser) -> Vec<String> {
    world
        .block_on(world.proxy_as_root().list(user.name(), false, true))
        .unwrap_or_else(|e| panic!("List({}, sessions) as root: {e}", user.name()))
        .into_iter()
        .filter(|k| k.session)
        .map(|k| k.id)
        .collect()
}

#[track_caller]
fn only_session_key(world: &World, user: &TestUser) -> String {
    let ids = session_key_ids(world, user);
    assert_eq!(ids.len(), 1, "session keys of {}: {ids:?}", user.name());
    ids[0].clone()
}

/// A key's row as the store has it.
#[derive(Debug)]
struct Row {
    kind: String,
    owner: String,
    revoked: Option<i64>,
    reason: Option<String>,
    audit_session: Option<i64>,
    loginuid: Option<i64>,
    handle: Option<String>,
}

fn row(world: &World, id: &str) -> Row {
    world
        .daemon()
        .open_db_readonly()
        .query_row(
            "SELECT kind, owner_name, revoked, revoke_reason, session_audit, \
             session_loginuid, session_handle FROM keys WHERE id = ?1",
            [id],
            |r| {
                Ok(Row {
                    kind: r.get(0)?,
                    owner: r.get(1)?,
                    revoked: r.get(2)?,
                    reason: r.get(3)?,
                    audit_session: r.get(4)?,
                    loginuid: r.get(5)?,
                    handle: r.get(6)?,
                })
            },
        )
        .unwrap_or_else(|e| panic!("key {id} in the store: {e}"))
}

#[track_caller]
fn assert_ended(world: &World, id: &str, reason: &str) {
    let row = row(world, id);
    assert!(
        row.revoked.is_some() && row.reason.as_deref() == Some(reason),
        "key {id} should be revoked for {reason}: {row:?}"
    );
}

fn is_event(line: &str, event: &str) -> bool {
    line.contains(&format!("event={event} "))
}

/// The audit line of the creation of session key `id` for `user`.
fn expect_created(world: &World, id: &str, user: &TestUser) -> String {
    world.log().expect(
        "a session-key line for the new key",
        |l| {
            is_event(l, "session-key")
                && l.contains(&format!("key=\"{id}\""))
                && l.contains(&format!("user=\"{}\"", user.name()))
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    )
}

/// The audit line of the end of session key `id`, with its reason.
fn expect_end(world: &World, id: &str, reason: &str) -> String {
    world.log().expect(
        &format!("session-key-end of {id} ({reason})"),
        |l| {
            is_event(l, "session-key-end")
                && l.contains(id)
                && l.contains(&format!("reason=\"{reason}\""))
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    )
}

/// Pids of every process whose audit session is `session`.
fn audit_session_members(session: u32) -> Vec<i32> {
    let wanted = session.to_string();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/sessionid"))
                .is_ok_and(|s| s.trim() == wanted)
        })
        .collect()
}

/// Every descendant of `pid`, from /proc.
fn descendants(pid: u32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: fields start
        // after the last ')'.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parent_of.push((child, ppid));
        }
    }
    let mut found = vec![pid as i32];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// An ssh login the test keeps open. Its remote command first reports the
/// login's audit session and loginuid, then runs a shell command (usually
/// one that prints a token) once for every line the test sends, and ends
/// at end of input: closing stdin is the logout.
struct HeldLogin {
    /// sshpass (setpriv execs it), whose child is ssh.
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    audit_session: u32,
    loginuid: u32,
}

impl HeldLogin {
    fn open(sshd: &Sshd, user: &TestUser, password: &str, command: &str) -> HeldLogin {
        let script = format!(
            "echo \"audit $(cat /proc/self/sessionid) $(cat /proc/self/loginuid)\"\n\
             while read -r line; do {command} </dev/null || echo \"failed $?\"; done\n"
        );
        let mut argv: Vec<String> = vec![
            format!("--reuid={}", user.uid()),
            format!("--regid={}", user.gid()),
            "--init-groups".into(),
            // A uid change clears the death signal the harness sets; a test
            // process killed outright must still take the client with it.
            "--pdeathsig=SIGKILL".into(),
            "--".into(),
            apikey_tests::skip::program("sshpass")
                .to_string_lossy()
                .into_owned(),
            "-e".into(),
        ];
        argv.extend(sshd.ssh_args("password", user.name(), &[&script]));
        let mut cmd = Command::new(apikey_tests::skip::program("setpriv"));
        cmd.args(&argv)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", user.home())
            .env("USER", user.name())
            .env("LOGNAME", user.name())
            .env("LANG", "C")
            .env("SSHPASS", password)
            .current_dir(user.home())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn setpriv sshpass ssh");
        let stdin = child.stdin.take();
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout pipe");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut login = HeldLogin {
            child: Some(child),
            stdin,
            stdout,
            stderr,
            audit_session: u32::MAX,
            loginuid: u32::MAX,
        };
        let first = login.line(sshd, "the login's audit ids");
        let ids: Vec<u32> = first
            .strip_prefix("audit ")
            .map(|r| r.split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        let [audit_session, loginuid] = ids[..] else {
            panic!("unexpected first line from the login: {first:?}");
        };
        login.audit_session = audit_session;
        login.loginuid = loginuid;
        // Without these the rest proves nothing (and 4294967295, "unset",
        // is shared by every process that never logged in).
        assert_ne!(
            audit_session,
            u32::MAX,
            "the ssh login has no audit session"
        );
        assert_eq!(
            loginuid,
            user.uid(),
            "pam_loginuid did not give the ssh login {}'s loginuid",
            user.name()
        );
        login
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    #[track_caller]
    fn line(&self, sshd: &Sshd, what: &str) -> String {
        match self.stdout.recv_timeout(LOGIN_WAIT) {
            Ok(line) => line,
            Err(e) => panic!(
                "{what}: no line from the held login ({e})\nits stderr:\n{}\nsshd log:\n{}",
                self.stderr(),
                sshd.log_text()
            ),
        }
    }

    /// Runs the login's command once more; returns its first line.
    #[track_caller]
    fn run_once(&mut self, sshd: &Sshd, what: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the login was ended");
        stdin
            .write_all(b"again\n")
            .and_then(|_| stdin.flush())
            .expect("write to the held login");
        self.line(sshd, what)
    }

    /// Runs `make_key` once more inside the login; returns the token.
    #[track_caller]
    fn make_key(&mut self, sshd: &Sshd) -> String {
        let line = self.run_once(sshd, "a session key");
        if Token::parse(line.trim().as_bytes()).is_err() {
            panic!(
                "expected a token alone on a line, got {line:?}\nstderr:\n{}",
                self.stderr()
            );
        }
        line.trim().to_string()
    }

    /// Ends the remote command by closing its input, as a user logging
    /// out; sshd then closes the PAM session.
    #[track_caller]
    fn logout(&mut self) {
        self.stdin.take();
        let child = self.child.as_mut().expect("already ended");
        let status = wait_timeout(child, LOGIN_WAIT)
            .unwrap_or_else(|| panic!("the ssh client did not exit:\n{}", self.stderr()));
        assert!(
            status.success(),
            "ssh ended with {status}:\n{}",
            self.stderr()
        );
        self.child = None;
    }

    /// Waits for the client to exit, however it ends.
    #[track_caller]
    fn wait_gone(&mut self) {
        let child = self.child.as_mut().expect("already ended");
        wait_timeout(child, LOGIN_WAIT)
            .unwrap_or_else(|| panic!("the ssh client did not exit:\n{}", self.stderr()));
        self.child = None;
    }
}

impl Drop for HeldLogin {
    fn drop(&mut self) {
        self.stdin.take();
        let Some(mut child) = self.child.take() else {
            return;
        };
        if wait_timeout(&mut child, Duration::from_secs(5)).is_some() {
            return;
        }
        // ssh first: sshpass reaps it and exits, so nothing is orphaned.
        for pid in descendants(child.id()) {
            // SAFETY: plain kill(2) of our own client's processes.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if wait_timeout(&mut child, Duration::from_secs(5)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Keeps an ssh login open, makes a session key in it and checks that the
/// key logs its owner in from a second connection.
fn held_login_with_key(world: &World, site: &Site, user: &TestUser) -> (HeldLogin, String, String) {
    let mut login = HeldLogin::open(
        &site.sshd,
        user,
        PASSWORD,
        &apikey_command(world, "session"),
    );
    let token = login.make_key(&site.sshd);
    let id = only_session_key(world, user);
    expect_created(world, &id, user);
    assert_logs_in(&site.sshd, user, &token);
    (login, token, id)
}

#[test]
fn a_session_key_works_until_the_login_that_made_it_logs_out() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;

    let mut login = HeldLogin::open(sshd, &alice, PASSWORD, &apikey_command(&world, "session"));
    let token = login.make_key(sshd);
    let id = only_session_key(&world, &alice);
    expect_created(&world, &id, &alice);
    // Bound to this ssh login: its audit session, its loginuid and the
    // session the module registered for it.
    let bound = row(&world, &id);
    assert_eq!(bound.kind, "session", "{bound:?}");
    assert_eq!(bound.owner, alice.name(), "{bound:?}");
    assert_eq!(
        bound.audit_session,
        Some(i64::from(login.audit_session)),
        "{bound:?}"
    );
    assert_eq!(bound.loginuid, Some(i64::from(alice.uid())), "{bound:?}");
    assert!(
        bound.handle.is_some(),
        "not bound to the registered ssh session: {bound:?}"
    );

    // Session keys are not listed to their owner, only to an
    // administrator who asks; status counts them.
    let own = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["list", "--json"])
        .ok()
        .json();
    assert_eq!(own, serde_json::json!([]), "alice's own list: {own}");
    let listed = world
        .as_root()
        .apikey(&["list", "--user", alice.name(), "--sessions", "--json"])
        .ok()
        .json();
    let listed = listed.as_array().expect("a JSON array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["session"], true);
    let status = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["status", "--json"])
        .ok()
        .json();
    assert_eq!(status["session_keys"], 1, "{status}");

    // A second connection logs in with the key; a login opened with a key
    // cannot make another one (S6).
    let probe = format!(
        "id -un; {} </dev/null; echo \"session=$?\"",
        apikey_command(&world, "session")
    );
    let out = ssh(sshd, &alice, alice.name(), &token, &[&probe]);
    let denied = format!("session={EXIT_DENIED}");
    assert_eq!(
        (out.code(), out.stdout.lines().collect::<Vec<_>>()),
        (0, vec![alice.name(), denied.as_str()]),
        "{}\nstderr:\n{}\nsshd log:\n{}",
        out.description,
        out.stderr,
        sshd.log_text()
    );
    assert_eq!(session_key_ids(&world, &alice), vec![id.clone()]);

    login.logout();
    expect_end(&world, &id, "session-closed");
    assert_refused(sshd, &alice, &token);
    assert_ended(&world, &id, "session-closed");
    world.log().expect(
        "the refused verify",
        |l| {
            is_event(l, "verify")
                && l.contains(&format!("key=\"{id}\""))
                && l.contains("outcome=\"refused\"")
        },
        LOG_WAIT,
    );
    assert!(
        !world
            .log()
            .contains(&token[apikey_proto::token::PREFIX.len()..]),
        "the token reached the audit log"
    );
}

#[test]
fn a_session_key_made_under_su_is_the_other_users_and_ends_with_the_outer_login() {
    require_sshd!(Need::Program("su"), Need::Program("unshare"));
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    alice.set_password(PASSWORD);
    let world = World::new();
    let site = Site::start_allowing_setuid(&world);
    let sshd = &site.sshd;

    // su, not runuser: alice is not root. su runs the command as bob with
    // the login's loginuid and audit session unchanged.
    let make_key = format!(
        "su -c {} {}",
        sh_quote(&apikey_command(&world, "session")),
        bob.name()
    );
    let mut login = HeldLogin::open(sshd, &alice, PASSWORD, &make_key);
    let token = login.make_key(sshd);
    assert!(session_key_ids(&world, &alice).is_empty());
    let id = only_session_key(&world, &bob);
    expect_created(&world, &id, &bob);
    let bound = row(&world, &id);
    assert_eq!(bound.owner, bob.name(), "{bound:?}");
    assert_eq!(
        bound.audit_session,
        Some(i64::from(login.audit_session)),
        "{bound:?}"
    );
    // Still alice's login: she is who logged in.
    assert_eq!(bound.loginuid, Some(i64::from(alice.uid())), "{bound:?}");

    // When su's nested session is registered (see the next test), su
    // closes it before it exits, and that must not end the key: wait for
    // the close before using the key.
    let su_open = expect_su_session_open(&world, &bob);
    if su_open.contains("outcome=\"ok\"") {
        expect_su_session_close(&world);
    }

    // It logs in as bob, not as alice, and su's end did not end it (S5).
    assert_logs_in(sshd, &bob, &token);
    let out = ssh(sshd, &alice, alice.name(), &token, &["id", "-un"]);
    assert_eq!(out.code(), SSHPASS_REFUSED, "bob's key logged alice in");
    assert!(row(&world, &id).revoked.is_none(), "{:?}", row(&world, &id));

    login.logout();
    expect_end(&world, &id, "session-closed");
    assert_refused(sshd, &bob, &token);
    assert_ended(&world, &id, "session-closed");
}

/// The audit line of su's OpenSession for `user`, whatever its outcome.
fn expect_su_session_open(world: &World, user: &TestUser) -> String {
    world.log().expect(
        "su's OpenSession",
        |l| {
            is_event(l, "session-open")
                && l.contains("service=\"su\"")
                && l.contains(&format!("user=\"{}\"", user.name()))
        },
        LOG_WAIT,
    )
}

fn expect_su_session_close(world: &World) -> String {
    world.log().expect(
        "su's CloseSession",
        |l| {
            is_event(l, "session-close")
                && l.contains("service=\"su\"")
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    )
}

/// S5's "a nested su session never ends its parent's keys" presumes su's
/// session is registered: su, run by a user, calls open_session as a
/// set-uid process (real uid the user's, effective root), and the daemon
/// must still record it, nested in the login's audit session.
#[test]
fn su_inside_a_login_registers_a_nested_session() {
    require_sshd!(Need::Program("su"), Need::Program("unshare"));
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    alice.set_password(PASSWORD);
    let world = World::new();
    let site = Site::start_allowing_setuid(&world);
    let sshd = &site.sshd;

    let command = format!("su -c 'id -un' {}", bob.name());
    let mut login = HeldLogin::open(sshd, &alice, PASSWORD, &command);
    assert_eq!(login.run_once(sshd, "su -c 'id -un'"), bob.name());
    let open = expect_su_session_open(&world, &bob);
    assert!(
        open.contains("outcome=\"ok\"")
            && open.contains(&format!("audit_session={}", login.audit_session))
            && open.contains(&format!("loginuid={}", alice.uid())),
        "su's session was not registered in alice's login (audit session {}, loginuid {}):\n{open}",
        login.audit_session,
        alice.uid()
    );
    expect_su_session_close(&world);
    login.logout();
}

#[test]
fn a_login_opened_with_a_key_cannot_make_keys() {
    require_sshd!();
    let alice = TestUser::create("alice");
    let world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;
    let (token, id) = world.new_key(&alice, &[]);

    let probe = key_making_probe(&world, &id);
    for method in ["password", "keyboard-interactive"] {
        let mut args = vec!["-e".to_string()];
        args.extend(sshd.ssh_args(method, alice.name(), &[&probe]));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = As::user(&alice)
            .env("SSHPASS", &token)
            .timeout(Duration::from_secs(90))
            .run("sshpass", &args);
        assert_probe_refused(&out, sshd, EXIT_DENIED, "opened with an API key", method);
    }
    world.log().expect(
        "a session-key request refused as Denied",
        |l| is_event(l, "session-key") && l.contains("outcome=\"Denied\""),
        LOG_WAIT,
    );
    // Nothing was made, and the key used is untouched.
    assert!(session_key_ids(&world, &alice).is_empty());
    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].id, id);
    assert_logs_in(sshd, &alice, &token);
}

#[test]
fn an_idle_session_key_ends_while_its_login_goes_on() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let mut world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;
    // The shortest timeout the policy takes.
    world
        .as_root()
        .apikey(&["settings", "--session-timeout", "1m"])
        .ok();
    let (mut login, token, id) = held_login_with_key(&world, &site, &alice);

    // Two minutes without use, creation and last use alike: the store is
    // edited behind a stopped daemon (which writes its last-used times on
    // the way out), sshd and the login keep running.
    world.daemon_mut().stop();
    {
        let db = rusqlite::Connection::open(world.daemon().db_path()).expect("open the store");
        let changed = db
            .execute(
                "UPDATE keys SET created = created - 120, last_used = last_used - 120 \
                 WHERE id = ?1 AND last_used IS NOT NULL",
                [&id],
            )
            .expect("age the key");
        assert_eq!(changed, 1, "the login with the key left no last-used time");
    }
    world.daemon_mut().restart();
    assert_refused(sshd, &alice, &token);
    expect_end(&world, &id, "session-key-idle");
    assert_ended(&world, &id, "session-key-idle");

    // The login itself goes on, and a key made in it now works.
    let fresh = login.make_key(sshd);
    assert_logs_in(sshd, &alice, &fresh);
    login.logout();
}

#[test]
fn a_session_key_ends_at_its_lifetime_cap_while_its_login_goes_on() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let mut world = World::with_config(|c| c.session_key_max_lifetime = "2m".into());
    let site = Site::start(&world);
    let sshd = &site.sshd;
    let (mut login, token, id) = held_login_with_key(&world, &site, &alice);
    let info = world
        .block_on(world.proxy_as_root().list(alice.name(), false, true))
        .expect("List as root")
        .into_iter()
        .find(|k| k.id == id)
        .expect("the session key is listed");
    assert_eq!(info.expires - info.created, 120, "{info:?}");

    // Three minutes on: past the cap, well within the idle timeout (30m),
    // and the login is still there.
    world.daemon_mut().stop();
    {
        let db = rusqlite::Connection::open(world.daemon().db_path()).expect("open the store");
        let changed = db
            .execute(
                "UPDATE keys SET created = created - 180, expires = expires - 180, \
                 last_used = last_used - 180 WHERE id = ?1 AND last_used IS NOT NULL",
                [&id],
            )
            .expect("age the key");
        assert_eq!(changed, 1, "the login with the key left no last-used time");
    }
    world.daemon_mut().restart();
    expect_end(&world, &id, "session-key-lifetime");
    assert_ended(&world, &id, "session-key-lifetime");
    assert_refused(sshd, &alice, &token);
    login.logout();
}

#[test]
fn revoking_all_of_a_users_keys_ends_her_session_keys() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;
    let (mut login, token, id) = held_login_with_key(&world, &site, &alice);

    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["revoke", "--all"]);
    out.ok();
    world.log().expect(
        "the revoke line naming the session key",
        |l| {
            is_event(l, "revoke")
                && l.contains("requested=\"all\"")
                && l.contains(&id)
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    );
    assert_ended(&world, &id, "revoked-all");
    assert_refused(sshd, &alice, &token);
    login.logout();
    // Already revoked: the logout has nothing left to end.
    assert!(
        !world
            .log()
            .lines()
            .iter()
            .any(|l| is_event(l, "session-key-end") && l.contains(&id)),
        "{:#?}",
        world.log().lines()
    );
}

#[test]
fn a_session_key_of_an_earlier_boot_is_dead() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let mut world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;
    let (mut login, token, id) = held_login_with_key(&world, &site, &alice);

    // The same login is still open, but the daemon now runs in "another
    // boot": audit session ids of the earlier one mean nothing now.
    world.reconfigure(|c| {
        c.env
            .push(("APIKEYD_TEST_BOOT_ID".into(), OTHER_BOOT_ID.into()))
    });
    expect_end(&world, &id, "session-key-reboot");
    assert_ended(&world, &id, "session-key-reboot");
    assert_refused(sshd, &alice, &token);
    login.logout();
}

#[test]
fn no_session_key_outside_a_login_session() {
    require!(Need::World);
    let alice = TestUser::create("alice");
    let world = World::new();
    world.allow_user_keys();

    // Like cron or a service: never logged in, no audit session.
    let out = world.as_user(&alice).apikey(&["session"]);
    out.assert_code(1);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("apikey: ") && first.contains("not part of a login session"),
        "stderr:\n{}",
        out.stderr
    );
    world.log().expect(
        "the refusal as NoSession",
        |l| {
            is_event(l, "session-key")
                && l.contains(&format!("user=\"{}\"", alice.name()))
                && l.contains("outcome=\"NoSession\"")
        },
        LOG_WAIT,
    );
    assert!(session_key_ids(&world, &alice).is_empty());
}

#[test]
fn a_session_that_vanished_while_the_daemon_was_down_ends_its_keys() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let mut world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;
    let (mut login, token, id) = held_login_with_key(&world, &site, &alice);

    // Both crash: the daemon, and every process of the login's audit
    // session on the server (sshd's process for the connection, the shell
    // and what it runs), so no close_session ever reaches the daemon.
    world.daemon_mut().kill9();
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let members = audit_session_members(login.audit_session);
        if members.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of audit session {} survive SIGKILL: {members:?}",
            login.audit_session
        );
        for pid in members {
            // SAFETY: plain kill(2); these are the test sshd's processes
            // for this login (their audit session is the login's own).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    login.wait_gone();

    world.daemon_mut().restart();
    expect_end(&world, &id, "session-gone");
    assert_ended(&world, &id, "session-gone");
    assert_refused(sshd, &alice, &token);
    // The held login's own session: the key login that proved the key
    // works closes its session normally, whenever sshd gets to it.
    let held = format!("audit_session={}", login.audit_session);
    assert!(
        !world
            .log()
            .lines()
            .iter()
            .any(|l| is_event(l, "session-close")
                && l.contains("outcome=\"ok\"")
                && l.contains(&held)),
        "the login's session was closed after all: {:#?}",
        world.log().lines()
    );
}

/// The ssh login ran [`key_making_probe`], and every one of its three
/// commands exited `code`, saying `why` on standard error.
#[track_caller]
fn assert_probe_refused(out: &Output, sshd: &Sshd, code: i32, why: &str, method: &str) {
    let want: Vec<String> = ["generate", "session", "rotate"]
        .iter()
        .map(|c| format!("{c}={code}"))
        .collect();
    assert_eq!(
        (out.code(), out.stdout.lines().collect::<Vec<_>>()),
        (0, want.iter().map(String::as_str).collect::<Vec<_>>()),
        "{method}: {}\nstderr:\n{}\nsshd log:\n{}",
        out.description,
        out.stderr,
        sshd.log_text()
    );
    let refusals = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("apikey: ") && l.contains(why))
        .count();
    assert_eq!(refusals, 3, "{method}: stderr:\n{}", out.stderr);
}

/// The commands that make keys, each followed by its exit status.
fn key_making_probe(world: &World, id: &str) -> String {
    format!(
        "{g} </dev/null; echo \"generate=$?\"; {s} </dev/null; echo \"session=$?\"; \
         {r} </dev/null; echo \"rotate=$?\"",
        g = apikey_command(world, "generate"),
        s = apikey_command(world, "session"),
        r = apikey_command(world, &format!("rotate {id}")),
    )
}

/// S6 fails closed: a key login whose session the daemon never heard of
/// (the module's OpenSession failed; a flood can stall it as well) has no
/// evidence of a password login, so it makes no keys. Before, only a
/// session registered as opened with a key was refused, and this login
/// got a long-lived key.
#[test]
fn a_key_login_whose_registration_failed_cannot_make_keys() {
    require_sshd!();
    let alice = TestUser::create("alice");
    let world = World::new();
    let site = Site::start_unregistered(&world);
    let sshd = &site.sshd;
    let (token, id) = world.new_key(&alice, &[]);

    let out = ssh(
        sshd,
        &alice,
        alice.name(),
        &token,
        &[&key_making_probe(&world, &id)],
    );
    assert_probe_refused(&out, sshd, 1, "no record of a password login", "password");
    let registered: Vec<String> = world
        .log()
        .lines()
        .into_iter()
        .filter(|l| is_event(l, "session-open") && l.contains(&format!("service=\"{SERVICE}\"")))
        .collect();
    assert!(
        registered.is_empty(),
        "the session line did not fail as this test needs: {registered:?}"
    );
    world.log().expect(
        "a generate refused as NotLoggedIn",
        |l| is_event(l, "generate") && l.contains("outcome=\"NotLoggedIn\""),
        LOG_WAIT,
    );
    assert!(session_key_ids(&world, &alice).is_empty());
    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].id, id);
}

/// Logins sshd authenticated itself count as evidence, public keys
/// included (what S6 cannot stop: a key login that adds a public key and
/// comes back with it); the audit line of each session says which method
/// opened it, so administrators can tell them apart.
#[test]
fn publickey_and_password_logins_make_keys_and_say_how_they_logged_in() {
    require_sshd!();
    let alice = TestUser::create("alice");
    alice.set_password(PASSWORD);
    let world = World::new();
    let site = Site::start(&world);
    let sshd = &site.sshd;
    let identity = alice.home().join("id_ed25519");
    As::user(&alice)
        .run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "alice",
                "-f",
                &identity.to_string_lossy(),
            ],
        )
        .ok();
    let public = std::fs::read_to_string(identity.with_extension("pub")).expect("public key");
    sshd.authorize_key(alice.name(), &public);

    let generate = apikey_command(&world, "generate --name by-publickey");
    let args = sshd.ssh_publickey_args(alice.name(), &identity, &[&generate]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (program, args) = args.split_first().expect("ssh and its arguments");
    let out = As::user(&alice)
        .timeout(Duration::from_secs(90))
        .run(program, args);
    assert!(
        out.code() == 0 && Token::parse(out.stdout_trimmed().as_bytes()).is_ok(),
        "{}: exit {}\nstdout:\n{}\nstderr:\n{}\nsshd log:\n{}",
        out.description,
        out.code(),
        out.stdout,
        out.stderr,
        sshd.log_text()
    );
    let opened_by = |method: &str| {
        world.log().expect(
            &format!("the ssh session's registration with auth={method}"),
            |l| {
                is_event(l, "session-open")
                    && l.contains(&format!("service=\"{SERVICE}\""))
                    && l.contains(&format!("auth=\"{method}\""))
                    && l.contains("outcome=\"ok\"")
            },
            LOG_WAIT,
        )
    };
    opened_by("publickey");

    let out = ssh(
        sshd,
        &alice,
        alice.name(),
        PASSWORD,
        &[&apikey_command(&world, "generate")],
    );
    assert!(
        out.code() == 0 && Token::parse(out.stdout_trimmed().as_bytes()).is_ok(),
        "{}: exit {}\nstderr:\n{}",
        out.description,
        out.code(),
        out.stderr
    );
    opened_by("password");
    assert_eq!(world.keys_of(alice.name()).len(), 2);
}
