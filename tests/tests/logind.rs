//! logind's SessionRemoved ends the session keys of that session, and
//! only when the signal comes from the owner of org.freedesktop.login1
//! (S5, S12). The test plays logind on the private bus.

use apikey_tests::prelude::*;

const LOG_WAIT: Duration = Duration::from_secs(10);

/// Kills the process that keeps the audit session alive, even on panic.
struct KeepAlive(i32);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        // SAFETY: kill(2) of a pid this test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn emit_session_removed(conn: &zbus::Connection, world: &World, session: &str) {
    let path = format!("/org/freedesktop/login1/session/_3{session}");
    let path = zbus::ObjectPath::try_from(path.as_str()).expect("object path");
    world
        .block_on(conn.emit_signal(
            None::<&str>,
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "SessionRemoved",
            &(session, path),
        ))
        .expect("emit SessionRemoved");
}

#[test]
fn only_logind_ends_a_session_key_by_signal() {
    require!(Need::World);
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    // A login of alice's: it prints its audit session, makes a session key
    // and leaves a process behind in that session, so that the session is
    // alive and only the signal can end the key.
    let script = format!(
        "cat /proc/self/sessionid; echo; {} session && \
         {{ sleep 300 </dev/null >/dev/null 2>&1 & echo $!; }}",
        world.apikey_bin().display()
    );
    let out = world
        .as_user(&alice)
        .logged_in()
        .run("sh", &["-c", &script]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let (session, token) = (lines[0].trim(), lines[1].trim());
    let _keep = KeepAlive(
        lines[2]
            .trim()
            .parse()
            .expect("pid of the session's process"),
    );
    assert_ne!(
        session, "4294967295",
        "the login must have an audit session"
    );

    let proxy = world.proxy_as_root();
    let verify = || world.block_on(proxy.verify(token, alice.name(), "sshd", ""));
    verify().expect("the fresh session key works");

    // Anyone may send a signal that looks like logind's: ignored.
    let impostor = world.root_connection();
    emit_session_removed(&impostor, &world, session);
    world.log().expect(
        "the impostor's signal is logged and ignored",
        |l| l.contains("event=logind-signal") && l.contains("ignored-not-logind"),
        LOG_WAIT,
    );
    verify().expect("a signal not from logind ends nothing");

    // The owner of org.freedesktop.login1 is believed.
    let logind = world.root_connection();
    world
        .block_on(logind.request_name("org.freedesktop.login1"))
        .expect("own org.freedesktop.login1");
    emit_session_removed(&logind, &world, session);
    world.log().expect(
        "the key ends with logind's session",
        |l| l.contains("event=session-key-end") && l.contains("logind-session-removed"),
        LOG_WAIT,
    );
    assert!(
        matches!(verify(), Err(KeysError::Refused(_))),
        "the key must be dead"
    );
    assert!(
        !world.log().contains(token),
        "the token never reaches the log"
    );
}
