//! Real host services on 127.0.0.1: OpenSSH's `sshd`, `vsftpd` and
//! `nginx` with its PAM module, each with a config, port and temp dir of
//! its own, and a test's [`PamServices`] as its /etc/pam.d.
//!
//! Each service runs as `bwrap --die-with-parent --unshare-pid --dev-bind
//! / / --bind PAMDIR /etc/pam.d --bind DIR/var-log /var/log -- PROGRAM ...`:
//!
//! - the private mount namespace is what lets a test choose the PAM stack
//!   without touching the machine's /etc/pam.d, and keeps the login
//!   records services write under /var/log in the test's temp dir;
//! - `--dev-bind`, not `--bind`: bwrap mounts a plain bind `nodev`, and
//!   sshd cannot even open /dev/null there;
//! - the private pid namespace is how "kill everything" is made exact:
//!   when its first process dies the kernel kills every other one in it,
//!   so sshd's per-connection children, nginx's workers and vsftpd's
//!   session processes cannot outlive the launcher, whatever they fork.
//!
//! Ports are picked by binding 127.0.0.1:0 and letting go; another test
//! may grab the same one in between, so a start that loses the race is
//! retried on a new port, and a service counts as up only when the
//! listening socket is held by a process of its own sandbox.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::pam::PamServices;
use crate::users::TestUser;
use crate::{bins, bus, skip, tmp};

/// How long a service may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts lost to a port race before giving up.
const START_ATTEMPTS: usize = 5;

/// What every service here runs under, besides the service itself.
pub const SANDBOX_PROGRAM: &str = "bwrap";

/// The nginx module for `auth_pam` (Debian: libnginx-mod-http-auth-pam).
pub const NGINX_AUTH_PAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_auth_pam_module.so";

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The module line arguments for a service whose PAM stack runs in an
/// unprivileged process (nginx's workers): like [`crate::pam::module`],
/// but with a copy of the module in `dir` when the built one cannot be
/// read by other users (a checkout under a private directory).
pub fn module_for_workers(dir: &Path, daemon: &crate::daemon::Daemon, extra: &str) -> String {
    let built = crate::pam::module_path();
    let path = if bins::usable_by_others(&built) {
        built
    } else {
        let copy = dir.join("libpam_apikey.so");
        std::fs::copy(&built, &copy).expect("copy the PAM module for workers");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the module copy");
        copy
    };
    crate::pam::module_line(&path, daemon, extra)
}

/// What puts a service in its private mount and pid namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launcher {
    /// bwrap, as described at the top of this file.
    Bwrap,
    /// util-linux `unshare` and a bind mount made by `sh` inside the new
    /// mount namespace. bwrap always sets no_new_privs, so a set-uid
    /// program (su) run inside a login of that service never gains root;
    /// this launcher leaves that bit alone. The namespace's first process
    /// is the service itself (no bwrap reaper in between), and
    /// `--kill-child` takes it down with `unshare`.
    Unshare,
}

/// One sandboxed service process tree, killed and reaped on drop.
pub(crate) struct Sandbox {
    what: String,
    /// The outer bwrap, our child.
    child: Option<Child>,
    /// The first process of the private pid namespace: (pid, start time).
    init: Option<(u32, u64)>,
    log_path: PathBuf,
}

/// Why a start did not give a listening service.
enum StartFailure {
    /// Somebody else took the port first; try another.
    PortTaken,
    Other(String),
}

impl Sandbox {
    /// `dir` is the service's temp dir; its `var-log` becomes /var/log.
    /// `loginuid`: see [`spawn_with`](Self::spawn_with).
    pub(crate) fn spawn(
        what: &str,
        pam: &PamServices,
        dir: &Path,
        argv: &[OsString],
        log_path: &Path,
        loginuid: Option<u32>,
    ) -> Sandbox {
        Sandbox::spawn_with(Launcher::Bwrap, what, pam, dir, argv, log_path, loginuid)
    }

