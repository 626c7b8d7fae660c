//! The module's calls against a scripted daemon, or bus, on a real
//! socket: what each call sends, how each answer is read, which sockets
//! and bus names are trusted, and how many connections a PAM handle's
//! hooks cost.

use super::*;
use apikey_proto::wire;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The uid the fake bus says owns apikeyd's name.
const OWNER_UID: u32 = 4242;

/// What the fake answers a call with: the bytes of its reply.
type Answer = fn(&wire::Message) -> Vec<u8>;

/// As the daemon answers when all is well, and as the bus answers the
/// module's questions about it.
fn all_well(call: &wire::Message) -> Vec<u8> {
    let values: &[&str] = match call.member.as_deref() {
        Some("Hello") => &[":1.9"],
        Some("GetNameOwner") => &[":1.5"],
        Some("GetConnectionUnixUser") => return return_u32(call.serial, OWNER_UID),
        Some("Verify") => &["owner", "id"],
        Some("OpenSession") => &["handle-7"],
        Some("OpenSessionWith") => {
            let values = [Value::Str("handle-8".into()), Value::U32(3600)];
            return wire::encode_return_values(call.serial, 1, &values);
        }
        _ => &[],
    };
    wire::encode_return(call.serial, 1, values)
}

/// As a daemon that predates OpenSessionWith answers.
fn older_daemon(call: &wire::Message) -> Vec<u8> {
    match call.member.as_deref() {
        Some("OpenSessionWith") => error(call, "org.freedesktop.DBus.Error.UnknownMethod"),
        _ => all_well(call),
    }
}

fn error(call: &wire::Message, name: &str) -> Vec<u8> {
    wire::encode_error(call.serial, 1, name, "no")
}

/// A method return carrying one uint32, built by hand from the D-Bus
/// specification rather than by the codec under test: header fields
/// REPLY_SERIAL (5, `u`) and SIGNATURE (8, `g` = "u"), each 8-aligned.
fn return_u32(reply_serial: u32, value: u32) -> Vec<u8> {
    let mut m = vec![b'l', 2, 1, 1];
    m.extend(4u32.to_le_bytes()); // body length
    m.extend(1u32.to_le_bytes()); // serial
    let fields = [
        &[5u8, 1, b'u', 0][..],
        &reply_serial.to_le_bytes(),
        &[8, 1, b'g', 0, 1, b'u', 0],
    ]
    .concat();
    m.extend((fields.len() as u32).to_le_bytes());
    m.extend(fields);
    while m.len() % 8 != 0 {
        m.push(0);
    }
    m.extend(value.to_le_bytes());
    m
}

/// A fake peer: accepts connections, answers the authentication as the
/// bus and the daemon do, and each call with `answer`; closes a
/// connection after `calls_per_connection` calls.
struct Fake {
    connections: Arc<AtomicUsize>,
    /// Every call as `Member arg,arg,...`.
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn serve(listener: UnixListener, calls_per_connection: usize, answer: Answer) -> Fake {
        let fake = Fake {
            connections: Arc::default(),
            calls: Arc::default(),
        };
        let (connections, calls) = (fake.connections.clone(), fake.calls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(s) = stream else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                let calls = calls.clone();
                std::thread::spawn(move || converse(s, calls_per_connection, answer, calls));
            }
        });
        fake
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn converse(
    mut s: UnixStream,
    calls_per_connection: usize,
    answer: Answer,
    calls: Arc<Mutex<Vec<String>>>,
) {
    let mut input = Vec::new();
    let mut buf = [0u8; 4096];
    let mut served = 0;
    let mut begun = false;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        input.extend_from_slice(&buf[..n]);
        if !begun {
            while let Some(end) = input.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = input.drain(..end + 2).collect();
                if line.starts_with(b"\0AUTH") {
                    let _ = s.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n");
                } else if line.starts_with(b"BEGIN") {
                    begun = true;
                    break;
                }
            }
        }
        while begun && input.len() >= 16 {
            let frame = wire::Frame::of(&input).unwrap();
            if input.len() < frame.total {
                break;
            }
            let call = wire::decode(&input).unwrap();
            input.drain(..frame.total);
            let args: Vec<&str> = call
                .body
                .iter()
                .map(|v| match v {
                    wire::Value::Str(s) => s.as_str(),
                    wire::Value::U32(_) => "<u32>",
                })
                .collect();
            calls.lock().unwrap().push(format!(
                "{} {}",
                call.member.as_deref().unwrap_or("?"),
                args.join(",")
            ));
            let _ = s.write_all(&answer(&call));
            served += 1;
            if served == calls_per_connection {
                return;
            }
        }
    }
}

