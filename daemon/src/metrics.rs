//! What an operator alerts on, in Prometheus' text exposition format
//! (version 0.0.4): verifications by service and outcome since the daemon
//! started, active and soon-expiring keys, throttled sources, the store's
//! size and its last successful write. `apikey status --prometheus` asks
//! for it (Metrics), and the daemon can write it every minute to a file
//! for node_exporter's textfile collector (`[metrics] textfile`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// How a Verify ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The key was accepted.
    Ok,
    /// The key was not (unknown, revoked, expired, out of scope...).
    Refused,
    /// The store could not be read: the module answers "unavailable".
    Unavailable,
    /// The request itself was refused (a caller that may not verify for
    /// that service, malformed fields) before any key was looked at.
    Invalid,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
            Outcome::Invalid => "invalid",
        }
    }
}

/// Distinct service labels kept besides "other", where later ones are
/// counted, so a
/// caller sending made-up service names cannot grow the daemon's memory or
/// a scrape without bound.
pub const MAX_SERVICES: usize = 64;

/// The label of a Verify that named no service.
pub const NO_SERVICE: &str = "none";
/// The label of services past [`MAX_SERVICES`], or not service names.
pub const OTHER_SERVICE: &str = "other";

/// The outcomes in the order an exposition lists them.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Ok,
    Outcome::Refused,
    Outcome::Unavailable,
    Outcome::Invalid,
];

/// Counters kept since the daemon started: per service label, one count
/// per outcome (indexed as [`OUTCOMES`]). A Verify of a service already
/// counted costs a lookup and an increment, no allocation.
#[derive(Default)]
pub struct Counters {
    verifications: Mutex<BTreeMap<String, [u64; 4]>>,
}

impl Counters {
    pub fn verified(&self, service: &str, outcome: Outcome) {
        let mut counts = self.verifications.lock().unwrap_or_else(|p| p.into_inner());
        let mut label = service_label(service);
        if !counts.contains_key(label) {
            let named = counts.len() - usize::from(counts.contains_key(OTHER_SERVICE));
            if named >= MAX_SERVICES {
                label = OTHER_SERVICE;
            }
        }
        let per_outcome = match counts.get_mut(label) {
            Some(c) => c,
            None => counts.entry(label.to_string()).or_default(),
        };
        per_outcome[outcome as usize] += 1;
    }

    /// Each (service, outcome) counted at least once, in label order.
    pub fn verifications(&self) -> Vec<(String, Outcome, u64)> {
        let counts = self.verifications.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .flat_map(|(s, per)| {
                OUTCOMES
                    .iter()
                    .filter(|o| per[**o as usize] > 0)
                    .map(|o| (s.clone(), *o, per[*o as usize]))
            })
            .collect()
    }
}

/// A service's label: its name when it is one (PAM service names are
/// short words), "none" for none, "other" for anything else.
pub fn service_label(service: &str) -> &str {
    if service.is_empty() {
        NO_SERVICE
    } else if apikey_proto::services::is_valid_service(service) {
        service
    } else {
        OTHER_SERVICE
    }
}

/// Everything one exposition says, gathered by the key service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub start_time: i64,
    pub verifications: Vec<(String, Outcome, u64)>,
    /// Counted in the store; `None` while it cannot be read.
    pub keys: Option<crate::store::KeyCounts>,
    pub warn_before_secs: u64,
    pub throttled_sources: u64,
    pub store_up: bool,
    pub store_size_bytes: Option<u64>,
    pub store_last_write: Option<i64>,
}

