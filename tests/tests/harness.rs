//! Tests of the harness itself: if these fail, every end-to-end test
//! built on them means nothing.

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use apikey_tests::prelude::*;
use apikey_tests::skip::{decide, strict_value, Verdict};
use apikey_tests::syslog::AUTHPRIV;

const UNSET: &str = "4294967295";

fn getent(db: &str, key: &str) -> Option<String> {
    let out = Command::new("getent").args([db, key]).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn strict_mode_takes_any_true_value_and_only_those() {
    for on in ["1", "true", "TRUE", "yes", "Yes", "on", " 1\n", "y"] {
        assert!(strict_value(on), "{on:?} must turn strict mode on");
    }
    for off in ["", "0", "false", "no", "off", "2"] {
        assert!(!strict_value(off), "{off:?} must leave it off");
    }
}

#[test]
fn skip_decision_follows_strict_mode() {
    assert_eq!(decide("t", None, false), Verdict::Run);
    assert_eq!(decide("t", None, true), Verdict::Run);
    assert_eq!(
        decide("mod::t", Some("needs root"), false),
        Verdict::Skip("SKIP mod::t: needs root".into())
    );
    match decide("mod::t", Some("needs root"), true) {
        Verdict::Fail(msg) => {
            assert!(
                msg.contains("mod::t") && msg.contains("needs root"),
                "{msg}"
            );
            assert!(msg.contains("APIKEY_STRICT_TESTS"), "{msg}");
        }
        other => panic!("strict mode must fail, got {other:?}"),
    }
}

#[test]
fn needs_are_checked_for_real() {
    assert_eq!(apikey_tests::skip::unmet(&[Need::Program("sh")]), None);
    let missing = apikey_tests::skip::unmet(&[Need::Program("no-such-program-akt")]);
    assert!(missing.unwrap().contains("no-such-program-akt"));
    let root = nix::unistd::geteuid().is_root();
    assert_eq!(apikey_tests::skip::unmet(&[Need::Root]).is_none(), root);
}

#[test]
fn private_bus_starts_and_answers() {
    require!(Need::Program("dbus-daemon"));
    let bus = PrivateBus::start();
    assert!(
        bus.address().starts_with("unix:path=/tmp/"),
        "{}",
        bus.address()
    );
    let id = bus.get_id().expect("GetId");
    assert_eq!(id.len(), 32, "bus id {id}");
    assert!(!bus.name_has_owner("org.apikey.Keys1").unwrap());

    let pid = bus.pid();
    let dir = bus.dir().to_path_buf();
    drop(bus);
    assert!(!dir.exists(), "bus dir left behind");
    // Reaped, not a zombie: the pid is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn bus_policy_is_system_like_but_lets_root_own_the_service() {
    require!(Need::Root, Need::Program("dbus-daemon"));
    let bus = PrivateBus::start();
    let (ours, other) = apikey_tests::bus::block_on_fresh(|| async {
        let conn = bus.connect().await.unwrap();
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let flags = zbus::fdo::RequestNameFlags::DO_NOT_QUEUE;
        let ours = dbus
            .request_name("org.apikey.Keys1".try_into().unwrap(), flags)
            .await;
        let other = dbus
            .request_name("org.example.NotOurs".try_into().unwrap(), flags)
            .await;
        (ours, other)
    });
    assert!(ours.is_ok(), "root may own org.apikey.Keys1: {ours:?}");
    match other {
        Err(zbus::fdo::Error::AccessDenied(_)) => {}
        other => panic!("owning other names must be denied, got {other:?}"),
    }
}

#[test]
fn test_user_is_created_and_removed() {
    require!(Need::World);
    let user = TestUser::create("alice");
    let name = user.name().to_string();
    assert!(name.starts_with("aktalice") && name.len() <= 16, "{name}");
    let entry = getent("passwd", &name).expect("user exists");
    assert!(
        entry.contains(&format!(":{}:{}:", user.uid(), user.gid())),
        "{entry}"
    );
    assert!(user.uid() >= 1000);
    assert!(user.home().is_dir());
    assert!(getent("group", &name).is_some(), "user private group");
    let home = user.home().to_path_buf();
    drop(user);
    assert_eq!(getent("passwd", &name), None, "user left behind");
    assert_eq!(getent("group", &name), None, "group left behind");
    assert!(!home.exists(), "home left behind");
}

#[test]
fn test_user_is_removed_when_the_test_panics() {
    require!(Need::World);
    let name = std::panic::catch_unwind(|| {
        let user = TestUser::create("panic");
        let name = user.name().to_string();
        std::panic::panic_any(name);
    })
    .unwrap_err()
    .downcast::<String>()
    .unwrap();
    assert_eq!(getent("passwd", &name), None, "user left behind");
}

#[test]
fn groups_and_membership() {
    require!(Need::World);
    let group = TestGroup::create();
    let user = TestUser::create("grp");
    assert!(group.name().starts_with("akg") && group.name().len() <= 16);
    group.add_member(&user);
    let out = As::user(&user).run("id", &["-G"]);
    out.ok();
    let gids: Vec<u32> = out
        .stdout
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(gids.contains(&group.gid()), "{gids:?}");
    assert!(gids.contains(&user.gid()), "{gids:?}");
    let name = group.name().to_string();
    drop(user);
    drop(group);
    assert_eq!(getent("group", &name), None, "group left behind");
}

#[test]
fn lock_and_expire_reach_shadow() {
    require!(Need::World);
    let user = TestUser::create("lock");
    let shadow = || getent("shadow", user.name()).expect("shadow entry");
    user.set_password("correct horse");
    let field = |s: String| s.split(':').nth(1).unwrap().to_string();
    assert!(field(shadow()).starts_with('$'), "a real hash");
    user.lock();
    assert!(field(shadow()).starts_with("!$"), "locked: {}", shadow());
    user.unlock();
    assert!(field(shadow()).starts_with('$'));
    user.expire();
    assert_eq!(shadow().split(':').nth(7), Some("1"), "{}", shadow());
    user.unexpire();
    assert_eq!(shadow().split(':').nth(7), Some(""), "{}", shadow());
}

#[test]
fn setpriv_drops_to_the_user() {
    require!(Need::World);
    let user = TestUser::create("priv");
    let out = As::user(&user).run("id", &["-u"]);
    assert_eq!(out.ok().stdout_trimmed(), user.uid().to_string());
    let out = As::user(&user).run("id", &["-g"]);
    assert_eq!(out.ok().stdout_trimmed(), user.gid().to_string());
    // Real and saved ids too, not just effective ones.
    let out = As::user(&user).run("grep", &["-E", "^(Uid|Gid):", "/proc/self/status"]);
    for line in out.ok().stdout.lines() {
        let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(ids.len(), 4, "{line}");
        assert!(ids.iter().all(|id| *id == ids[0]), "{line}");
    }
}

#[test]
fn environment_is_clean_and_chosen() {
    require!(Need::World);
    let user = TestUser::create("env");
    let out = As::user(&user)
        .bus("unix:path=/nonexistent")
        .env("EXTRA", "1")
        .run("env", &[]);
    let mut vars: Vec<&str> = out.ok().stdout.lines().collect();
    vars.sort();
    let home = format!("HOME={}", user.home().display());
    let name = format!("USER={}", user.name());
    for want in [
        home.as_str(),
        name.as_str(),
        "LANG=C",
        "EXTRA=1",
        "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent",
    ] {
        assert!(vars.contains(&want), "{want} missing from {vars:?}");
    }
    assert!(
        vars.iter()
            .all(|v| !v.starts_with("CARGO") && !v.starts_with("RUST")),
        "test environment leaked: {vars:?}"
    );
}

#[test]
fn stdin_exit_codes_and_signals() {
    let out = As::root().stdin("hello").run("cat", &[]);
    assert_eq!(out.ok().stdout, "hello");
    let out = As::root().run("sh", &["-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.code(), 3);
    assert_eq!(out.stderr, "oops\n");
    let out = As::root().run("sh", &["-c", "kill -TERM $$"]);
    assert_eq!(out.code(), 128 + 15);
}

#[test]
#[should_panic(expected = "still running")]
fn a_hanging_child_is_killed() {
    As::root()
        .timeout(Duration::from_millis(300))
        .run("sleep", &["30"]);
}

#[test]
fn logged_in_child_has_loginuid_and_session() {
    require!(Need::World);
    let user = TestUser::create("login");
    let read = |who: As| {
        let out = who.run(
            "sh",
            &[
                "-c",
                "cat /proc/self/loginuid; echo; cat /proc/self/sessionid",
            ],
        );
        let text = out.ok().stdout.clone();
        let (loginuid, session) = text.split_once('\n').expect("two values");
        (loginuid.to_string(), session.to_string())
    };
    // Not logged in: the test process's own (unset) values are inherited.
    let (loginuid, _) = read(As::user(&user));
    assert_eq!(loginuid, UNSET);

    let (loginuid, session) = read(As::user(&user).logged_in());
    assert_eq!(loginuid, user.uid().to_string());
    assert_ne!(session, UNSET, "writing loginuid starts an audit session");
    let (_, session2) = read(As::user(&user).logged_in());
    assert_ne!(session, session2, "each logged-in child is a new session");
}

#[test]
fn impersonation_keeps_the_login_uid() {
    require!(Need::World);
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let out = As::user(&bob).logged_in_as(alice.uid()).run(
        "sh",
        &[
            "-c",
            "id -u; cat /proc/self/loginuid; echo; cat /proc/self/sessionid",
        ],
    );
    let lines: Vec<String> = out.ok().stdout.lines().map(str::to_string).collect();
    assert_eq!(lines[0], bob.uid().to_string(), "runs as bob");
    assert_eq!(lines[1], alice.uid().to_string(), "logged in as alice");
    assert_ne!(lines[2], UNSET);
}

#[test]
fn root_can_be_logged_in_too() {
    require!(Need::Root, Need::LoginUid);
    let out = As::root()
        .logged_in()
        .run("sh", &["-c", "id -u; cat /proc/self/loginuid"]);
    assert_eq!(out.ok().stdout, "0\n0");
}

#[test]
fn log_sink_receives_datagrams() {
    let dir = apikey_tests::tmp::temp_dir("test");
    let sink = LogSink::bind(dir.path());
    let client = UnixDatagram::unbound().unwrap();
    client
        .send_to(
            b"<86>Nov 26 15:00:00 host apikeyd[123]: hello\n",
            sink.path(),
        )
        .unwrap();
    let line = sink
        .wait_for_text("hello", Duration::from_secs(5))
        .expect("datagram arrives");
    assert_eq!(line, "<86>Nov 26 15:00:00 host apikeyd[123]: hello");
    let msg = &sink.messages()[0];
    assert_eq!(msg.facility(), Some(AUTHPRIV));
    assert_eq!((msg.ident.as_str(), msg.pid), ("apikeyd", Some(123)));
    assert!(sink
        .wait_for(|l| l.contains("never"), Duration::from_millis(100))
        .is_none());
    let path = sink.path().to_path_buf();
    drop(sink);
    assert!(!path.exists());
}

#[test]
fn log_sink_accepts_unprivileged_senders() {
    require!(Need::World, Need::Program("logger"));
    let dir = apikey_tests::tmp::temp_dir("test");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sink = LogSink::bind(dir.path());
    let user = TestUser::create("log");
    As::user(&user)
        .run(
            "logger",
            &[
                "--socket",
                &sink.path().to_string_lossy(),
                "-p",
                "authpriv.info",
                "-t",
                "probe",
                "from a user",
            ],
        )
        .ok();
    let line = sink.expect(
        "from the user",
        |l| l.contains("from a user"),
        Duration::from_secs(5),
    );
    let msg = SyslogLine::parse(&line);
    assert_eq!(msg.facility(), Some(AUTHPRIV), "{line}");
    assert_eq!(msg.ident, "probe", "{line}");
}

#[test]
fn unprivileged_users_reach_the_private_bus() {
    require!(Need::World, Need::Program("dbus-send"));
    let bus = PrivateBus::start();
    let user = TestUser::create("bus");
    let out = As::user(&user).bus(bus.address()).run(
        "dbus-send",
        &[
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetId",
        ],
    );
    let id = bus.get_id().unwrap();
    assert!(out.ok().stdout.contains(&id), "{}", out.stdout);
}

#[test]
fn daemon_config_is_valid_toml() {
    let mut config = DaemonConfig::default();
    config
        .verifier_groups
        .push(("www-data".into(), vec!["nginx".into(), "odd\"name".into()]));
    let text = config.to_toml(
        std::path::Path::new("/tmp/x/keys.db"),
        std::path::Path::new("/tmp/x/log.sock"),
        std::path::Path::new("/tmp/x/pam.sock"),
    );
    let value: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(value["max_keys_per_user"].as_integer(), Some(100));
    assert_eq!(value["throttle"]["max_delay"].as_str(), Some("2s"));
    assert_eq!(
        value["verifier_groups"]["www-data"][1].as_str(),
        Some("odd\"name")
    );
    assert_eq!(value["syslog_socket"].as_str(), Some("/tmp/x/log.sock"));
    assert_eq!(value["pam_socket"].as_str(), Some("/tmp/x/pam.sock"));
}

/// Starts the real daemon and asks it who we are. Needs `apikeyd` built.
#[test]
fn daemon_starts_and_answers_status() {
    require!(Need::World);
    let world = World::new();
    let proxy = world.proxy_as_root();
    let status = world
        .block_on(proxy.status())
        .unwrap_or_else(|e| panic!("Status: {e}\n{}", world.daemon().stderr_text()));
    assert_eq!(status.uid, 0);
    assert_eq!(status.user, "root");
    assert!(status.admin, "root is an administrator");
    assert!(!status.logged_in, "the test process has no loginuid");
    assert!(!status.version.is_empty());
    assert!(world.bus().name_has_owner("org.apikey.Keys1").unwrap());
}

/// Status as a user sees it, through `dbus-send` (independent of the CLI):
/// the `(admin, verifier, logged_in, impersonating)` booleans, in the
/// field order of `StatusInfo`.
fn status_flags(who: As) -> [bool; 4] {
    let out = who.run(
        "dbus-send",
        &[
            "--system",
            "--print-reply",
            "--dest=org.apikey.Keys1",
            "/org/apikey/Keys1",
            "org.apikey.Keys1.Status",
        ],
    );
    let words: Vec<&str> = out.ok().stdout.split_whitespace().collect();
    let flags: Vec<bool> = words
        .windows(2)
        .filter(|w| w[0] == "boolean")
        .map(|w| w[1] == "true")
        .take(4)
        .collect();
    flags
        .try_into()
        .unwrap_or_else(|_| panic!("{}", out.stdout))
}

/// What the harness calls logged in and impersonating is what the daemon
/// calls so: the premise of every test of those rules.
#[test]
fn daemon_sees_the_login_states_the_harness_makes() {
    require!(Need::World, Need::Program("dbus-send"));
    let world = World::new();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let [admin, _, logged_in, impersonating] = status_flags(world.as_user(&alice));
    assert!(!admin && !logged_in && !impersonating);
    let [_, _, logged_in, impersonating] = status_flags(world.as_user(&alice).logged_in());
    assert!(logged_in && !impersonating);
    let [_, _, logged_in, impersonating] =
        status_flags(world.as_user(&bob).logged_in_as(alice.uid()));
    assert!(logged_in && impersonating);
}

#[test]
fn documented_edits_apply_in_place_and_fail_on_a_file_that_drifted() {
    use apikey_tests::pam::{apply_edit, doc_snippet};
    let base = "# head\n\nauth required pam_listfile.so x\n# note\n@include common-auth\nauth  required   pam_shells.so\n";
    let edit = " auth required pam_listfile.so x\n+auth required pam_shells.so\n+auth [success=done] pam_apikey.so\n @include common-auth\n-auth required pam_shells.so\n";
    assert_eq!(
        apply_edit(base, edit).unwrap(),
        "# head\n\nauth required pam_listfile.so x\nauth required pam_shells.so\nauth [success=done] pam_apikey.so\n# note\n@include common-auth\n"
    );
    let err = apply_edit("@include common-auth\n", edit).unwrap_err();
    assert!(err.contains("pam_listfile"), "{err}");
    assert!(apply_edit(base, "x bad line\n").is_err());

    let doc = "text\n<!-- test: ftp edits /etc/pam.d/vsftpd -->\n```diff\n+a\n b\n```\n<!-- test: web is /etc/pam.d/nginx -->\n```\nauth x\n```\n";
    let ftp = doc_snippet(doc, "ftp").unwrap();
    assert!(ftp.edit && ftp.path == "/etc/pam.d/vsftpd" && ftp.text == "+a\n b\n");
    let web = doc_snippet(doc, "web").unwrap();
    assert!(!web.edit && web.text == "auth x\n");
    assert!(doc_snippet(doc, "sshd").is_err());
}

/// Every PAM setup docs/pam.md shows applies to this machine's files.
#[test]
fn the_documented_pam_setups_apply_to_this_machines_files() {
    require!(Need::Program("sshd"), Need::Program("vsftpd"));
    for name in ["sshd", "vsftpd", "nginx"] {
        let stack = apikey_tests::pam::documented_stack(name, "/x/pam_apikey.so bus=y");
        assert!(stack.contains("/x/pam_apikey.so bus=y"), "{name}:\n{stack}");
    }
    // Debian's lines all stay; the deny list and the shell check also
    // run for the account a key logs in as.
    let vsftpd = apikey_tests::pam::documented_stack("vsftpd", "M");
    let machine = std::fs::read_to_string("/etc/pam.d/vsftpd").unwrap();
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = vsftpd.lines().map(fold).collect();
    for line in machine.lines().filter(|l| !l.trim().is_empty()) {
        assert!(lines.contains(&fold(line)), "lost {line:?}:\n{vsftpd}");
    }
    for needed in [
        "account required pam_listfile.so",
        "account required pam_shells.so",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(needed)),
            "no {needed}:\n{vsftpd}"
        );
    }
}
