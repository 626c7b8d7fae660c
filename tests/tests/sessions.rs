//! Login sessions as the PAM module registers them: OpenSession and
//! CloseSession through the real bus, the record they leave in the store,
//! their audit lines, and who may call them.

use apikey_proto::names::{BUS_NAME, ERROR_PREFIX, OBJECT_PATH};
use apikey_tests::prelude::*;

const RHOST: &str = "192.0.2.7";
const LOG_WAIT: Duration = Duration::from_secs(5);

/// One row of the sessions table, read behind the daemon's back.
#[derive(Debug)]
struct Row {
    boot_id: String,
    audit_session: Option<u32>,
    loginuid: Option<u32>,
    uid: Option<u32>,
    user: String,
    service: String,
    rhost: String,
    tty: String,
    key_id: Option<String>,
    closed: Option<i64>,
    close_reason: Option<String>,
}

fn row(world: &World, handle: &str) -> Row {
    world
        .daemon()
        .open_db_readonly()
        .query_row(
            "SELECT boot_id, audit_session, loginuid, uid, user, service, rhost, tty, key_id, \
             closed, close_reason FROM sessions WHERE handle = ?1",
            [handle],
            |r| {
                Ok(Row {
                    boot_id: r.get(0)?,
                    audit_session: r.get(1)?,
                    loginuid: r.get(2)?,
                    uid: r.get(3)?,
                    user: r.get(4)?,
                    service: r.get(5)?,
                    rhost: r.get(6)?,
                    tty: r.get(7)?,
                    key_id: r.get(8)?,
                    closed: r.get(9)?,
                    close_reason: r.get(10)?,
                })
            },
        )
        .unwrap_or_else(|e| panic!("no session row for {handle}: {e}"))
}

fn session_rows(world: &World) -> i64 {
    world
        .daemon()
        .open_db_readonly()
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap()
}

/// `/proc/self/<file>` of the test process: `None` for the unset value.
fn own_audit_id(file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).unwrap();
    let n: u32 = text.trim().parse().unwrap();
    (n != u32::MAX).then_some(n)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// `dbus-send --system --print-reply` as `who`: the string the method
/// returned (or `""` for none), or the error name dbus-send reports.
fn dbus_send(who: &As, method: &str, args: &[&str]) -> Result<String, String> {
    let member = format!("{BUS_NAME}.{method}");
    let dest = format!("--dest={BUS_NAME}");
    let mut argv = vec!["--system", "--print-reply", &dest, OBJECT_PATH, &member];
    argv.extend_from_slice(args);
    let out = who.run("dbus-send", &argv);
    if out.code() != 0 {
        let name = out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("Error "))
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| panic!("{}: no error line\n{}", out.description, out.stderr));
        return Err(name.to_string());
    }
    Ok(out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("string \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_default()
        .to_string())
}

fn open_args(user: &str, key_id: &str) -> [String; 6] {
    [
        format!("string:{user}"),
        "string:sshd".into(),
        format!("string:{RHOST}"),
        "string:ssh".into(),
        format!("string:{key_id}"),
        "string:password".into(),
    ]
}

