//! One connection on the PAM socket: the handshake, then method calls
//! read within deadlines and answered in order. Every read is bounded in
//! time and size before anything is allocated for it, so a client that
//! stalls, floods or never reads holds only its own connection.

use super::auth::{self, Handshake, Step};
use crate::bus_args::SHORT;
use crate::caller_binding::{self, ProcessId};
use crate::login_calls;
use crate::service::{Caller, KeyService};
use apikey_proto::names::{ERROR_PREFIX, INTERFACE, OBJECT_PATH};
use apikey_proto::wire::{self, Message, Value, MSG_METHOD_CALL};
use apikey_proto::KeysError;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{timeout_at, Instant};
use zeroize::Zeroizing;

/// How long the handshake may take, all lines together.
pub const HANDSHAKE_TIME: Duration = Duration::from_secs(5);
/// How long a connection may sit between calls. A PAM handle keeps its
/// connection from authentication to the end of the session; the module
/// connects again when it finds this one closed.
pub const IDLE_TIME: Duration = Duration::from_secs(30);
/// How long the rest of a message may take once its first bytes came,
/// and a reply may take to be taken.
pub const MESSAGE_TIME: Duration = Duration::from_secs(5);

/// Bytes asked of the socket at once.
const READ_CHUNK: usize = 4096;

/// Who is at the other end, as the kernel says at accept.
#[derive(Debug, Clone)]
pub struct Peer {
    pub caller: Caller,
    /// The connecting process by pid and start time; `None` when it had
    /// gone already (the connection was handed on).
    pub process: Option<ProcessId>,
}

impl Peer {
    /// The caller, for calls whose checks read its process: refused when
    /// the process that connected is gone (its pid may be another's now).
    fn bound(&self) -> Result<Caller, KeysError> {
        match self.process {
            Some(p) if caller_binding::still_the_same(p, caller_binding::start_time(p.pid)) => {
                Ok(self.caller.clone())
            }
            _ => Err(KeysError::Denied(format!(
                "the process that made this connection (pid {}) has exited; its pid may \
                 belong to another process now",
                self.caller.pid
            ))),
        }
    }
}

struct Conn {
    stream: UnixStream,
    /// Received and not yet taken; may hold a token: wiped when dropped.
    input: Zeroizing<Vec<u8>>,
    serial: u32,
}

/// Why a connection ended early (for the debug log only).
type Ended = String;

/// Serves one connection until the client leaves, breaks the protocol or
/// runs out of time.
pub async fn serve(stream: UnixStream, peer: Peer, svc: Arc<KeyService>, guid: String) {
    let mut conn = Conn {
        stream,
        input: Zeroizing::new(Vec::with_capacity(READ_CHUNK)),
        serial: 0,
    };
    if conn.handshake(peer.caller.uid, guid).await.is_err() {
        return;
    }
    loop {
        let Ok(mut msg) = conn.read_message().await else {
            return;
        };
        if msg.kind != MSG_METHOD_CALL {
            continue;
        }
        let reply = answer(&svc, &peer, &mut msg).await;
        if msg.no_reply {
            continue;
        }
        conn.serial = conn.serial.wrapping_add(1).max(1);
        let bytes = Zeroizing::new(match reply {
            Ok(values) => wire::encode_return_values(msg.serial, conn.serial, &values),
            Err((name, message)) => wire::encode_error(msg.serial, conn.serial, &name, &message),
        });
        let deadline = Instant::now() + MESSAGE_TIME;
        match timeout_at(deadline, conn.stream.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

impl Conn {
    async fn handshake(&mut self, peer_uid: u32, guid: String) -> Result<(), Ended> {
        let deadline = Instant::now() + HANDSHAKE_TIME;
        self.fill_to(1, deadline).await?;
        if self.input[0] != 0 {
            return Err("no NUL byte first".into());
        }
        self.input.drain(..1);
        let mut handshake = Handshake::new(peer_uid, guid);
        for _ in 0..auth::MAX_LINES {
            let line = self.read_line(deadline).await?;
            match handshake.answer(&line) {
                Step::Reply(mut text) => {
                    text.push_str("\r\n");
                    timeout_at(deadline, self.stream.write_all(text.as_bytes()))
                        .await
                        .map_err(|_| "timed out")?
                        .map_err(|e| e.to_string())?;
                }
                Step::Begin => return Ok(()),
                Step::Close => return Err("BEGIN before authentication".into()),
            }
        }
        Err("too many lines".into())
    }

    async fn read_line(&mut self, deadline: Instant) -> Result<String, Ended> {
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line =
                    String::from_utf8(self.input[..end].to_vec()).map_err(|_| "not UTF-8")?;
                self.input.drain(..end + 2);
                return Ok(line);
            }
            if self.input.len() > auth::MAX_LINE {
                return Err("line too long".into());
            }
            self.fill(deadline).await?;
        }
    }

    /// The next message: the wait for its first bytes is the idle time;
    /// the rest comes within `MESSAGE_TIME`, and its declared length is
    /// checked against the cap before the rest is read.
    async fn read_message(&mut self) -> Result<Message, Ended> {
        if self.input.is_empty() {
            self.fill(Instant::now() + IDLE_TIME).await?;
        }
        let deadline = Instant::now() + MESSAGE_TIME;
        self.fill_to(16, deadline).await?;
        let frame = wire::Frame::of(&self.input[..16]).map_err(|e| e.0)?;
        self.fill_to(frame.total, deadline).await?;
        let msg = wire::decode_framed(&self.input[..frame.total], &frame).map_err(|e| e.0);
        // The message's bytes are wiped, not just dropped: a Verify's hold
        // the token.
        self.input[..frame.total].fill(0);
        self.input.drain(..frame.total);
        msg
    }

    async fn fill_to(&mut self, n: usize, deadline: Instant) -> Result<(), Ended> {
        while self.input.len() < n {
            self.fill(deadline).await?;
        }
        Ok(())
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), Ended> {
        let mut chunk = Zeroizing::new([0u8; READ_CHUNK]);
        let n = timeout_at(deadline, self.stream.read(&mut chunk[..]))
            .await
            .map_err(|_| "timed out")?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        if self.input.len() + n > self.input.capacity() {
            // Grown by hand so the old buffer is wiped, not just freed.
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (self.input.len() + n).next_power_of_two(),
            ));
            bigger.extend_from_slice(&self.input);
            self.input = bigger;
        }
        self.input.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// A D-Bus error: its full name and message.
type CallError = (String, String);

fn keys_error(e: KeysError) -> CallError {
    (format!("{ERROR_PREFIX}.{}", e.short_name()), e.message())
}

fn dbus_error(name: &str, message: impl Into<String>) -> CallError {
    (format!("org.freedesktop.DBus.Error.{name}"), message.into())
}

/// The method a message calls, if this socket serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Ping,
    Verify,
    CheckKey,
    OpenSession,
    OpenSessionWith,
    CloseSession,
}

