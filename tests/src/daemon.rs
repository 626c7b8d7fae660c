//! The real `apikeyd`, started as root on a private bus with a config file
//! and a database of its own.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use apikey_proto::names::BUS_NAME;
use tempfile::TempDir;

use crate::bus::{self, PrivateBus};
use crate::syslog::LogSink;
use crate::{bins, tmp};

/// How long the daemon may take to own its name, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Failure throttling limits (`[throttle]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub free_failures: u32,
    pub max_delay: String,
    pub forget_after: String,
}

/// The daemon's configuration file, and how the daemon is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where the store goes (passed as `--database`). `None`: `keys.db` in
    /// the daemon's own temp dir, so that each daemon has its own.
    pub database: Option<PathBuf>,
    pub admin_groups: Vec<String>,
    pub key_services: Vec<String>,
    pub allow_system_accounts: Vec<String>,
    pub max_keys_per_user: u32,
    pub session_key_max_lifetime: String,
    /// `None`: [`Daemon::start`] binds a [`LogSink`] of its own and points
    /// the daemon at it. A path that does not exist tests the stderr
    /// fallback.
    pub syslog_socket: Option<PathBuf>,
    pub min_free_disk_mb: u64,
    pub throttle: Throttle,
    /// Group name → service patterns, in file order.
    pub verifier_groups: Vec<(String, Vec<String>)>,
    /// Raw TOML appended to the top-level keys, for tests of how the
    /// daemon treats a bad file (unknown key, wrong type).
    pub extra_toml: String,
    /// The whole configuration file, written as it is instead of the
    /// fields above: for files the fields cannot express (a known key with
    /// a value of the wrong type).
    pub file_text: Option<String>,
    /// A command that starts the daemon: `wrapper[0] wrapper[1..] apikeyd
    /// ARGS`. Empty: apikeyd is started directly. The wrapper must end by
    /// exec'ing its arguments, so that the child's pid is the daemon's.
    /// See [`tmpfs_wrapper`].
    pub wrapper: Vec<String>,
    /// Extra environment of the daemon process (it otherwise gets only
    /// PATH, LANG, RUST_BACKTRACE and the bus address), e.g.
    /// `APIKEYD_TEST_BOOT_ID`, which debug builds take as the boot id.
    /// Takes effect at the next start or restart.
    pub env: Vec<(String, String)>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            database: None,
            admin_groups: vec!["apikey-admin".into()],
            key_services: vec!["sshd*".into(), "vsftpd*".into(), "nginx*".into()],
            allow_system_accounts: Vec::new(),
            max_keys_per_user: 100,
            session_key_max_lifetime: "12h".into(),
            syslog_socket: None,
            min_free_disk_mb: 64,
            throttle: Throttle {
                free_failures: 10,
                max_delay: "2s".into(),
                forget_after: "15m".into(),
            },
            verifier_groups: vec![("apikey-auth".into(), vec!["nginx*".into()])],
            extra_toml: String::new(),
            file_text: None,
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A [`DaemonConfig::wrapper`] that gives the daemon a tmpfs of `size`
/// (e.g. "4m", mode 0700) mounted on `dir`, in a mount namespace of its
/// own: the mount exists only for the daemon and vanishes with it, so a
/// test killed halfway leaves no mount behind. `dir` must exist; the test
/// reaches the tmpfs through `/proc/<daemon pid>/root/<dir>`. Each start
/// gets a fresh, empty tmpfs: a restart loses the store.
pub fn tmpfs_wrapper(dir: &Path, size: &str) -> Vec<String> {
    mount_namespace_wrapper(
        r#"mount -t tmpfs -o "size=$1,mode=0700" apikey-test "$2" && shift 2 && exec "$@""#,
        &[size.into(), dir.to_string_lossy().into_owned()],
    )
}

