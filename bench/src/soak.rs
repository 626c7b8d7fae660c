//! The soak: whole key logins (authenticate, account, session open and
//! close, as sshd runs them, each in a fresh audit session through
//! pam_loginuid) for a long while, beside a flood of bad keys, with the
//! daemon restarted a third of the way in and the bus a third later. It
//! reports logins a second, failures, the daemon's memory and the
//! store's size at the start and the end: the store must not grow with
//! logins (a login's record goes once no process is left in it).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apikey_tests::{bins, As, Daemon, PamServices, PrivateBus, TestUser};
use serde_json::{json, Value};

const PAM_SUCCESS: u64 = 0;
const PAM_AUTH_ERR: u64 = 7;
/// Logins per run of akt-pam-loop: short runs, so a restart shows in
/// the counts of a few runs only.
const BATCH: u64 = 50;
const SERVICE: &str = "sshd-soak";

pub struct Soak {
    pub seconds: f64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    pub flood_refused: u64,
    pub flood_other: u64,
    pub rss_kib: (u64, u64, u64),
    pub store_bytes: (u64, u64, u64),
    /// keys.db alone (without its -wal, whose size is the checkpoint
    /// interval's) at the end, and the session records in it.
    pub db_bytes_end: u64,
    pub session_rows_end: i64,
}

impl Soak {
    pub fn to_json(&self) -> Value {
        json!({
            "seconds": self.seconds,
            "logins_ok": self.logins_ok,
            "logins_failed": self.logins_failed,
            "logins_per_s": self.logins_per_s(),
            "bad_keys_refused": self.flood_refused,
            "bad_keys_otherwise": self.flood_other,
            "daemon_rss_kib": {"start": self.rss_kib.0, "max": self.rss_kib.1, "end": self.rss_kib.2},
            "store_bytes": {"start": self.store_bytes.0, "max": self.store_bytes.1, "end": self.store_bytes.2},
            "keys_db_bytes_end": self.db_bytes_end,
            "session_rows_end": self.session_rows_end,
        })
    }

    pub fn logins_per_s(&self) -> f64 {
        (self.logins_ok as f64 / self.seconds.max(0.001) * 10.0).round() / 10.0
    }

    pub fn text(&self) -> String {
        format!(
            "soak: {:.0} s of key logins (session open and close) beside a bad-key flood, \
             the daemon restarted at 1/3 and the bus at 2/3\n\
             \x20  logins ok {}  failed {}  ({} a second)\n\
             \x20  bad keys refused {}  answered otherwise {}\n\
             \x20  daemon RSS KiB: start {}  max {}  end {}\n\
             \x20  store bytes:    start {}  max {}  end {} (keys.db alone {}; {} session records)\n",
            self.seconds,
            self.logins_ok,
            self.logins_failed,
            self.logins_per_s(),
            self.flood_refused,
            self.flood_other,
            self.rss_kib.0,
            self.rss_kib.1,
            self.rss_kib.2,
            self.store_bytes.0,
            self.store_bytes.1,
            self.store_bytes.2,
            self.db_bytes_end,
            self.session_rows_end,
        )
    }
}

/// What one run of akt-pam-loop counted: (as expected, otherwise).
fn loop_once(
    services: &PamServices,
    user: &str,
    secret: &str,
    expect: u64,
    sessions: bool,
) -> Result<(u64, u64), String> {
    let program = bins::binary("akt-pam-loop");
    let mut who = As::root()
        .stdin(format!("soak\t{BATCH}\t{expect}\t{secret}\n"))
        .timeout(Duration::from_secs(300));
    if sessions {
        who = who.env("AKT_PAM_SESSION", "1");
    }
    let out = who.run(
        &program.to_string_lossy(),
        &[&services.dir().to_string_lossy(), SERVICE, user, "0"],
    );
    if out.code != 0 {
        return Err(format!(
            "{}: exit {}\n{}",
            out.description, out.code, out.stderr
        ));
    }
    let report: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("akt-pam-loop printed no JSON ({e}): {}", out.stdout))?;
    let ok = report["phases"][0]["as_expected"].as_u64().unwrap_or(0);
    Ok((ok, BATCH - ok))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn store_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        })
        .sum()
}

/// `token` belongs to `user`; `bad` is well-formed and in no store.
pub fn run(
    seconds: u64,
    bus: &mut PrivateBus,
    daemon: &mut Daemon,
    user: &TestUser,
    token: &str,
    bad: &str,
) -> Result<Soak, String> {
    let module = apikey_tests::pam::module(daemon, "");
    let services = Arc::new(PamServices::new());
    services.add(
        SERVICE,
        &format!(
            "auth [success=done ignore=ignore default=die] {module}\n\
             auth required pam_deny.so\n\
             account required {module}\n\
             account required pam_permit.so\n\
             session optional pam_loginuid.so\n\
             session optional {module}\n\
             session required pam_permit.so\n"
        ),
    );
    let db = daemon.db_path().to_path_buf();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let (refused, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood = {
        let (services, stop, refused, other) = (
            services.clone(),
            stop.clone(),
            refused.clone(),
            other.clone(),
        );
        let (name, bad) = (user.name().to_string(), bad.to_string());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::SeqCst) {
                let (r, o) = loop_once(&services, &name, &bad, PAM_AUTH_ERR, false)?;
                refused.fetch_add(r, Ordering::SeqCst);
                other.fetch_add(o, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    let (mut ok, mut failed) = (0, 0);
    let rss_start = rss_kib(daemon.pid());
    let size_start = store_bytes(&db);
    let (mut rss_max, mut size_max) = (rss_start, size_start);
    let (mut daemon_restarted, mut bus_restarted) = (false, false);
    let result = loop {
        let now = Instant::now();
        if now >= deadline {
            break Ok(());
        }
        let part = (now - started).as_secs_f64() / seconds.max(1) as f64;
        if !daemon_restarted && part >= 1.0 / 3.0 {
            crate::progress("soak: restarting the daemon");
            daemon.restart();
            daemon_restarted = true;
        }
        if !bus_restarted && part >= 2.0 / 3.0 {
            crate::progress("soak: restarting the bus");
            bus.restart_on_same_socket();
            bus_restarted = true;
        }
        match loop_once(&services, user.name(), token, PAM_SUCCESS, true) {
            Ok((o, f)) => {
                ok += o;
                failed += f;
            }
            Err(e) => break Err(e),
        }
        rss_max = rss_max.max(rss_kib(daemon.pid()));
        size_max = size_max.max(store_bytes(&db));
    };
    stop.store(true, Ordering::SeqCst);
    flood
        .join()
        .map_err(|_| "the flood thread panicked".to_string())??;
    result?;
    Ok(Soak {
        seconds: started.elapsed().as_secs_f64(),
        logins_ok: ok,
        logins_failed: failed,
        flood_refused: refused.load(Ordering::SeqCst),
        flood_other: other.load(Ordering::SeqCst),
        rss_kib: (rss_start, rss_max, rss_kib(daemon.pid())),
        store_bytes: (size_start, size_max, store_bytes(&db)),
        db_bytes_end: std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0),
        session_rows_end: daemon
            .open_db_readonly()
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap_or(-1),
    })
}
