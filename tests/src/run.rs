//! Running the real `apikey` CLI, or any program, as a test user.
//!
//! How a test makes a "logged-in" process without a login: the kernel's
//! audit loginuid (`/proc/PID/loginuid`) is what the daemon reads to tell a
//! user's own login from su/sudo. It starts unset (4294967295) here, and a
//! process with CAP_AUDIT_CONTROL may write its own once; that write also
//! opens a new audit session (`/proc/PID/sessionid`), and both are inherited
//! across fork, exec and uid changes. So the child, still root between fork
//! and exec, writes the uid to `/proc/self/loginuid`, then execs
//! `setpriv --reuid --regid --init-groups` to become the user:
//!
//! - `As::user(&alice).logged_in()`: alice in her own login session;
//! - `As::user(&bob).logged_in_as(alice.uid())`: alice logged in, then
//!   became bob (su/sudo: impersonation);
//! - `As::user(&alice)`: alice, never logged in (cron, a service).
//!
//! A login's session hook also registers the session with the daemon as
//! opened by a password, the evidence keys are made on (S6); on a test's
//! bus `akt-login` does that in the new audit session before the rest
//! runs. `.unregistered()` leaves it out: a crontab's job, or a login
//! whose registration failed.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::users::TestUser;
use crate::{bins, skip};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Who a child runs as, and how. Build it, then [`run`](As::run) or
/// [`apikey`](As::apikey) as often as needed.
#[derive(Debug, Clone)]
pub struct As {
    /// `None`: stay root.
    target: Option<(u32, u32)>,
    user: String,
    home: PathBuf,
    loginuid: Option<u32>,
    /// Register the login session with the daemon (see the module comment).
    register: bool,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    bus_address: Option<String>,
    apikey_bin: Option<PathBuf>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    /// bwrap arguments giving the child a private /etc/pam.d.
    bwrap: Option<Vec<String>>,
}

impl As {
    pub fn user(user: &TestUser) -> As {
        As {
            target: Some((user.uid(), user.gid())),
            user: user.name().to_string(),
            home: user.home().to_path_buf(),
            ..As::root()
        }
    }

    pub fn root() -> As {
        As {
            target: None,
            user: "root".into(),
            home: PathBuf::from("/root"),
            loginuid: None,
            register: true,
            env: Vec::new(),
            stdin: None,
            bus_address: None,
            apikey_bin: None,
            cwd: None,
            timeout: DEFAULT_TIMEOUT,
            bwrap: None,
        }
    }

    /// The child starts a login session as `uid` before dropping to the
    /// user (see the module comment).
    pub fn logged_in_as(mut self, uid: u32) -> As {
        self.loginuid = Some(uid);
        self
    }

    /// Logged in as the user it runs as.
    pub fn logged_in(self) -> As {
        let uid = self.target.map_or(0, |(uid, _)| uid);
        self.logged_in_as(uid)
    }

    /// The login session is not registered with the daemon, as for a
    /// cron job or a login whose OpenSession failed.
    pub fn unregistered(mut self) -> As {
        self.register = false;
        self
    }