fn me() -> String {
    // SAFETY: getpwuid returns static storage or null; read at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        assert!(!pw.is_null());
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

fn my_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn setup_with(calls_per_connection: usize, answer: Answer) -> (tempfile::TempDir, Args, Fake) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pam.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let args = Args {
        socket: Some(path.to_str().unwrap().into()),
        daemon_user: me(),
        timeout_ms: 5000,
        ..Args::default()
    };
    (
        dir,
        args,
        Fake::serve(listener, calls_per_connection, answer),
    )
}

fn setup(calls_per_connection: usize) -> (tempfile::TempDir, Args, Fake) {
    setup_with(calls_per_connection, all_well)
}

fn socket_client(args: &Args) -> DaemonClient {
    DaemonClient::over_socket(args.socket.as_deref().unwrap(), my_uid(), soon())
        .unwrap()
        .expect("the fake listens")
}

#[test]
fn each_call_sends_its_arguments_and_reads_its_answer() {
    let (_dir, args, fake) = setup(usize::MAX);
    let mut d = socket_client(&args);
    assert_eq!(
        d.verify("t", "u", "s", "r"),
        Ok(("owner".into(), "id".into()))
    );
    assert_eq!(d.check_key("id", "u", "s", "r"), Ok(()));
    assert_eq!(
        d.open_session("u", "s", "r", "pts/1", "id", "key"),
        Ok(OpenedSession {
            handle: "handle-8".into(),
            key_expires_in: 3600
        })
    );
    assert_eq!(d.close_session("handle-8"), Ok(()));
    assert_eq!(
        fake.calls(),
        [
            "Verify t,u,s,r",
            "CheckKey id,u,s,r",
            "OpenSessionWith u,s,r,pts/1,id,key",
            "CloseSession handle-8"
        ]
    );
    assert_eq!(fake.connections(), 1);
}

/// A daemon without OpenSessionWith still registers the session, through
/// OpenSession, with nothing to warn of.
#[test]
fn an_older_daemon_opens_the_session_without_a_warning() {
    let (_dir, args, fake) = setup_with(usize::MAX, older_daemon);
    let mut d = socket_client(&args);
    assert_eq!(
        d.open_session("u", "s", "r", "pts/1", "id", "key"),
        Ok(OpenedSession {
            handle: "handle-7".into(),
            key_expires_in: 0
        })
    );
    assert_eq!(
        fake.calls(),
        [
            "OpenSessionWith u,s,r,pts/1,id,key",
            "OpenSession u,s,r,pts/1,id,key"
        ]
    );
    // Any other answer is OpenSessionWith's own: no second call.
    fn refusing(call: &wire::Message) -> Vec<u8> {
        error(call, "org.apikey.Keys1.Error.InvalidArgument")
    }
    let (_dir, args, fake) = setup_with(usize::MAX, refusing);
    let mut d = socket_client(&args);
    assert_eq!(
        d.open_session("u", "s", "r", "pts/1", "id", "key"),
        Err(DaemonError::Refused)
    );
    assert_eq!(fake.calls(), ["OpenSessionWith u,s,r,pts/1,id,key"]);
}