/// A [`DaemonConfig::wrapper`] that runs the shell `script` with `args`
/// (then the daemon's command line) in a mount namespace of its own;
/// the script mounts and ends by exec'ing what follows its arguments.
pub fn mount_namespace_wrapper(script: &str, args: &[String]) -> Vec<String> {
    let mut wrapper = vec![
        crate::skip::program("unshare")
            .to_string_lossy()
            .into_owned(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ];
    wrapper.extend_from_slice(args);
    wrapper
}

impl DaemonConfig {
    /// The file's text; tables come last, as TOML requires.
    pub fn to_toml(&self, database: &Path, syslog_socket: &Path, pam_socket: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "database = {}", quote(&database.to_string_lossy()));
        let _ = writeln!(s, "admin_groups = {}", list(&self.admin_groups));
        let _ = writeln!(s, "key_services = {}", list(&self.key_services));
        let _ = writeln!(
            s,
            "allow_system_accounts = {}",
            list(&self.allow_system_accounts)
        );
        let _ = writeln!(s, "max_keys_per_user = {}", self.max_keys_per_user);
        let _ = writeln!(
            s,
            "session_key_max_lifetime = {}",
            quote(&self.session_key_max_lifetime)
        );
        let _ = writeln!(
            s,
            "syslog_socket = {}",
            quote(&syslog_socket.to_string_lossy())
        );
        let _ = writeln!(s, "min_free_disk_mb = {}", self.min_free_disk_mb);
        // The test reads its daemon's lines from its own syslog socket:
        // none may go to this machine's journal instead.
        if !self.extra_toml.contains("journal_socket") {
            let _ = writeln!(s, "journal_socket = \"\"");
        }
        if !self.extra_toml.contains("pam_socket") {
            let _ = writeln!(s, "pam_socket = {}", quote(&pam_socket.to_string_lossy()));
        }
        if !self.extra_toml.is_empty() {
            let _ = writeln!(s, "{}", self.extra_toml.trim_end());
        }
        let _ = writeln!(s, "\n[throttle]");
        let _ = writeln!(s, "free_failures = {}", self.throttle.free_failures);
        let _ = writeln!(s, "max_delay = {}", quote(&self.throttle.max_delay));
        let _ = writeln!(s, "forget_after = {}", quote(&self.throttle.forget_after));
        let _ = writeln!(s, "\n[verifier_groups]");
        for (group, services) in &self.verifier_groups {
            let _ = writeln!(s, "{} = {}", quote(group), list(services));
        }
        s
    }
}

