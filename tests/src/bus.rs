//! A private, system-like D-Bus daemon per test.
//!
//! Every test gets its own bus in its own directory, so tests can run in
//! parallel and none touches the machine's system bus. Clients find it via
//! `DBUS_SYSTEM_BUS_ADDRESS`, which zbus and libdbus both honour.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::{skip, tmp};

/// How long a freshly started dbus-daemon may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`PrivateBus::start_with`].
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Let root own `org.apikey.Keys1` and everyone call it. The tests of
    /// the daemon's own checks want this; the tests of the packaged policy
    /// turn it off and add the packaged file to `policy_files`.
    pub permissive: bool,
    /// Extra policy files, copied into the bus's `system.d` directory.
    pub policy_files: Vec<PathBuf>,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            permissive: true,
            policy_files: Vec::new(),
        }
    }
}

/// A running `dbus-daemon`, killed and reaped on drop.
pub struct PrivateBus {
    child: Child,
    address: String,
    socket: PathBuf,
    conf: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl PrivateBus {
    /// A bus with the permissive test policy.
    pub fn start() -> PrivateBus {
        PrivateBus::start_with(&BusOptions::default())
    }

    pub fn start_with(options: &BusOptions) -> PrivateBus {
        let dir = tmp::temp_dir("bus");
        // tempfile makes 0700; unprivileged clients must traverse it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod bus dir");
        let socket = dir.path().join("bus.sock");
        let policy_dir = dir.path().join("system.d");
        std::fs::create_dir(&policy_dir).expect("create system.d");
        for file in &options.policy_files {
            let name = file.file_name().expect("policy file has a name");
            std::fs::copy(file, policy_dir.join(name))
                .unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
        }
        let conf = dir.path().join("bus.conf");
        std::fs::write(&conf, bus_config(&socket, &policy_dir, options.permissive))
            .expect("write bus.conf");
        let log_path = dir.path().join("dbus-daemon.log");
        let (child, printed) = spawn_bus(&conf, &log_path);
        // The address clients get names the socket only: the GUID the bus
        // printed changes when it restarts (restart_on_same_socket), and a
        // client holding the old one would refuse the new bus.
        let address = match printed.split_once(",guid=") {
            Some((path, _)) => path.to_string(),
            None => printed,
        };
        PrivateBus {
            child,
            address,
            socket,
            conf,
            log_path,
            dir,
        }
    }

    /// Kills dbus-daemon with SIGKILL, as a crash would, and starts a new
    /// one on the same socket and configuration. Every connection is lost.
    pub fn restart_on_same_socket(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, _) = spawn_bus(&self.conf, &self.log_path);
        self.child = child;
    }

    /// Kills dbus-daemon with SIGKILL and leaves it down.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The address clients use, e.g. `unix:path=/tmp/apikey-bus-x/bus.sock,guid=...`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What dbus-daemon printed (policy warnings, config errors).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A new connection to this bus as the test process (root).
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        connect(&self.address).await
    }

    /// org.freedesktop.DBus.GetId, from a fresh connection.
    pub fn get_id(&self) -> zbus::Result<String> {
        let address = self.address.clone();
        block_on_fresh(move || async move {
            let conn = connect(&address).await?;
            let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
            Ok(dbus.get_id().await?.to_string())
        })
    }

    /// org.freedesktop.DBus.NameHasOwner, from a fresh connection.
    pub fn name_has_owner(&self, name: &str) -> zbus::Result<bool> {
        let address = self.address.clone();
        let name = name.to_string();
        block_on_fresh(move || async move {
            let conn = connect(&address).await?;
            name_has_owner(&conn, &name).await
        })
    }
}

/// Starts dbus-daemon on `conf`, appending its output to `log_path`;
/// returns it with the address it printed once it listens.
fn spawn_bus(conf: &Path, log_path: &Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open dbus-daemon.log");

    let (reader, writer) = std::io::pipe().expect("pipe");
    let writer_fd = writer.as_raw_fd();
    let mut cmd = Command::new(skip::program("dbus-daemon"));
    cmd.arg(format!("--config-file={}", conf.display()))
        .arg("--nofork")
        .arg("--print-address=3")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if writer_fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(writer_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            die_with_parent()
        });
    }
    let mut child = cmd.spawn().expect("spawn dbus-daemon");
    // Our copy must go, or the read below never sees EOF if the
    // daemon dies before printing.
    drop(writer);

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(reader).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) if !line.trim().is_empty() => (child, line.trim().to_string()),
        outcome => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dbus-daemon did not start ({}):\n{}",
                if outcome.is_err() {
                    "timed out"
                } else {
                    "exited"
                },
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to the bus at `address` as the calling process.
pub async fn connect(address: &str) -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::address(address).build().await
}

pub async fn name_has_owner(conn: &zbus::Connection, name: &str) -> zbus::Result<bool> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let name = zbus::names::BusName::try_from(name)?;
    Ok(dbus.name_has_owner(name).await?)
}

/// Runs a future to completion on a runtime of its own, on a thread of its
/// own, so the synchronous helpers work from plain `#[test]`s and from
/// inside an async context alike. Connections made there die with it.
pub fn block_on_fresh<T, Fut, Make>(make: Make) -> T
where
    T: Send,
    Fut: Future<Output = T>,
    Make: FnOnce() -> Fut + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(make())
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// In a child between fork and exec: die with the test process instead of
/// lingering when the test is killed (e.g. by a timeout) before its Drop
/// impls run. The signal follows the forking *thread*, which is the test's
/// own thread for everything the harness starts.
pub(crate) fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl is async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A system-bus configuration like Debian's /usr/share/dbus-1/system.conf
/// (deny own, deny method calls, allow replies and signals), without
/// syslog, activation, a pid file or a user switch.
pub fn bus_config(socket: &Path, policy_dir: &Path, permissive: bool) -> String {
    let apikey_policy = if permissive {
        r#"
  <!-- Tests of the daemon's own caller checks: the bus lets them through. -->
  <policy user="root">
    <allow own="org.apikey.Keys1"/>
    <!-- Tests play logind, whose signals end session keys. -->
    <allow own="org.freedesktop.login1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.apikey.Keys1"/>
  </policy>
"#
    } else {
        ""
    };
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>

  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>

  <!-- dbus-monitor as root, for debugging a failing test. -->
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
{apikey_policy}
  <includedir>{policy_dir}</includedir>
</busconfig>
"#,
        socket = socket.display(),
        policy_dir = policy_dir.display(),
    )
}
