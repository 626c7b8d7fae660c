//! The metrics as the key service knows them (see `metrics.rs`): for
//! `apikey status --prometheus` (Metrics, administrators) and for
//! node_exporter's textfile collector (`[metrics] textfile`).

use super::{Caller, KeyService, Result};
use crate::metrics::{render, write_textfile, Snapshot};
use apikey_proto::KeysError;
use std::sync::atomic::Ordering;

impl KeyService {
    /// The exposition, to administrators: it counts every user's keys and
    /// logins.
    pub fn metrics(&self, c: &Caller) -> Result<String> {
        if !self.is_admin(c) {
            return Err(KeysError::Denied(
                "only administrators may read the metrics".into(),
            ));
        }
        Ok(render(&self.metrics_snapshot()))
    }

    fn metrics_snapshot(&self) -> Snapshot {
        let now = self.host.now();
        let warn_before = self.cfg.warn_before_secs;
        let keys = self
            .store
            .policy()
            .ok()
            .and_then(|p| self.key_counts(None, &p, now).ok());
        let throttled = self
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delayed_sources(now);
        Snapshot {
            version: env!("CARGO_PKG_VERSION").into(),
            start_time: self.started,
            verifications: self.counters.verifications(),
            keys,
            warn_before_secs: warn_before,
            throttled_sources: throttled as u64,
            store_up: !self.store_failing.load(Ordering::SeqCst),
            store_size_bytes: self.store.size_bytes(),
            store_last_write: self.store.last_write(),
        }
    }

    /// Writes the textfile, when one is configured. Returns what to say
    /// on stderr: once when it cannot be written, once when it can again,
    /// and nothing every minute in between.
    pub fn write_metrics_file(&self) -> Option<String> {
        let path = self.cfg.metrics_textfile.as_ref()?;
        match write_textfile(path, &render(&self.metrics_snapshot())) {
            Ok(()) => self
                .metrics_file_failing
                .swap(false, Ordering::SeqCst)
                .then(|| format!("writing the metrics to {} again", path.display())),
            Err(e) => (!self.metrics_file_failing.swap(true, Ordering::SeqCst)).then(|| {
                format!(
                    "cannot write the metrics to {}: {e} (the unit's sandbox lets apikeyd \
                     write to /var/lib/prometheus/node-exporter only; see README.md, \
                     \"The journal and metrics\")",
                    path.display()
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::service_tests::{world, world_configured, ALICE, BOB};
    use crate::store::SqliteStore;
    use apikey_proto::KeysError;

    fn sample<'a>(text: &'a str, name_and_labels: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
            .map(|l| l.rsplit(' ').next().unwrap())
    }

    /// Each outcome counted under its service; key counts from the store;
    /// administrators only.
    #[test]
    fn verifications_and_keys_are_counted_for_administrators() {
        let w = world();
        w.allow_users();
        let (t, _) = w.svc.generate(&w.alice(), "", "7d", &[], "").unwrap();
        w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
        let root = w.root();
        let verify = |token: &[u8], service: &str| {
            w.svc
                .verify(&root, token, "alice", service, "10.0.0.1")
                .result
        };
        verify(t.as_str().as_bytes(), "sshd").unwrap();
        verify(t.as_str().as_bytes(), "sshd").unwrap();
        assert!(verify(
            b"apikey|0000000000000000000000000000000000000000000000",
            "sshd"
        )
        .is_err());
        assert!(verify(t.as_str().as_bytes(), "su").is_err());
        assert!(verify(t.as_str().as_bytes(), "no such\nservice").is_err());
        let text = w.svc.metrics(&w.admin()).unwrap();
        let get = |k: &str| sample(&text, k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
        assert_eq!(
            get("apikey_verifications_total{service=\"sshd\",outcome=\"ok\"}"),
            "2"
        );
        assert_eq!(
            get("apikey_verifications_total{service=\"sshd\",outcome=\"refused\"}"),
            "1"
        );
        assert_eq!(
            get("apikey_verifications_total{service=\"su\",outcome=\"refused\"}"),
            "1"
        );
        assert_eq!(
            get("apikey_verifications_total{service=\"other\",outcome=\"invalid\"}"),
            "1"
        );
        assert_eq!(get("apikey_keys_active"), "2");
        assert_eq!(get("apikey_keys_expiring_soon"), "1");
        assert_eq!(get("apikey_warn_before_seconds"), "604800");
        assert_eq!(get("apikey_store_up"), "1");
        assert_eq!(get("apikey_start_time_seconds"), "1700000000");
        // An in-memory store has no files; its writes are timed.
        assert!(sample(&text, "apikey_store_size_bytes").is_none());
        assert!(sample(&text, "apikey_store_last_write_timestamp_seconds").is_some());
        let bob = w.caller(BOB, Some(BOB), &[BOB]);
        assert!(matches!(w.svc.metrics(&bob), Err(KeysError::Denied(_))));
        assert!(matches!(
            w.svc.metrics(&w.caller(ALICE, Some(ALICE), &[ALICE])),
            Err(KeysError::Denied(_))
        ));
    }

    /// A source past its free failures counts as throttled until it is
    /// forgotten.
    #[test]
    fn throttled_sources_are_counted() {
        let w = world();
        let root = w.root();
        for _ in 0..12 {
            let _ = w.svc.verify(
                &root,
                b"apikey|0000000000000000000000000000000000000000000000",
                "alice",
                "sshd",
                "192.0.2.9",
            );
        }
        let text = w.svc.metrics(&w.admin()).unwrap();
        assert_eq!(
            sample(&text, "apikey_throttled_sources"),
            Some("1"),
            "{text}"
        );
        w.advance(16 * 60);
        let text = w.svc.metrics(&w.admin()).unwrap();
        assert_eq!(
            sample(&text, "apikey_throttled_sources"),
            Some("0"),
            "{text}"
        );
    }

    /// With `[metrics] textfile`, the file holds what Metrics says, and a
    /// file that cannot be written is said once, not every minute.
    #[test]
    fn the_textfile_holds_the_exposition() {
        let dir = tempfile::tempdir().unwrap();
        let prom = dir.path().join("prom");
        std::fs::create_dir(&prom).unwrap();
        let path = prom.join("apikey.prom");
        let cfg = crate::config::Config {
            metrics_textfile: Some(path.clone()),
            ..crate::config::Config::default()
        };
        let w = world_configured(
            SqliteStore::open(&dir.path().join("keys.db")).unwrap(),
            crate::audit::Audit::stderr(),
            cfg,
        );
        assert_eq!(w.svc.write_metrics_file(), None, "nothing to say");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, w.svc.metrics(&w.root()).unwrap());
        assert!(sample(&text, "apikey_store_size_bytes").is_some_and(|v| v != "0"));
        // Its directory gone: said the first time, not every minute after.
        std::fs::remove_dir_all(&prom).unwrap();
        let said = w.svc.write_metrics_file().expect("said once");
        assert!(said.starts_with("cannot write the metrics to "), "{said}");
        assert_eq!(w.svc.write_metrics_file(), None);
        std::fs::create_dir(&prom).unwrap();
        let said = w
            .svc
            .write_metrics_file()
            .expect("said when it works again");
        assert!(said.starts_with("writing the metrics to "), "{said}");
        assert_eq!(w.svc.write_metrics_file(), None);
        assert!(path.exists());
    }
}
