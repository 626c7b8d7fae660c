//! Fleet mode: Verify through PostgreSQL on loopback next to the SQLite
//! backend's, measured in the same interleaved rounds; how that changes
//! from a thousand to a million keys in the database; and how soon a
//! revocation made on one host is refused on another; and, as the
//! database's share of a fleet Verify, the daemon's own lookup query run
//! alone from a client on loopback as host-b's role ("bare lookup").
//!
//! Each size has a throwaway cluster of its own (apikey_test_pg: fsync
//! off, as every test cluster here) with two hosts, `host-a` (issuer) and
//! `host-b`, each a daemon on a bus of its own; keys are made on host-a
//! and verified on host-b.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apikey_proto::{Keys1Proxy, KeysError};
use apikey_tests::fleet::{fleet_cluster, fleet_toml_for, Cluster, HOST_A, HOST_B, SUPERUSER};
use apikey_tests::{Daemon, DaemonConfig, PrivateBus, TestUser};
use serde_json::{json, Value};

use crate::load::{Sample, Window};
use crate::{connect, keys_proxy, progress, Callers, Rounds, CALLERS};

/// One fleet of one database size.
pub struct FleetSite {
    pub keys: u64,
    pub seed_s: f64,
    pub callers: Arc<Callers>,
    admin_a: Keys1Proxy<'static>,
    verifier_b: Keys1Proxy<'static>,
    /// host-b's role, straight to the database, for the bare lookup.
    db_b: tokio_postgres::Client,
    by_hash: tokio_postgres::Statement,
    /// The hash of a valid key, which the bare lookup finds.
    valid_hash: [u8; 32],
    /// Kept open for the proxies.
    _conns: Vec<zbus::Connection>,
    _daemons: (Daemon, Daemon),
    _buses: (PrivateBus, PrivateBus),
    _cluster: Cluster,
}

/// What the fleet part measured.
#[derive(Default)]
pub struct FleetResult {
    /// The SQLite backend's Verify (valid key) at its smallest size, per
    /// entry of [`CALLERS`], in the same rounds.
    pub sqlite: Vec<Sample>,
    pub sqlite_keys: u64,
    /// Per database size: (keys, seconds to seed, Verify per CALLERS).
    pub sizes: Vec<(u64, f64, Vec<Sample>)>,
    /// From Revoke's answer on host-a to the first refusal on host-b.
    pub revocation: Sample,
    /// The daemon's lookup query alone, one client, the smallest database.
    pub bare: Sample,
}

