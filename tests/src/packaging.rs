//! The distribution packages (`make deb`, `make rpm`) and the files of
//! `packaging/` as the tests use them.
//!
//! The packaged bus policy lets only the account `apikeyd` own the name.
//! Tests do not create that account (a package install may own it, and
//! parallel tests would fight over it): they give the policy a test user
//! in its place and run the daemon as that user.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins;
use crate::users::TestUser;

/// The account the packaged files name as the daemon's.
pub const DAEMON_ACCOUNT: &str = "apikeyd";

pub fn packaging_dir() -> PathBuf {
    bins::workspace_root().join("packaging")
}

/// Where `make deb` and `make rpm` put the packages.
pub fn packages_dir() -> PathBuf {
    bins::workspace_root().join("target").join("packages")
}

/// The one package file with this extension ("deb", "rpm"), if built.
pub fn package(extension: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(packages_dir())
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == extension) && p.is_file())
        .collect();
    found.sort();
    match found.len() {
        1 => found.pop(),
        0 => None,
        _ => panic!(
            "more than one .{extension} in {}: {found:?}",
            packages_dir().display()
        ),
    }
}

/// The packaged bus policy (`dbus-1/system.d/org.apikey.Keys1.conf`).
pub fn bus_policy() -> PathBuf {
    packaging_dir().join("dbus-1/system.d/org.apikey.Keys1.conf")
}

/// A copy of the packaged bus policy in `dir`, with `daemon_user` where
/// it names `apikeyd`; everything else as shipped.
pub fn bus_policy_for(daemon_user: &str, dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(bus_policy()).expect("read the packaged bus policy");
    let needle = format!("user=\"{DAEMON_ACCOUNT}\"");
    assert_eq!(
        shipped.matches(&needle).count(),
        1,
        "the packaged policy should name {needle} once"
    );
    let copy = dir.join("org.apikey.Keys1.conf");
    std::fs::write(
        &copy,
        shipped.replace(&needle, &format!("user=\"{daemon_user}\"")),
    )
    .expect("write the policy copy");
    copy
}

/// A [`DaemonConfig::wrapper`](crate::DaemonConfig::wrapper) that runs the
/// daemon as `user`, as the unit runs it as `apikeyd`: the daemon's own
/// directory (configuration, store, log socket) is handed to that user
/// first, and the daemon keeps one supplementary group, shadow, as the
/// unit's SupplementaryGroups= gives it.
pub fn run_as(user: &TestUser) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        // $3 after the shift is the --config path, in the daemon's dir.
        r#"u=$1 g=$2; shift 2; chown -R "$u:$g" "$(dirname "$3")" && exec setpriv --reuid="$u" --regid="$g" --groups=shadow --pdeathsig=KILL -- "$@""#
            .into(),
        "sh".into(),
        user.uid().to_string(),
        user.gid().to_string(),
    ]
}

/// The same package under the next version, as a rebuild would give it.
pub fn next_version(deb: &Path, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let run = |args: &[&str]| {
        let out = Command::new(crate::skip::program("dpkg-deb"))
            .args(args)
            .output()
            .expect("run dpkg-deb");
        assert!(
            out.status.success(),
            "dpkg-deb {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-R", deb.to_str().unwrap(), tree.to_str().unwrap()]);
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("a Version field")
        .to_string();
    std::fs::write(
        &control,
        text.replace(
            &format!("Version: {version}\n"),
            &format!("Version: {version}+next1\n"),
        ),
    )
    .unwrap();
    let next = dir.join("next.deb");
    run(&[
        "-b",
        "--root-owner-group",
        tree.to_str().unwrap(),
        next.to_str().unwrap(),
    ]);
    next
}

/// `systemd-analyze security --offline=true` of the packaged unit, as the
/// deb ships it (the unit alone) or, with `fedora`, with the rpm's
/// drop-in beside it. Returns the score and the whole report.
pub fn offline_exposure(fedora: bool) -> (f64, String) {
    let dir = crate::tmp::temp_dir("unit");
    let unit = dir.path().join("apikeyd.service");
    std::fs::copy(packaging_dir().join("systemd/apikeyd.service"), &unit).unwrap();
    if fedora {
        let dropins = dir.path().join("apikeyd.service.d");
        std::fs::create_dir(&dropins).unwrap();
        std::fs::copy(
            packaging_dir().join("systemd/apikeyd.service.d/fedora-shadow.conf"),
            dropins.join("fedora-shadow.conf"),
        )
        .unwrap();
    }
    let out = Command::new(crate::skip::program("systemd-analyze"))
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .env("LANG", "C")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let score = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for apikeyd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no score in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (score, text)
}