    /// Bytes on the child's stdin (closed after them); none means /dev/null.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> As {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> As {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus(mut self, address: &str) -> As {
        self.bus_address = Some(address.into());
        self
    }

    /// Which `apikey` binary [`apikey`](As::apikey) runs (default: the
    /// built one, see [`bins::apikey`]).
    pub fn apikey_bin(mut self, path: &Path) -> As {
        self.apikey_bin = Some(path.to_path_buf());
        self
    }

    /// Working directory (default: the user's home).
    pub fn cwd(mut self, dir: &Path) -> As {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// The child is killed, and the test fails, after this long.
    /// Runs the child with `services` as its /etc/pam.d (through bwrap,
    /// so only the child sees it).
    pub fn pam(mut self, services: &crate::pam::PamServices) -> As {
        self.bwrap = Some(services.bwrap_args());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> As {
        self.timeout = timeout;
        self
    }

    /// Runs the `apikey` CLI with `args`.
    pub fn apikey(&self, args: &[&str]) -> Output {
        let bin = self.apikey_bin.clone().unwrap_or_else(bins::apikey);
        self.run(&bin.to_string_lossy(), args)
    }

    /// The child's command line and environment, and how to describe it.
    fn command(&self, program: &str, args: &[&str]) -> (Command, String) {
        let program_path = if program.contains('/') {
            PathBuf::from(program)
        } else {
            skip::which(program).unwrap_or_else(|| panic!("program `{program}` not found"))
        };
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(bwrap) = &self.bwrap {
            argv.push(skip::program("bwrap").into());
            argv.extend(bwrap.iter().map(Into::into));
        }
        if let (Some(uid), true, Some(address)) = (self.loginuid, self.register, &self.bus_address)
        {
            argv.extend(register_login(address, uid));
        }
        if let Some((uid, gid)) = self.target {
            argv.extend(become_user(uid, gid));
        }
        argv.push(program_path.into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd.args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.home)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user)
            .env("LANG", "C")
            .current_dir(self.cwd.as_deref().unwrap_or(&self.home))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(address) = &self.bus_address {
            cmd.env("DBUS_SYSTEM_BUS_ADDRESS", address);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(uid) = self.loginuid {
            // Formatted before fork: no allocation between fork and exec.
            let text = uid.to_string().into_bytes();
            // SAFETY: open/write/close are async-signal-safe.
            unsafe {
                cmd.pre_exec(move || write_loginuid(&text));
            }
        }
        let description = format!(
            "{} as {}{}: {} {}",
            if self.target.is_some() {
                "setpriv"
            } else {
                "run"
            },
            self.user,
            self.loginuid
                .map(|u| format!(" (loginuid {u})"))
                .unwrap_or_default(),
            program,
            args.join(" ")
        );
        (cmd, description)
    }

    /// Starts `program` with piped standard input and output (standard
    /// error is inherited), for a conversation; the caller reaps it.
    pub fn spawn(&self, program: &str, args: &[&str]) -> std::process::Child {
        let (mut cmd, description) = self.command(program, args);
        cmd.stdin(Stdio::piped()).stderr(Stdio::inherit());
        cmd.spawn()
            .unwrap_or_else(|e| panic!("{description}: spawn failed: {e}"))
    }

    /// Runs `program` (a path, or a name looked up on PATH) with `args`.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let (mut cmd, description) = self.command(program, args);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{description}: spawn failed: {e}"));
        let pid = child.id();
        if let Some(bytes) = self.stdin.clone() {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            // A child that exits without reading gives EPIPE: not our error.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(self.timeout) {
            Ok(out) => out,
            Err(_) => {
                // SAFETY: plain kill(2) of our own, not yet reaped child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                let out = rx.recv().expect("waiter thread");
                let (stdout, stderr) = match &out {
                    Ok(o) => (
                        String::from_utf8_lossy(&o.stdout).into_owned(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    ),
                    Err(_) => Default::default(),
                };
                panic!(
                    "{description}: still running after {:?}, killed\nstdout:\n{stdout}\nstderr:\n{stderr}",
                    self.timeout
                );
            }
        };
        let out = out.unwrap_or_else(|e| panic!("{description}: wait failed: {e}"));
        let code = out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        Output {
            description,
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The argv prefix that runs the rest as `uid`:`gid` with the account's
/// supplementary groups, as a login would.
pub(crate) fn become_user(uid: u32, gid: u32) -> Vec<std::ffi::OsString> {
    vec![
        skip::program("setpriv").into(),
        format!("--reuid={uid}").into(),
        format!("--regid={gid}").into(),
        "--init-groups".into(),
        "--".into(),
    ]
}

/// The argv prefix that registers the login session of `loginuid` with
/// the daemon on `address` as opened by a password, then runs the rest.
pub(crate) fn register_login(address: &str, loginuid: u32) -> Vec<std::ffi::OsString> {
    vec![
        bins::akt_login().into(),
        address.into(),
        loginuid.to_string().into(),
        "password".into(),
    ]
}

pub(crate) fn write_loginuid(text: &[u8]) -> std::io::Result<()> {
    let path = c"/proc/self/loginuid";
    // SAFETY: raw syscalls on a constant path and a buffer made before fork.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, text.as_ptr().cast(), text.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != text.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// What a child did. Exit by signal N shows as code 128 + N, as in a shell.
#[derive(Debug, Clone)]
pub struct Output {
    pub description: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.code
    }

    /// Asserts exit 0, showing stdout and stderr otherwise.
    #[track_caller]
    pub fn ok(&self) -> &Output {
        self.assert_code(0)
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        if self.code != code {
            panic!(
                "{}\nexpected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
                self.description, self.code, self.stdout, self.stderr
            );
        }
        self
    }

    /// stdout without surrounding whitespace, e.g. a token printed alone.
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }

    /// stdout parsed as JSON (for `--json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.description, self.stdout, self.stderr
            )
        })
    }
}
