//! apikeyd: loads the configuration, opens the store, serves the bus, and
//! writes buffered state on the way out.

use apikey_proto::names::{BUS_NAME, OBJECT_PATH};
use apikeyd::args::Args;
use apikeyd::audit::Audit;
use apikeyd::bus::Keys1;
use apikeyd::config::Config;
use apikeyd::host::SystemHost;
use apikeyd::service::KeyService;
use apikeyd::store::{SqliteStore, Store};
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;
/// sysexits.h: cannot open the store.
const EX_CANTCREAT: u8 = 73;
/// sysexits.h: the bus is unavailable.
const EX_UNAVAILABLE: u8 = 69;

/// How long calls in flight may take once the daemon is told to stop.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the daemon waits for a lost bus to come back before it exits
/// and leaves the restart to its supervisor.
const BUS_RETURN_WAIT: Duration = Duration::from_secs(60);
/// How often it tries meanwhile.
const BUS_RETRY_EVERY: Duration = Duration::from_millis(100);
/// Threads the blocking pool may grow to. The unit's TasksMax= (64) is
/// above this plus the workers, the audit writer and the main thread, so
/// a burst of calls queues instead of failing to start a thread.
const MAX_BLOCKING_THREADS: usize = 48;

/// glibc's allocator, set so that memory a burst took goes back: large
/// blocks (message buffers) are always mapped apart and unmapped when
/// freed (a fixed threshold; glibc's own would rise after the first large
/// free and keep later ones in the heap), the heap is trimmed once 1 MiB
/// at its top is free, and two arenas serve every thread.
fn tune_allocator() {
    // SAFETY: mallopt with integer arguments, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let args = Args::parse();
    if args.stop {
        return stop_running_daemon();
    }
    if args.pam_references {
        return list_pam_references();
    }
    // Everything the daemon creates is private to it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apikeyd: configuration error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.upgrade_fleet_schema {
        return upgrade_fleet_schema(&cfg);
    }
    if args.migrate_to_fleet {
        if let Some(db) = &args.database {
            cfg.database = db.clone();
        }
        return migrate_to_fleet(&cfg);
    }
    // Before the identity is dropped: started as root by bus activation,
    // the daemon makes the socket where its own user could not.
    let pam_listener = cfg.pam_socket.as_deref().and_then(|path| {
        apikeyd::pam_socket::bind(path)
            .inspect_err(|e| {
                eprintln!("apikeyd: not serving the PAM socket ({e}); key logins use the bus")
            })
            .ok()
    });
    if let Err(e) = take_identity(&args) {
        eprintln!("apikeyd: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(db) = args.database {
        cfg.database = db;
    }
    let local = match SqliteStore::open(&cfg.database) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apikeyd: cannot use the key store {e}");
            return ExitCode::from(EX_CANTCREAT);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apikeyd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = Arc::new(SystemHost::new());
    let store: Arc<dyn Store> = match &cfg.fleet {
        None => Arc::new(local),
        Some(fleet) => match apikeyd::fleet_start::open(fleet, local, host.clone(), &runtime) {
            Ok(store) => Arc::new(store),
            Err(e) => {
                eprintln!("apikeyd: fleet mode: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        },
    };
    let audit = Audit::open(&cfg.syslog_socket, cfg.journal_socket.as_deref());
    let svc = Arc::new(KeyService::new(cfg, store, host, audit));
    // Keys of an earlier boot, or of sessions that ended while the daemon
    // was down, die before the first request is answered (S5).
    svc.sweep_session_keys();
    svc.prune_store();
    svc.revoke_unused_if_due();
    say_metrics(&svc);
    let code = runtime.block_on(serve(svc.clone(), pam_listener));
    // Calls still running on the blocking pool get a moment to finish;
    // one stuck in NSS must not keep the last-used times and the audit
    // lines from being written before systemd's stop timeout kills us.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    if let Err(e) = svc.flush_usage() {
        eprintln!("apikeyd: could not write last-used times: {e}");
    }
    // The last counts reach node_exporter's file too.
    say_metrics(&svc);
    if let Err(e) = svc.checkpoint_store() {
        eprintln!("apikeyd: could not fold the write-ahead log into the key store: {e}");
    }
    // Refusals counted since the last summary are not lost on the way out.
    svc.log_refusal_summaries();
    // Every audit line logged so far reaches syslog before the exit,
    // unless syslog takes nothing for a while.
    if !svc.flush_audit() {
        eprintln!("apikeyd: syslog took no audit lines for a while; some may be lost");
    }
    code
}

fn migrate_to_fleet(cfg: &Config) -> ExitCode {
    let Some(fleet) = &cfg.fleet else {
        eprintln!("apikeyd: the configuration has no [fleet] section");
        return ExitCode::from(EX_CONFIG);
    };
    let local = match SqliteStore::open(&cfg.database) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apikeyd: cannot use the key store {e}");
            return ExitCode::from(EX_CANTCREAT);
        }
    };
    match apikeyd::fleet_start::migrate_to_fleet(fleet, &local) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apikeyd: {e}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

fn upgrade_fleet_schema(cfg: &Config) -> ExitCode {
    let Some(fleet) = &cfg.fleet else {
        eprintln!("apikeyd: the configuration has no [fleet] section");
        return ExitCode::from(EX_CONFIG);
    };
    match apikeyd::fleet_start::upgrade_schema(fleet) {
        Ok(version) => {
            println!("the fleet schema is at version {version}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apikeyd: {e}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

async fn serve(
    svc: Arc<KeyService>,
    pam_listener: Option<std::os::unix::net::UnixListener>,
) -> ExitCode {
    let mut conn = match connect(svc.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apikeyd: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    eprintln!("apikeyd: serving {BUS_NAME} on {OBJECT_PATH}");
    // Only once the bus name is ours: a second daemon that failed to get
    // it must not have answered logins meanwhile.
    if let Some(listener) = pam_listener {
        tokio::spawn(apikeyd::pam_socket::serve(listener, svc.clone()));
    }
    if let Err(e) = apikeyd::notify::notify("READY=1") {
        eprintln!("apikeyd: cannot tell the service manager it is ready: {e}");
    }
    tokio::spawn(apikeyd::logind::watch(conn.clone(), svc.clone()));
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("apikeyd: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = conn.closed() => {
                eprintln!("apikeyd: lost the connection to the system bus; connecting again");
                let _ = apikeyd::notify::notify("STATUS=the system bus went away; connecting again");
                match reconnect(&svc).await {
                    Ok(c) => {
                        conn = c;
                        eprintln!("apikeyd: back on the system bus, serving {BUS_NAME} again");
                        let _ = apikeyd::notify::notify("STATUS=serving");
                        tokio::spawn(apikeyd::logind::watch(conn.clone(), svc.clone()));
                    }
                    Err(e) => {
                        eprintln!(
                            "apikeyd: the system bus did not come back within {} s ({e}); exiting",
                            BUS_RETURN_WAIT.as_secs()
                        );
                        return ExitCode::from(EX_UNAVAILABLE);
                    }
                }
            }
            _ = tick.tick() => {
                let svc = svc.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = svc.flush_usage() {
                        eprintln!("apikeyd: could not write last-used times: {e}");
                    }
                    svc.log_throttle_summaries();
                    svc.log_refusal_summaries();
                    svc.sweep_session_keys();
                    svc.prune_store();
                    svc.revoke_unused_if_due();
                    say_metrics(&svc);
                    // What a burst of small allocations left in the heap.
                    // SAFETY: plain call into glibc.
                    unsafe { libc::malloc_trim(0) };
                }).await;
            }
        }
    }
    let _ = apikeyd::notify::notify("STOPPING=1");
    // Stop taking calls before the final write of buffered state.
    let _ = conn.release_name(BUS_NAME).await;
    ExitCode::SUCCESS
}

/// Writes the metrics file, if there is one, and says what its writer
/// has to say.
fn say_metrics(svc: &KeyService) {
    if let Some(news) = svc.write_metrics_file() {
        eprintln!("apikeyd: {news}");
    }
}

/// Connects again after the bus went away, until it answers and the name
/// is ours, or `BUS_RETURN_WAIT` has passed. Signals are not watched
/// meanwhile: a stop request waits at most one retry.
async fn reconnect(svc: &Arc<KeyService>) -> Result<zbus::Connection, String> {
    let deadline = tokio::time::Instant::now() + BUS_RETURN_WAIT;
    loop {
        match connect(svc.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(BUS_RETRY_EVERY).await,
        }
    }
}

/// `--log` and `--run-as`, in that order: the log may be root's file.
fn take_identity(args: &Args) -> Result<(), String> {
    if let Some(log) = &args.log {
        apikeyd::privileges::log_to(log)?;
    }
    if let Some(user) = &args.run_as {
        let id = apikeyd::privileges::identity(user)?;
        apikeyd::privileges::drop_to(&id)?;
    }
    Ok(())
}

fn stop_running_daemon() -> ExitCode {
    let built = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = built.inspect_err(|e| eprintln!("apikeyd: cannot start: {e}")) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(apikeyd::stop::stop(Duration::from_secs(15))) {
        Ok(Some(pid)) => {
            eprintln!("apikeyd: stopped the daemon (pid {pid})");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("apikeyd: no daemon owns {BUS_NAME}; nothing to stop");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apikeyd: --stop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list_pam_references() -> ExitCode {
    let found = apikeyd::pam_references::find(
        std::path::Path::new("/etc/pam.d"),
        std::path::Path::new("/etc/pam.conf"),
    );
    for r in &found {
        println!("{}:{}: {}", r.file.display(), r.line, r.text);
    }
    if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn connect(svc: Arc<KeyService>) -> Result<zbus::Connection, String> {
    // Follows DBUS_SYSTEM_BUS_ADDRESS when set, else the system bus.
    let conn = zbus::connection::Builder::system()
        .build()
        .await
        .map_err(|e| format!("cannot reach the system bus: {e}"))?;
    let dbus = zbus::fdo::DBusProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("cannot talk to the bus daemon: {e}"))?;
    let births = apikeyd::caller_binding::Births::default();
    conn.object_server()
        .at(OBJECT_PATH, Keys1::new(svc, dbus.clone(), births.clone()))
        .await
        .map_err(|e| format!("cannot serve {OBJECT_PATH}: {e}"))?;
    let reply = conn
        .request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME}: {e}"))?;
    if reply != zbus::fdo::RequestNameReply::PrimaryOwner {
        return Err(format!(
            "{BUS_NAME} is already owned by another process; is apikeyd already running?"
        ));
    }
    // Only once the name is ours: a failed attempt (reconnect retries
    // every 100 ms) must not leave a watcher and its connection behind.
    tokio::spawn(apikeyd::bus::watch_births(dbus, births));
    Ok(conn)
}
