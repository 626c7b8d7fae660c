//! The audit trail: one line per key event and authentication attempt, to
//! syslog (facility authpriv, ident apikeyd), or to stderr where there is
//! no syslog socket. Every value is escaped and capped (S11); tokens are
//! never passed in, only key ids.

use apikey_proto::services::printable;
use std::fmt::Write as _;
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
}

impl Line {
    pub fn new(event: &str) -> Line {
        Line {
            text: format!("event={event}"),
            warning: false,
        }
    }

    /// A text field, quoted and escaped.
    pub fn field(mut self, name: &str, value: &str) -> Line {
        let _ = write!(self.text, " {name}=\"{}\"", printable(value, 64));
        self
    }

    /// A numeric field.
    pub fn num(mut self, name: &str, value: impl Into<i64>) -> Line {
        let _ = write!(self.text, " {name}={}", value.into());
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
    /// Connects to the syslog socket; without one, says so once on stderr
    /// and writes there instead.
    pub fn open(socket: &Path) -> Audit {
        let sink = match connect(socket) {
            Ok(logger) => Sink::Syslog(logger),
            Err(e) => {
                eprintln!(
                    "apikeyd: no syslog at {} ({e}); audit lines go to stderr",
                    socket.display()
                );
                Sink::Stderr
            }
        };
        let mut state = SinkState {
            socket: socket.into(),
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
        let audit = Audit::open(&path);
        audit.log(&Line::new("test").field("user", "alice"));
        audit.flush();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<86>"), "{got}");
        assert!(got.contains("apikeyd["), "{got}");
        assert!(got.ends_with("event=test user=\"alice\""), "{got}");
    }

    #[test]
    fn a_stalled_reader_stalls_no_caller_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let audit = Audit::open(&path);
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
