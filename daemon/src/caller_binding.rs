//! Binding a bus connection to the process that opened it (S4).
//!
//! The bus reports the pid a connection had when it was made. A process
//! could make a connection, hand it to a child and exit; the child forks
//! until the pid comes round to a process of the same uid that is in a
//! login session, and then calls: every check that reads /proc/<pid>
//! would read the other process. So the daemon notes each connection's
//! process by its start time (pid numbers come back, a pid and its start
//! time do not) as soon as the bus announces the connection, and before
//! serving a call checks that the process with that pid still started
//! then. A connection whose process has gone is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A process, named so that a reused pid is a different one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    /// Field 22 of /proc/<pid>/stat: clock ticks after boot.
    pub start_time: u64,
}

/// Start time of a process (field 22 of /proc/<pid>/stat), or `None`
/// when it is gone or unreadable.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a stat line. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last ')'.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a call may be served: the process noted for the connection is
/// the one that has that pid now.
pub fn still_the_same(noted: ProcessId, now: Option<u64>) -> bool {
    now == Some(noted.start_time)
}

/// What is known of a connection's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    Process(ProcessId),
    /// The process had already exited when the connection was announced:
    /// the connection was handed on, and nothing it does is believed.
    Gone,
}

/// The serial of a unique name (`:1.42` -> 42): the bus hands them out in
/// increasing order, which is the order it announces them in.
pub fn serial(unique_name: &str) -> Option<u64> {
    unique_name
        .strip_prefix(':')?
        .rsplit('.')
        .next()?
        .parse()
        .ok()
}

/// The processes behind connections, by unique name, as first noted, and
/// the newest name the watcher has dealt with. Bounded: past `MAX` names
/// it starts again (a name missing from it is noted at its first call).
#[derive(Debug, Default, Clone)]
pub struct Births {
    inner: Arc<Mutex<HashMap<String, Noted>>>,
    seen_up_to: Arc<std::sync::atomic::AtomicU64>,
    /// While false (no watcher, or it stopped) nothing is pending.
    watching: Arc<std::sync::atomic::AtomicBool>,
}

impl Births {
    pub const MAX: usize = 65_536;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Noted>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes `name`'s process unless it was noted before: the first note
    /// is the one closest to when the connection was made.
    pub fn note(&self, name: &str, noted: Noted) -> Noted {
        let mut map = self.lock();
        if map.len() >= Self::MAX && !map.contains_key(name) {
            map.clear();
        }
        *map.entry(name.to_string()).or_insert(noted)
    }

    pub fn get(&self, name: &str) -> Option<Noted> {
        self.lock().get(name).copied()
    }

    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// The watcher has dealt with every name up to `name`'s serial.
    pub fn seen(&self, name: &str) {
        if let Some(n) = serial(name) {
            self.seen_up_to
                .fetch_max(n, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Whether the watcher is still behind `name`: its note may yet come.
    pub fn pending(&self, name: &str) -> bool {
        self.watching.load(std::sync::atomic::Ordering::SeqCst)
            && serial(name)
                .is_some_and(|n| n > self.seen_up_to.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The watcher started (true) or stopped (false).
    pub fn set_watching(&self, on: bool) {
        self.watching.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("4242 (x"), None);
        assert_eq!(parse_start_time(""), None);
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(u32::MAX - 7), None);
    }

    #[test]
    fn only_the_same_start_time_is_the_same_process() {
        let noted = ProcessId {
            pid: 10,
            start_time: 500,
        };
        assert!(still_the_same(noted, Some(500)));
        assert!(!still_the_same(noted, Some(501)), "a reused pid");
        assert!(!still_the_same(noted, None), "gone");
    }

    #[test]
    fn the_first_note_stays_and_names_are_forgotten() {
        let births = Births::default();
        let first = Noted::Process(ProcessId {
            pid: 7,
            start_time: 1,
        });
        let later = Noted::Process(ProcessId {
            pid: 7,
            start_time: 2,
        });
        assert_eq!(births.note(":1.5", first), first);
        assert_eq!(births.note(":1.5", later), first);
        births.forget(":1.5");
        assert_eq!(births.get(":1.5"), None);
        assert_eq!(births.note(":1.5", Noted::Gone), Noted::Gone);
    }

    #[test]
    fn the_watcher_is_behind_a_name_until_it_has_seen_it_or_a_newer_one() {
        assert_eq!(serial(":1.42"), Some(42));
        assert_eq!(serial("org.apikey.Keys1"), None);
        let births = Births::default();
        assert!(!births.pending(":1.3"), "nothing pends without a watcher");
        births.set_watching(true);
        assert!(births.pending(":1.3"));
        births.seen(":1.5");
        assert!(!births.pending(":1.3"));
        assert!(!births.pending(":1.5"));
        assert!(births.pending(":1.6"));
        assert!(!births.pending("name"));
    }
}
