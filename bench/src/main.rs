//! `apikey-bench [--quick] [--out DIR]`: what a key login costs next to
//! the bus's own round trip and a password login, how many a second one
//! host takes, and whether that changes from a thousand to a million
//! stored keys. It runs its own private bus, the built `apikeyd` and
//! real test users (all removed at the end), prints a table and writes
//! the same numbers as JSON to DIR (default `target/bench`).
//!
//! Every figure that is compared is measured in the same run, and in
//! interleaved rounds: each store size has a bus and daemon of its own,
//! all running at once, and every round measures Ping and Verify at every
//! size in turn, so a noisy shared machine slows all of them alike and
//! the ratios stay fair. `--quick` runs each part briefly to show that it
//! works; its numbers mean nothing.
//!
//! Must run as root: it creates users, reads /etc/shadow through
//! pam_unix, and writes its own /proc/self/loginuid (see
//! [`ensure_login_session`]).

mod fleet;
mod load;
mod machine;
mod nginx;
mod pam;
mod report;
mod seed;
mod sink;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apikey_proto::names::{BUS_NAME, OBJECT_PATH};
use apikey_proto::{Keys1Proxy, KeysError, Token};
use apikey_tests::{bins, Daemon, DaemonConfig, PrivateBus, TestGroup, TestUser, Throttle};
use zbus::fdo::PeerProxy;
use zbus::proxy::CacheProperties;

use crate::load::{closed_loop, Sample, Window};
use crate::machine::Machine;
use crate::report::{Report, SizeResult, WriteResult};

/// Callers run as root from one uid, so throttling would soon delay
/// invalid keys by seconds and the run would measure the delay; with this
/// many free failures it never starts (said in the output).
pub const FREE_FAILURES: u32 = 1_000_000_000;
/// Test users whose keys are verified, one key each.
const USERS: usize = 4;
pub const CALLERS: [usize; 3] = [1, 8, 64];
/// Concurrencies of Verify measured while a writer revokes.
const CALLERS_DURING_WRITES: [usize; 2] = [1, 8];

struct Plan {
    quick: bool,
    sizes: Vec<u64>,
    /// Rounds of every (size, callers, call) measurement, interleaved.
    rounds: usize,
    /// One measurement of one round; the first round warms up longer
    /// (caller credentials cached, store pages read).
    window: Window,
    first_warmup: Duration,
    write_window: Window,
    /// pam_permit, pam_apikey, pam_unix: (warm-up, counted) logins.
    pam_logins: [(u64, u64); 3],
    /// nginx auth_pam: rounds, and each server's warm-up and window.
    nginx_rounds: usize,
    nginx_window: Window,
    /// How long the soak runs (`soak.rs`); 0 leaves it out.
    soak_seconds: u64,
    /// Fleet mode: keys in each database, and revocations timed.
    fleet_sizes: Vec<u64>,
    fleet_trials: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            sizes: vec![1_000, 100_000, 1_000_000],
            // Many short rounds: a neighbour's burst then lands in a few
            // rounds of every row rather than in all of one row.
            rounds: 12,
            window: Window {
                warmup: Duration::from_millis(30),
                measure: Duration::from_millis(200),
            },
            first_warmup: Duration::from_millis(500),
            write_window: Window {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(3),
            },
            pam_logins: [(100, 3000), (100, 2000), (2, 40)],
            nginx_rounds: 5,
            nginx_window: Window {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(2),
            },
            soak_seconds: 600,
            fleet_sizes: vec![1_000, 1_000_000],
            fleet_trials: 300,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            sizes: vec![1_000],
            rounds: 1,
            window: Window {
                warmup: Duration::from_millis(20),
                measure: Duration::from_millis(100),
            },
            first_warmup: Duration::from_millis(50),
            write_window: Window {
                warmup: Duration::from_millis(20),
                measure: Duration::from_millis(200),
            },
            pam_logins: [(2, 20), (2, 20), (1, 2)],
            nginx_rounds: 1,
            nginx_window: Window {
                warmup: Duration::from_millis(50),
                measure: Duration::from_millis(300),
            },
            soak_seconds: 6,
            fleet_sizes: vec![1_000, 10_000],
            fleet_trials: 10,
        }
    }
}

