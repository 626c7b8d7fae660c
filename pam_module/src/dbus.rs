//! A minimal, blocking D-Bus client for the few calls the module makes.
//!
//! The module runs inside sshd, vsftpd and nginx workers, so it must not
//! start a runtime or leave a thread behind, and every call must end by a
//! deadline whatever the bus or the daemon does. A general-purpose async
//! client cannot promise that cheaply; these few messages (strings and one
//! uint32, little- or big-endian replies) can, with one socket whose every
//! read and write is bounded by the time left. The socket is closed when
//! the client is dropped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

use apikey_proto::wire::{self, MSG_ERROR, MSG_METHOD_RETURN};
pub use apikey_proto::wire::{Call, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// Could not connect, authenticate or get an answer in time.
    Unavailable(String),
    /// The peer answered with a D-Bus error.
    Error { name: String, message: String },
    /// The peer answered something we do not understand.
    Protocol(String),
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Unavailable(m) => write!(f, "daemon unavailable: {m}"),
            BusError::Error { name, message } => write!(f, "{name}: {message}"),
            BusError::Protocol(m) => write!(f, "D-Bus protocol error: {m}"),
        }
    }
}

pub struct Client {
    stream: UnixStream,
    deadline: Instant,
    serial: u32,
    /// Bytes received and not yet taken. Replies are read in chunks, not
    /// a byte or a header at a time.
    input: Vec<u8>,
    /// Bytes to send with the next call: `BEGIN` and `Hello` wait here so
    /// that they go out together with the first call, as libdbus and
    /// sd-bus send them, saving a round trip. May hold a token: wiped.
    output: Zeroizing<Vec<u8>>,
    /// The serial of our Hello until its reply has been read.
    hello: Option<u32>,
    /// Authentication went out with the first call, unanswered so far:
    /// its `OK` comes before the first reply.
    auth_pending: bool,
}

/// Bytes asked of the socket at once: more than any reply of ours.
const READ_CHUNK: usize = 4096;

/// Longest authentication line accepted from the bus.
const MAX_AUTH_LINE: usize = 512;

impl Client {
    /// Connects to `address` (`unix:path=...`) and authenticates as our
    /// uid before `deadline`. `BEGIN` and `Hello` are sent with the first
    /// call, which fails if the bus refuses the Hello.
    pub fn connect(address: &str, deadline: Instant) -> Result<Client, BusError> {
        let path = unix_path(address)
            .ok_or_else(|| BusError::Unavailable(format!("unsupported bus address {address}")))?;
        let stream = connect_by(path, deadline)
            .map_err(|e| BusError::Unavailable(format!("cannot connect to {path}: {e}")))?;
        Client::over(stream, deadline)
    }

    /// [`connect`](Self::connect) over a stream already connected.
    fn over(stream: UnixStream, deadline: Instant) -> Result<Client, BusError> {
        let mut client = Client::unauthenticated(stream, deadline);
        client.authenticate()?;
        client.output.extend_from_slice(b"BEGIN\r\n");
        let hello = client.queue(&Call {
            destination: Some("org.freedesktop.DBus"),
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
            args: &[],
        });
        client.hello = Some(hello);
        Ok(client)
    }

    /// A peer-to-peer connection over `stream` (apikeyd's own socket,
    /// whose listener the caller has checked): no bus to say Hello to, and
    /// the whole authentication (`AUTH EXTERNAL`, `BEGIN`) goes out with
    /// the first call, as sd-bus pipelines it, saving a round trip. The
    /// first call fails if the daemon refuses it.
    pub fn peer(stream: UnixStream, deadline: Instant) -> Client {
        let mut client = Client::unauthenticated(stream, deadline);
        client.output.extend_from_slice(auth_line().as_bytes());
        client.output.extend_from_slice(b"BEGIN\r\n");
        client.auth_pending = true;
        client
    }

    fn unauthenticated(stream: UnixStream, deadline: Instant) -> Client {
        Client {
            stream,
            deadline,
            serial: 0,
            input: Vec::new(),
            output: Zeroizing::new(Vec::new()),
            hello: None,
            auth_pending: false,
        }
    }