fn open_by(who: &As, user: &str, key_id: &str) -> Result<String, String> {
    let args = open_args(user, key_id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dbus_send(who, "OpenSession", &args)
}

fn close_by(who: &As, handle: &str) -> Result<String, String> {
    dbus_send(who, "CloseSession", &[&format!("string:{handle}")])
}

#[track_caller]
fn assert_error(result: Result<String, String>, want: &str, what: &str) {
    match result {
        Err(name) => assert_eq!(name, want, "{what}"),
        Ok(reply) => panic!("{what}: expected {want}, got a reply {reply:?}"),
    }
}

#[test]
fn root_opens_and_closes_a_session_through_the_bus() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    let proxy = world.proxy_as_root();
    let handle = world
        .block_on(proxy.open_session(alice.name(), "sshd", RHOST, "ssh", "", "password"))
        .expect("OpenSession as root");
    assert_eq!(handle.len(), 22, "{handle}");
    assert!(
        handle.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{handle}"
    );

    let r = row(&world, &handle);
    assert_eq!(r.boot_id, boot_id());
    // The session is the caller's own: this test process's audit ids,
    // which are unset unless the suite itself runs in a login session.
    assert_eq!(r.audit_session, own_audit_id("sessionid"));
    assert_eq!(r.loginuid, own_audit_id("loginuid"));
    assert_eq!(r.uid, Some(alice.uid()));
    assert_eq!(
        (r.user.as_str(), r.service.as_str(), r.rhost.as_str()),
        (alice.name(), "sshd", RHOST)
    );
    assert_eq!((r.tty.as_str(), r.key_id), ("ssh", None));
    assert_eq!((r.closed, r.close_reason), (None, None));

    world.log().expect(
        "for the opened session",
        |l| {
            l.contains("event=session-open")
                && l.contains(&format!("user=\"{}\"", alice.name()))
                && l.contains(&format!("handle=\"{}\"", &handle[..6]))
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    );

    world
        .block_on(proxy.close_session(&handle))
        .expect("CloseSession as root");
    let r = row(&world, &handle);
    assert!(r.closed.is_some());
    assert_eq!(r.close_reason.as_deref(), Some("pam-close"));
    match world.block_on(proxy.close_session(&handle)) {
        Err(KeysError::NotFound(_)) => {}
        other => panic!("a second close: {other:?}"),
    }
    world.log().expect(
        "for the closed session",
        |l| {
            l.contains("event=session-close")
                && l.contains(&format!("handle=\"{}\"", &handle[..6]))
                && l.contains(&format!("user=\"{}\"", alice.name()))
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    );
    // The handle is what closes a session: the log never holds all of it.
    assert!(!world.log().contains(&handle));
}

#[test]
fn a_pam_stack_in_a_login_session_records_that_session() {
    require!(Need::World, Need::Program("dbus-send"));
    let world = World::new();
    let alice = TestUser::create("alice");
    // What sshd's monitor looks like after pam_loginuid: root, in a fresh
    // audit session of alice's.
    let pam = world.as_root().logged_in_as(alice.uid());
    let outer = open_by(&pam, alice.name(), "").expect("OpenSession from a login session");
    let inner = open_by(&pam, alice.name(), "").expect("a second one");
    let (o, i) = (row(&world, &outer), row(&world, &inner));
    assert_eq!(o.loginuid, Some(alice.uid()));
    assert!(o.audit_session.is_some(), "{o:?}");
    assert_ne!(o.audit_session, own_audit_id("sessionid"));
    // Each setting of the login uid is a new audit session.
    assert_ne!(o.audit_session, i.audit_session);

    // Closing one leaves the other open, whoever sends the close.
    close_by(&world.as_root(), &inner).expect("CloseSession");
    assert!(row(&world, &inner).closed.is_some());
    assert_eq!(row(&world, &outer).closed, None);
    assert_error(
        close_by(&pam, &inner),
        &format!("{ERROR_PREFIX}.NotFound"),
        "closing a closed session",
    );
    close_by(&pam, &outer).expect("CloseSession of the outer session");
}

#[test]
fn a_session_opened_after_a_key_login_is_marked_with_the_key() {
    require!(Need::World, Need::Program("dbus-send"));
    let world = World::new();
    let alice = TestUser::create("alice");
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.set_settings("yes", "", "", ""))
        .expect("SetSettings as root");
    let out = world.as_user(&alice).logged_in().apikey(&["generate"]);
    out.ok();
    let token = out.stdout_trimmed().to_string();
    let (_, key_id) = world
        .block_on(proxy.verify(&token, alice.name(), "sshd", RHOST))
        .expect("Verify");

    // The PAM module's own hand-over of the key id was lost: the daemon
    // still knows the login that preceded the session.
    let pam = world.as_root().logged_in_as(alice.uid());
    let keyed = open_by(&pam, alice.name(), "").expect("OpenSession");
    assert_eq!(row(&world, &keyed).key_id.as_deref(), Some(key_id.as_str()));
    world.log().expect(
        "naming the key of the session",
        |l| {
            l.contains("event=session-open")
                && l.contains(&format!("key=\"{key_id}\""))
                && l.contains("key_from=\"recent-verify\"")
        },
        LOG_WAIT,
    );
    // A password login right after is not a key login.
    let password = open_by(&pam, alice.name(), "").expect("OpenSession");
    assert_eq!(row(&world, &password).key_id, None);
    // Named explicitly, the key must be alice's.
    let named = open_by(&pam, alice.name(), &key_id).expect("OpenSession with the key");
    assert_eq!(row(&world, &named).key_id.as_deref(), Some(key_id.as_str()));
    let bob = TestUser::create("bob");
    assert_error(
        open_by(&pam, bob.name(), &key_id),
        &format!("{ERROR_PREFIX}.InvalidArgument"),
        "a session of bob marked with alice's key",
    );
    assert!(!world.log().contains(&token[7..]));
}

#[test]
fn only_root_may_open_or_close_sessions() {
    require!(Need::World, Need::Program("dbus-send"));
    let world = World::new();
    let alice = TestUser::create("alice");
    let denied = format!("{ERROR_PREFIX}.Denied");
    let handle = open_by(&world.as_root(), alice.name(), "").expect("OpenSession as root");
    for (who, what) in [
        (world.as_user(&alice), "alice outside a login session"),
        (
            world.as_user(&alice).logged_in().unregistered(),
            "alice in her login session",
        ),
    ] {
        assert_error(
            open_by(&who, alice.name(), ""),
            &denied,
            &format!("OpenSession by {what}"),
        );
        assert_error(
            close_by(&who, &handle),
            &denied,
            &format!("CloseSession by {what}"),
        );
    }
    assert_eq!(session_rows(&world), 1);
    assert_eq!(row(&world, &handle).closed, None);
    world.log().expect(
        "for the refused open",
        |l| {
            l.contains("event=session-open")
                && l.contains(&format!("caller_uid={} ", alice.uid()))
                && l.contains("outcome=\"Denied\"")
        },
        LOG_WAIT,
    );
}

/// S12: with the packaged bus policy, the bus itself keeps the session
/// calls for root, while the rest of the interface stays open to users.
#[test]
fn the_packaged_bus_policy_keeps_session_calls_for_root() {
    require!(Need::World, Need::Program("dbus-send"));
    // The policy lets only the daemon's account own the name: a test user
    // stands in for `apikeyd`.
    let daemon_user = TestUser::create("daemon");
    let scratch = apikey_tests::tmp::temp_dir("policy");
    let policy = apikey_tests::packaging::bus_policy_for(daemon_user.name(), scratch.path());
    let bus = PrivateBus::start_with(&BusOptions {
        permissive: false,
        policy_files: vec![policy],
    });
    let _daemon = Daemon::start(
        &bus,
        &DaemonConfig {
            wrapper: apikey_tests::packaging::run_as(&daemon_user),
            ..DaemonConfig::default()
        },
    );
    let alice = TestUser::create("alice");
    let as_alice = As::user(&alice).bus(bus.address()).logged_in();
    let as_root = As::root().bus(bus.address());
    let access_denied = "org.freedesktop.DBus.Error.AccessDenied";

    assert_error(
        open_by(&as_alice, alice.name(), ""),
        access_denied,
        "OpenSession by alice under the packaged policy",
    );
    let handle = open_by(&as_root, alice.name(), "").expect("OpenSession by root");
    assert_error(
        close_by(&as_alice, &handle),
        access_denied,
        "CloseSession by alice under the packaged policy",
    );
    assert!(
        dbus_send(&as_alice, "Status", &[]).is_ok(),
        "Status stays open to users"
    );
    // A call that names no interface matches the deny rules, and no allow
    // rule: refused even to root, so the policy has no gap there.
    let address = bus.address().to_string();
    let bare = apikey_tests::bus::block_on_fresh(move || async move {
        let conn = apikey_tests::bus::connect(&address).await?;
        conn.call_method(
            Some(BUS_NAME),
            OBJECT_PATH,
            None::<&str>,
            "OpenSession",
            &("root", "sshd", "", "", ""),
        )
        .await
        .map(|_| ())
    });
    match bare {
        Err(zbus::Error::FDO(e)) if matches!(*e, zbus::fdo::Error::AccessDenied(_)) => {}
        other => panic!("OpenSession without an interface: {other:?}"),
    }
    close_by(&as_root, &handle).expect("CloseSession by root");
}

/// S6 wants positive evidence: a process in a login session of its own
/// that no session hook registered (a crontab's job: Debian's cron stack
/// runs pam_loginuid but authenticates no one; a systemd --user service)
/// makes no keys, long-lived or session. The same user in a registered
/// password login does.
#[test]
fn a_login_session_nobody_registered_makes_no_keys() {
    require!(Need::World, Need::LoginUid);
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let cron = world.as_user(&alice).logged_in().unregistered();
    for args in [&["generate"][..], &["session"][..]] {
        let out = cron.apikey(args);
        assert_eq!(out.code(), 1, "{}: {}", out.description, out.stderr);
        assert!(
            out.stdout.is_empty() && out.stderr.contains("no record of a password login"),
            "{}:\nstdout:\n{}\nstderr:\n{}",
            out.description,
            out.stdout,
            out.stderr
        );
    }
    world.log().expect(
        "the generate refused as NotLoggedIn",
        |l| l.contains("event=generate ") && l.contains("outcome=\"NotLoggedIn\""),
        LOG_WAIT,
    );
    assert!(world.keys_of(alice.name()).is_empty());
    // World::new_key makes it in a registered login, and checks the token.
    world.new_key(&alice, &[]);
    world.log().expect(
        "the login's registration as a password login",
        |l| {
            l.contains("event=session-open ")
                && l.contains(&format!("user=\"{}\"", alice.name()))
                && l.contains("auth=\"password\"")
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    );
}

/// The store does not grow with logins: the record of a login no process
/// can act for any more is deleted (at start, then every minute). Before,
/// every login ever made kept a row (71,673 rows, 15.7 MB after four
/// minutes of load).
#[test]
fn records_of_ended_logins_do_not_pile_up() {
    require!(Need::World, Need::LoginUid, Need::Program("dbus-send"));
    let mut world = World::new();
    let alice = TestUser::create("alice");
    // Each login from a process of its own, in an audit session of its
    // own, which is gone once the process exits.
    let pam = world.as_root().logged_in().unregistered();
    let pages = |world: &World| -> i64 {
        world
            .daemon()
            .open_db_readonly()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
    };
    let mut sizes = Vec::new();
    for _ in 0..2 {
        for _ in 0..60 {
            let handle = open_by(&pam, alice.name(), "").expect("OpenSession");
            close_by(&pam, &handle).expect("CloseSession");
        }
        assert!(session_rows(&world) >= 60);
        world.daemon_mut().restart();
        // A second for the ones opened just before the restart.
        std::thread::sleep(Duration::from_millis(1100));
        world.daemon_mut().restart();
        let left: Vec<(Option<i64>, i64, Option<i64>)> = world
            .daemon()
            .open_db_readonly()
            .prepare("SELECT audit_session, opened, closed FROM sessions")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(left.is_empty(), "ended logins' records are kept: {left:?}");
        sizes.push(pages(&world));
    }
    // Sixty logins' records take more than a page; one page either way is
    // where SQLite placed a freed page (the free list or the end of the
    // file, which depends on when the write-ahead log was folded in, and
    // that moves with the machine's load). Growing with the logins would
    // be more than that.
    assert!(
        sizes[1] <= sizes[0] + 1,
        "the store grew from {} to {} pages with logins",
        sizes[0],
        sizes[1]
    );
    world.log().expect(
        "the prune line",
        |l| l.contains("event=prune ") && l.contains("sessions="),
        LOG_WAIT,
    );
}