/// Interleaved measurements: `count` of `window` each.
#[derive(Clone, Copy)]
struct Rounds {
    count: usize,
    window: Window,
}

struct Opts {
    quick: bool,
    out: PathBuf,
    /// Overrides the plan's soak length.
    soak: Option<u64>,
}

const USAGE: &str = "usage: apikey-bench [--quick] [--out DIR] [--soak SECONDS]   (as root)";

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        quick: false,
        out: bins::workspace_root().join("target").join("bench"),
        soak: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--out" => opts.out = args.next().ok_or("--out needs a directory")?.into(),
            "--soak" => {
                let secs = args.next().ok_or("--soak needs a number of seconds")?;
                opts.soak = Some(
                    secs.parse()
                        .map_err(|_| format!("--soak {secs}: not seconds"))?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("apikey-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("apikey-bench: must run as root (it creates test users and runs the daemon)");
        return ExitCode::from(2);
    }
    // The daemon, the PAM module and akt-pam-loop are taken from where this
    // program was built (target/release for `make bench`), unless told
    // otherwise. Set before any thread exists.
    if std::env::var_os(bins::BIN_DIR_ENV).is_none() {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(PathBuf::from))
        {
            std::env::set_var(bins::BIN_DIR_ENV, dir);
        }
    }
    let plan = if opts.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    match run(&plan, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apikey-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Generate needs a caller in a login session, also for an administrator
/// making keys for other accounts. A root process may set its own
/// loginuid (CAP_AUDIT_CONTROL); this one says "root logged in", which
/// only this process and its children carry.
fn ensure_login_session() -> Result<(), String> {
    let path = "/proc/self/loginuid";
    let current = std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e} (a kernel without audit support?)"))?;
    if current.trim() != u32::MAX.to_string() {
        return Ok(());
    }
    std::fs::write(path, "0").map_err(|e| {
        format!("cannot write {path} ({e}): Generate needs a caller in a login session")
    })
}

fn progress(msg: &str) {
    eprintln!("apikey-bench: {msg}");
}

/// One store size: a bus, a daemon and its store, and the callers'
/// connections to it.
struct Site {
    result: SizeResult,
    callers: Arc<Callers>,
    admin: Keys1Proxy<'static>,
    /// Kept open for the callers' proxies.
    _conns: Vec<zbus::Connection>,
    daemon: Daemon,
    /// Kept running for the daemon.
    _bus: PrivateBus,
    /// Filler keys in the store, `filler_id(0..filler)`.
    filler: u64,
}

impl Site {
    /// Starts a bus and a daemon, makes one key for each user through the
    /// bus, stops the daemon, fills the store up to `size` keys through
    /// the store layer and starts the daemon again.
    fn start(
        rt: &tokio::runtime::Runtime,
        size: u64,
        config: &DaemonConfig,
        users: &[TestUser],
    ) -> Result<Site, String> {
        let bus = PrivateBus::start();
        let mut daemon = Daemon::start(&bus, config);
        let admin = rt.block_on(async { keys_proxy(&connect(bus.address()).await?).await })?;
        // The login's session hook would register it as a password login:
        // keys are made only in such a session (S6).
        rt.block_on(admin.open_session("root", "login", "", "pts/bench", "", "password"))
            .map_err(|e| format!("OpenSession for this process's login: {e}"))?;
        // The keys that are verified belong to real accounts and are made
        // the way an administrator makes them, through the bus.
        let mut valid: Vec<(String, String)> = Vec::new();
        for user in users {
            let (token, info) = rt
                .block_on(admin.generate("bench", "", &[], user.name()))
                .map_err(|e| format!("Generate for {}: {e}", user.name()))?;
            valid.push((token, info.user));
        }
        let filler = size.saturating_sub(valid.len() as u64);
        progress(&format!("seeding a store with {size} keys"));
        daemon.stop();
        let seed_s = seed::seed(daemon.db_path(), filler)?;
        let t = Instant::now();
        daemon.restart();
        let daemon_start_s = t.elapsed().as_secs_f64();
        let max_callers = CALLERS.iter().copied().max().unwrap_or(1);
        let (conns, callers) = rt.block_on(async {
            let mut conns = Vec::with_capacity(max_callers);
            for _ in 0..max_callers {
                conns.push(connect(bus.address()).await?);
            }
            let callers = Callers::new(&conns, &valid).await?;
            Ok::<_, String>((conns, callers))
        })?;
        Ok(Site {
            result: SizeResult {
                keys: size,
                seed_s,
                daemon_start_s,
                store_bytes: seed::store_bytes(daemon.db_path()),
                ping: vec![Sample::default(); CALLERS.len()],
                valid: vec![Sample::default(); CALLERS.len()],
                invalid: vec![Sample::default(); CALLERS.len()],
                socket_ping: vec![Sample::default(); CALLERS.len()],
                socket_valid: vec![Sample::default(); CALLERS.len()],
                ..SizeResult::default()
            },
            callers,
            admin,
            _conns: conns,
            daemon,
            _bus: bus,
            filler,
        })
    }
}

fn run(plan: &Plan, opts: &Opts) -> Result<(), String> {
    let started = Instant::now();
    let machine = Machine::probe();
    ensure_login_session()?;
    progress(&format!("machine: {}", machine.describe()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(machine.cores.clamp(1, 4))
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    let scratch = apikey_tests::tmp::temp_dir("bench");
    let sink = sink::DiscardSink::bind(scratch.path()).map_err(|e| format!("audit sink: {e}"))?;
    let config = DaemonConfig {
        syslog_socket: Some(sink.path().to_path_buf()),
        // The write bench makes thousands of keys for a handful of users.
        max_keys_per_user: 1_000_000_000,
        throttle: Throttle {
            free_failures: FREE_FAILURES,
            ..DaemonConfig::default().throttle
        },
        ..DaemonConfig::default()
    };
    progress("creating test users");
    let users: Vec<TestUser> = (0..USERS).map(|_| TestUser::create("bench")).collect();
    let password = format!("bench {} correct horse", std::process::id());
    users[0].set_password(&password);
    // nginx's workers verify keys as a member of a verifier group.
    let web_worker = TestUser::create("www");
    let web_group = TestGroup::create();
    web_group.add_member(&web_worker);
    let config = DaemonConfig {
        verifier_groups: vec![(web_group.name().to_string(), vec!["nginx*".to_string()])],
        ..config
    };

    let mut sites = Vec::new();
    for &size in &plan.sizes {
        sites.push(Site::start(&rt, size, &config, &users)?);
    }

    progress(&format!(
        "Ping and Verify: {} rounds over {} store sizes",
        plan.rounds,
        sites.len()
    ));
    for round in 0..plan.rounds {
        let window = Window {
            warmup: if round == 0 {
                plan.first_warmup
            } else {
                plan.window.warmup
            },
            ..plan.window
        };
        // Alternate the order, so that no size always runs right after
        // another's heaviest load.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..sites.len()).collect()
        } else {
            (0..sites.len()).rev().collect()
        };
        for (c, &n) in CALLERS.iter().enumerate() {
            for &i in &order {
                let site = &mut sites[i];
                let callers = Arc::clone(&site.callers);
                let r = &mut site.result;
                r.ping[c].merge(rt.block_on(callers.ping(n, window)));
                r.valid[c].merge(rt.block_on(callers.verify(n, window, true)));
                r.invalid[c].merge(rt.block_on(callers.verify(n, window, false)));
                // Fresh connections for each measurement: the daemon
                // closes a PAM-socket connection idle for 30 s, as the
                // other sizes' turns and the seeding can last.
                let socket = site.daemon.pam_socket();
                let valid = site.callers.valid.clone();
                let (conns, callers) = rt.block_on(async {
                    let mut conns = Vec::with_capacity(n);
                    for _ in 0..n {
                        conns.push(connect_socket(&socket).await?);
                    }
                    let callers = Callers::new(&conns, &valid).await?;
                    Ok::<_, String>((conns, callers))
                })?;
                r.socket_ping[c].merge(rt.block_on(callers.ping(n, window)));
                r.socket_valid[c].merge(rt.block_on(callers.verify(n, window, true)));
                drop(conns);
            }
        }
    }
    for site in &mut sites {
        (site.result.rss_kib, site.result.hwm_kib) = machine::rss_kib(site.daemon.pid());
    }

    progress("fleet mode: PostgreSQL next to SQLite");
    let fleet_sites = plan
        .fleet_sizes
        .iter()
        .map(|&n| fleet::FleetSite::start(&rt, n, &config, &users))
        .collect::<Result<Vec<_>, _>>()?;
    let fleet = rt.block_on(fleet::measure(
        &sites[0].callers,
        sites[0].result.keys,
        &fleet_sites,
        Rounds {
            count: plan.rounds,
            window: plan.window,
        },
        plan.first_warmup,
        users[0].name(),
        plan.fleet_trials,
    ));
    drop(fleet_sites);

    // The PAM and write parts run against the largest store.
    let big = sites.last().expect("at least one store size");
    let store_keys = big.result.keys;
    progress("whole PAM logins");
    let module = apikey_tests::pam::module(&big.daemon, "");
    let bus_module = apikey_tests::pam::module(&big.daemon, "socket=none");
    let alice = &users[0];
    let stacks = [
        pam::Stack {
            label: "pam_permit",
            service: "bench-permit",
            text: "auth required pam_permit.so\n".into(),
            user: alice.name(),
            password: "unused",
            warmup: plan.pam_logins[0].0,
            count: plan.pam_logins[0].1,
        },
        // The module alone (what nginx's stack runs): its own cost.
        pam::Stack {
            label: "pam_apikey (key, socket)",
            service: "sshd-bench",
            text: format!(
                "auth [success=done default=die] {module}\n\
                 auth requisite pam_deny.so\n"
            ),
            user: alice.name(),
            password: &big.callers.valid[0].0,
            warmup: plan.pam_logins[1].0,
            count: plan.pam_logins[1].1,
        },
        // docs/pam.md's sshd stack, which also loads pam_unix and its
        // libraries at every pam_start.
        pam::Stack {
            label: "key, sshd stack, socket",
            service: "sshd-bench",
            text: apikey_tests::pam::key_or_password_stack(&module),
            user: alice.name(),
            password: &big.callers.valid[0].0,
            warmup: plan.pam_logins[1].0,
            count: plan.pam_logins[1].1,
        },
        pam::Stack {
            label: "key, sshd stack, bus",
            service: "sshd-bench",
            text: apikey_tests::pam::key_or_password_stack(&bus_module),
            user: alice.name(),
            password: &big.callers.valid[0].0,
            warmup: plan.pam_logins[1].0,
            count: plan.pam_logins[1].1,
        },
        // The module loaded and asked, with a password that is not a key:
        // what loading it costs a stack, with no call to the daemon.
        pam::Stack {
            label: "module only, no key",
            service: "sshd-bench",
            text: format!(
                "auth [success=done ignore=ignore default=die] {module}\n\
                 auth required pam_permit.so\n"
            ),
            user: alice.name(),
            password: "not a key",
            warmup: plan.pam_logins[0].0,
            count: plan.pam_logins[0].1,
        },
        pam::Stack {
            label: "pam_unix (password)",
            service: "bench-unix",
            text: "auth required pam_unix.so\n".into(),
            user: alice.name(),
            password: &password,
            warmup: plan.pam_logins[2].0,
            count: plan.pam_logins[2].1,
        },
    ];
    let logins = pam::run_interleaved(&stacks, plan.rounds)?;
    let hash_scheme = pam::hash_scheme(alice.name());

    progress("nginx auth_pam");
    let web_module = apikey_tests::services::module_for_workers(scratch.path(), &big.daemon, "");
    let (key, owner) = &big.callers.valid[0];
    let servers = [
        nginx::Server {
            label: "auth_pam, pam_apikey with a key",
            stack: Some(apikey_tests::pam::documented_stack("nginx", &web_module)),
            credentials: format!("{owner}:{key}"),
        },
        nginx::Server {
            label: "auth_pam, pam_permit",
            stack: Some("auth required pam_permit.so\naccount required pam_permit.so\n".into()),
            credentials: format!("{owner}:anything"),
        },
        nginx::Server {
            label: "no auth",
            stack: None,
            credentials: format!("{owner}:anything"),
        },
    ];
    let web = nginx::run(
        &servers,
        &web_worker,
        plan.nginx_rounds,
        plan.nginx_window.warmup,
        plan.nginx_window.measure,
    )?;

    progress("writes");
    let writes = rt.block_on(writes(
        &big.admin,
        &big.callers,
        &users,
        plan.write_window,
        Rounds {
            count: plan.rounds,
            window: plan.window,
        },
        big.filler,
    ))?;
    let (rss_end, hwm_end) = machine::rss_kib(big.daemon.pid());
    let audit_lines = sink.lines();
    // The stores' buses and daemons stop here, before the soak starts its own.
    let sizes: Vec<SizeResult> = sites.into_iter().map(|s| s.result).collect();
    let soak = match opts.soak.unwrap_or(plan.soak_seconds) {
        0 => None,
        secs => {
            progress(&format!("soak: {secs} s"));
            Some(run_soak(&rt, secs, &config, &users[1 % users.len()])?)
        }
    };

    // Everything the bench started goes before the report is written, so
    // a failure to write it leaves nothing behind either.
    drop(rt);
    drop(users);
    drop(web_worker);
    drop(web_group);
    drop(sink);
    let report = Report {
        quick: plan.quick,
        machine,
        bin_dir: bins::bin_dir(),
        window: plan.window,
        rounds: plan.rounds,
        sizes,
        store_keys,
        real_keys: USERS as u64,
        logins,
        hash_scheme,
        web,
        writes,
        rss_end_kib: rss_end,
        hwm_end_kib: hwm_end,
        audit_lines,
        seconds: started.elapsed().as_secs_f64(),
        loadavg_end: machine::loadavg(),
        fleet,
    };

    let mut table = report.table();
    if let Some(soak) = &soak {
        table.push('\n');
        table.push_str(&soak.text());
        let path = opts.out.join("apikey-soak.json");
        std::fs::create_dir_all(&opts.out)
            .and_then(|_| std::fs::write(&path, format!("{:#}\n", soak.to_json())))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    println!("{table}");
    let (json_path, text_path) = report
        .write(&opts.out, &table)
        .map_err(|e| format!("writing the report to {}: {e}", opts.out.display()))?;
    progress(&format!(
        "wrote {} and {}",
        json_path.display(),
        text_path.display()
    ));
    let errors = report.errors();
    if errors > 0 {
        return Err(format!(
            "{errors} calls got an unexpected answer (see `errors` in the report)"
        ));
    }
    Ok(())
}

/// A bus and daemon of the soak's own, a key for `user` made as an
/// administrator makes one, and a well-formed key that is in no store.
fn run_soak(
    rt: &tokio::runtime::Runtime,
    secs: u64,
    config: &DaemonConfig,
    user: &TestUser,
) -> Result<soak::Soak, String> {
    let mut bus = PrivateBus::start();
    let mut daemon = Daemon::start(&bus, config);
    let token = rt.block_on(async {
        let admin = keys_proxy(&connect(bus.address()).await?).await?;
        admin
            .open_session("root", "login", "", "pts/bench", "", "password")
            .await
            .map_err(|e| format!("OpenSession: {e}"))?;
        let (token, _) = admin
            .generate("soak", "", &[], user.name())
            .await
            .map_err(|e| format!("Generate: {e}"))?;
        Ok::<_, String>(token)
    })?;
    let bad = Token::generate().map_err(|e| format!("randomness: {e}"))?;
    soak::run(secs, &mut bus, &mut daemon, user, &token, bad.as_str())
}

async fn connect(address: &str) -> Result<zbus::Connection, String> {
    zbus::connection::Builder::address(address)
        .build()
        .await
        .map_err(|e| format!("connect to the bus: {e}"))
}

/// A peer-to-peer connection to the daemon's PAM socket, as pam_apikey
/// makes one (zbus speaks the same protocol).
async fn connect_socket(path: &std::path::Path) -> Result<zbus::Connection, String> {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("connect to {}: {e}", path.display()))?;
    zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .map_err(|e| format!("connect to {}: {e}", path.display()))
}

async fn keys_proxy(conn: &zbus::Connection) -> Result<Keys1Proxy<'static>, String> {
    Keys1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("Keys1 proxy: {e}"))
}