/// The daemon's "no" is a refusal; any other error, or an answer of the
/// wrong shape, is "cannot verify" (the password modules below still run).
#[test]
fn the_daemons_errors_and_odd_answers_are_told_apart() {
    fn refused(call: &wire::Message) -> Vec<u8> {
        error(call, "org.apikey.Keys1.Error.Refused")
    }
    fn denied(call: &wire::Message) -> Vec<u8> {
        error(call, "org.apikey.Keys1.Error.Denied")
    }
    fn odd(call: &wire::Message) -> Vec<u8> {
        let values: &[&str] = match call.member.as_deref() {
            Some("Verify") => &["owner"],
            _ => &[],
        };
        wire::encode_return(call.serial, 1, values)
    }
    let unavailable = |r: Result<(), DaemonError>| matches!(r, Err(DaemonError::Unavailable(_)));
    for (answer, expect_refused) in [(refused as Answer, true), (denied, false)] {
        let (_dir, args, _fake) = setup_with(usize::MAX, answer);
        let mut d = socket_client(&args);
        let results = [
            d.verify("t", "u", "s", "r").map(|_| ()),
            d.check_key("id", "u", "s", "r"),
            d.open_session("u", "s", "r", "", "id", "key").map(|_| ()),
            d.close_session("h"),
        ];
        for r in results {
            if expect_refused {
                assert_eq!(r, Err(DaemonError::Refused));
            } else {
                // The error's name and message reach the module's log.
                assert_eq!(
                    r,
                    Err(DaemonError::Unavailable(
                        "org.apikey.Keys1.Error.Denied: no".into()
                    ))
                );
            }
        }
    }
    // The same answers through a PAM handle's link.
    let (_dir, args, _fake) = setup_with(usize::MAX, refused);
    let mut link = Link::new(&args);
    link.start_hook(&args);
    assert_eq!(link.close_session("h"), Err(DaemonError::Refused));
    assert_eq!(
        link.open_session("u", "s", "r", "", "id", "key"),
        Err(DaemonError::Refused)
    );

    let (_dir, args, _fake) = setup_with(usize::MAX, odd);
    let mut d = socket_client(&args);
    assert!(unavailable(d.verify("t", "u", "s", "r").map(|_| ())));
    assert!(unavailable(
        d.open_session("u", "s", "r", "", "id", "key").map(|_| ())
    ));
}

/// S1 on the bus: every call goes to the name's owner only when the bus
/// says the daemon's uid owns it.
#[test]
fn the_bus_name_must_belong_to_the_daemons_uid() {
    let (dir, _args, fake) = setup(usize::MAX);
    let bus = format!("unix:path={}", dir.path().join("pam.sock").display());
    let mut d = DaemonClient::connect(&bus, OWNER_UID, soon()).unwrap();
    assert_eq!(d.owner.as_deref(), Some(":1.5"));
    assert_eq!(
        d.verify("t", "u", "s", "r"),
        Ok(("owner".into(), "id".into()))
    );
    let e = DaemonClient::connect(&bus, OWNER_UID + 1, soon()).map(|_| ());
    assert!(
        matches!(&e, Err(DaemonError::Unavailable(m)) if m.contains("owned by uid 4242")),
        "{e:?}"
    );
    assert_eq!(
        fake.calls(),
        [
            "Hello ",
            "GetNameOwner org.apikey.Keys1",
            "GetConnectionUnixUser :1.5",
            "Verify t,u,s,r",
            "Hello ",
            "GetNameOwner org.apikey.Keys1",
            "GetConnectionUnixUser :1.5",
        ]
    );

    fn no_owner(call: &wire::Message) -> Vec<u8> {
        match call.member.as_deref() {
            Some("GetNameOwner") => wire::encode_return(call.serial, 1, &[]),
            _ => all_well(call),
        }
    }
    fn uid_as_text(call: &wire::Message) -> Vec<u8> {
        match call.member.as_deref() {
            Some("GetConnectionUnixUser") => wire::encode_return(call.serial, 1, &["4242"]),
            _ => all_well(call),
        }
    }
    for answer in [no_owner as Answer, uid_as_text] {
        let (dir, _args, _fake) = setup_with(usize::MAX, answer);
        let bus = format!("unix:path={}", dir.path().join("pam.sock").display());
        let e = DaemonClient::connect(&bus, OWNER_UID, soon()).map(|_| ());
        assert!(matches!(e, Err(DaemonError::Unavailable(_))), "{e:?}");
    }
}