/// A label value as the format wants it: backslash, double quote and
/// newline escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition, families in a fixed order, each with HELP and TYPE.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "apikey_build_info",
        "gauge",
        "The apikeyd version answering; always 1.",
    );
    let _ = writeln!(
        out,
        "apikey_build_info{{version=\"{}\"}} 1",
        label_value(&s.version)
    );
    gauge(
        &mut out,
        "apikey_start_time_seconds",
        "When the daemon started, in seconds since the Unix epoch.",
        s.start_time,
    );
    family(
        &mut out,
        "apikey_verifications_total",
        "counter",
        "Key verifications (Verify) since the daemon started, by PAM service and outcome \
         (ok, refused, unavailable, invalid).",
    );
    for (service, outcome, n) in &s.verifications {
        let _ = writeln!(
            out,
            "apikey_verifications_total{{service=\"{}\",outcome=\"{}\"}} {n}",
            label_value(service),
            outcome.as_str()
        );
    }
    if let Some(keys) = &s.keys {
        gauge(
            &mut out,
            "apikey_keys_active",
            "Long-lived keys that are neither revoked nor expired.",
            keys.long_lived,
        );
        gauge(
            &mut out,
            "apikey_session_keys_active",
            "Session keys that are neither revoked nor expired.",
            keys.sessions,
        );
        gauge(
            &mut out,
            "apikey_keys_expiring_soon",
            "Active long-lived keys that expire within warn_before.",
            keys.expiring_soon,
        );
    }
    gauge(
        &mut out,
        "apikey_warn_before_seconds",
        "The configured warn_before; 0: expiry warnings are off.",
        s.warn_before_secs,
    );
    gauge(
        &mut out,
        "apikey_throttled_sources",
        "Sources (caller uid, remote host) whose refused attempts are being delayed now.",
        s.throttled_sources,
    );
    gauge(
        &mut out,
        "apikey_store_up",
        "1 while keys can be looked up in the store; 0 while lookups fail (logins with \
         keys answer unavailable).",
        u8::from(s.store_up),
    );
    if let Some(bytes) = s.store_size_bytes {
        gauge(
            &mut out,
            "apikey_store_size_bytes",
            "The size of the local store's files (database and write-ahead log).",
            bytes,
        );
    }
    if let Some(at) = s.store_last_write {
        gauge(
            &mut out,
            "apikey_store_last_write_timestamp_seconds",
            "When the daemon last wrote to its store successfully, in seconds since the \
             Unix epoch.",
            at,
        );
    }
    out
}

/// Writes `text` to `path` whole or not at all: a file beside it first,
/// renamed over it, so node_exporter never reads half an exposition. The
/// file beside it is made new (O_EXCL, no symbolic link followed) and
/// readable by all, as node_exporter runs as another user.
pub fn write_textfile(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // Whatever the daemon's umask (0077) took away.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            start_time: 1_700_000_000,
            verifications: vec![
                ("sshd".into(), Outcome::Ok, 3),
                ("sshd".into(), Outcome::Refused, 1),
            ],
            keys: Some(crate::store::KeyCounts {
                long_lived: 7,
                sessions: 1,
                expiring_soon: 2,
            }),
            warn_before_secs: 604_800,
            throttled_sources: 0,
            store_up: true,
            store_size_bytes: Some(4096),
            store_last_write: Some(1_700_000_100),
        }
    }

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let text = render(&sample());
        let mut declared = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split(' ');
                let name = words.next().unwrap();
                assert!(matches!(words.next(), Some("gauge" | "counter")), "{line}");
                assert!(declared.insert(name.to_string()), "declared twice: {name}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(declared.contains(name), "{name} sampled before its TYPE");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("apikey_verifications_total{service=\"sshd\",outcome=\"ok\"} 3\n"));
        assert!(text.contains("\napikey_keys_expiring_soon 2\n"));
        assert!(text.contains("\napikey_store_up 1\n"));
        assert!(text.ends_with("apikey_store_last_write_timestamp_seconds 1700000100\n"));
        // Absent facts are absent, not 0.
        let none = render(&Snapshot {
            keys: None,
            store_size_bytes: None,
            store_last_write: None,
            ..sample()
        });
        assert!(!none.contains("apikey_store_size_bytes") && !none.contains("last_write"));
        assert!(!none.contains("apikey_keys_active"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&Snapshot {
            version: "1\"2\\3\n".into(),
            ..sample()
        });
        assert!(
            text.contains("apikey_build_info{version=\"1\\\"2\\\\3\\n\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn services_are_bounded_and_odd_names_are_other() {
        let c = Counters::default();
        c.verified("sshd", Outcome::Ok);
        c.verified("sshd", Outcome::Ok);
        c.verified("", Outcome::Invalid);
        c.verified("ssh d\"", Outcome::Refused);
        for i in 0..100 {
            c.verified(&format!("svc{i}"), Outcome::Refused);
        }
        c.verified("sshd", Outcome::Ok);
        let v = c.verifications();
        let services: std::collections::BTreeSet<&str> =
            v.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(services.len(), MAX_SERVICES + 1, "{services:?}");
        assert!(v.contains(&("sshd".to_string(), Outcome::Ok, 3)));
        assert!(v.contains(&(NO_SERVICE.to_string(), Outcome::Invalid, 1)));
        let other: u64 = v
            .iter()
            .filter(|(s, _, _)| s == OTHER_SERVICE)
            .map(|(_, _, n)| n)
            .sum();
        // The odd name, and the services past the cap (sshd and none came
        // first).
        assert_eq!(other, 1 + (100 - (MAX_SERVICES as u64 - 2)));
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apikey.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no file left beside it"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let missing = dir.path().join("no-such-dir").join("apikey.prom");
        assert!(write_textfile(&missing, "a 1\n").is_err());
    }
}
