//! Where the daemon's audit lines go during the bench: a datagram socket
//! read and thrown away. The harness's LogSink keeps every line, which
//! over millions of verifications would grow the bench, not the daemon;
//! a real syslogd also reads every datagram, so the daemon still pays for
//! each line it sends.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct DiscardSink {
    path: PathBuf,
    lines: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl DiscardSink {
    pub fn bind(dir: &Path) -> std::io::Result<DiscardSink> {
        let path = dir.join("log.sock");
        let socket = UnixDatagram::bind(&path)?;
        // Wakes up now and then to notice the stop flag.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let lines = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop) = (Arc::clone(&lines), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("audit-sink".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while !stop.load(Ordering::Relaxed) {
                        if socket.recv(&mut buf).is_ok() {
                            lines.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })?
        };
        Ok(DiscardSink {
            path,
            lines,
            stop,
            reader: Some(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Audit lines received so far.
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }
}

impl Drop for DiscardSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