impl Method {
    /// Routes by path, interface and member; a call without an interface
    /// is routed by member, as the D-Bus specification allows.
    pub fn of(msg: &Message) -> Result<Method, CallError> {
        let member = msg.member.as_deref().unwrap_or_default();
        let interface = msg.interface.as_deref();
        let method = match (interface, member) {
            (Some("org.freedesktop.DBus.Peer") | None, "Ping") => Method::Ping,
            (Some(INTERFACE) | None, "Verify") => Method::Verify,
            (Some(INTERFACE) | None, "CheckKey") => Method::CheckKey,
            (Some(INTERFACE) | None, "OpenSession") => Method::OpenSession,
            (Some(INTERFACE) | None, "OpenSessionWith") => Method::OpenSessionWith,
            (Some(INTERFACE) | None, "CloseSession") => Method::CloseSession,
            _ => {
                return Err(dbus_error(
                    "UnknownMethod",
                    format!(
                        "{} {member} is not served on this socket; use the system bus",
                        interface.unwrap_or("(no interface)")
                    ),
                ))
            }
        };
        if method != Method::Ping && msg.path.as_deref() != Some(OBJECT_PATH) {
            return Err(dbus_error(
                "UnknownObject",
                format!("the object is {OBJECT_PATH}"),
            ));
        }
        Ok(method)
    }

    fn signature(self) -> &'static str {
        match self {
            Method::Ping => "",
            Method::Verify | Method::CheckKey => "ssss",
            Method::OpenSession | Method::OpenSessionWith => "ssssss",
            Method::CloseSession => "s",
        }
    }
}

/// The call's string arguments, taken out of the message and checked
/// against the method's signature and the bus interface's length limit.
/// Wiped when dropped: a Verify's hold the token.
pub fn arguments(method: Method, msg: &mut Message) -> Result<Zeroizing<Vec<String>>, CallError> {
    if msg.signature != method.signature() {
        return Err(dbus_error(
            "InvalidArgs",
            format!(
                "the arguments are ({}), not ({})",
                msg.signature,
                method.signature()
            ),
        ));
    }
    // The signature said strings only, so every value is one.
    let args: Zeroizing<Vec<String>> = Zeroizing::new(
        std::mem::take(&mut msg.body)
            .into_iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s),
                Value::U32(_) => None,
            })
            .collect(),
    );
    if args.iter().any(|a| a.len() > SHORT) {
        return Err(dbus_error(
            "InvalidArgs",
            format!("a string argument is longer than {SHORT} bytes"),
        ));
    }
    Ok(args)
}

