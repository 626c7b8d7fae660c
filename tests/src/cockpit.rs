//! The Cockpit web console serving the page built in `cockpit/dist`, and
//! Debian's Chromium driving it through playwright-core
//! (`cockpit/test/browser/drive.mjs`).
//!
//! cockpit-ws runs with `--local-session`: it serves the session of the
//! account it runs as without asking for a password (loopback, tests
//! only), from a process whose loginuid was written first, so that the
//! daemon sees a logged-in user, as after a real Cockpit login. It runs in
//! the services' sandbox ([`crate::services`]): the bridge's own session
//! bus and ssh-agent die with its pid namespace. The page's calls go
//! through the bridge to the test's bus (`DBUS_SYSTEM_BUS_ADDRESS`) as
//! that account's uid.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::bus::PrivateBus;
use crate::pam::PamServices;
use crate::run::{become_user, register_login};
use crate::services::{service_dir, start_on_free_port, Sandbox};
use crate::users::TestUser;
use crate::{bins, skip};

const COCKPIT_WS: &str = "/usr/lib/cockpit/cockpit-ws";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The shell: the menu and the frame pages are shown in.
const COCKPIT_SHELL: &str = "/usr/share/cockpit/shell/manifest.json";
/// How long one browser scenario may take, start of Chromium included.
const SCENARIO_TIMEOUT_SECS: u32 = 120;

/// The page as `make cockpit` builds it.
pub fn page_dir() -> PathBuf {
    bins::workspace_root().join("cockpit").join("dist")
}

fn driver() -> PathBuf {
    bins::workspace_root().join("cockpit/test/browser/drive.mjs")
}

fn playwright() -> PathBuf {
    bins::workspace_root().join("cockpit/node_modules/playwright-core")
}

/// Screenshots of each screen, kept after the run.
fn screenshot_dir() -> PathBuf {
    bins::workspace_root()
        .join("target")
        .join("cockpit-screens")
}

/// Why the Cockpit tests cannot run here, if they cannot.
pub(crate) fn unmet() -> Option<String> {
    for (path, package) in [
        (COCKPIT_WS, "cockpit-ws"),
        (COCKPIT_SHELL, "cockpit-system"),
        (CHROMIUM, "chromium"),
    ] {
        if !Path::new(path).exists() {
            return Some(format!("needs {path} (package {package}; make test-deps)"));
        }
    }
    // The bridge moved from /usr/bin to /usr/lib/cockpit in later releases.
    if !["/usr/bin/cockpit-bridge", "/usr/lib/cockpit/cockpit-bridge"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        return Some("needs cockpit-bridge (make test-deps)".into());
    }
    if let Some(why) = skip::unmet(&[skip::Need::Program("node")]) {
        return Some(why);
    }
    if !page_dir().join("manifest.json").exists() || !playwright().exists() {
        return Some(format!(
            "needs the built page in {} and playwright-core (run `make cockpit`)",
            page_dir().display()
        ));
    }
    None
}

/// cockpit-ws on 127.0.0.1 serving one account's web console session.
pub struct CockpitWs {
    sandbox: Sandbox,
    port: u16,
    _pam: PamServices,
    _dir: TempDir,
}

impl CockpitWs {
    /// The session of `user`, or root's when `None`.
    pub fn start(bus: &PrivateBus, user: Option<&TestUser>) -> CockpitWs {
        let dir = service_dir("cockpit");
        // Where the bridge looks for packages: XDG_DATA_DIRS/cockpit/NAME.
        // A copy, because the checkout may be unreadable to the user.
        let share = dir.path().join("share");
        copy_page(&page_dir(), &share.join("cockpit").join("apikey"));
        let pam = PamServices::new();
        let log = dir.path().join("cockpit-ws.log");
        let (uid, home, name) = match user {
            Some(u) => (u.uid(), u.home().to_path_buf(), u.name().to_string()),
            None => (0, PathBuf::from("/root"), "root".to_string()),
        };
        let (sandbox, port) = start_on_free_port(
            "cockpit-ws",
            |port| {
                // Registered as a password login, as Cockpit's own login
                // through pam_apikey would be.
                let mut argv = register_login(bus.address(), uid);
                if let Some(u) = user {
                    argv.extend(become_user(u.uid(), u.gid()));
                }
                // The sandbox starts from an empty environment; the
                // bridge wants the account's and a UTF-8 locale.
                argv.extend(
                    [
                        "env".to_string(),
                        format!("HOME={}", home.display()),
                        format!("USER={name}"),
                        format!("LOGNAME={name}"),
                        "LANG=C.UTF-8".to_string(),
                        format!("DBUS_SYSTEM_BUS_ADDRESS={}", bus.address()),
                        format!("XDG_DATA_DIRS={}:/usr/share", share.display()),
                        COCKPIT_WS.to_string(),
                        "--no-tls".to_string(),
                        "--address=127.0.0.1".to_string(),
                        format!("--port={port}"),
                        "--local-session=cockpit-bridge".to_string(),
                    ]
                    .map(OsString::from),
                );
                Sandbox::spawn("cockpit-ws", &pam, dir.path(), &argv, &log, Some(uid))
            },
            &String::new,
        );
        CockpitWs {
            sandbox,
            port,
            _pam: pam,
            _dir: dir,
        }
    }

    /// The page alone, without Cockpit's shell around it.
    pub fn page_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/cockpit/@localhost/apikey/index.html",
            self.port
        )
    }

    /// Cockpit's shell, with its menu (package cockpit-system).
    pub fn shell_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn log_text(&self) -> String {
        self.sandbox.log_text()
    }
}

/// The built page is one flat directory (build.mjs writes it so, and the
/// packaging tests check it).
fn copy_page(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create page dir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for entry in std::fs::read_dir(from).expect("read built page").flatten() {
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).expect("copy page file");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

/// What a browser scenario reported: its JSON answer, or why it failed.
pub struct Scenario {
    pub answer: serde_json::Value,
}

impl Scenario {
    pub fn str(&self, key: &str) -> &str {
        self.answer[key]
            .as_str()
            .unwrap_or_else(|| panic!("scenario answer has no string {key}: {}", self.answer))
    }
}

/// Runs `scenario` of the driver in a fresh headless Chromium against
/// `url`; `args` are the scenario's own. Panics with the driver's output
/// when the scenario fails (it saves a screenshot of the failure too).
pub fn browse(url: &str, scenario: &str, args: &[&str]) -> Scenario {
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).expect("create screenshot dir");
    let out = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(SCENARIO_TIMEOUT_SECS.to_string())
        .arg(skip::program("node"))
        .arg(driver())
        .arg(scenario)
        .arg(url)
        .arg(&shots)
        .args(args)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .output()
        .expect("run the browser driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("browser scenario {scenario} printed no JSON answer ({e}):\n{stdout}\n{stderr}")
    });
    for what in ["failed_requests", "page_errors"] {
        assert_eq!(
            answer[what],
            serde_json::json!([]),
            "browser scenario {scenario}: {what}"
        );
    }
    Scenario { answer }
}
