//! `pamtester` in a sandbox with the test's own /etc/pam.d and /dev/log,
//! and what its runs tell.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use apikey_tests::prelude::*;

/// pam_strerror texts of Linux-PAM 1.5 (C locale), as pamtester prints
/// them.
pub const AUTH_ERR: &str = "Authentication failure";
pub const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
pub const USER_UNKNOWN: &str = "User not known to the underlying authentication module";
pub const PAM_AUTHINFO_UNAVAIL: i64 = 9;

/// The module's failure delay (core::FAIL_DELAY_MICROS), and how far
/// libpam may stretch it: "randomly distributed (by up to 50%) about this
/// longest value" (pam_fail_delay(3)); pamtester sets no delay function,
/// so libpam sleeps that long itself before a failure returns.
pub const FAIL_DELAY: Duration = Duration::from_secs(2);
pub const LIBPAM_MAX_STRETCH: f64 = 1.5;

/// A key-shaped service name the default `key_services` allow.
pub const SSHD: &str = "sshd-akt";

/// `pamtester -v SERVICE USER OPS...` with a private /etc/pam.d (bwrap),
/// the user name as raw bytes and the password as raw stdin bytes. Each
/// run gets a /dev/log of its own, so what libpam, the module and pam_unix
/// log inside pamtester comes back with the run.
pub struct Pamtester<'a> {
    services: &'a PamServices,
    scratch: PathBuf,
    env: Vec<(String, String)>,
    /// PAM_RHOST, as a network service sets it (`-I rhost=`).
    rhost: Option<String>,
}

#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub code: i32,
    pub stderr: String,
    pub elapsed: Duration,
    /// Syslog lines from inside pamtester.
    pub log: Vec<String>,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "{}: expected success\n{}",
            self.what, self.stderr
        );
        self
    }

    /// A clean failure: pamtester itself ran to the end (no signal) and
    /// names the PAM error it got.
    #[track_caller]
    pub fn fails_with(&self, error: &str) -> &Run {
        assert_eq!(
            self.code, 1,
            "{}: expected pamtester to report a PAM error\n{}",
            self.what, self.stderr
        );
        assert!(
            self.stderr.contains(&format!("pamtester: {error}")),
            "{}: expected '{error}'\n{}",
            self.what,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn refused(&self) -> &Run {
        self.fails_with(AUTH_ERR)
    }

    /// The module refused a key itself, and the password never reached
    /// pam_unix (S10).
    #[track_caller]
    pub fn key_stopped_at_the_module(&self) -> &Run {
        assert!(
            self.module_logged("key refused"),
            "{}: the module did not refuse a key:\n{}",
            self.what,
            self.log.join("\n")
        );
        assert!(
            !self.pam_unix_ran(),
            "{}: a key-shaped password reached pam_unix:\n{}",
            self.what,
            self.log.join("\n")
        );
        self
    }

    /// The module let the password through to pam_unix, which refused it.
    #[track_caller]
    pub fn password_went_to_pam_unix(&self) -> &Run {
        assert!(
            self.pam_unix_ran() && !self.module_logged("key refused"),
            "{}: expected pam_unix, not the module, to judge this password:\n{}",
            self.what,
            self.log.join("\n")
        );
        self
    }

    pub fn module_logged(&self, needle: &str) -> bool {
        self.log
            .iter()
            .any(|l| l.contains("libpam_apikey(") && l.contains(needle))
    }

    /// pam_unix logs every refusal of its auth part ("authentication
    /// failure", "check pass; user unknown").
    pub fn pam_unix_ran(&self) -> bool {
        self.log
            .iter()
            .any(|l| l.contains("pam_unix(") && l.contains(":auth)"))
    }
}

impl<'a> Pamtester<'a> {
    pub fn new(services: &'a PamServices, scratch: &Path) -> Pamtester<'a> {
        Pamtester {
            services,
            scratch: scratch.to_path_buf(),
            env: Vec::new(),
            rhost: None,
        }
    }

    /// The login comes from `rhost`, as sshd or vsftpd would say.
    pub fn rhost(mut self, rhost: &str) -> Self {
        self.rhost = Some(rhost.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `authenticate` with `password` and a newline on stdin.
    pub fn login(&self, service: &str, user: &str, password: &str) -> Run {
        self.run(
            service,
            user.as_bytes(),
            &[password.as_bytes(), b"\n"].concat(),
            &["authenticate"],
        )
    }

    pub fn run(&self, service: &str, user: &[u8], stdin: &[u8], ops: &[&str]) -> Run {
        let log_dir = tempfile::Builder::new()
            .prefix("devlog-")
            .tempdir_in(&self.scratch)
            .expect("log dir");
        let sink = LogSink::bind(log_dir.path());
        let mut argv: Vec<OsString> = vec![
            "--die-with-parent".into(),
            "--bind".into(),
            "/".into(),
            "/".into(),
            "--bind".into(),
            self.services.dir().into(),
            "/etc/pam.d".into(),
            // A /dev of the sandbox's own: the mount point for the socket
            // is made there, not in the machine's /dev.
            "--dev".into(),
            "/dev".into(),
            "--bind".into(),
            sink.path().into(),
            "/dev/log".into(),
            "--".into(),
            apikey_tests::skip::program("pamtester").into(),
            "-v".into(),
        ];
        if let Some(rhost) = &self.rhost {
            argv.extend(["-I".into(), format!("rhost={rhost}").into()]);
        }
        argv.extend([service.into(), OsStr::from_bytes(user).into()]);
        argv.extend(ops.iter().map(OsString::from));
        let what = format!(
            "pamtester {service} {:?} {} ({} bytes on stdin)",
            String::from_utf8_lossy(user),
            ops.join(" "),
            stdin.len()
        );

        let mut cmd = Command::new(apikey_tests::skip::program("bwrap"));
        cmd.args(&argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn bwrap");
        let pid = child.id();
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let bytes = stdin.to_vec();
        // pamtester reads once and may exit with most of a long password
        // unread: EPIPE here is expected.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(out) => out.expect("wait for pamtester"),
            Err(_) => {
                // SAFETY: kill(2) of our own child, not yet reaped.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                let _ = rx.recv();
                panic!("{what}: still running after 30 s");
            }
        };
        let elapsed = started.elapsed();
        let code = out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        Run {
            what,
            code,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
            log: drain(&sink),
        }
    }
}

/// Everything sent to `sink` so far: a datagram of our own, once read,
/// comes after every earlier one (a Unix datagram socket keeps order).
pub fn drain(sink: &LogSink) -> Vec<String> {
    const MARK: &str = "akt-end-of-run";
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(MARK.as_bytes(), sink.path()))
        .expect("mark the log");
    sink.expect("end mark", |l| l == MARK, Duration::from_secs(10));
    sink.lines().into_iter().filter(|l| l != MARK).collect()
}

/// In a child between fork and exec: die with the test instead of
/// outliving it.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