/// No socket, or nobody listening on it (an older or stopped daemon):
/// the bus. Anything else wrong with it: refused, nothing sent.
#[test]
fn a_missing_or_dead_socket_falls_back_and_a_strange_one_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let over = |p: &str| DaemonClient::over_socket(p, my_uid(), soon()).map(|c| c.is_some());
    assert_eq!(over(&path("missing.sock")), Ok(false));
    drop(UnixListener::bind(path("stale.sock")).unwrap());
    assert_eq!(over(&path("stale.sock")), Ok(false));
    std::fs::write(path("file"), b"").unwrap();
    let e = over(&format!("{}/pam.sock", path("file")));
    assert!(
        matches!(&e, Err(DaemonError::Unavailable(m)) if m.contains("not sending it anything")),
        "{e:?}"
    );
    let e = over(&path("file"));
    assert!(
        matches!(&e, Err(DaemonError::Unavailable(m)) if m.contains("not a socket")),
        "{e:?}"
    );
    let (open_dir, args, fake) = setup(usize::MAX);
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let e = over(args.socket.as_deref().unwrap());
    assert!(
        matches!(&e, Err(DaemonError::Unavailable(m)) if m.contains("written by others")),
        "{e:?}"
    );
    assert_eq!(fake.connections(), 0);
}

