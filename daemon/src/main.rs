//! apikeyd: loads the configuration, opens the store, serves the bus, and
//! writes buffered state on the way out.

use apikey_proto::names::{BUS_NAME, OBJECT_PATH};
use apikeyd::args::Args;
use apikeyd::audit::Audit;
use apikeyd::bus::Keys1;
use apikeyd::config::Config;
use apikeyd::host::SystemHost;
use apikeyd::service::KeyService;
use apikeyd::store::SqliteStore;
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

fn main() -> ExitCode {
    let args = Args::parse();
    // Everything the daemon creates is private to it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apikeyd: configuration error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Some(db) = args.database {
        cfg.database = db;
    }
    let store = match SqliteStore::open(&cfg.database) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apikeyd: cannot use the key store {e}");
            return ExitCode::from(EX_CANTCREAT);
        }
    };
    let audit = Audit::open(&cfg.syslog_socket);
    let svc = Arc::new(KeyService::new(
        cfg,
        Arc::new(store),
        Arc::new(SystemHost::new()),
        audit,
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apikeyd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Keys of an earlier boot, or of sessions that ended while the daemon
    // was down, die before the first request is answered (S5).
    svc.sweep_session_keys();
    let code = runtime.block_on(serve(svc.clone()));
    // Calls still running on the blocking pool get a moment to finish;
    // one stuck in NSS must not keep the last-used times and the audit
    // lines from being written before systemd's stop timeout kills us.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    if let Err(e) = svc.flush_usage() {
        eprintln!("apikeyd: could not write last-used times: {e}");
    }
    // Every audit line logged so far reaches syslog before the exit,
    // unless syslog takes nothing for a while.
    if !svc.flush_audit() {
        eprintln!("apikeyd: syslog took no audit lines for a while; some may be lost");
    }
    code
}

async fn serve(svc: Arc<KeyService>) -> ExitCode {
    let conn = match connect(svc.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apikeyd: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    eprintln!("apikeyd: serving {BUS_NAME} on {OBJECT_PATH}");
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
            _ = tick.tick() => {
                let svc = svc.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = svc.flush_usage() {
                        eprintln!("apikeyd: could not write last-used times: {e}");
                    }
                    svc.log_throttle_summaries();
                    svc.sweep_session_keys();
                }).await;
            }
        }
    }
    // Stop taking calls before the final write of buffered state.
    let _ = conn.release_name(BUS_NAME).await;
    ExitCode::SUCCESS
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
    conn.object_server()
        .at(OBJECT_PATH, Keys1::new(svc, dbus))
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
    Ok(conn)
}