    /// `loginuid`: written to the launcher's `/proc/self/loginuid` before
    /// it runs, which starts a new audit session, as a login would.
    fn spawn_with(
        launcher: Launcher,
        what: &str,
        pam: &PamServices,
        dir: &Path,
        argv: &[OsString],
        log_path: &Path,
        loginuid: Option<u32>,
    ) -> Sandbox {
        let log = File::create(log_path).expect("create service log");
        // sshd appends every failed password login to /var/log/btmp (and
        // would write wtmp and lastlog for terminal sessions): the
        // machine's records are not the tests' to write.
        let var_log = dir.join("var-log");
        std::fs::create_dir_all(&var_log).expect("create private /var/log");
        let mut cmd = match launcher {
            Launcher::Bwrap => {
                let mut cmd = Command::new(skip::program(SANDBOX_PROGRAM));
                cmd.args(["--die-with-parent", "--unshare-pid", "--dev-bind", "/", "/"])
                    .arg("--bind")
                    .arg(pam.dir())
                    .arg("/etc/pam.d")
                    .arg("--bind")
                    .arg(&var_log)
                    .arg("/var/log")
                    .arg("--");
                cmd
            }
            Launcher::Unshare => {
                let mut cmd = Command::new(skip::program("unshare"));
                cmd.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--",
                    "/bin/sh",
                    "-c",
                    r#"mount --bind "$1" /etc/pam.d && mount --bind "$2" /var/log && shift 2 && exec "$@""#,
                    "sh",
                ])
                .arg(pam.dir())
                .arg(&var_log);
                cmd
            }
        };
        cmd.args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // SAFETY: die_with_parent only calls prctl.
        unsafe {
            cmd.pre_exec(bus::die_with_parent);
        }
        if let Some(uid) = loginuid {
            let text = uid.to_string().into_bytes();
            // SAFETY: only open/write/close on a buffer made before fork.
            unsafe {
                cmd.pre_exec(move || crate::run::write_loginuid(&text));
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bwrap for {what}: {e}"));
        Sandbox {
            what: what.to_string(),
            child: Some(child),
            init: None,
            log_path: log_path.to_path_buf(),
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until a process of this sandbox listens on 127.0.0.1:`port`.
    fn wait_listening(
        &mut self,
        port: u16,
        extra_log: &dyn Fn() -> String,
    ) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = format!("{}{}", self.log_text(), extra_log());
                let lower = log.to_lowercase();
                if lower.contains("address already in use") || lower.contains("could not bind") {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Other(format!(
                    "{} exited before listening ({status}); its log:\n{log}",
                    self.what
                )));
            }
            if self.init.is_none() {
                self.init = child_of(child.id());
            }
            if let Some((init, _)) = self.init {
                if listener_in_namespace_of(init, port) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Other(format!(
                    "{} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}; its log:\n{}{}",
                    self.what,
                    self.log_text(),
                    extra_log()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the namespace's first process, then reaps bwrap. Killing
    /// bwrap first would orphan that process, leaving it for init to reap.
    /// The kernel kills and reaps everything else in a pid namespace
    /// before its first process may exit, so once bwrap has reaped it,
    /// nothing of the service runs.
    fn kill(&mut self) {
        let init = self.init.take();
        if let Some((pid, start)) = init {
            if tmp::owner_alive(pid, start) {
                // SAFETY: plain kill(2) of a pid checked against its start time.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                // Not started far enough to have a first process, or
                // stuck: --die-with-parent takes the rest down with it.
                Ok(None) if init.is_none() || Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a service, retrying on a new port when another process took
/// the one picked; `launch(port)` spawns it.
pub(crate) fn start_on_free_port(
    what: &str,
    mut launch: impl FnMut(u16) -> Sandbox,
    extra_log: &dyn Fn() -> String,
) -> (Sandbox, u16) {
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let mut sandbox = launch(port);
        match sandbox.wait_listening(port, extra_log) {
            Ok(()) => return (sandbox, port),
            Err(StartFailure::PortTaken) => continue,
            Err(StartFailure::Other(message)) => panic!("{message}"),
        }
    }
    panic!("{what}: every port picked was taken by someone else ({START_ATTEMPTS} tries)");
}

/// The child of `parent`, with its start time.
fn child_of(parent: u32) -> Option<(u32, u64)> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            let start = fields.get(19)?.parse().ok()?;
            return Some((pid, start));
        }
    }
    None
}

/// True when a process in the pid namespace of `member` holds a socket
/// listening on 127.0.0.1:`port`.
fn listener_in_namespace_of(member: u32, port: u16) -> bool {
    let Some(inode) = listening_inode(port) else {
        return false;
    };
    let Ok(ns) = std::fs::read_link(format!("/proc/{member}/ns/pid")) else {
        return false;
    };
    let wanted = PathBuf::from(format!("socket:[{inode}]"));
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let dir = entry.path();
        let numeric = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        numeric
            && std::fs::read_link(dir.join("ns/pid")).is_ok_and(|n| n == ns)
            && std::fs::read_dir(dir.join("fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == wanted))
            })
    })
}

/// Inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn listening_inode(port: u16) -> Option<u64> {
    const LISTEN: &str = "0A";
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (addr, local_port) = fields.get(1)?.split_once(':')?;
        // The kernel prints the address as the in-memory (network order)
        // u32 read as a native integer, and the port in host order.
        let addr = Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.to_ne_bytes());
        let local_port = u16::from_str_radix(local_port, 16).ok()?;
        (addr == Ipv4Addr::LOCALHOST && local_port == port && *fields.get(3)? == LISTEN)
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// A temp dir other users may traverse (test users' clients and nginx's
/// workers reach files inside).
pub(crate) fn service_dir(kind: &str) -> TempDir {
    let dir = tmp::temp_dir(kind);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod service dir");
    dir
}

/// Where [`Sshd::authorize_key`] writes, under the sshd's directory.
const AUTHORIZED_KEYS_DIR: &str = "authorized_keys";

/// OpenSSH's sshd, whose PAM service is `service` (sshd takes it from
/// argv[0], so it runs through a symlink of that name).
pub struct Sshd {
    sandbox: Sandbox,
    port: u16,
    service: String,
    dir: TempDir,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 with password and keyboard-interactive
    /// authentication through PAM, public keys only for accounts given one
    /// with [`authorize_key`](Self::authorize_key), and no root.
    pub fn start(pam: &PamServices, service: &str) -> Sshd {
        Sshd::start_with(Launcher::Bwrap, pam, service)
    }

    /// Like [`start`](Self::start), but set-uid programs work inside its
    /// logins (`su` to another user within an ssh session): it runs under
    /// `unshare` instead of bwrap, which forbids gaining privileges. `pam`
    /// also serves those programs, e.g. a stack for `su`.
    pub fn start_allowing_setuid(pam: &PamServices, service: &str) -> Sshd {
        Sshd::start_with(Launcher::Unshare, pam, service)
    }

    fn start_with(launcher: Launcher, pam: &PamServices, service: &str) -> Sshd {
        let dir = service_dir("sshd");
        let host_key = dir.path().join("host_key");
        let out = Command::new(skip::program("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "apikey-test", "-f"])
            .arg(&host_key)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen");
        assert!(
            out.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The privilege-separation directory sshd insists on; Debian's
        // package creates it at boot, a container may not have it.
        if !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
            std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755))
                .expect("chmod /run/sshd");
        }
        let argv0 = dir.path().join(service);
        std::os::unix::fs::symlink(skip::program("sshd"), &argv0).expect("symlink sshd");
        let config = dir.path().join("sshd_config");
        let log = dir.path().join("sshd.log");
        let (sandbox, port) = start_on_free_port(
            "sshd",
            |port| {
                std::fs::write(&config, sshd_config(dir.path(), &host_key, port))
                    .expect("write sshd_config");
                // Absolute argv[0]: sshd re-executes itself through it.
                let argv: Vec<OsString> = vec![
                    argv0.clone().into(),
                    "-D".into(),
                    "-e".into(),
                    "-f".into(),
                    config.clone().into(),
                ];
                Sandbox::spawn_with(launcher, "sshd", pam, dir.path(), &argv, &log, None)
            },
            &String::new,
        );
        Sshd {
            sandbox,
            port,
            service: service.to_string(),
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PAM service name it uses.
    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's own log (LogLevel DEBUG3), for failure messages.
    pub fn log_text(&self) -> String {
        self.sandbox.log_text()
    }

    /// Lets `user` log in with the public key `public_key` (one line of
    /// `id_ed25519.pub`); the file is in the test's directory, never in
    /// the account's home.
    pub fn authorize_key(&self, user: &str, public_key: &str) {
        let dir = self.dir.path().join(AUTHORIZED_KEYS_DIR);
        std::fs::create_dir_all(&dir).expect("create authorized keys dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod authorized keys dir");
        let file = dir.join(user);
        std::fs::write(&file, public_key).expect("write authorized keys");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .expect("chmod authorized keys");
    }

    /// `ssh` arguments for `user@127.0.0.1 <command>` by public key only,
    /// with the private key in `identity`.
    pub fn ssh_publickey_args(&self, user: &str, identity: &Path, command: &[&str]) -> Vec<String> {
        let mut args = self.ssh_args("publickey", user, command);
        let at = args
            .iter()
            .position(|a| a == "PubkeyAuthentication=no")
            .expect("ssh_args turns public keys off");
        args[at] = "PubkeyAuthentication=yes".into();
        let extra = [
            "-o".to_string(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-i".into(),
            identity.display().to_string(),
        ];
        args.splice(1..1, extra);
        args
    }

    /// `ssh` arguments for `user@127.0.0.1 <command>` with one
    /// authentication method and no state written anywhere: for
    /// `sshpass -e ssh ...`, the password in `SSHPASS`.
    pub fn ssh_args(&self, method: &str, user: &str, command: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("PreferredAuthentications={method}"));
        args.push("-p".into());
        args.push(self.port.to_string());
        args.push(format!("{user}@127.0.0.1"));
        args.extend(command.iter().map(|s| s.to_string()));
        args
    }
}

fn sshd_config(dir: &Path, host_key: &Path, port: u16) -> String {
    format!(
        "\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {pid}
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication yes
PubkeyAuthentication yes
HostbasedAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
StrictModes no
UseDNS no
AuthorizedKeysFile {keys}/%u
PrintMotd no
PrintLastLog no
LoginGraceTime 60
LogLevel DEBUG3
",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        keys = dir.join(AUTHORIZED_KEYS_DIR).display(),
    )
}

/// vsftpd for local users, read-only, passive mode on 127.0.0.1.
pub struct Vsftpd {
    sandbox: Sandbox,
    port: u16,
    dir: TempDir,
}

impl Vsftpd {
    pub fn start(pam: &PamServices, service: &str) -> Vsftpd {
        let dir = service_dir("vsftpd");
        // vsftpd chroots its unprivileged helpers here: empty, root's.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("create secure_chroot_dir");
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755))
            .expect("chmod secure_chroot_dir");
        let config = dir.path().join("vsftpd.conf");
        let log = dir.path().join("vsftpd.stderr");
        let protocol_log = dir.path().join("vsftpd.log");
        let protocol_log_for_errors = protocol_log.clone();
        let extra_log =
            move || std::fs::read_to_string(&protocol_log_for_errors).unwrap_or_default();
        let (sandbox, port) = start_on_free_port(
            "vsftpd",
            |port| {
                // A failed attempt's "could not bind" must not be read
                // as the next attempt's.
                let _ = std::fs::remove_file(&protocol_log);
                std::fs::write(&config, vsftpd_config(service, port, &empty, &protocol_log))
                    .expect("write vsftpd.conf");
                let argv: Vec<OsString> =
                    vec![skip::program("vsftpd").into(), config.clone().into()];
                Sandbox::spawn("vsftpd", pam, dir.path(), &argv, &log, None)
            },
            &extra_log,
        );
        Vsftpd { sandbox, port, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// stderr and the protocol log (logins as `[user] OK LOGIN`).
    pub fn log_text(&self) -> String {
        format!(
            "{}{}",
            self.sandbox.log_text(),
            std::fs::read_to_string(self.dir.path().join("vsftpd.log")).unwrap_or_default()
        )
    }
}

fn vsftpd_config(service: &str, port: u16, empty: &Path, log: &Path) -> String {
    format!(
        "\
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
pam_service_name={service}
# Debian 12's seccomp sandbox kills the logged-in child (SIGSYS on
# newfstatat), with or without pam_apikey.
seccomp_sandbox=NO
anonymous_enable=NO
local_enable=YES
write_enable=NO
chroot_local_user=NO
secure_chroot_dir={empty}
pasv_enable=YES
pasv_address=127.0.0.1
# No fixed passive range: parallel servers would fight over it; any
# free port on 127.0.0.1 will do.
port_enable=NO
connect_from_port_20=NO
xferlog_enable=NO
vsftpd_log_file={log}
dual_log_enable=YES
log_ftp_protocol=YES
syslog_enable=NO
",
        empty = empty.display(),
        log = log.display(),
    )
}

/// nginx with `auth_pam` in front of everything; the response names the
/// user the client sent (`$remote_user`).
pub struct Nginx {
    sandbox: Sandbox,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    /// `worker` is the account nginx's workers run as, and so the account
    /// PAM (and pam_apikey's Verify) runs as.
    pub fn start(pam: &PamServices, service: &str, worker: &TestUser) -> Nginx {
        Nginx::start_with(pam, Some(service), worker)
    }

    /// Like [`start`](Self::start); `None` serves without `auth_pam`.
    pub fn start_with(pam: &PamServices, service: Option<&str>, worker: &TestUser) -> Nginx {
        let dir = service_dir("nginx");
        for sub in ["www", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create nginx dir");
            std::fs::set_permissions(dir.path().join(sub), std::fs::Permissions::from_mode(0o755))
                .expect("chmod nginx dir");
        }
        let config = dir.path().join("nginx.conf");
        let log = dir.path().join("nginx.stderr");
        let error_log = dir.path().join("error.log");
        let error_log_for_errors = error_log.clone();
        let extra_log = move || std::fs::read_to_string(&error_log_for_errors).unwrap_or_default();
        let (sandbox, port) = start_on_free_port(
            "nginx",
            |port| {
                let _ = std::fs::remove_file(&error_log);
                std::fs::write(
                    &config,
                    nginx_config(dir.path(), service, worker.name(), port),
                )
                .expect("write nginx.conf");
                let argv: Vec<OsString> = vec![
                    skip::program("nginx").into(),
                    "-p".into(),
                    dir.path().into(),
                    "-c".into(),
                    config.clone().into(),
                    // Before the config is read, errors go to the
                    // compiled-in /var/log/nginx/error.log otherwise.
                    "-e".into(),
                    error_log.clone().into(),
                ];
                Sandbox::spawn("nginx", pam, dir.path(), &argv, &log, None)
            },
            &extra_log,
        );
        Nginx { sandbox, port, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// stderr and error.log.
    pub fn log_text(&self) -> String {
        format!(
            "{}{}",
            self.sandbox.log_text(),
            std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
        )
    }
}

fn nginx_config(dir: &Path, service: Option<&str>, worker: &str, port: u16) -> String {
    let d = dir.display();
    let auth = match service {
        Some(service) => {
            format!("auth_pam \"apikey\";\n            auth_pam_service_name \"{service}\";")
        }
        None => "auth_pam off;".to_string(),
    };
    format!(
        r#"load_module {NGINX_AUTH_PAM_MODULE};
daemon off;
master_process on;
worker_processes 1;
user {worker};
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    root {d}/www;
    server {{
        listen 127.0.0.1:{port};
        # `return` runs in the rewrite phase, before auth_pam's access
        # phase, and would answer without asking for a password:
        # try_files runs after it, and the named location answers.
        location / {{
            {auth}
            try_files /.none @hello;
        }}
        location @hello {{
            default_type text/plain;
            return 200 "hello $remote_user\n";
        }}
    }}
}}
"#
    )
}