/// A listener whose queue is full: connect gives up at the deadline
/// instead of holding the login.
#[test]
fn connecting_ends_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // SAFETY: a plain listen(2) on the listener's own descriptor.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let path = path.to_str().unwrap();
    // A backlog of 0 queues one connection; the next one waits.
    let queued = crate::dbus::connect_by(path, soon()).unwrap();
    let start = Instant::now();
    let e = crate::dbus::connect_by(path, start + Duration::from_millis(300)).unwrap_err();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?} {e}"
    );
    // The daemon's own socket, trusted but not taking connections in
    // time: unavailable, not a reason to try the bus.
    let e = DaemonClient::over_socket(path, my_uid(), Instant::now() + Duration::from_millis(300))
        .map(|c| c.is_some());
    assert!(
        matches!(&e, Err(DaemonError::Unavailable(m)) if m.contains("cannot connect")),
        "{e:?}"
    );
    drop(queued);
    let past = Instant::now() - Duration::from_millis(1);
    let e = crate::dbus::connect_by(path, past).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let long = format!("/tmp/{}", "x".repeat(200));
    let e = crate::dbus::connect_by(&long, soon()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = crate::dbus::connect_by("/tmp/a\0b", soon()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn the_hooks_of_one_handle_share_one_connection() {
    let (_dir, args, fake) = setup(usize::MAX);
    let mut link = Link::new(&args);
    link.start_hook(&args);
    assert_eq!(
        link.verify("t", "u", "s", "r"),
        Ok(("owner".into(), "id".into()))
    );
    link.start_hook(&args);
    assert_eq!(link.check_key("id", "u", "s", "r"), Ok(()));
    link.start_hook(&args);
    assert_eq!(
        link.open_session("u", "s", "r", "", "id", "key")
            .map(|o| o.handle),
        Ok("handle-8".into())
    );
    link.start_hook(&args);
    assert_eq!(link.close_session("handle-8"), Ok(()));
    assert_eq!(fake.connections(), 1);
    // Another daemon named by the next hook's line: a new connection.
    let other = Args {
        timeout_ms: 4000,
        ..args.clone()
    };
    link.start_hook(&other);
    assert_eq!(link.check_key("id", "u", "s", "r"), Ok(()));
    assert_eq!(fake.connections(), 1, "a timeout is no other daemon");
    let bus_only = Args {
        socket: None,
        ..args.clone()
    };
    link.start_hook(&bus_only);
    assert!(
        link.daemon.is_none(),
        "another daemon: the old link is dropped"
    );
}

/// Each hook gets its own timeout on the kept connection: a later hook
/// is not refused because an earlier hook's deadline has passed.
#[test]
fn a_kept_connection_takes_each_hooks_deadline() {
    let (_dir, mut args, fake) = setup(usize::MAX);
    args.timeout_ms = 500;
    let mut link = Link::new(&args);
    link.start_hook(&args);
    link.verify("t", "u", "s", "r").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    link.start_hook(&args);
    assert_eq!(link.check_key("id", "u", "s", "r"), Ok(()));
    assert_eq!(fake.connections(), 1);
}

#[test]
fn a_forked_child_opens_its_own_connection() {
    let (_dir, args, fake) = setup(usize::MAX);
    let mut link = Link::new(&args);
    link.start_hook(&args);
    link.verify("t", "u", "s", "r").unwrap();
    // As the child sees it: the link was made by another process.
    link.pid = link.pid.wrapping_add(1);
    link.start_hook(&args);
    assert!(link.daemon.is_none());
    link.check_key("id", "u", "s", "r").unwrap();
    assert_eq!(fake.connections(), 2);
}

#[test]
fn a_connection_the_daemon_closed_while_idle_is_opened_again_once() {
    let (_dir, args, fake) = setup(1);
    let mut link = Link::new(&args);
    link.start_hook(&args);
    link.verify("t", "u", "s", "r").unwrap();
    // The fake closed it after that call; the next hook does not fail.
    std::thread::sleep(Duration::from_millis(50));
    link.start_hook(&args);
    assert_eq!(link.check_key("id", "u", "s", "r"), Ok(()));
    assert_eq!(fake.connections(), 2);
    // Within one hook a connection that fails is not tried again.
    std::thread::sleep(Duration::from_millis(50));
    let fresh = link.check_key("id", "u", "s", "r");
    assert!(
        matches!(fresh, Err(DaemonError::Unavailable(_))),
        "{fresh:?}"
    );
}

/// S1 on the socket, the kernel's part: the uid the listener ran as when
/// it called listen(2) (SO_PEERCRED), whoever owns the socket file. Here
/// root binds the socket and a child listens on it as uid 4242.
#[test]
fn only_a_listener_running_as_the_daemons_uid_is_trusted() {
    if !apikey_test_skip::proceed_unless(apikey_test_skip::unmet_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pam.sock");
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: plain socket calls; the child makes only async-signal-safe
    // calls before it is killed.
    let child = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(c_path.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            0
        );
        let pid = libc::fork();
        if pid == 0 {
            if libc::setgid(OWNER_UID) != 0
                || libc::setuid(OWNER_UID) != 0
                || libc::listen(fd, 8) != 0
            {
                libc::_exit(1);
            }
            loop {
                libc::pause();
            }
        }
        libc::close(fd);
        pid
    };
    assert!(child > 0);
    let path = path.to_str().unwrap();
    let start = Instant::now();
    while UnixStream::connect(path).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the child never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let as_daemon = DaemonClient::over_socket(path, OWNER_UID, soon()).map(|c| c.is_some());
    let as_root = DaemonClient::over_socket(path, 0, soon()).map(|c| c.is_some());
    // SAFETY: our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    assert_eq!(as_daemon, Ok(true));
    assert!(
        matches!(&as_root, Err(DaemonError::Unavailable(m)) if m.contains("runs as uid 4242")),
        "{as_root:?}"
    );
}

/// A signal that interrupts the wait for an answer (sshd's SIGCHLD, a
/// timer) is not a failure: the read goes on until the deadline.
#[test]
fn a_signal_during_a_call_does_not_fail_it() {
    extern "C" fn ignore(_: libc::c_int) {}
    fn slow(call: &wire::Message) -> Vec<u8> {
        std::thread::sleep(Duration::from_millis(400));
        all_well(call)
    }
    // SAFETY: a handler that does nothing, installed without SA_RESTART
    // so that the blocked read returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
    }
    let (_dir, args, _fake) = setup_with(usize::MAX, slow);
    let mut d = socket_client(&args);
    // SAFETY: pthread_self names this thread, alive until the join below.
    let me = unsafe { libc::pthread_self() };
    let signaller = std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: the test thread is blocked in the call meanwhile.
            unsafe { libc::pthread_kill(me, libc::SIGUSR2) };
        }
    });
    let answer = d.verify("t", "u", "s", "r");
    signaller.join().unwrap();
    assert_eq!(answer, Ok(("owner".into(), "id".into())));
}

/// A daemon that drops the connection with the call unread: the read
/// error is reported at once, not retried until the deadline.
#[test]
fn a_reset_connection_fails_the_call_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pam.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            // Closed with what the client sent still unread: a reset.
            std::thread::sleep(Duration::from_millis(200));
            drop(s);
        }
    });
    let path = path.to_str().unwrap();
    let mut d = DaemonClient::over_socket(path, my_uid(), soon())
        .unwrap()
        .unwrap();
    let start = Instant::now();
    let e = d.verify("t", "u", "s", "r");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&e, Err(DaemonError::Unavailable(m)) if m.contains("read: ")),
        "{e:?}"
    );
}
