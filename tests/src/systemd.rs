//! A Debian 12 machine with systemd as PID 1, booted with systemd-nspawn
//! from the root file system `tests/systemd-root.sh` prepares (`make
//! test-deps`), for the tests of the package as an administrator installs
//! it: the real unit, its sandbox, bus activation, journald, logind, sshd.
//!
//! Each machine boots a copy of that root in a temp dir, in a network
//! namespace of its own with only a loopback interface (nothing it does
//! can reach another address), and is powered off and deleted on drop.
//! This machine has no systemd as PID 1: nspawn runs with
//! `--register=no --keep-unit`, from the unpacked tools folder.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{bins, skip, tmp};

/// `target/systemd`, or `APIKEY_SYSTEMD_DIR` as the script was given it.
pub fn systemd_dir() -> PathBuf {
    std::env::var_os("APIKEY_SYSTEMD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| bins::workspace_root().join("target/systemd"))
}

fn nspawn() -> PathBuf {
    systemd_dir().join("tools/usr/bin/systemd-nspawn")
}

/// Why no machine can be booted here, if so.
pub fn unmet() -> Option<String> {
    let root = systemd_dir().join("root/.apikey-stamp");
    if !root.exists() || !nspawn().exists() {
        return Some(format!(
            "needs the systemd root file system and nspawn in {} (run `make test-deps`)",
            systemd_dir().display()
        ));
    }
    None
}

/// One booted (or powered off) copy of the root file system.
pub struct Machine {
    dir: TempDir,
    name: String,
    binds: Vec<(PathBuf, String)>,
    nspawn: Option<Child>,
    init_pid: u32,
}

/// What a command inside printed, and how it ended.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn transcript(&self) -> String {
        format!("{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

impl Machine {
    /// A fresh copy of the root, with `binds` (host path, path inside)
    /// mounted read-only at every boot. Not booted yet.
    pub fn new(name: &str, binds: &[(&Path, &str)]) -> Machine {
        let dir = tmp::temp_dir("machine");
        let root = dir.path().join("root");
        let out = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(systemd_dir().join("root"))
            .arg(&root)
            .output()
            .expect("run cp");
        assert!(
            out.status.success(),
            "copy the root file system: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Machine {
            name: format!("{name}-{}", std::process::id()),
            binds: binds
                .iter()
                .map(|(h, c)| (h.to_path_buf(), c.to_string()))
                .collect(),
            dir,
            nspawn: None,
            init_pid: 0,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn console_log(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// The console output of every boot so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.console_log()).unwrap_or_default()
    }

    /// Boots the copy and waits until systemd has finished starting up
    /// (`is-system-running` says running or degraded).
    pub fn boot(&mut self) {
        assert!(self.nspawn.is_none(), "already booted");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_log())
            .unwrap();
        let tools = systemd_dir().join("tools");
        let mut cmd = Command::new(nspawn());
        cmd.args(["-b", "--register=no", "--keep-unit", "--private-network"])
            .args(["--console=read-only", "--quiet"])
            .arg("-D")
            .arg(self.root())
            .arg("-M")
            .arg(&self.name);
        for (host, inside) in &self.binds {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        cmd.env(
            "LD_LIBRARY_PATH",
            tools.join("usr/lib/x86_64-linux-gnu/systemd"),
        )
        .env("SYSTEMD_COLORS", "0")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        // SAFETY: prctl is async-signal-safe. The machine goes down with
        // the test process, however that ends.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start systemd-nspawn");
        let pid = child.id();
        self.nspawn = Some(child);
        self.init_pid = self.wait_for_init(pid);
        // systemctl needs the manager's socket, which comes a moment
        // after PID 1 does.
        let ready = self.sh(
            "for _ in $(seq 300); do [ -S /run/systemd/private ] && break; sleep 0.1; done; \
             timeout 90 systemctl is-system-running --wait || true",
        );
        let state = ready.stdout.trim().to_string();
        assert!(
            state == "running" || state == "degraded",
            "the machine did not finish booting ({state}):\n{}\n{}",
            ready.transcript(),
            self.console()
        );
    }

    /// The container's PID 1 as seen from here: nspawn's child, once it
    /// has become systemd.
    fn wait_for_init(&mut self, nspawn_pid: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.nspawn.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "systemd-nspawn ended at once ({status}):\n{}",
                    self.console()
                );
            }
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                    .unwrap_or_default();
            for child in children.split_whitespace() {
                let comm =
                    std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return child.parse().unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the machine's init did not start:\n{}", self.console());
    }

    /// Runs a shell script inside, as root, in every namespace of the
    /// machine (outside any login session), with `args` as $1...
    pub fn sh_args(&self, script: &str, args: &[&str]) -> Run {
        assert!(self.init_pid != 0, "not booted");
        let out = Command::new(skip::program("nsenter"))
            .arg("-t")
            .arg(self.init_pid.to_string())
            .args(["-m", "-u", "-i", "-n", "-p", "-C", "--"])
            .args(["/usr/bin/env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "DEBIAN_FRONTEND=noninteractive",
                "SYSTEMD_COLORS=0",
                "SYSTEMD_PAGER=",
                "HOME=/root",
            ])
            .args(["/bin/sh", "-euc", script, "sh"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter");
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn sh(&self, script: &str) -> Run {
        self.sh_args(script, &[])
    }

    /// Waits for nspawn to end after the machine powered off or rebooted
    /// itself (`systemctl reboot` ends nspawn with 133).
    pub fn wait_down(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.nspawn.take().expect("not booted");
        self.init_pid = 0;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the machine did not go down:\n{}", self.console());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reboots: the same disk, a new boot (new boot id, no old processes).
    pub fn reboot(&mut self) {
        // The reboot request ends nsenter's process too; its status says
        // nothing.
        let _ = self.sh("systemctl reboot");
        let status = self.wait_down(Duration::from_secs(60));
        assert_eq!(
            status.code(),
            Some(133),
            "nspawn should end with 133 on a reboot:\n{}",
            self.console()
        );
        self.boot();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            // SIGTERM asks nspawn for an orderly power-off; SIGKILL if
            // that hangs.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Read-only bind mounts are gone with nspawn; what is left is
        // plain files, some of them read-only directories.
        let _ = Command::new("rm")
            .arg("-rf")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}