/// A `Vm*:` field of /proc/PID/status (`VmRSS:`, `VmHWM:`), in KiB.
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// `text` with `line` added as a top-level key: before the first table,
/// or at the end.
fn with_top_level_key(text: &str, line: &str) -> String {
    let mut out = String::new();
    let mut added = false;
    for l in text.lines() {
        if !added && l.trim_start().starts_with('[') {
            out.push_str(line);
            out.push('\n');
            added = true;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !added {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", inner.join(", "))
}

/// Why the daemon did not come up.
#[derive(Debug)]
pub struct StartError {
    /// Exit status, if it exited; `None` if it ran but never owned its name.
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(st) => write!(f, "apikeyd exited early ({st})")?,
            None => write!(f, "apikeyd did not own {BUS_NAME} within {START_TIMEOUT:?}")?,
        }
        write!(f, "; its stderr:\n{}", self.stderr)
    }
}

/// A running `apikeyd`, killed on drop. Its files (config, database,
/// stderr, own log socket) live in a temp dir and survive restarts.
pub struct Daemon {
    child: Option<Child>,
    bus_address: String,
    config: DaemonConfig,
    config_path: PathBuf,
    db_path: PathBuf,
    stderr_path: PathBuf,
    own_log: Option<LogSink>,
    dir: TempDir,
    /// The PAM socket's directory: apart from `dir`, which is private,
    /// because workers of other users (nginx) connect to the socket.
    socket_dir: TempDir,
    /// With `APIKEY_TEST_STORE=postgresql`: the fleet database this daemon
    /// keeps its keys in, as the issuer host of a fleet of one. Dropped
    /// after the daemon (fields drop in order).
    fleet: Option<crate::fleet::Cluster>,
}

/// Set to `postgresql`, every daemon the harness starts without a
/// configuration of its own is a fleet host on a database of its own, so
/// that the suite's tests run against that backend too.
pub const STORE_ENV: &str = "APIKEY_TEST_STORE";

fn fleet_backend_wanted(config: &DaemonConfig) -> bool {
    std::env::var(STORE_ENV).as_deref() == Ok("postgresql")
        && config.file_text.is_none()
        && !config.extra_toml.contains("[fleet]")
}

impl Daemon {
    /// Starts the daemon and waits until it owns `org.apikey.Keys1`;
    /// panics with its stderr if it does not.
    pub fn start(bus: &PrivateBus, config: &DaemonConfig) -> Daemon {
        Daemon::try_start(bus, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`start`](Self::start), for tests that expect a refusal (a
    /// bad config file): the error carries the exit status and stderr.
    pub fn try_start(bus: &PrivateBus, config: &DaemonConfig) -> Result<Daemon, StartError> {
        let binary = bins::apikeyd();
        let dir = tmp::temp_dir("daemon");
        let mut daemon = Daemon {
            child: None,
            bus_address: bus.address().to_string(),
            config: config.clone(),
            config_path: dir.path().join("apikeyd.toml"),
            db_path: config
                .database
                .clone()
                .unwrap_or_else(|| dir.path().join("keys.db")),
            stderr_path: dir.path().join("apikeyd.stderr"),
            own_log: None,
            dir,
            socket_dir: {
                let d = tmp::temp_dir("pamsock");
                std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
                    .expect("chmod the PAM socket's directory");
                d
            },
            fleet: fleet_backend_wanted(config).then(crate::fleet::fleet_cluster),
        };
        daemon.write_config();
        daemon.spawn(&binary)?;
        Ok(daemon)
    }

    fn write_config(&mut self) {
        let syslog = match &self.config.syslog_socket {
            Some(path) => path.clone(),
            None => self
                .own_log
                .get_or_insert_with(|| LogSink::bind(self.dir.path()))
                .path()
                .to_path_buf(),
        };
        let socket = self.pam_socket();
        let text = match &self.config.file_text {
            // Never the system's /run/apikey: a whole file given as it is
            // gets the test's socket unless it names one, after its
            // top-level keys, so their line numbers stay as written.
            Some(text) if !text.contains("pam_socket") => with_top_level_key(
                text,
                &format!("pam_socket = {}", quote(&socket.to_string_lossy())),
            ),
            Some(text) => text.clone(),
            None => self.config.to_toml(&self.db_path, &syslog, &socket),
        };
        let text = match &self.fleet {
            Some(cluster) => format!(
                "{text}\n{}",
                crate::fleet::fleet_toml(cluster, crate::fleet::HOST_A, "2s")
            ),
            None => text,
        };
        std::fs::write(&self.config_path, text).expect("write apikeyd.toml");
    }

    fn spawn(&mut self, binary: &Path) -> Result<(), StartError> {
        // Appended to across restarts, so a test sees the whole history.
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("open apikeyd.stderr");
        let mut cmd = match self.config.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("--database")
            .arg(&self.db_path)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .env("RUST_BACKTRACE", "1")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup stderr file"))
            .stderr(stderr);
        // SAFETY: die_with_parent only calls prctl.
        unsafe {
            cmd.pre_exec(bus::die_with_parent);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        self.child = Some(child);
        self.wait_until_owned()
    }

    /// Polls NameHasOwner until the daemon owns its name, or fails with
    /// its stderr once it has exited or the time is up.
    fn wait_until_owned(&mut self) -> Result<(), StartError> {
        let address = self.bus_address.clone();
        let child = self.child.as_mut().expect("spawned");
        let outcome = bus::block_on_fresh(move || async move {
            let deadline = Instant::now() + START_TIMEOUT;
            let conn = bus::connect(&address).await.ok();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Some(status));
                }
                if let Some(conn) = &conn {
                    if bus::name_has_owner(conn, BUS_NAME).await.unwrap_or(false) {
                        return Ok(());
                    }
                }
                if Instant::now() >= deadline {
                    return Err(None);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        outcome.map_err(|status| {
            if status.is_none() {
                self.kill9();
            }
            self.child = None;
            StartError {
                status,
                stderr: self.stderr_text(),
            }
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("apikeyd is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 10 s, and a panic:
    /// a daemon that ignores SIGTERM is a bug).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("apikeyd is not running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for apikeyd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "apikeyd ignored SIGTERM for {STOP_TIMEOUT:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts again with the same files.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let binary = bins::apikeyd();
        self.spawn(&binary).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Rewrites the config file and restarts.
    pub fn reconfigure(&mut self, config: &DaemonConfig) {
        self.config = config.clone();
        if let Some(db) = &config.database {
            self.db_path = db.clone();
        }
        self.write_config();
        self.restart();
    }

    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Where the daemon serves pam_apikey's login calls.
    pub fn pam_socket(&self) -> PathBuf {
        self.socket_dir.path().join("pam.sock")
    }

    /// The bus the daemon serves.
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// The fleet database this daemon uses (`APIKEY_TEST_STORE`), if any.
    pub fn fleet_cluster(&self) -> Option<&crate::fleet::Cluster> {
        self.fleet.as_ref()
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The sink the daemon logs to when the config named no socket.
    pub fn log(&self) -> Option<&LogSink> {
        self.own_log.as_ref()
    }

    /// Everything the daemon wrote to stdout and stderr, across restarts.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The store, read-only, for checks such as "no token in the file".
    /// Under a [`DaemonConfig::wrapper`] that mounts something over the
    /// store's directory this is the file outside the daemon's mount.
    pub fn open_db_readonly(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            &self.db_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap_or_else(|e| panic!("open {}: {e}", self.db_path.display()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_key_with_tables_last() {
        let text = DaemonConfig::default().to_toml(
            Path::new("/d/keys.db"),
            Path::new("/d/l"),
            Path::new("/d/pam.sock"),
        );
        let expected = "\
database = \"/d/keys.db\"
admin_groups = [\"apikey-admin\"]
key_services = [\"sshd*\", \"vsftpd*\", \"nginx*\"]
allow_system_accounts = []
max_keys_per_user = 100
session_key_max_lifetime = \"12h\"
syslog_socket = \"/d/l\"
min_free_disk_mb = 64
journal_socket = \"\"
pam_socket = \"/d/pam.sock\"

[throttle]
free_failures = 10
max_delay = \"2s\"
forget_after = \"15m\"

[verifier_groups]
\"apikey-auth\" = [\"nginx*\"]
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_key_is_added_before_the_first_table_or_at_the_end() {
        assert_eq!(
            with_top_level_key("a = 1\n[t]\nb = 2\n", "k = 3"),
            "a = 1\nk = 3\n[t]\nb = 2\n"
        );
        assert_eq!(with_top_level_key("a = 1\n", "k = 3"), "a = 1\nk = 3\n");
    }

    #[test]
    fn quotes_what_toml_needs_quoted() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
