//! The audit trail: one line per key event and authentication attempt, to
//! the journal with its fields where journald's socket exists (see
//! `journal.rs`), else to syslog (facility authpriv, ident apikeyd), or to
//! stderr where there is neither. Every value is escaped and capped (S11);
//! tokens are never passed in, only key ids.

use apikey_proto::services::printable;
use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// One audit line under construction: `event=... key=value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    text: String,
    warning: bool,
    event: String,
    /// Each field as the text has it (escaped, unquoted), for the journal.
    fields: Vec<(String, String)>,
}

impl Line {
    pub fn new(event: &str) -> Line {
        Line {
            text: format!("event={event}"),
            warning: false,
            event: event.to_string(),
            fields: Vec::new(),
        }
    }

    /// A text field, quoted and escaped.
    pub fn field(mut self, name: &str, value: &str) -> Line {
        let value = printable(value, 64);
        let _ = write!(self.text, " {name}=\"{value}\"");
        self.fields.push((name.to_string(), value));
        self
    }

    /// A numeric field.
    pub fn num(mut self, name: &str, value: impl Into<i64>) -> Line {
        let value = value.into();
        let _ = write!(self.text, " {name}={value}");
        self.fields.push((name.to_string(), value.to_string()));
        self
    }

    /// Marks a refusal or failure, logged at warning level.
    pub fn warn(mut self) -> Line {
        self.warning = true;
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

enum Sink {
    Journal(UnixDatagram),
    Syslog(Logger<LoggerBackend, Formatter3164>),
    Stderr,
}

/// Where lines are written from: the thread that logs them, or a thread of
/// their own fed through a bounded channel.
enum Writer {
    Direct(Mutex<SinkState>),
    Thread {
        queue: SyncSender<Message>,
        /// Lines sent and not yet written.
        queued: Arc<AtomicUsize>,
        thread: Mutex<Option<JoinHandle<()>>>,
    },
}

enum Message {
    Line(Line),
    /// Answered once every line sent before it has been written.
    Flush(SyncSender<()>),
}

struct SinkState {
    socket: PathBuf,
    journal: Option<PathBuf>,
    sink: Sink,
}

/// Lines waiting for the writer thread. When that many are waiting (the
/// syslog reader has stopped reading), `log` waits for room: no line is
/// ever dropped, and lines stay in order.
pub const QUEUE_LINES: usize = 8192;

/// Audit lines are written by a thread of their own, so that a request
/// never waits for the syslog reader to wake up and read (a datagram to
/// /dev/log blocks when the reader falls behind). Nothing is lost: the
/// queue is bounded and a full queue makes the logger wait (see
/// [`QUEUE_LINES`]), and [`flush`](Audit::flush) (the daemon calls it on
/// the way out, and dropping an `Audit` does it too) returns once every
/// line logged before it is written.
pub struct Audit {
    writer: Writer,
    /// How long a flush waits: [`FLUSH_WAIT`], shorter in tests.
    flush_wait: Duration,
}

impl Audit {
    /// Connects to journald's socket (`journal`) when it is there, else
    /// to the syslog socket; without either, says so once on stderr and
    /// writes there instead.
    pub fn open(socket: &Path, journal: Option<&Path>) -> Audit {
        let sink = match journal.map(connect_journal) {
            Some(Ok(j)) => Sink::Journal(j),
            _ => match connect(socket) {
                Ok(logger) => Sink::Syslog(logger),
                Err(e) => {
                    eprintln!(
                        "apikeyd: no syslog at {} ({e}); audit lines go to stderr",
                        socket.display()
                    );
                    Sink::Stderr
                }
            },
        };
        let mut state = SinkState {
            socket: socket.into(),
            journal: journal.map(Path::to_path_buf),
            sink,
        };
        let (queue, lines) = sync_channel::<Message>(QUEUE_LINES);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        let spawned = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_lines(&lines, &mut state, &written));
        match spawned {
            Ok(thread) => Audit {
                writer: Writer::Thread {
                    queue,
                    queued,
                    thread: Mutex::new(Some(thread)),
                },
                flush_wait: FLUSH_WAIT,
            },
            Err(e) => {
                // The state went with the closure; write from the callers.
                eprintln!("apikeyd: no audit thread ({e}); audit lines are written directly");
                let sink = match connect(socket) {
                    Ok(logger) => Sink::Syslog(logger),
                    Err(_) => Sink::Stderr,
                };
                Audit {
                    writer: Writer::Direct(Mutex::new(SinkState {
                        socket: socket.into(),
                        journal: None,
                        sink,
                    })),
                    flush_wait: FLUSH_WAIT,
                }
            }
        }
    }

    /// Audit lines printed to stderr by the thread that logs them (unit
    /// tests, tools).
    pub fn stderr() -> Audit {
        Audit {
            writer: Writer::Direct(Mutex::new(SinkState {
                socket: PathBuf::new(),
                journal: None,
                sink: Sink::Stderr,
            })),
            flush_wait: FLUSH_WAIT,
        }
    }

    /// The same, with flushes that give up after `wait` (tests of a
    /// stalled syslog need not wait [`FLUSH_WAIT`]).
    pub fn with_flush_wait(mut self, wait: Duration) -> Audit {
        self.flush_wait = wait;
        self
    }

    pub fn log(&self, line: &Line) {
        match &self.writer {
            Writer::Direct(state) => state.lock().unwrap_or_else(|p| p.into_inner()).write(line),
            Writer::Thread { queue, queued, .. } => {
                queued.fetch_add(1, Ordering::Relaxed);
                if let Err(std::sync::mpsc::SendError(Message::Line(line))) =
                    queue.send(Message::Line(line.clone()))
                {
                    // The writer thread is gone (it panicked): say it here.
                    queued.fetch_sub(1, Ordering::Relaxed);
                    to_stderr(line.text());
                }
            }
        }
    }

    /// True when a line logged now would not wait: the queue is less than
    /// half full (a thread that must not block checks this before doing
    /// anything it would have to log; the other half is the margin for
    /// everyone else logging meanwhile).
    pub fn has_room(&self) -> bool {
        match &self.writer {
            Writer::Thread { queued, .. } => queued.load(Ordering::Relaxed) < QUEUE_LINES / 2,
            Writer::Direct(state) => state
                .try_lock()
                .is_ok_and(|s| matches!(s.sink, Sink::Stderr)),
        }
    }

    /// Returns once every line logged before the call has been written,
    /// or after [`FLUSH_WAIT`] if syslog takes nothing; false then.
    pub fn flush(&self) -> bool {
        if let Writer::Thread { queue, .. } = &self.writer {
            let (done, wait) = sync_channel(1);
            let deadline = std::time::Instant::now() + self.flush_wait;
            // The queue may be full: wait for room, but not past the deadline.
            let mut message = Message::Flush(done);
            loop {
                match queue.try_send(message) {
                    Ok(()) => break,
                    Err(std::sync::mpsc::TrySendError::Full(m)) => {
                        if std::time::Instant::now() >= deadline {
                            return false;
                        }
                        message = m;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            return wait.recv_timeout(left).is_ok();
        }
        true
    }
}

/// How long a flush waits for syslog to take the lines queued before it;
/// on the way out a stalled syslog must not hold the daemon until it is
/// killed (which would lose the last-used times too).
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// A line for stderr, where a failed write cannot be reported anywhere.
fn to_stderr(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "apikeyd: {text}");
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.flush() {
            // The writer is stuck in syslog: leave it, do not wait on it.
            return;
        }
        if let Writer::Thread { thread, queue, .. } = &mut self.writer {
            // Closing the queue ends the thread's loop.
            let (closed, _) = sync_channel(0);
            drop(std::mem::replace(queue, closed));
            if let Some(t) = thread.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = t.join();
            }
        }
    }
}

/// How long the writer thread waits for more lines after writing some,
/// before it sleeps until the next line wakes it.
pub const LINGER: Duration = Duration::from_millis(1);

/// The writer thread. Waking it for each line would cost the request that
/// logs it a futex wake (and, on a small machine, its CPU); lines come in
/// runs under load, so after writing it lingers a moment and takes what
/// came meanwhile, and only blocks (to be woken) once a linger found
/// nothing. A line reaches syslog at most `LINGER` later than at once.
fn write_lines(lines: &Receiver<Message>, state: &mut SinkState, queued: &AtomicUsize) {
    let mut handle = |message: Message| match message {
        Message::Line(line) => {
            state.write(&line);
            queued.fetch_sub(1, Ordering::Relaxed);
        }
        Message::Flush(done) => {
            let _ = done.send(());
        }
    };
    while let Ok(first) = lines.recv() {
        handle(first);
        loop {
            while let Ok(message) = lines.try_recv() {
                handle(message);
            }
            std::thread::sleep(LINGER);
            match lines.try_recv() {
                Ok(message) => handle(message),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

impl SinkState {
    fn write(&mut self, line: &Line) {
        if let Sink::Journal(journal) = &self.sink {
            let entry = crate::journal::entry(&line.text, line.warning, &line.event, &line.fields);
            if journal.send(&entry).is_ok() {
                return;
            }
            // journald restarted: reconnect once, else go on with syslog.
            if let Some(Ok(fresh)) = self.journal.as_deref().map(connect_journal) {
                if fresh.send(&entry).is_ok() {
                    self.sink = Sink::Journal(fresh);
                    return;
                }
            }
            to_stderr(&format!(
                "lost the journal at {}; audit lines go to syslog",
                self.journal.as_deref().unwrap_or(Path::new("?")).display()
            ));
            self.journal = None;
            self.sink = match connect(&self.socket) {
                Ok(logger) => Sink::Syslog(logger),
                Err(_) => Sink::Stderr,
            };
        }
        if let Sink::Syslog(logger) = &mut self.sink {
            if send(logger, line).is_ok() {
                return;
            }
            // syslogd restarted: reconnect once before falling back.
            if let Ok(mut fresh) = connect(&self.socket) {
                if send(&mut fresh, line).is_ok() {
                    self.sink = Sink::Syslog(fresh);
                    return;
                }
            }
            to_stderr(&format!("lost syslog at {}", self.socket.display()));
        }
        to_stderr(line.text());
    }
}

/// A datagram socket connected to journald's; an error where there is
/// none (no journald, or a path that is no socket).
fn connect_journal(path: &Path) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    Ok(socket)
}

fn connect(socket: &Path) -> Result<Logger<LoggerBackend, Formatter3164>, syslog::Error> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_AUTHPRIV,
        hostname: None,
        process: "apikeyd".into(),
        pid: std::process::id(),
    };
    syslog::unix_custom(formatter, socket)
}

fn send(
    logger: &mut Logger<LoggerBackend, Formatter3164>,
    line: &Line,
) -> Result<(), syslog::Error> {
    if line.warning {
        logger.warning(line.text())
    } else {
        logger.info(line.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_and_capped() {
        let line = Line::new("verify")
            .field("user", "bob\n<13>Nov 1 fake: event=verify outcome=ok")
            .num("uid", 1000u32)
            .field("rhost", &"x".repeat(300));
        let text = line.text();
        assert!(!text.contains('\n'));
        assert!(
            text.starts_with("event=verify user=\"bob\\x0a<13>"),
            "{text}"
        );
        assert!(text.contains(" uid=1000 "));
        assert!(text.len() < 250, "{}", text.len());
    }

    #[test]
    fn quotes_cannot_close_a_field() {
        let text = Line::new("x")
            .field("name", "a\" outcome=\"ok")
            .text()
            .to_string();
        assert_eq!(text, "event=x name=\"a\\\" outcome=\\\"ok\"");
    }

    #[test]
    fn lines_reach_a_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let audit = Audit::open(&path, None);
        audit.log(&Line::new("test").field("user", "alice"));
        audit.flush();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<86>"), "{got}");
        assert!(got.contains("apikeyd["), "{got}");
        assert!(got.ends_with("event=test user=\"alice\""), "{got}");
    }

    /// With journald's socket there, a line is a journal entry with its
    /// fields, escaped as the text is; a journal socket that is not there
    /// leaves the lines to syslog; one that goes away mid-way too.
    #[test]
    fn lines_go_to_the_journal_with_their_fields_where_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let syslog = dir.path().join("log.sock");
        let syslog_sock = std::os::unix::net::UnixDatagram::bind(&syslog).unwrap();
        syslog_sock.set_nonblocking(true).unwrap();
        let journal = dir.path().join("journal.sock");
        let journal_sock = std::os::unix::net::UnixDatagram::bind(&journal).unwrap();
        let audit = Audit::open(&syslog, Some(&journal));
        audit.log(
            &Line::new("verify")
                .num("caller_uid", 0)
                .field("user", "al\nice\u{1b}[2J")
                .field("key", "4fQk9xT2mB7a")
                .field("outcome", "refused")
                .field("reason", "expired")
                .warn(),
        );
        audit.flush();
        let mut buf = [0u8; 4096];
        let n = journal_sock.recv(&mut buf).unwrap();
        let fields = crate::journal::tests::parse(&buf[..n]);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
        };
        assert_eq!(get("MESSAGE_ID"), crate::journal::message_id("verify"));
        assert_eq!(get("APIKEY_EVENT"), "verify");
        assert_eq!(get("APIKEY_USER"), "al\\x0aice\\x1b[2J");
        assert_eq!(get("APIKEY_KEY_ID"), "4fQk9xT2mB7a");
        assert_eq!(get("APIKEY_OUTCOME"), "refused");
        assert_eq!(get("APIKEY_REASON"), "expired");
        assert_eq!(get("APIKEY_CALLER_UID"), "0");
        assert_eq!(get("PRIORITY"), "4");
        assert!(get("MESSAGE").starts_with("event=verify caller_uid=0 user=\"al\\x0aice"));
        assert!(
            syslog_sock.recv(&mut buf).is_err(),
            "nothing went to syslog"
        );

        // journald gone: the next line goes to syslog, and says so once.
        drop(journal_sock);
        std::fs::remove_file(&journal).unwrap();
        audit.log(&Line::new("verify").field("user", "bob"));
        audit.flush();
        let n = syslog_sock.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("event=verify user=\"bob\""));

        // No journal at all: syslog, as before.
        let audit = Audit::open(&syslog, Some(&dir.path().join("none.sock")));
        audit.log(&Line::new("verify").field("user", "carol"));
        audit.flush();
        let n = syslog_sock.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("event=verify user=\"carol\""));
    }

    #[test]
    fn a_stalled_reader_stalls_no_caller_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let audit = Audit::open(&path, None);
        // Nobody reads: the socket's queue fills after a few hundred
        // datagrams and the writer thread waits; callers do not.
        assert!(audit.has_room());
        // More than half the queue beyond what the socket holds.
        let n = QUEUE_LINES as i64 / 2 + 1000;
        let start = std::time::Instant::now();
        for i in 0..n {
            audit.log(&Line::new("test").num("n", i));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // A caller that must not block is told to log elsewhere.
        assert!(!audit.has_room());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while got.len() < n as usize {
                let len = sock.recv(&mut buf).unwrap();
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            got
        });
        assert!(audit.flush(), "every line written once the reader reads");
        assert!(audit.has_room());
        drop(audit);
        let got = reader.join().unwrap();
        for (i, line) in got.iter().enumerate() {
            assert!(line.ends_with(&format!("event=test n={i}")), "{line}");
        }
    }
}
