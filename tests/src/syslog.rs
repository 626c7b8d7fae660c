//! A stand-in for /dev/log: these machines run no syslog daemon, and the
//! audit lines are part of the contract, so each test collects the
//! daemon's datagrams itself.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Facility number of `authpriv` (RFC 3164/5424).
pub const AUTHPRIV: u8 = 10;

#[derive(Default)]
struct Shared {
    lines: Mutex<Vec<String>>,
    arrived: Condvar,
}

/// A Unix datagram socket at `DIR/log.sock`, read by a background thread.
pub struct LogSink {
    path: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Binds `dir/log.sock` (mode 0666, as /dev/log is).
    pub fn bind(dir: &Path) -> LogSink {
        let path = dir.join("log.sock");
        let socket =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .expect("chmod log.sock");
        // The reader wakes up now and then to notice that the sink is gone.
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("log-sink".into())
                .spawn(move || read_loop(socket, &shared, &stop))
                .expect("spawn log reader")
        };
        LogSink {
            path,
            shared,
            stop,
            reader: Some(reader),
        }
    }

    /// Where to point `syslog_socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every datagram so far, as text, without trailing newline or NUL.
    pub fn lines(&self) -> Vec<String> {
        self.shared.lines.lock().unwrap().clone()
    }

    /// Every datagram so far, parsed.
    pub fn messages(&self) -> Vec<SyslogLine> {
        self.lines().iter().map(|l| SyslogLine::parse(l)).collect()
    }

    /// Waits until a line satisfies `pred`; returns the first that does.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.shared.lines.lock().unwrap();
        loop {
            if let Some(hit) = lines.iter().find(|l| pred(l)) {
                return Some(hit.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self
                .shared
                .arrived
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Like [`wait_for`](Self::wait_for), but panics listing what did
    /// arrive, so a failing test shows the log.
    pub fn expect(&self, what: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        self.wait_for(pred, timeout).unwrap_or_else(|| {
            panic!(
                "no log line {what} within {timeout:?}; got:\n{}",
                self.lines().join("\n")
            )
        })
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for(|l| l.contains(needle), timeout)
    }

    /// True when some line received so far contains `needle` (e.g. to
    /// check that a token never reached the log).
    pub fn contains(&self, needle: &str) -> bool {
        self.shared
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_loop(socket: UnixDatagram, shared: &Shared, stop: &AtomicBool) {
    // syslog(3) messages are limited to a few KiB; leave room for abuse
    // tests that send more.
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let text = text.trim_end_matches(['\n', '\0']).to_string();
                shared.lines.lock().unwrap().push(text);
                shared.arrived.notify_all();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
}

/// One RFC 3164 line as the `syslog` crate writes it:
/// `<86>Nov 26 15:00:00 host apikeyd[123]: text` (the host may be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogLine {
    /// `<PRI>` = facility * 8 + severity; `None` when the line had none.
    pub priority: Option<u8>,
    pub ident: String,
    pub pid: Option<u32>,
    /// What follows `ident[pid]: `; the whole line when that is missing.
    pub text: String,
    pub raw: String,
}

impl SyslogLine {
    pub fn parse(raw: &str) -> SyslogLine {
        let (priority, rest) = match raw
            .strip_prefix('<')
            .and_then(|r| r.split_once('>'))
            .and_then(|(p, rest)| p.parse::<u8>().ok().map(|p| (p, rest)))
        {
            Some((p, rest)) => (Some(p), rest),
            None => (None, raw),
        };
        // The tag ends at the first ": " after the timestamp, which itself
        // contains colons but no ": ".
        let (ident, pid, text) = match rest.split_once(": ") {
            Some((head, text)) => {
                let tag = head.rsplit(' ').next().unwrap_or(head);
                match tag.split_once('[') {
                    Some((ident, pid)) => (
                        ident.to_string(),
                        pid.trim_end_matches(']').parse().ok(),
                        text.to_string(),
                    ),
                    None => (tag.to_string(), None, text.to_string()),
                }
            }
            None => (String::new(), None, rest.to_string()),
        };
        SyslogLine {
            priority,
            ident,
            pid,
            text,
            raw: raw.to_string(),
        }
    }

    pub fn facility(&self) -> Option<u8> {
        self.priority.map(|p| p >> 3)
    }

    pub fn severity(&self) -> Option<u8> {
        self.priority.map(|p| p & 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_syslog_crate_format() {
        let l = SyslogLine::parse("<86>Nov 26 15:00:00 host apikeyd[123]: key abc used: ok");
        assert_eq!(l.priority, Some(86));
        assert_eq!(l.facility(), Some(AUTHPRIV));
        assert_eq!(l.severity(), Some(6));
        assert_eq!(l.ident, "apikeyd");
        assert_eq!(l.pid, Some(123));
        assert_eq!(l.text, "key abc used: ok");
    }

    #[test]
    fn parses_without_host_or_pri() {
        let l = SyslogLine::parse("<85>Nov  6 01:02:03 apikeyd[9]: hi");
        assert_eq!(
            (l.ident.as_str(), l.pid, l.text.as_str()),
            ("apikeyd", Some(9), "hi")
        );
        let l = SyslogLine::parse("plain text");
        assert_eq!(l.priority, None);
        assert_eq!(l.text, "plain text");
    }
}