impl FleetSite {
    pub fn start(
        rt: &tokio::runtime::Runtime,
        size: u64,
        config: &DaemonConfig,
        users: &[TestUser],
    ) -> Result<FleetSite, String> {
        let cluster = fleet_cluster();
        let filler = size.saturating_sub(users.len() as u64);
        progress(&format!("seeding a fleet database with {size} keys"));
        let t = Instant::now();
        cluster.psql_as(
            SUPERUSER,
            "apikey",
            &format!(
                "INSERT INTO apikey.keys (id, hash, owner, created_by, made_on, name, services, \
                 hosts, created) SELECT 'f' || lpad(g::text, 11, '0'), \
                 sha256(('apikey-bench filler ' || g)::bytea), 'filler' || (g % 1000), 'root', \
                 'host-a', 'bench filler', '{{}}', '{{}}', 0 FROM generate_series(1, {filler}) g; \
                 ANALYZE apikey.keys"
            ),
        )?;
        let seed_s = t.elapsed().as_secs_f64();
        let start = |who: (&str, &str, bool)| {
            let bus = PrivateBus::start();
            let daemon = Daemon::start(
                &bus,
                &DaemonConfig {
                    extra_toml: fleet_toml_for(&cluster.conninfo(who.1, "apikey"), who.0, "1s"),
                    ..config.clone()
                },
            );
            (bus, daemon)
        };
        let (bus_a, daemon_a) = start(HOST_A);
        let (bus_b, daemon_b) = start(HOST_B);
        let max_callers = CALLERS.iter().copied().max().unwrap_or(1);
        rt.block_on(async {
            let admin_a = keys_proxy(&connect(bus_a.address()).await?).await?;
            admin_a
                .open_session("root", "login", "", "pts/bench", "", "password")
                .await
                .map_err(|e| format!("OpenSession on host-a: {e}"))?;
            let mut valid = Vec::new();
            for user in users {
                let (token, info) = admin_a
                    .generate("bench", "", &[], user.name())
                    .await
                    .map_err(|e| format!("Generate on host-a for {}: {e}", user.name()))?;
                valid.push((token, info.user));
            }
            let mut conns = Vec::with_capacity(max_callers + 1);
            for _ in 0..=max_callers {
                conns.push(connect(bus_b.address()).await?);
            }
            let verifier_b = keys_proxy(&conns[max_callers]).await?;
            let valid_hash = apikey_proto::Token::parse(valid[0].0.as_bytes())
                .map_err(|e| format!("a key made for the bench: {e}"))?
                .hash();
            let callers = Callers::new(&conns[..max_callers], &valid).await?;
            let (db_b, connection) = tokio_postgres::connect(
                &cluster.conninfo(HOST_B.1, "apikey"),
                tokio_postgres::NoTls,
            )
            .await
            .map_err(|e| format!("connecting as host-b's role: {e}"))?;
            tokio::spawn(connection);
            let by_hash = db_b
                .prepare(&apikeyd::store::postgres::by_hash_sql())
                .await
                .map_err(|e| format!("preparing the lookup: {e}"))?;
            Ok(FleetSite {
                keys: size,
                seed_s,
                callers,
                admin_a,
                verifier_b,
                db_b,
                by_hash,
                valid_hash,
                _conns: conns,
                _daemons: (daemon_a, daemon_b),
                _buses: (bus_a, bus_b),
                _cluster: cluster,
            })
        })
    }

    /// `trials` times: a key made on host-a and verified on host-b, revoked
    /// on host-a, then verified on host-b until refused; the time from
    /// Revoke's answer to that refusal.
    pub async fn revocation_visible(&self, user: &str, trials: usize) -> Sample {
        let mut sample = Sample {
            callers: 1,
            ..Sample::default()
        };
        let started = Instant::now();
        for _ in 0..trials {
            match self.one_revocation(user).await {
                Ok(ns) => sample.latencies_ns.push(ns),
                Err(e) => {
                    sample.errors += 1;
                    sample.first_error.get_or_insert(e);
                }
            }
        }
        sample.latencies_ns.sort_unstable();
        sample.seconds = started.elapsed().as_secs_f64();
        sample
    }

    /// The daemon's lookup of a valid key, alone, one query at a time.
    pub async fn bare_lookup(&self, window: Window) -> Sample {
        let mut sample = Sample {
            callers: 1,
            ..Sample::default()
        };
        let started = Instant::now();
        let counted_from = started + window.warmup;
        let end = counted_from + window.measure;
        loop {
            let t = Instant::now();
            if t >= end {
                break;
            }
            let found = self
                .db_b
                .query_opt(&self.by_hash, &[&&self.valid_hash[..]])
                .await;
            match found {
                Ok(Some(_)) if t >= counted_from => {
                    sample.latencies_ns.push(t.elapsed().as_nanos() as u64)
                }
                Ok(Some(_)) => {}
                other => {
                    sample.errors += 1;
                    sample
                        .first_error
                        .get_or_insert(format!("bare lookup: {other:?}"));
                }
            }
        }
        sample.latencies_ns.sort_unstable();
        sample.seconds = window.measure.as_secs_f64();
        sample
    }

