//! Temp dirs named after the test process that made them, so that the
//! dirs of a process killed before its Drop ran (a timeout, SIGKILL) are
//! removed by the next test process instead of piling up in /tmp.

use std::path::Path;
use std::sync::Once;

use tempfile::TempDir;

const PREFIX: &str = "apikey-";

/// A fresh dir `/tmp/apikey-<kind>-<pid>.<start>-XXXXXX`.
///
/// Under /tmp rather than $TMPDIR: test users and the daemon must reach
/// sockets inside, and a socket path has a 108-byte limit.
pub fn temp_dir(kind: &str) -> TempDir {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_stale_dirs);
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{kind}-{}-", owner_tag()))
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("create temp dir in /tmp: {e}"))
}

/// `<pid>.<start time>`: names this process uniquely, even after its pid
/// is reused.
pub fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", start_time(pid).unwrap_or(0))
}

/// True while the process named by an [`owner_tag`] still runs.
pub fn owner_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past it.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((pid, start)) = parse_dir_name(name) else {
            continue;
        };
        if !owner_alive(pid, start) {
            let _ = std::fs::remove_dir_all(Path::new("/tmp").join(name));
        }
    }
}

/// `apikey-<kind>-<pid>.<start>-<random>` → (pid, start).
fn parse_dir_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let kind = parts.next()?;
    let tag = parts.next()?;
    parts.next()?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let (pid, start) = tag.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip() {
        let dir = temp_dir("unit");
        let name = dir.path().file_name().unwrap().to_str().unwrap();
        let (pid, start) = parse_dir_name(name).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(owner_alive(pid, start));
        assert_eq!(parse_dir_name("apikey-bus-x.1-abc"), None);
        assert_eq!(parse_dir_name("apikey-world-12.34"), None);
        assert_eq!(parse_dir_name("other-bus-12.34-abc"), None);
    }
}