async fn answer(
    svc: &Arc<KeyService>,
    peer: &Peer,
    msg: &mut Message,
) -> Result<Vec<Value>, CallError> {
    let method = Method::of(msg)?;
    let mut args = arguments(method, msg)?;
    let mut arg = |i: usize| std::mem::take(&mut args[i]);
    let caller = peer.caller.clone();
    match method {
        Method::Ping => Ok(vec![]),
        Method::Verify => {
            let token = Zeroizing::new(arg(0));
            login_calls::verify(svc, caller, token, arg(1), arg(2), arg(3))
                .await
                .map(|(owner, id)| vec![Value::Str(owner), Value::Str(id)])
                .map_err(keys_error)
        }
        Method::CheckKey => login_calls::check_key(svc, caller, arg(0), arg(1), arg(2), arg(3))
            .await
            .map(|()| vec![])
            .map_err(keys_error),
        Method::OpenSession | Method::OpenSessionWith => {
            let caller = peer.bound().map_err(keys_error)?;
            let a: Vec<String> = (0..6).map(arg).collect();
            let opened = login_calls::blocking(svc, caller, move |s, c| {
                s.open_session_with(c, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5])
            })
            .await
            .map_err(keys_error)?;
            Ok(match (method, opened) {
                (Method::OpenSessionWith, (handle, expires_in)) => {
                    vec![Value::Str(handle), Value::U32(expires_in)]
                }
                (_, (handle, _)) => vec![Value::Str(handle)],
            })
        }
        Method::CloseSession => {
            let caller = peer.bound().map_err(keys_error)?;
            let handle = arg(0);
            login_calls::blocking(svc, caller, move |s, c| s.close_session(c, &handle))
                .await
                .map(|()| vec![])
                .map_err(keys_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apikey_proto::wire::Call;

    fn call(interface: &str, path: &str, member: &str, args: &[&str]) -> Message {
        let bytes = wire::encode_call(
            &Call {
                destination: None,
                path,
                interface,
                member,
                args,
            },
            1,
        );
        wire::decode(&bytes).unwrap()
    }

    #[test]
    fn calls_are_routed_by_interface_and_member() {
        let verify = call(INTERFACE, OBJECT_PATH, "Verify", &["t", "u", "s", "r"]);
        assert_eq!(Method::of(&verify), Ok(Method::Verify));
        assert_eq!(
            *arguments(Method::Verify, &mut verify.clone()).unwrap(),
            vec!["t", "u", "s", "r"]
        );
        let ping = call("org.freedesktop.DBus.Peer", "/", "Ping", &[]);
        assert_eq!(Method::of(&ping), Ok(Method::Ping));
        assert_eq!(
            Method::of(&call(INTERFACE, OBJECT_PATH, "CloseSession", &["h"])),
            Ok(Method::CloseSession)
        );
        let six = ["u", "s", "r", "t", "k", "a"];
        for (member, method) in [
            ("OpenSession", Method::OpenSession),
            ("OpenSessionWith", Method::OpenSessionWith),
        ] {
            let open = call(INTERFACE, OBJECT_PATH, member, &six);
            assert_eq!(Method::of(&open), Ok(method));
            assert_eq!(*arguments(method, &mut open.clone()).unwrap(), six);
        }
        for (interface, path, member) in [
            (INTERFACE, OBJECT_PATH, "Generate"),
            (INTERFACE, OBJECT_PATH, "RevokeSite"),
            ("org.evil", OBJECT_PATH, "Verify"),
        ] {
            let e = Method::of(&call(interface, path, member, &[])).unwrap_err();
            assert_eq!(e.0, "org.freedesktop.DBus.Error.UnknownMethod", "{member}");
        }
        let e = Method::of(&call(INTERFACE, "/", "Verify", &[])).unwrap_err();
        assert_eq!(e.0, "org.freedesktop.DBus.Error.UnknownObject");
    }

    #[test]
    fn arguments_must_match_the_signature_and_the_length_limit() {
        let short = call(INTERFACE, OBJECT_PATH, "Verify", &["t", "u", "s"]);
        let e = arguments(Method::Verify, &mut short.clone()).unwrap_err();
        assert_eq!(e.0, "org.freedesktop.DBus.Error.InvalidArgs");
        let long = "x".repeat(SHORT + 1);
        let too_long = call(INTERFACE, OBJECT_PATH, "CheckKey", &["i", &long, "s", "r"]);
        assert!(arguments(Method::CheckKey, &mut too_long.clone()).is_err());
        let at_limit = "x".repeat(SHORT);
        let ok = call(
            INTERFACE,
            OBJECT_PATH,
            "CheckKey",
            &["i", &at_limit, "s", "r"],
        );
        assert!(arguments(Method::CheckKey, &mut ok.clone()).is_ok());
    }

    #[test]
    fn errors_keep_the_interface_names() {
        let (name, message) = keys_error(KeysError::Refused("no".into()));
        assert_eq!(name, "org.apikey.Keys1.Error.Refused");
        assert_eq!(message, "no");
    }

    #[test]
    fn a_connection_whose_process_is_gone_is_not_believed() {
        let me = std::process::id();
        let caller = Caller {
            uid: 0,
            pid: me,
            gids: vec![],
        };
        let alive = Peer {
            caller: caller.clone(),
            process: caller_binding::start_time(me).map(|start_time| ProcessId {
                pid: me,
                start_time,
            }),
        };
        assert!(alive.bound().is_ok());
        let reused = Peer {
            process: alive.process.map(|p| ProcessId {
                start_time: p.start_time + 1,
                ..p
            }),
            ..alive.clone()
        };
        assert!(matches!(reused.bound(), Err(KeysError::Denied(_))));
        let gone = Peer {
            process: None,
            ..alive
        };
        assert!(gone.bound().is_err());
    }
}
