//! `akt-socket`: the far ends of apikeyd's PAM socket that tests need.
//!
//! - `fake PATH [UID]`: an impostor listening at PATH (made by the caller,
//!   root), switching to UID before it listens when given, so that the
//!   kernel reports UID as the listener. It answers the handshake as a
//!   daemon would and would accept any key; it prints `ready`, then
//!   `connection` for each client and `bytes N` with what each sent after
//!   the handshake (never the bytes), so a test sees whether a token came.
//! - `hold PATH N`: N connections that never say anything, held until
//!   standard input closes. Prints `held K` (K may be less than N when the
//!   daemon closes the ones past its limit).
//! - `flood PATH MIB`: a handshake, then a message header that declares
//!   a body of MIB MiB and that many MiB of junk. Prints `sent K` (bytes
//!   the daemon took before it closed the connection).
//! - `noread PATH`: a handshake, then Pings without ever reading the
//!   replies, until the daemon closes. Prints `closed after K`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(2).cloned().unwrap_or_default();
    match args.get(1).map(String::as_str) {
        Some("fake") => fake(&path, args.get(3).map(|u| u.parse().expect("uid"))),
        Some("hold") => hold(&path, args[3].parse().expect("count")),
        Some("flood") => flood(&path, args[3].parse().expect("MiB")),
        Some("noread") => noread(&path),
        _ => {
            eprintln!("usage: akt-socket fake|hold|flood|noread PATH ...");
            std::process::exit(2);
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fake(path: &str, uid: Option<u32>) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // bind, then (maybe) setuid, then listen: SO_PEERCRED names whoever
    // called listen().
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
        *d = *s as libc::c_char;
    }
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind {path}: {}", std::io::Error::last_os_error());
    unsafe { libc::chmod(std::ffi::CString::new(path).unwrap().as_ptr(), 0o666) };
    if let Some(uid) = uid {
        assert_eq!(unsafe { libc::setgid(uid) }, 0);
        assert_eq!(unsafe { libc::setuid(uid) }, 0);
    }
    assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 16) }, 0);
    let listener = UnixListener::from(fd);
    say("ready");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        say("connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut begun = false;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if !begun {
                if let Some(end) = got.windows(2).position(|w| w == b"\r\n") {
                    let line = String::from_utf8_lossy(&got[..end]).into_owned();
                    got.drain(..end + 2);
                    if line.starts_with("\0AUTH") {
                        let _ = stream.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n");
                    } else if line == "BEGIN" {
                        begun = true;
                    }
                }
            }
        }
        say(&format!("bytes {}", got.len()));
    }
}

fn handshake(path: &str) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(pam_apikey::dbus::auth_line().as_bytes())
        .unwrap();
    let mut line = [0u8; 64];
    let n = s.read(&mut line).unwrap();
    assert!(line[..n].starts_with(b"OK "), "handshake refused");
    s.write_all(b"BEGIN\r\n").unwrap();
    s
}

fn hold(path: &str, count: usize) {
    // As many descriptors as the hard limit allows: the test asks for more
    // connections than the usual soft limit of 1024.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let mut held = Vec::new();
    for _ in 0..count {
        match UnixStream::connect(path) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    // The daemon accepts and closes the ones past its limit at once.
    std::thread::sleep(Duration::from_millis(500));
    // Which ones the daemon kept: a closed one reads end of file at once.
    let open = held
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            matches!((&**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    say(&format!("held {open}"));
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}

fn flood(path: &str, mib: usize) {
    let mut s = handshake(path);
    let mut header = vec![b'l', 1, 0, 1];
    header.extend_from_slice(&((mib << 20) as u32).to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    let junk = vec![0x55u8; 1 << 20];
    let mut sent = 0usize;
    if s.write_all(&header).is_ok() {
        sent += header.len();
        for _ in 0..mib {
            match s.write(&junk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
    }
    say(&format!("sent {sent}"));
}

fn noread(path: &str) {
    let mut s = handshake(path);
    let ping = apikey_proto::wire::encode_call(
        &apikey_proto::wire::Call {
            destination: None,
            path: "/",
            interface: "org.freedesktop.DBus.Peer",
            member: "Ping",
            args: &[],
        },
        1,
    );
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut count = 0u64;
    while s.write_all(&ping).is_ok() {
        count += 1;
    }
    say(&format!("closed after {count}"));
}