/// One kept-open connection per caller, with what each caller sends.
struct Callers {
    keys: Vec<Keys1Proxy<'static>>,
    peers: Vec<PeerProxy<'static>>,
    /// Caller i verifies `valid[i % len]` with its owner's name.
    valid: Vec<(String, String)>,
    /// A well-formed key with a good checksum that no store holds.
    invalid: Vec<String>,
}

impl Callers {
    async fn new(
        conns: &[zbus::Connection],
        valid: &[(String, String)],
    ) -> Result<Arc<Callers>, String> {
        let mut keys = Vec::new();
        let mut peers = Vec::new();
        let mut invalid = Vec::new();
        for conn in conns {
            keys.push(keys_proxy(conn).await?);
            peers.push(
                PeerProxy::builder(conn)
                    .destination(BUS_NAME)
                    .path(OBJECT_PATH)
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await
                    .map_err(|e| format!("Peer proxy: {e}"))?,
            );
            let token = Token::generate().map_err(|e| format!("randomness: {e}"))?;
            invalid.push(token.as_str().to_string());
        }
        Ok(Arc::new(Callers {
            keys,
            peers,
            valid: valid.to_vec(),
            invalid,
        }))
    }

    /// A remote host per caller: throttling counts per (uid, rhost), and a
    /// host service passes the client's address.
    fn rhost(i: usize) -> String {
        format!("192.0.2.{}", i % 256)
    }