    async fn one_revocation(&self, user: &str) -> Result<u64, String> {
        let (token, info) = self
            .admin_a
            .generate("bench revocation", "", &[], user)
            .await
            .map_err(|e| format!("Generate: {e}"))?;
        self.verifier_b
            .verify(&token, user, "sshd", "192.0.2.1")
            .await
            .map_err(|e| format!("Verify before the revocation: {e}"))?;
        self.admin_a
            .revoke(&[info.id.as_str()])
            .await
            .map_err(|e| format!("Revoke: {e}"))?;
        let revoked_at = Instant::now();
        let deadline = revoked_at + Duration::from_secs(5);
        loop {
            match self
                .verifier_b
                .verify(&token, user, "sshd", "192.0.2.1")
                .await
            {
                Err(KeysError::Refused(_)) => return Ok(revoked_at.elapsed().as_nanos() as u64),
                Ok(_) if Instant::now() < deadline => continue,
                other => return Err(format!("Verify after the revocation: {other:?}")),
            }
        }
    }
}

/// Interleaved rounds of Verify (valid key) on the SQLite site and every
/// fleet size, each with every number of callers; then the revocations.
pub async fn measure(
    sqlite: &Arc<Callers>,
    sqlite_keys: u64,
    sites: &[FleetSite],
    rounds: Rounds,
    first_warmup: Duration,
    user: &str,
    trials: usize,
) -> FleetResult {
    let mut result = FleetResult {
        sqlite: vec![Sample::default(); CALLERS.len()],
        sqlite_keys,
        sizes: sites
            .iter()
            .map(|s| (s.keys, s.seed_s, vec![Sample::default(); CALLERS.len()]))
            .collect(),
        revocation: Sample::default(),
        bare: Sample::default(),
    };
    for round in 0..rounds.count {
        let window = Window {
            warmup: if round == 0 {
                first_warmup
            } else {
                rounds.window.warmup
            },
            ..rounds.window
        };
        for (c, &n) in CALLERS.iter().enumerate() {
            result.sqlite[c].merge(sqlite.verify(n, window, true).await);
            for (i, site) in sites.iter().enumerate() {
                result.sizes[i].2[c].merge(site.callers.verify(n, window, true).await);
            }
            if c == 0 {
                if let Some(first) = sites.first() {
                    result.bare.merge(first.bare_lookup(window).await);
                }
            }
        }
    }
    if let Some(first) = sites.first() {
        result.revocation = first.revocation_visible(user, trials).await;
    }
    result
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl FleetResult {
    pub fn errors(&self) -> u64 {
        self.sqlite.iter().map(|s| s.errors).sum::<u64>()
            + self
                .sizes
                .iter()
                .flat_map(|(_, _, s)| s.iter().map(|s| s.errors))
                .sum::<u64>()
            + self.revocation.errors
            + self.bare.errors
    }

    pub fn first_errors(&self) -> Vec<String> {
        self.sqlite
            .iter()
            .chain(self.sizes.iter().flat_map(|(_, _, s)| s.iter()))
            .chain([&self.revocation, &self.bare])
            .filter_map(|s| s.first_error.clone())
            .collect()
    }

    /// (what, measured, met) for the fleet's targets (issue 18).
    pub fn targets(&self, quick: bool) -> Vec<(&'static str, String, Option<bool>)> {
        let mut t = Vec::new();
        let (c1, c64) = (0, CALLERS.len() - 1);
        if let Some((keys, _, small)) = self.sizes.first() {
            let r = ratio(small[c1].p50_us(), self.sqlite[c1].p50_us());
            t.push((
                "fleet: Verify through PostgreSQL p50 within 2x of SQLite's (1 caller)",
                format!(
                    "{:.0} us vs {:.0} us ({keys} keys each side): {r:.2}x",
                    small[c1].p50_us(),
                    self.sqlite[c1].p50_us()
                ),
                Some(r <= 2.0),
            ));
            // The part of that the daemon adds: what a fleet Verify costs
            // beyond a SQLite one, next to the database's own answer to the
            // same query (one loopback round trip and the lookup).
            let added = small[c1].p50_us() - self.sqlite[c1].p50_us();
            let bare = self.bare.p50_us();
            let r = ratio(added, bare);
            t.push((
                "fleet: a Verify's cost beyond SQLite's within 1.5x of a bare lookup (p50, 1 caller)",
                format!(
                    "{added:.0} us more than SQLite's vs {bare:.0} us for the daemon's query alone: {r:.2}x"
                ),
                Some(r <= 1.5),
            ));
            let per_s = small[c64].per_second();
            t.push((
                "fleet: at least 5,000 verifications/s with 64 callers",
                format!(
                    "{per_s:.0}/s (SQLite: {:.0}/s)",
                    self.sqlite[c64].per_second()
                ),
                Some(per_s >= 5_000.0),
            ));
        }
        if let (Some((k_small, _, small)), Some((k_large, _, large))) =
            (self.sizes.first(), self.sizes.last())
        {
            if self.sizes.len() > 1 {
                let worst = (0..CALLERS.len())
                    .map(|i| (ratio(large[i].p99_us(), small[i].p99_us()), CALLERS[i]))
                    .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
                t.push((
                    "fleet: Verify p99 at 1M keys in the database within 1.2x of 1k",
                    format!(
                        "{k_large} vs {k_small} keys: worst {:.3}x ({} callers)",
                        worst.0, worst.1
                    ),
                    (!quick).then_some(worst.0 <= 1.2),
                ));
            }
        }
        let p99_ms = self.revocation.p99_us() / 1000.0;
        t.push((
            "fleet: a revocation refused on the other host, p99 under 5 ms",
            format!(
                "p50 {:.2} ms, p99 {p99_ms:.2} ms over {} revocations",
                self.revocation.p50_us() / 1000.0,
                self.revocation.calls()
            ),
            Some(p99_ms < 5.0),
        ));
        t
    }

    pub fn to_json(&self) -> Value {
        json!({
            "sqlite_keys": self.sqlite_keys,
            "sqlite_verify": self.sqlite.iter().map(Sample::to_json).collect::<Vec<_>>(),
            "postgresql": self.sizes.iter().map(|(keys, seed_s, s)| json!({
                "keys": keys,
                "seed_s": (seed_s * 10.0).round() / 10.0,
                "verify": s.iter().map(Sample::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "revocation_visible_on_other_host": self.revocation.to_json(),
            "bare_lookup": self.bare.to_json(),
        })
    }

    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nFleet mode: Verify (valid key) on host-b, keys made on host-a, PostgreSQL on loopback"
        );
        let _ = writeln!(
            s,
            "   {:<24} {:>8} {:>10} {:>10} {:>10}",
            "store", "callers", "p50 us", "p99 us", "per s"
        );
        let row = |s: &mut String, label: &str, samples: &[Sample]| {
            for (i, sample) in samples.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "   {:<24} {:>8} {:>10.0} {:>10.0} {:>10.0}",
                    if i == 0 { label } else { "" },
                    CALLERS[i],
                    sample.p50_us(),
                    sample.p99_us(),
                    sample.per_second()
                );
            }
        };
        row(
            &mut s,
            &format!("SQLite, {} keys", self.sqlite_keys),
            &self.sqlite,
        );
        for (keys, _, samples) in &self.sizes {
            row(&mut s, &format!("PostgreSQL, {keys} keys"), samples);
        }
        let _ = writeln!(
            s,
            "   bare lookup (the daemon's query as host-b's role, {} keys): p50 {:.0} us, p99 {:.0} us",
            self.sizes.first().map_or(0, |s| s.0),
            self.bare.p50_us(),
            self.bare.p99_us()
        );
        let _ = writeln!(
            s,
            "   revocation on host-a refused on host-b after: p50 {:.2} ms, p99 {:.2} ms ({} trials)",
            self.revocation.p50_us() / 1000.0,
            self.revocation.p99_us() / 1000.0,
            self.revocation.calls()
        );
        s
    }
}
