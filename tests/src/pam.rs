//! PAM service files in a directory of the test's own, seen by libpam as
//! /etc/pam.d only inside a private mount namespace (bwrap): the
//! machine's /etc/pam.d is never touched, and nothing outlives the
//! process that needs it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{bins, tmp};

pub struct PamServices {
    dir: TempDir,
}

impl PamServices {
    pub fn new() -> PamServices {
        let dir = tmp::temp_dir("pamd");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod pam.d dir");
        PamServices { dir }
    }

    /// Writes /etc/pam.d/`service` as the services will see it.
    pub fn add(&self, service: &str, text: &str) -> &PamServices {
        let path = self.dir.path().join(service);
        std::fs::write(&path, text).expect("write PAM service file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `bwrap` arguments that run a program with this directory as
    /// /etc/pam.d; put the program and its arguments after them.
    pub fn bwrap_args(&self) -> Vec<String> {
        // --dev-bind: a plain --bind remounts /dev nodev, and programs that
        // open /dev/null (sshd) then fail.
        vec![
            "--dev-bind".into(),
            "/".into(),
            "/".into(),
            "--bind".into(),
            self.dir.path().display().to_string(),
            "/etc/pam.d".into(),
            "--".into(),
        ]
    }
}

impl Default for PamServices {
    fn default() -> Self {
        PamServices::new()
    }
}

/// The module as built (`target/debug/libpam_apikey.so`), named by its
/// full path in service files so nothing is installed system-wide.
pub fn module_path() -> PathBuf {
    bins::binary("libpam_apikey.so")
}

/// `/path/to/libpam_apikey.so bus=... daemon_user=root` plus `extra`:
/// the module arguments a test stack uses against a private bus and a
/// daemon running as root.
pub fn module(bus_address: &str, extra: &str) -> String {
    format!(
        "{} bus={bus_address} daemon_user=root {extra}",
        module_path().display()
    )
    .trim_end()
    .to_string()
}

/// The stack docs/pam.md recommends for sshd and vsftpd: a good key ends
/// authentication, a refused key ends the attempt, any other password goes
/// on to pam_unix without a second prompt; the account step re-checks the
/// key and the session is registered. `module` is a [`module`] line.
pub fn key_or_password_stack(module: &str) -> String {
    format!(
        "auth [success=done ignore=ignore default=die] {module}\n\
         auth required pam_unix.so try_first_pass\n\
         account required pam_unix.so\n\
         account required {module}\n\
         session optional {module}\n"
    )
}
