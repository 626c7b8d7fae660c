//! The audit trail: one line per key event and authentication attempt, to
//! syslog (facility authpriv, ident apikeyd), or to stderr where there is
//! no syslog socket. Every value is escaped and capped (S11); tokens are
//! never passed in, only key ids.

use apikey_proto::services::printable;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

pub struct Audit {
    socket: PathBuf,
    sink: Mutex<Sink>,
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
        Audit {
            socket: socket.into(),
            sink: Mutex::new(sink),
        }
    }

    /// Audit lines printed to stderr only (unit tests, tools).
    pub fn stderr() -> Audit {
        Audit {
            socket: PathBuf::new(),
            sink: Mutex::new(Sink::Stderr),
        }
    }

    pub fn log(&self, line: &Line) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::Syslog(logger) = &mut *sink {
            if send(logger, line).is_ok() {
                return;
            }
            // syslogd restarted: reconnect once before falling back.
            if let Ok(mut fresh) = connect(&self.socket) {
                if send(&mut fresh, line).is_ok() {
                    *sink = Sink::Syslog(fresh);
                    return;
                }
            }
            eprintln!("apikeyd: lost syslog at {}", self.socket.display());
        }
        eprintln!("apikeyd: {}", line.text());
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
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<86>"), "{got}");
        assert!(got.contains("apikeyd["), "{got}");
        assert!(got.ends_with("event=test user=\"alice\""), "{got}");
    }
}