    /// Gives the calls from now on until `deadline`: a connection kept
    /// for a PAM handle serves several hooks, each with its own timeout.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    fn authenticate(&mut self) -> Result<(), BusError> {
        self.write_all(auth_line().as_bytes())?;
        // The bus says nothing more until it has our BEGIN, so nothing
        // after this line is read by mistake.
        self.read_auth_answer()
    }

    fn read_auth_answer(&mut self) -> Result<(), BusError> {
        let line = self.read_line()?;
        if !line.starts_with("OK ") {
            return Err(BusError::Unavailable(format!(
                "authentication refused ({})",
                line.trim_end()
            )));
        }
        Ok(())
    }

    /// Adds a call to what the next write sends; returns its serial.
    fn queue(&mut self, call: &Call<'_>) -> u32 {
        self.serial += 1;
        let message = Zeroizing::new(wire::encode_call(call, self.serial));
        if self.output.is_empty() {
            // The usual case (every call after the first): no copy.
            self.output = message;
        } else {
            // Grown before the message is in it, for the same reason.
            self.output.reserve_exact(message.len());
            self.output.extend_from_slice(&message);
        }
        self.serial
    }

    /// Sends one method call (with whatever waits to be sent) and waits for
    /// its reply, skipping signals.
    pub fn call(&mut self, call: &Call<'_>) -> Result<Vec<Value>, BusError> {
        let serial = self.queue(call);
        let output = std::mem::replace(&mut self.output, Zeroizing::new(Vec::new()));
        self.write_all(&output)?;
        drop(output);
        if std::mem::take(&mut self.auth_pending) {
            self.read_auth_answer()?;
        }
        loop {
            let reply = self.read_message()?;
            if reply.reply_serial.is_some() && reply.reply_serial == self.hello {
                self.hello = None;
                if reply.kind != MSG_METHOD_RETURN {
                    return Err(BusError::Unavailable(format!(
                        "the bus refused our Hello ({})",
                        reply.error_name.unwrap_or_default()
                    )));
                }
                continue;
            }
            if reply.reply_serial != Some(serial) {
                continue;
            }
            return match reply.kind {
                MSG_METHOD_RETURN => Ok(reply.body),
                MSG_ERROR => Err(BusError::Error {
                    name: reply.error_name.unwrap_or_default(),
                    message: match reply.body.first() {
                        Some(Value::Str(s)) => s.clone(),
                        _ => String::new(),
                    },
                }),
                other => Err(BusError::Protocol(format!(
                    "unexpected message type {other}"
                ))),
            };
        }
    }

    fn remaining(&self) -> Result<Duration, BusError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BusError::Unavailable("timed out".into()));
        }
        Ok(left)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        let left = self.remaining()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|_| self.stream.write_all(bytes))
            .map_err(|e| BusError::Unavailable(format!("write: {e}")))
    }

    /// Reads what the socket has (at least one byte) into `input`.
    fn fill(&mut self) -> Result<(), BusError> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let left = self.remaining()?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| BusError::Unavailable(e.to_string()))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(BusError::Unavailable(
                        "the peer closed the connection".into(),
                    ))
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BusError::Unavailable(format!("read: {e}"))),
            }
        }
    }

    /// Reads until at least `n` bytes are waiting in `input`.
    fn fill_to(&mut self, n: usize) -> Result<(), BusError> {
        while self.input.len() < n {
            self.fill()?;
        }
        Ok(())
    }

    /// The next `n` bytes received.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, BusError> {
        self.fill_to(n)?;
        Ok(self.input.drain(..n).collect())
    }

    fn read_line(&mut self) -> Result<String, BusError> {
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(end + 2)?;
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.input.len() > MAX_AUTH_LINE {
                return Err(BusError::Protocol("authentication line too long".into()));
            }
            self.fill()?;
        }
    }

    fn read_message(&mut self) -> Result<wire::Message, BusError> {
        self.fill_to(16)?;
        let frame = wire::Frame::of(&self.input[..16]).map_err(protocol)?;
        let whole = self.take(frame.total)?;
        wire::decode_framed(&whole, &frame).map_err(protocol)
    }
}

/// `AUTH EXTERNAL` with our uid: its decimal digits, hex-encoded.
pub fn auth_line() -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let hex: String = uid
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\0AUTH EXTERNAL {hex}\r\n")
}