    async fn ping(self: &Arc<Self>, n: usize, window: Window) -> Sample {
        let me = Arc::clone(self);
        closed_loop(n, window, move |i| {
            let peer = me.peers[i].clone();
            async move { peer.ping().await.map_err(|e| format!("Ping: {e}")) }
        })
        .await
    }

    async fn verify(self: &Arc<Self>, n: usize, window: Window, valid: bool) -> Sample {
        let me = Arc::clone(self);
        closed_loop(n, window, move |i| {
            let me = Arc::clone(&me);
            async move { me.verify_one(i, valid).await }
        })
        .await
    }

    async fn verify_one(&self, i: usize, valid: bool) -> Result<(), String> {
        let (key, user) = &self.valid[i % self.valid.len()];
        let token = if valid { key } else { &self.invalid[i] };
        let rhost = Self::rhost(i);
        match (
            valid,
            self.keys[i].verify(token, user, "sshd", &rhost).await,
        ) {
            (true, Ok((owner, _))) if owner == *user => Ok(()),
            (false, Err(KeysError::Refused(_))) => Ok(()),
            (_, other) => Err(format!(
                "Verify of a {} key answered {other:?}",
                if valid { "valid" } else { "invalid" }
            )),
        }
    }
}

/// Generate and Revoke by one administrator, one call at a time as the
/// command line makes them; then Verify with and without a revoking
/// writer alongside.
async fn writes(
    admin: &Keys1Proxy<'static>,
    callers: &Arc<Callers>,
    users: &[TestUser],
    window: Window,
    rounds: Rounds,
    filler_keys: u64,
) -> Result<WriteResult, String> {
    let names: Arc<Vec<String>> = Arc::new(users.iter().map(|u| u.name().to_string()).collect());
    let made: Arc<Mutex<Vec<String>>> = Arc::default();
    let turn = Arc::new(AtomicUsize::new(0));
    let generate = {
        let (admin, names, made, turn) = (admin.clone(), names.clone(), made.clone(), turn);
        closed_loop(1, window, move |_| {
            let (admin, names, made) = (admin.clone(), names.clone(), made.clone());
            let user = names[turn.fetch_add(1, Ordering::Relaxed) % names.len()].clone();
            async move {
                let (_, info) = admin
                    .generate("bench write", "", &[], &user)
                    .await
                    .map_err(|e| format!("Generate: {e}"))?;
                made.lock().unwrap_or_else(|p| p.into_inner()).push(info.id);
                Ok(())
            }
        })
        .await
    };

    // Revoke what was just made, then filler keys once those run out:
    // each call revokes one active key.
    let next_filler = Arc::new(AtomicU64::new(0));
    let next_id = {
        let (made, next_filler) = (made.clone(), next_filler.clone());
        move || -> Option<String> {
            if let Some(id) = made.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                return Some(id);
            }
            let n = next_filler.fetch_add(1, Ordering::Relaxed);
            (n < filler_keys).then(|| seed::filler_id(n))
        }
    };
    let next_id = Arc::new(next_id);
    let revoke_one = {
        let admin = admin.clone();
        let next_id = next_id.clone();
        move || {
            let (admin, id) = (admin.clone(), next_id());
            async move {
                let id = id.ok_or("no active key left to revoke")?;
                let revoked = admin
                    .revoke(&[id.as_str()])
                    .await
                    .map_err(|e| format!("Revoke {id}: {e}"))?;
                if revoked != [id.clone()] {
                    return Err(format!("Revoke {id} revoked {revoked:?}"));
                }
                Ok::<(), String>(())
            }
        }
    };
    let revoke = {
        let revoke_one = revoke_one.clone();
        closed_loop(1, window, move |_| revoke_one()).await
    };

    // Rounds of Verify alone and Verify beside a revoking writer, in
    // turn, so that both see the same neighbours on a shared machine.
    let mut during = Vec::new();
    for &n in &CALLERS_DURING_WRITES {
        let mut d = report::DuringWrites {
            idle: Sample::default(),
            busy: Sample::default(),
            revokes: 0,
            writer_seconds: 0.0,
            writer_error: None,
        };
        for _ in 0..rounds.count {
            d.idle.merge(callers.verify(n, rounds.window, true).await);
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (stop, revoke_one) = (stop.clone(), revoke_one.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let (mut done, mut failed) = (0u64, None);
                    while !stop.load(Ordering::Relaxed) {
                        match revoke_one().await {
                            Ok(()) => done += 1,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    (done, t.elapsed().as_secs_f64(), failed)
                })
            };
            d.busy.merge(callers.verify(n, rounds.window, true).await);
            stop.store(true, Ordering::Relaxed);
            let (revoked, secs, failed) = writer.await.map_err(|e| format!("writer: {e}"))?;
            d.revokes += revoked;
            d.writer_seconds += secs;
            if d.writer_error.is_none() {
                d.writer_error = failed;
            }
        }
        during.push(d);
    }
    Ok(WriteResult {
        generate,
        revoke,
        during,
    })
}
