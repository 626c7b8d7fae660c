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