/// Decodes one whole message as the client reads it off the socket: its
/// type, error name and body values. For the fuzzer.
pub fn decode_message(msg: &[u8]) -> Result<(u8, Option<String>, Vec<Value>), BusError> {
    let m = wire::decode(msg).map_err(protocol)?;
    Ok((m.kind, m.error_name, m.body))
}

fn protocol(e: wire::WireError) -> BusError {
    BusError::Protocol(e.0)
}

/// A blocking connect that gives up at `deadline`: a bus that listens but
/// accepts nothing (a full queue) would otherwise hold the login forever.
/// Linux bounds the wait for the peer by the socket's send timeout.
pub fn connect_by(path: &str, deadline: Instant) -> std::io::Result<UnixStream> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket calls on a descriptor owned by `fd` from here on.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let timeout = libc::timeval {
        tv_sec: left.as_secs() as libc::time_t,
        tv_usec: left.subsec_micros().max(1) as libc::suseconds_t,
    };
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &timeout as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let rc = unsafe {
        libc::connect(
            raw,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

fn unix_path(address: &str) -> Option<&str> {
    // The first address of a list; only the plain unix:path= form.
    let first = address.split(';').next()?;
    let params = first.strip_prefix("unix:")?;
    params
        .split(',')
        .find_map(|kv| kv.strip_prefix("path="))
        .filter(|p| !p.is_empty() && !p.contains('%'))
}

/// A global allocator for this crate's unit tests that looks at every
/// block as it is freed: a token that is still in freed memory was copied
/// somewhere nothing wiped.
#[cfg(test)]
pub(crate) mod freed_memory {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The secret part of the token the test sends; no other test uses it.
    pub const SECRET: &[u8] = b"FreedMemoryMarker0123456789abcdefghijklmnopqrstuv";
    static SEEN: AtomicBool = AtomicBool::new(false);

    pub struct Scanning;

    // SAFETY: every call is passed to the system allocator unchanged; the
    // scan only reads the block being freed, before it is freed.
    unsafe impl GlobalAlloc for Scanning {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.len() >= SECRET.len() && block.windows(SECRET.len()).any(|w| w == SECRET) {
                SEEN.store(true, Ordering::SeqCst);
            }
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Scanning = Scanning;

    pub fn seen() -> bool {
        SEEN.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            unix_path("unix:path=/run/dbus/system_bus_socket"),
            Some("/run/dbus/system_bus_socket")
        );
        assert_eq!(
            unix_path("unix:path=/tmp/a,guid=123;tcp:host=x"),
            Some("/tmp/a")
        );
        assert_eq!(unix_path("tcp:host=127.0.0.1,port=1"), None);
        assert_eq!(unix_path("unix:abstract=/tmp/x"), None);
        assert_eq!(unix_path("unix:path=/tmp/%61"), None);
    }

    /// A reply as a bus sends it, little-endian, string arguments only.
    fn encode_reply(kind: u8, reply_serial: u32, error: Option<&str>, args: &[&str]) -> Vec<u8> {
        match error {
            Some(name) => wire::encode_error(reply_serial, 1000 + reply_serial, name, args[0]),
            None => {
                let mut m = wire::encode_return(reply_serial, 1000 + reply_serial, args);
                m[1] = kind;
                m
            }
        }
    }

    /// Reads one whole message off the fake bus's end; returns its serial.
    fn read_call(bus: &mut UnixStream) -> u32 {
        let mut fixed = [0u8; 16];
        bus.read_exact(&mut fixed).unwrap();
        let at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; (16 + at(12)).div_ceil(8) * 8 - 16 + at(4)];
        bus.read_exact(&mut rest).unwrap();
        at(8) as u32
    }

    fn read_exactly(bus: &mut UnixStream, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        bus.read_exact(&mut got).unwrap();
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(&got));
    }

    /// A fake bus on the other end of a socket pair: authentication, then
    /// whatever `answer` does with the Hello's and the call's serials.
    fn with_fake_bus(
        answer: impl FnOnce(&mut UnixStream, u32, u32) + Send + 'static,
    ) -> Result<Vec<Value>, BusError> {
        let (client_end, mut bus) = UnixStream::pair().unwrap();
        let (connected, wait_connected) = std::sync::mpsc::channel::<()>();
        let (probed, wait_probed) = std::sync::mpsc::channel::<()>();
        let bus_thread = std::thread::spawn(move || {
            // The uid in decimal, each ASCII digit as hex: '0' is 0x30.
            let uid = unsafe { libc::geteuid() };
            let hex: String = uid.to_string().chars().map(|d| format!("3{d}")).collect();
            read_exactly(&mut bus, format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes());
            // The OK line in pieces, as a stream may deliver it.
            bus.write_all(b"OK 0123").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            bus.write_all(b"456789abcdef\r\n").unwrap();
            // Connected, the client has sent nothing more: BEGIN and
            // Hello wait for its first call.
            wait_connected.recv().unwrap();
            bus.set_nonblocking(true).unwrap();
            let mut probe = [0u8; 1];
            let early = bus.read(&mut probe);
            bus.set_nonblocking(false).unwrap();
            probed.send(()).unwrap();
            assert!(
                early.is_err(),
                "the client sent something before its first call"
            );
            read_exactly(&mut bus, b"BEGIN\r\n");
            let hello = read_call(&mut bus);
            let call = read_call(&mut bus);
            answer(&mut bus, hello, call);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut client = Client::over(client_end, deadline)?;
        connected.send(()).unwrap();
        wait_probed.recv().unwrap();
        let result = client.call(&Call {
            destination: Some("org.freedesktop.DBus"),
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "GetNameOwner",
            args: &["org.apikey.Keys1"],
        });
        bus_thread.join().unwrap();
        result
    }

    #[test]
    fn encoding_a_call_leaves_no_copy_of_the_token_in_freed_memory() {
        let secret = std::str::from_utf8(freed_memory::SECRET).unwrap();
        // Every alignment the arguments before and after it can give.
        for before in ["", "a", "ab", "abc", "abcd"] {
            // Built in place: format! may grow its buffer, and the test
            // itself must leave no copy.
            let mut token = String::with_capacity(7 + secret.len() + before.len());
            token.push_str("apikey|");
            token.push_str(secret);
            token.push_str(before);
            let call = Call {
                destination: Some(":1.5"),
                path: "/org/apikey/Keys1",
                interface: "org.apikey.Keys1",
                member: "Verify",
                args: &[before, &token, "alice", "sshd", ""],
            };
            let message = Zeroizing::new(wire::encode_call(&call, 7));
            assert!(message
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()));
            drop(message);
            drop(Zeroizing::new(token.into_bytes()));
        }
        assert!(!freed_memory::seen(), "a freed buffer still held the token");
    }

    #[test]
    fn begin_and_hello_go_with_the_first_call_and_replies_may_come_together() {
        let result = with_fake_bus(|bus, hello, call| {
            // All three in one write: the Hello's reply, a signal, ours.
            let mut all = encode_reply(MSG_METHOD_RETURN, hello, None, &[":1.7"]);
            let mut signal = encode_reply(4, 0, None, &[":1.7"]);
            signal[1] = 4;
            all.extend(signal);
            all.extend(encode_reply(MSG_METHOD_RETURN, call, None, &[":1.2"]));
            bus.write_all(&all).unwrap();
        });
        assert_eq!(result, Ok(vec![Value::Str(":1.2".into())]));
    }

    #[test]
    fn a_refused_hello_fails_the_first_call() {
        let result = with_fake_bus(|bus, hello, call| {
            let mut all = encode_reply(
                MSG_ERROR,
                hello,
                Some("org.freedesktop.DBus.Error.Failed"),
                &["no"],
            );
            all.extend(encode_reply(MSG_METHOD_RETURN, call, None, &[":1.2"]));
            bus.write_all(&all).unwrap();
        });
        assert!(
            matches!(&result, Err(BusError::Unavailable(m)) if m.contains("Hello")),
            "{result:?}"
        );
    }

    fn peer_call(answer: &'static [u8]) -> (Result<Vec<Value>, BusError>, Vec<u8>) {
        let (client_end, mut daemon) = UnixStream::pair().unwrap();
        let mut client = Client::peer(client_end, Instant::now() + Duration::from_secs(10));
        daemon.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        assert!(
            daemon.read(&mut probe).is_err(),
            "sent before the first call"
        );
        daemon.set_nonblocking(false).unwrap();
        let fake = std::thread::spawn(move || {
            let mut got = vec![0u8; 4096];
            let n = daemon.read(&mut got).unwrap();
            got.truncate(n);
            let mut reply = answer.to_vec();
            if answer.starts_with(b"OK") {
                let at = got.windows(7).position(|w| w == b"BEGIN\r\n").unwrap() + 7;
                let call = wire::decode(&got[at..]).unwrap();
                reply.extend(wire::encode_return(call.serial, 1, &["owner", "id"]));
            }
            daemon.write_all(&reply).unwrap();
            got
        });
        let result = client.call(&Call {
            destination: None,
            path: "/org/apikey/Keys1",
            interface: "org.apikey.Keys1",
            member: "Verify",
            args: &["t", "u", "s", "r"],
        });
        (result, fake.join().unwrap())
    }

    #[test]
    fn a_peer_connection_sends_its_authentication_with_the_first_call() {
        let (result, sent) = peer_call(b"OK 0123456789abcdef0123456789abcdef\r\n");
        assert_eq!(
            result,
            Ok(vec![Value::Str("owner".into()), Value::Str("id".into())])
        );
        assert!(sent.starts_with(b"\0AUTH EXTERNAL "), "{sent:?}");
        assert!(sent.windows(7).any(|w| w == b"BEGIN\r\n"));
        let (refused, _) = peer_call(b"REJECTED EXTERNAL\r\n");
        assert!(
            matches!(&refused, Err(BusError::Unavailable(m)) if m.contains("authentication refused")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_fuzzers_decoder_reads_what_a_bus_sends() {
        let reply = wire::encode_return(5, 1, &["a", "b"]);
        assert_eq!(
            decode_message(&reply),
            Ok((
                MSG_METHOD_RETURN,
                None,
                vec![Value::Str("a".into()), Value::Str("b".into())]
            ))
        );
        let error = wire::encode_error(5, 1, "org.example.Error.No", "why");
        assert_eq!(
            decode_message(&error),
            Ok((
                MSG_ERROR,
                Some("org.example.Error.No".into()),
                vec![Value::Str("why".into())]
            ))
        );
        assert!(matches!(
            decode_message(&reply[..20]),
            Err(BusError::Protocol(_))
        ));
    }

    /// The bus's answer to AUTH may be up to MAX_AUTH_LINE bytes before
    /// its CRLF, delivered in pieces; a longer one is refused at once
    /// rather than read until the deadline.
    #[test]
    fn authentication_lines_are_read_up_to_their_limit() {
        let answer = |first: Vec<u8>, then: &'static [u8]| {
            let (client_end, mut bus) = UnixStream::pair().unwrap();
            let fake = std::thread::spawn(move || {
                let mut auth = [0u8; 64];
                let _ = bus.read(&mut auth).unwrap();
                bus.write_all(&first).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                let _ = bus.write_all(then);
                std::thread::sleep(Duration::from_millis(100));
            });
            let start = Instant::now();
            let result = Client::over(client_end, start + Duration::from_secs(10)).map(|_| ());
            let took = start.elapsed();
            fake.join().unwrap();
            (result, took)
        };
        let mut longest = b"OK ".to_vec();
        longest.resize(MAX_AUTH_LINE, b'a');
        assert_eq!(answer(longest.clone(), b"\r\n").0, Ok(()));
        longest.push(b'a');
        let (result, took) = answer(longest, b"");
        assert_eq!(
            result,
            Err(BusError::Protocol("authentication line too long".into()))
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    /// A PAM host may run with its standard input closed: a socket that
    /// gets descriptor 0 is a socket like any other.
    #[test]
    fn a_socket_on_descriptor_zero_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let path = path.to_str().unwrap().to_string();
        // SAFETY: fd 0 is put back before the test ends.
        let saved = unsafe { libc::dup(0) };
        assert!(saved > 0);
        unsafe { libc::close(0) };
        let connected = connect_by(&path, Instant::now() + Duration::from_secs(5));
        let ok = connected.is_ok();
        let fd = connected.as_ref().ok().map(|s| {
            use std::os::fd::AsRawFd;
            s.as_raw_fd()
        });
        drop(connected);
        unsafe {
            libc::dup2(saved, 0);
            libc::close(saved);
        }
        assert!(ok, "connect_by refused descriptor 0");
        // Otherwise another thread took descriptor 0 and nothing was tested.
        assert_eq!(fd, Some(0), "the socket did not get descriptor 0");
    }
}
