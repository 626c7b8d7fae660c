//! The distribution packages and the files of `packaging/`: what the .deb
//! and the .rpm hold (paths, modes, owners, contents, scripts), what
//! lintian and rpmlint say about them, the unit's sandbox score, the
//! packaged bus policy on a private bus, and the pam-auth-update profile
//! applied to copies of this machine's PAM files.
//!
//! The packages are built by `make deb rpm` (`make test` does it before
//! the suite); these tests only read them.

// Its re-exports serve the PAM tests; this file uses only the site.
#[allow(unused_imports)]
mod pam_common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use apikey_proto::names::{BUS_NAME, OBJECT_PATH};
use apikey_tests::packaging::{self, bus_policy_for, package, packaging_dir, run_as};
use apikey_tests::prelude::*;
use apikey_tests::{bins, cockpit, skip, tmp};
use pam_common::{wait_for_verify, Site};

const DEB_PAMDIR: &str = "lib/x86_64-linux-gnu/security";
const RPM_PAMDIR: &str = "usr/lib64/security";

/// `program args...` as root; panics unless it exits 0. Returns stdout.
#[track_caller]
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(skip::program(program))
        .args(args)
        .env("LANG", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A packaged file: where it lands, its mode and owner, and where its
/// contents come from in the tree (None: generated, checked otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: u32,
    owner: String,
    source: Option<PathBuf>,
}

fn entry(mode: u32, source: Option<PathBuf>) -> Entry {
    Entry {
        mode,
        owner: "root/root".into(),
        source,
    }
}

/// The man pages `make docs` wrote, as (section directory, file name).
fn man_pages() -> Vec<(String, String)> {
    let dir = bins::workspace_root().join("target/docs/man");
    let mut pages: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make docs`)", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|name| {
            let section = name.rsplit('.').next().expect("a section").to_string();
            (format!("man{section}"), name)
        })
        .collect();
    pages.sort();
    assert!(
        pages.iter().any(|(_, n)| n == "apikey.1") && pages.iter().any(|(_, n)| n == "apikeyd.8"),
        "{pages:?}"
    );
    pages
}

/// Files both packages carry from packaging/ and the tree, by where they
/// land (without the leading /).
fn common_files() -> BTreeMap<String, Entry> {
    let root = bins::workspace_root();
    let pkg = packaging_dir();
    let mut files = BTreeMap::new();
    let mut add = |path: &str, mode: u32, source: Option<PathBuf>| {
        files.insert(path.to_string(), entry(mode, source));
    };
    add("usr/sbin/apikeyd", 0o755, None);
    add("usr/bin/apikey", 0o755, None);
    add(
        "etc/apikey/apikeyd.toml",
        0o644,
        Some(pkg.join("apikey/apikeyd.toml")),
    );
    add(
        "usr/share/dbus-1/system.d/org.apikey.Keys1.conf",
        0o644,
        Some(pkg.join("dbus-1/system.d/org.apikey.Keys1.conf")),
    );
    add(
        "usr/share/dbus-1/system-services/org.apikey.Keys1.service",
        0o644,
        Some(pkg.join("dbus-1/system-services/org.apikey.Keys1.service")),
    );
    add(
        "usr/share/dbus-1/interfaces/org.apikey.Keys1.xml",
        0o644,
        Some(root.join("proto/org.apikey.Keys1.xml")),
    );
    add(
        "usr/lib/sysusers.d/apikey.conf",
        0o644,
        Some(pkg.join("sysusers.d/apikey.conf")),
    );
    add(
        "usr/lib/tmpfiles.d/apikey.conf",
        0o644,
        Some(pkg.join("tmpfiles.d/apikey.conf")),
    );
    let docs = root.join("target/docs");
    add(
        "usr/share/bash-completion/completions/apikey",
        0o644,
        Some(docs.join("completions/apikey.bash")),
    );
    add(
        "usr/share/fish/vendor_completions.d/apikey.fish",
        0o644,
        Some(docs.join("completions/apikey.fish")),
    );
    add(
        "usr/share/doc/apikey/README.md",
        0o644,
        Some(root.join("README.md")),
    );
    add(
        "usr/share/doc/apikey/pam.md",
        0o644,
        Some(root.join("docs/pam.md")),
    );
    add(
        "usr/share/doc/apikey/fleet.md",
        0o644,
        Some(root.join("docs/fleet.md")),
    );
    for sql in fleet_files() {
        add(
            &format!("usr/share/apikey/fleet/{sql}"),
            0o644,
            Some(pkg.join("fleet").join(&sql)),
        );
    }
    for (section, page) in man_pages() {
        add(&format!("usr/share/man/{section}/{page}.gz"), 0o644, None);
    }
    for page_file in cockpit_page_files() {
        add(
            &format!("usr/share/cockpit/apikey/{page_file}"),
            0o644,
            Some(cockpit::page_dir().join(&page_file)),
        );
    }
    files
}

/// Fleet mode's files as packaging/fleet holds them: the roles, the
/// migrations, the systemd drop-in.
fn fleet_files() -> Vec<String> {
    let dir = packaging_dir().join("fleet");
    let mut names = vec!["roles.sql".to_string(), "fleet-network.conf".to_string()];
    let migrations = std::fs::read_dir(dir.join("migrations")).expect("packaging/fleet/migrations");
    for e in migrations.flatten() {
        names.push(format!("migrations/{}", e.file_name().to_string_lossy()));
    }
    names.sort();
    assert!(
        names.iter().any(|n| n == "migrations/001-keys.sql"),
        "{names:?}"
    );
    names
}

/// The Cockpit page as `make cockpit` built it: a flat directory.
fn cockpit_page_files() -> Vec<String> {
    let dir = cockpit::page_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make cockpit`)", dir.display()))
        .flatten()
        .map(|e| {
            assert!(
                e.file_type().unwrap().is_file(),
                "{:?} is not a file",
                e.path()
            );
            e.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    for needed in ["manifest.json", "index.html", "apikey.js", "patternfly.css"] {
        assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
    }
    names
}

fn deb_files() -> BTreeMap<String, Entry> {
    let root = bins::workspace_root();
    let pkg = packaging_dir();
    let mut files = common_files();
    let mut add = |path: &str, mode: u32, source: Option<PathBuf>| {
        files.insert(path.to_string(), entry(mode, source));
    };
    add(&format!("{DEB_PAMDIR}/pam_apikey.so"), 0o644, None);
    add(
        "lib/systemd/system/apikeyd.service",
        0o644,
        Some(pkg.join("systemd/apikeyd.service")),
    );
    add(
        "usr/share/pam-configs/apikey",
        0o644,
        Some(pkg.join("pam-configs/apikey")),
    );
    add(
        "usr/share/zsh/vendor-completions/_apikey",
        0o644,
        Some(root.join("target/docs/completions/_apikey")),
    );
    add(
        "usr/share/doc/apikey/copyright",
        0o644,
        Some(pkg.join("copyright")),
    );
    add("usr/share/doc/apikey/changelog.Debian.gz", 0o644, None);
    files
}

fn rpm_files() -> BTreeMap<String, Entry> {
    let root = bins::workspace_root();
    let pkg = packaging_dir();
    let stage = packaging::packages_dir().join("stage");
    let mut files = common_files();
    // The rpm's binaries and man pages are the staged ones, byte for byte.
    files.get_mut("usr/sbin/apikeyd").unwrap().source = Some(stage.join("apikeyd"));
    files.get_mut("usr/bin/apikey").unwrap().source = Some(stage.join("apikey"));
    for (section, page) in man_pages() {
        files
            .get_mut(&format!("usr/share/man/{section}/{page}.gz"))
            .unwrap()
            .source = Some(stage.join(format!("man/{page}.gz")));
    }
    let mut add = |path: &str, mode: u32, source: Option<PathBuf>| {
        files.insert(path.to_string(), entry(mode, source));
    };
    add(
        &format!("{RPM_PAMDIR}/pam_apikey.so"),
        0o755,
        Some(stage.join("pam_apikey.so")),
    );
    add(
        "usr/lib/systemd/system/apikeyd.service",
        0o644,
        Some(pkg.join("systemd/apikeyd.service")),
    );
    add(
        "usr/lib/systemd/system/apikeyd.service.d/fedora-shadow.conf",
        0o644,
        Some(pkg.join("systemd/apikeyd.service.d/fedora-shadow.conf")),
    );
    add(
        "usr/share/zsh/site-functions/_apikey",
        0o644,
        Some(root.join("target/docs/completions/_apikey")),
    );
    add(
        "usr/share/licenses/apikey/copyright",
        0o644,
        Some(pkg.join("copyright")),
    );
    files
}

/// `dpkg-deb -c`: every file with its mode and owner; directories must be
/// root's, 0755.
fn deb_listing(deb: &Path) -> BTreeMap<String, (u32, String)> {
    let mut files = BTreeMap::new();
    for line in run("dpkg-deb", &["-c", path_str(deb)]).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "unexpected dpkg-deb -c line: {line}");
        let (perms, owner, path) = (fields[0], fields[1], fields[5]);
        let path = path.trim_start_matches("./").to_string();
        let owner = match owner {
            "0/0" => "root/root".to_string(),
            other => other.to_string(),
        };
        if perms.starts_with('d') {
            assert_eq!(
                (perms, owner.as_str()),
                ("drwxr-xr-x", "root/root"),
                "directory {path}"
            );
            continue;
        }
        assert!(perms.starts_with('-'), "not a plain file: {line}");
        files.insert(path, (mode_of(&perms[1..]), owner));
    }
    files
}

/// `rwxr-xr-x` → 0o755.
fn mode_of(perms: &str) -> u32 {
    assert_eq!(perms.len(), 9, "{perms}");
    perms
        .bytes()
        .fold(0, |mode, b| (mode << 1) | u32::from(b != b'-'))
}

#[track_caller]
fn assert_same_set<V: std::fmt::Debug>(
    what: &str,
    found: &BTreeMap<String, V>,
    expected: &BTreeMap<String, Entry>,
) {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .collect();
    let extra: Vec<&String> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:#?}\nunexpected {extra:#?}"
    );
}

#[test]
fn the_deb_holds_the_expected_files_modes_owners_and_scripts() {
    require!(
        Need::Packages,
        Need::Program("dpkg-deb"),
        Need::Program("tar")
    );
    let deb = package("deb").unwrap();
    let expected = deb_files();
    let listing = deb_listing(&deb);
    assert_same_set("the .deb", &listing, &expected);
    for (path, want) in &expected {
        assert_eq!(
            listing[path],
            (want.mode, want.owner.clone()),
            "{path}: mode and owner"
        );
    }

    let dir = tmp::temp_dir("deb");
    let root = dir.path().join("root");
    run("dpkg-deb", &["-x", path_str(&deb), path_str(&root)]);
    for (path, want) in &expected {
        if let Some(source) = &want.source {
            assert!(
                std::fs::read(root.join(path)).unwrap() == std::fs::read(source).unwrap(),
                "{path} differs from {}",
                source.display()
            );
        }
    }
    for (section, page) in man_pages() {
        let packed = root.join(format!("usr/share/man/{section}/{page}.gz"));
        let text = run("gzip", &["-dc", path_str(&packed)]);
        let built = bins::workspace_root().join(format!("target/docs/man/{page}"));
        assert_eq!(text, std::fs::read_to_string(built).unwrap(), "{page}");
    }

    let control = dir.path().join("DEBIAN");
    run("dpkg-deb", &["-e", path_str(&deb), path_str(&control)]);
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert_eq!(
            std::fs::read_to_string(control.join(script)).unwrap(),
            std::fs::read_to_string(packaging_dir().join("debian").join(script)).unwrap(),
            "{script} is packaging/debian/{script} as written"
        );
    }
    // dpkg --verify and debsums check the installed files against these.
    let md5sums = std::fs::read_to_string(control.join("md5sums")).expect("DEBIAN/md5sums");
    let listed: BTreeMap<String, String> = md5sums
        .lines()
        .map(|l| {
            let (sum, path) = l.split_once("  ").expect("md5sum line");
            (path.to_string(), sum.to_string())
        })
        .collect();
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        listing.keys().collect::<Vec<_>>(),
        "md5sums names every file, and nothing else"
    );
    let sums = run(
        "sh",
        &[
            "-c",
            "cd \"$1\" && md5sum -c --quiet \"$2\"",
            "sh",
            path_str(&root),
            path_str(&control.join("md5sums")),
        ],
    );
    assert!(sums.trim().is_empty(), "md5sums disagree: {sums}");
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/apikey/apikeyd.toml\n"
    );
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    let field = |name: &str| {
        fields
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in\n{fields}"))
            .to_string()
    };
    assert_eq!(field("Package"), "apikey");
    assert_eq!(field("Architecture"), "amd64");
    let depends = field("Depends");
    for needed in [
        "libpam0g",
        "libc6",
        "libpam-runtime",
        "adduser",
        "default-dbus-system-bus | dbus-system-bus",
    ] {
        assert!(
            depends.contains(needed),
            "Depends lacks {needed}: {depends}"
        );
    }
}

#[test]
fn the_rpm_holds_the_expected_files_modes_owners_and_scripts() {
    require!(
        Need::Packages,
        Need::Program("rpm"),
        Need::Program("sha256sum")
    );
    let rpm = package("rpm").unwrap();
    let expected = rpm_files();
    let query = run(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILENAMES}\\t%{FILEMODES:octal}\\t%{FILEUSERNAME}/%{FILEGROUPNAME}\\t%{FILEFLAGS:fflags}\\t%{FILEDIGESTS}\\n]",
            path_str(&rpm),
        ],
    );
    let mut listing = BTreeMap::new();
    for line in query.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 5, "unexpected rpm line: {line}");
        let path = f[0].trim_start_matches('/').to_string();
        let mode = u32::from_str_radix(f[1], 8).unwrap();
        assert_eq!(mode & 0o170000, 0o100000, "not a plain file: {line}");
        listing.insert(
            path,
            (
                mode & 0o7777,
                f[2].to_string(),
                f[3].to_string(),
                f[4].to_string(),
            ),
        );
    }
    assert_same_set("the .rpm", &listing, &expected);
    for (path, want) in &expected {
        let (mode, owner, flags, digest) = &listing[path];
        assert_eq!(
            (*mode, owner),
            (want.mode, &want.owner),
            "{path}: mode and owner"
        );
        let want_flags = if path == "etc/apikey/apikeyd.toml" {
            "cn"
        } else if ["usr/share/man/", "usr/share/doc/", "usr/share/licenses/"]
            .iter()
            .any(|dir| path.starts_with(dir))
        {
            "d"
        } else {
            ""
        };
        assert_eq!(flags, want_flags, "{path}: file flags");
        if let Some(source) = &want.source {
            let sum = run("sha256sum", &[path_str(source)]);
            assert_eq!(
                sum.split_whitespace().next().unwrap(),
                digest,
                "{path} differs from {}",
                source.display()
            );
        }
    }
    for (tag, script) in [
        ("PREIN", "pre.sh"),
        ("POSTIN", "post.sh"),
        ("PREUN", "preun.sh"),
        ("POSTUN", "postun.sh"),
    ] {
        let packed = run(
            "rpm",
            &["-qp", "--qf", &format!("%{{{tag}}}"), path_str(&rpm)],
        );
        let source = std::fs::read_to_string(packaging_dir().join("rpm").join(script)).unwrap();
        assert_eq!(
            packed.trim_end(),
            source.trim_end(),
            "{tag} is packaging/rpm/{script}"
        );
    }
    let requires = run("rpm", &["-qpR", path_str(&rpm)]);
    assert!(
        requires.lines().any(|l| l.starts_with("libpam.so.0")),
        "{requires}"
    );
}

/// Each lintian or rpmlint tag the README explains, in backquotes.
fn explained_tags() -> String {
    std::fs::read_to_string(packaging_dir().join("README.md")).expect("packaging/README.md")
}

#[test]
fn lintian_finds_no_error_and_every_warning_is_explained() {
    require!(Need::Packages, Need::Program("lintian"));
    let deb = package("deb").unwrap();
    let out = Command::new(skip::program("lintian"))
        .args(["--pedantic", path_str(&deb)])
        .env("LANG", "C")
        .output()
        .expect("run lintian");
    let report = String::from_utf8_lossy(&out.stdout);
    // lintian exits 2 when it could not check at all, 1 on tags at or
    // above its fail level (errors by default).
    assert_ne!(
        out.status.code(),
        Some(2),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readme = explained_tags();
    let mut unexplained = Vec::new();
    for line in report.lines() {
        let Some((kind, rest)) = line.split_once(": ") else {
            continue;
        };
        let Some(tag) = rest
            .split(": ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
        else {
            continue;
        };
        assert!(kind != "E", "lintian error: {line}");
        if !readme.contains(&format!("`{tag}`")) {
            unexplained.push(line.to_string());
        }
    }
    assert!(out.status.success(), "{report}");
    assert!(
        unexplained.is_empty(),
        "lintian tags packaging/README.md does not explain:\n{}",
        unexplained.join("\n")
    );
}

#[test]
fn rpmlint_finds_no_error_and_every_warning_is_explained() {
    require!(Need::Packages, Need::Program("rpmlint"));
    let rpm = package("rpm").unwrap();
    let config = packaging_dir().join("rpm/rpmlint.toml");
    let out = Command::new(skip::program("rpmlint"))
        .args(["-c", path_str(&config), path_str(&rpm)])
        .env("LANG", "C")
        .output()
        .expect("run rpmlint");
    let report = String::from_utf8_lossy(&out.stdout);
    let readme = explained_tags();
    let mut unexplained = Vec::new();
    let mut summary = None;
    for line in report.lines() {
        if line.contains("packages and 0 specfiles checked") {
            summary = Some(line.to_string());
        }
        // apikey.x86_64: W: tag details
        let Some(rest) = line.strip_prefix("apikey.x86_64: ") else {
            continue;
        };
        let (kind, tag) = rest.split_once(": ").expect("kind: tag");
        let tag = tag.split_whitespace().next().unwrap();
        assert!(kind != "E", "rpmlint error: {line}");
        if !readme.contains(&format!("`{tag}`")) {
            unexplained.push(line.to_string());
        }
    }
    let summary = summary.unwrap_or_else(|| panic!("no summary line:\n{report}"));
    assert!(summary.contains(" 0 errors,"), "{summary}");
    assert!(out.status.success(), "{report}");
    assert!(
        unexplained.is_empty(),
        "rpmlint tags packaging/README.md does not explain:\n{}",
        unexplained.join("\n")
    );
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_0_6_or_less_with_limits_without_hiding_callers() {
    require!(Need::Program("systemd-analyze"));
    let unit = packaging_dir().join("systemd/apikeyd.service");
    // The unit as the deb ships it; the rpm adds CAP_DAC_READ_SEARCH in
    // place of the group shadow Fedora lacks, which costs 0.2.
    let (score, text) = packaging::offline_exposure(false);
    assert!(score <= 0.6, "exposure {score}:\n{text}");
    let (fedora, text) = packaging::offline_exposure(true);
    assert!(
        fedora <= 0.8,
        "exposure with the Fedora drop-in {fedora}:\n{text}"
    );

    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let settings: Vec<&str> = unit_text.lines().filter(|l| !l.starts_with('#')).collect();
    let has = |line: &str| settings.contains(&line);
    // S4: the daemon must see its callers' /proc and real uids.
    for hidden in [
        "PrivateUsers=",
        "ProtectProc=invisible",
        "ProtectProc=ptraceable",
        "ProcSubset=pid",
        "DynamicUser=",
    ] {
        assert!(
            !settings.iter().any(|l| l.starts_with(hidden)),
            "{hidden} would hide callers"
        );
    }
    for needed in [
        // Not Type=dbus: systemd would stop the unit when dbus restarts.
        "Type=notify",
        "NotifyAccess=main",
        "BusName=org.apikey.Keys1",
        // An unprivileged caller cannot take the host's memory or pids.
        "MemoryMax=256M",
        "TasksMax=64",
        "User=apikeyd",
        "SupplementaryGroups=shadow",
        "Restart=on-failure",
        "StateDirectory=apikey",
        "StateDirectoryMode=0700",
        "RestrictAddressFamilies=AF_UNIX",
        "CapabilityBoundingSet=",
        "ProtectSystem=strict",
    ] {
        assert!(has(needed), "the unit lacks {needed}");
    }
    let activation = std::fs::read_to_string(
        packaging_dir().join("dbus-1/system-services/org.apikey.Keys1.service"),
    )
    .unwrap();
    for needed in [
        "Name=org.apikey.Keys1",
        // Without systemd: root starts it and it drops to apikeyd with the
        // group shadow itself (the helper would drop every group).
        "User=root",
        "SystemdService=apikeyd.service",
        "Exec=/usr/sbin/apikeyd --run-as apikeyd --log /var/log/apikeyd.log",
    ] {
        assert!(
            activation.lines().any(|l| l == needed),
            "activation file lacks {needed}"
        );
    }
}

/// dbus-send to the daemon as `who`: the reply's first string, or the
/// name of the error.
fn dbus_send(who: &As, method: &str, args: &[&str]) -> Result<String, String> {
    let member = format!("{BUS_NAME}.{method}");
    let dest = format!("--dest={BUS_NAME}");
    let mut argv = vec!["--system", "--print-reply", &dest, OBJECT_PATH, &member];
    argv.extend_from_slice(args);
    reply_or_error(who.run("dbus-send", &argv))
}

fn reply_or_error(out: Output) -> Result<String, String> {
    if out.code() != 0 {
        let name = out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("Error "))
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| panic!("{}: no error line\n{}", out.description, out.stderr));
        return Err(name.to_string());
    }
    Ok(out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("string \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_default()
        .to_string())
}

/// RequestName(org.apikey.Keys1, DO_NOT_QUEUE) as `who`; the reply code.
fn request_name(who: &As) -> Result<String, String> {
    let out = who.run(
        "dbus-send",
        &[
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &format!("string:{BUS_NAME}"),
            "uint32:4",
        ],
    );
    reply_or_error(out.clone()).map(|_| {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("uint32 "))
            .unwrap_or_default()
            .to_string()
    })
}

const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

#[test]
fn the_packaged_bus_policy_keeps_the_name_for_the_daemon_and_the_session_calls_for_root() {
    require!(Need::World, Need::Program("dbus-send"));
    let daemon_user = TestUser::create("daemon");
    let alice = TestUser::create("alice");
    let scratch = tmp::temp_dir("policy");
    let bus = PrivateBus::start_with(&BusOptions {
        permissive: false,
        policy_files: vec![bus_policy_for(daemon_user.name(), scratch.path())],
    });
    let as_alice = As::user(&alice).bus(bus.address()).logged_in();
    let as_root = As::root().bus(bus.address());
    let as_daemon_user = As::user(&daemon_user).bus(bus.address());

    // S12: only the daemon's account may own the name, root included.
    assert_eq!(
        request_name(&as_alice),
        Err(ACCESS_DENIED.into()),
        "alice owns the name"
    );
    assert_eq!(
        request_name(&as_root),
        Err(ACCESS_DENIED.into()),
        "root owns the name"
    );
    // 1: DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER, released as dbus-send exits.
    assert_eq!(request_name(&as_daemon_user), Ok("1".into()));

    let daemon = Daemon::start(
        &bus,
        &DaemonConfig {
            wrapper: run_as(&daemon_user),
            ..DaemonConfig::default()
        },
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uids.split_whitespace().skip(1).collect::<Vec<_>>(),
        vec![daemon_user.uid().to_string(); 4],
        "the daemon runs as the stand-in for apikeyd"
    );

    assert!(
        dbus_send(&as_alice, "Status", &[]).is_ok(),
        "Status stays open to users"
    );
    let open_args = |user: &str| {
        [
            format!("string:{user}"),
            "string:sshd".to_string(),
            "string:192.0.2.7".to_string(),
            "string:ssh".to_string(),
            "string:".to_string(),
            "string:password".to_string(),
        ]
    };
    let open_by = |method: &str, who: &As, user: &str| {
        let args = open_args(user);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dbus_send(who, method, &args)
    };
    for method in ["OpenSession", "OpenSessionWith"] {
        assert_eq!(
            open_by(method, &as_alice, alice.name()),
            Err(ACCESS_DENIED.into()),
            "{method}"
        );
        assert_eq!(
            open_by(method, &as_daemon_user, alice.name()),
            Err(ACCESS_DENIED.into()),
            "{method}"
        );
    }
    let opened_with = open_by("OpenSessionWith", &as_root, alice.name())
        .expect("OpenSessionWith by root reaches the daemon");
    dbus_send(
        &as_root,
        "CloseSession",
        &[&format!("string:{opened_with}")],
    )
    .expect("the handle OpenSessionWith gave closes its session");
    let handle = open_by("OpenSession", &as_root, alice.name())
        .expect("OpenSession by root reaches the daemon");
    let close = |who: &As| dbus_send(who, "CloseSession", &[&format!("string:{handle}")]);
    assert_eq!(close(&as_alice), Err(ACCESS_DENIED.into()));
    close(&as_root).expect("CloseSession by root reaches the daemon");
}

/// Debian 12's /etc/pam.d/sudo, for machines without sudo.
const DEBIAN_SUDO: &str = "#%PAM-1.0

# Set up user limits from /etc/security/limits.conf.
session    required   pam_limits.so

session    required   pam_env.so readenv=1 user_readenv=0
session    required   pam_env.so readenv=1 envfile=/etc/default/locale user_readenv=0

@include common-auth
@include common-account
@include common-session-noninteractive
";

/// Copies of this machine's PAM configuration, pam-auth-update's state
/// and debconf's database, seen at their real paths only inside bwrap.
struct PamRoot {
    dir: PathBuf,
}

impl PamRoot {
    fn copy_machine(dir: &Path) -> PamRoot {
        std::fs::create_dir(dir).unwrap();
        for (from, to) in PamRoot::MOUNTS {
            let out = Command::new("cp")
                .args(["-a", from, path_str(&dir.join(to))])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cp {from}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        PamRoot {
            dir: dir.to_path_buf(),
        }
    }

    /// (machine path, name of the copy). debconf is here because
    /// pam-auth-update records the chosen profiles there.
    const MOUNTS: [(&'static str, &'static str); 4] = [
        ("/etc/pam.d", "pam.d"),
        ("/usr/share/pam-configs", "pam-configs"),
        ("/var/lib/pam", "var-lib-pam"),
        ("/var/cache/debconf", "debconf"),
    ];

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn bwrap_binds(&self) -> Vec<String> {
        let mut args = vec!["--dev-bind".to_string(), "/".into(), "/".into()];
        for (machine, copy) in PamRoot::MOUNTS {
            args.extend([
                "--bind".into(),
                path_str(&self.path(copy)).into(),
                machine.into(),
            ]);
        }
        args
    }

    fn pam_auth_update(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(skip::program("bwrap"));
        cmd.arg("--die-with-parent")
            .args(self.bwrap_binds())
            .arg("--")
            .arg(skip::program("pam-auth-update"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        cmd.output().expect("run pam-auth-update")
    }

    fn common(&self, kind: &str) -> String {
        std::fs::read_to_string(self.path("pam.d").join(format!("common-{kind}"))).unwrap()
    }
}

fn die_with_parent(cmd: &mut Command) {
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

/// One pamtester run: exit code, stderr, and what PAM logged inside it.
#[derive(Debug)]
struct PamRun {
    what: String,
    code: i32,
    stderr: String,
    log: Vec<String>,
}

impl PamRun {
    #[track_caller]
    fn ok(&self) -> &PamRun {
        assert_eq!(
            self.code, 0,
            "{}: expected success\n{}\n{:#?}",
            self.what, self.stderr, self.log
        );
        self
    }

    #[track_caller]
    fn refused(&self) -> &PamRun {
        assert!(
            self.code == 1 && self.stderr.contains("pamtester: Authentication failure"),
            "{}: expected a refusal\n{}",
            self.what,
            self.stderr
        );
        self
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }
}

/// pamtester with `pam_d` as /etc/pam.d and a /dev/log of its own; with
/// `real_uid`, it runs as a set-uid-root program run by that user does
/// (su, sudo): real uid the user's, effective uid 0.
fn pamtester(
    pam_d: &Path,
    scratch: &Path,
    real_uid: Option<u32>,
    service: &str,
    user: &str,
    password: &str,
    ops: &[&str],
) -> PamRun {
    let log_dir = tempfile::Builder::new()
        .prefix("devlog-")
        .tempdir_in(scratch)
        .unwrap();
    let sink = LogSink::bind(log_dir.path());
    let mut cmd = Command::new(skip::program("bwrap"));
    cmd.args(["--die-with-parent", "--bind", "/", "/", "--bind"])
        .arg(pam_d)
        .args(["/etc/pam.d", "--dev", "/dev", "--bind"])
        .arg(sink.path())
        .args(["/dev/log", "--"]);
    if let Some(uid) = real_uid {
        cmd.arg(skip::program("setpriv"))
            .arg(format!("--ruid={uid}"))
            .args(["--euid=0", "--"]);
    }
    cmd.arg(skip::program("pamtester"))
        .args(["-v", service, user])
        .args(ops)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("spawn pamtester");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(format!("{password}\n").as_bytes());
    drop(stdin);
    let out = child.wait_with_output().expect("wait for pamtester");
    const MARK: &str = "akt-end-of-run";
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to(MARK.as_bytes(), sink.path()))
        .expect("mark the log");
    sink.expect("end mark", |l| l == MARK, Duration::from_secs(10));
    PamRun {
        what: format!(
            "pamtester {service} {user} {} (real uid {real_uid:?})",
            ops.join(" ")
        ),
        code: out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        log: sink.lines().into_iter().filter(|l| l != MARK).collect(),
    }
}

/// The auth lines of a common-* file, without comments and blank lines.
fn rules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_pam_auth_update_profile_puts_keys_first_and_su_and_sudo_still_refuse_them() {
    require!(
        Need::World,
        Need::Program("pam-auth-update"),
        Need::Program("pamtester"),
        Need::Program("bwrap"),
        // Their PAM service files are the ones under test.
        Need::Program("sshd"),
        Need::Program("su")
    );
    let site = Site::new();
    let password = "akt-Pw-pq7Lz3";
    site.alice.set_password(password);
    let root = PamRoot::copy_machine(&site.world.dir().join("pam-root"));

    // The profile as packaged, with the module named by its built path and
    // pointed at the test's bus and root-run daemon.
    let module = site.module("");
    let profile = std::fs::read_to_string(packaging_dir().join("pam-configs/apikey")).unwrap();
    assert_eq!(profile.matches("pam_apikey.so").count(), 3, "{profile}");
    assert!(
        !profile.contains("map_user"),
        "S9: the profile never maps users"
    );
    std::fs::write(
        root.path("pam-configs").join("apikey"),
        profile.replace("pam_apikey.so", &module),
    )
    .unwrap();
    let sudo = root.path("pam.d").join("sudo");
    if !sudo.exists() {
        std::fs::write(&sudo, DEBIAN_SUDO).unwrap();
    }

    // What the postinst runs.
    let out = root.pam_auth_update(&["--package"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("Local modifications"),
        "pam-auth-update --package: {}\n{stderr}",
        out.status
    );

    let auth = rules(&root.common("auth"));
    let first = auth
        .iter()
        .position(|l| l.starts_with("auth "))
        .expect("auth rules");
    let ours = &auth[first];
    let control = ours
        .strip_prefix("auth [")
        .and_then(|r| r.split_once("] "))
        .map(|(c, rest)| (c.to_string(), rest.to_string()))
        .unwrap_or_else(|| panic!("first auth rule is not ours: {ours}\n{auth:#?}"));
    assert_eq!(
        control.1, module,
        "the first auth rule is pam_apikey's: {auth:#?}"
    );
    let jump: usize = control
        .0
        .strip_prefix("success=")
        .and_then(|r| r.strip_suffix(" ignore=ignore default=die"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "control [{}]: want [success=end ignore=ignore default=die]",
                control.0
            )
        });
    // `end`: past the rest of the Primary block and its pam_deny fallback.
    assert_eq!(
        auth.get(first + 1 + jump).map(String::as_str),
        Some("auth required pam_permit.so"),
        "success jumps to the end of the Primary block: {auth:#?}"
    );
    assert!(
        auth[first + 1..first + 1 + jump]
            .iter()
            .any(|l| l.contains("pam_unix.so") && l.contains("try_first_pass")),
        "pam_unix follows and takes the same password: {auth:#?}"
    );
    assert!(
        rules(&root.common("account")).contains(&format!("account required {module}")),
        "{}",
        root.common("account")
    );
    for kind in ["session", "session-noninteractive"] {
        assert!(
            rules(&root.common(kind)).contains(&format!("session optional {module}")),
            "common-{kind}:\n{}",
            root.common(kind)
        );
    }

    let pam_d = root.path("pam.d");
    let scratch = site.world.dir();
    let alice = site.alice.name();
    let login = |service: &str, real_uid: Option<u32>, secret: &str| {
        pamtester(
            &pam_d,
            scratch,
            real_uid,
            service,
            alice,
            secret,
            &["authenticate", "acct_mgmt"],
        )
    };

    // Debian's own sshd file, which includes common-auth.
    login("sshd", None, &site.alice_key).ok();
    login("sshd", None, password).ok();
    let wrong = login("sshd", None, &site.bob_key);
    wrong.refused();
    assert!(wrong.logged("key refused"), "{:#?}", wrong.log);

    // S2: su and sudo refuse a key at the module, before pam_unix and
    // without asking the daemon; passwords still work there.
    let su = |secret: &str| login("su", Some(site.bob.uid()), secret);
    let sudo = |secret: &str| login("sudo", Some(site.alice.uid()), secret);
    for (what, run) in [("su", su(&site.alice_key)), ("sudo", sudo(&site.alice_key))] {
        run.refused();
        assert!(
            run.logged(&format!("key refused: service {what} never accepts keys")),
            "{what}: {:#?}",
            run.log
        );
        assert!(
            !run.log
                .iter()
                .any(|l| l.contains("pam_unix(") && l.contains(":auth)")),
            "{what}: the key reached pam_unix: {:#?}",
            run.log
        );
    }
    su(password).ok();
    sudo(password).ok();

    // The daemon answers and logs in order: once this login's line is
    // there, every earlier attempt's would be too.
    login("sshd", None, &site.alice_key).ok();
    let lines = wait_for_verify(
        &site.world,
        &[
            ("key", &site.alice_key_id),
            ("outcome", "ok"),
            ("service", "sshd"),
        ],
    );
    let asked: Vec<&str> = lines
        .iter()
        .filter_map(|f| f.get("service").map(String::as_str))
        .collect();
    assert!(
        asked.iter().all(|s| *s == "sshd"),
        "the daemon was asked about {asked:?}"
    );

    // What the prerm runs on removal: the stacks are as before.
    let out = root.pam_auth_update(&["--package", "--remove", "apikey"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "auth",
        "account",
        "session",
        "session-noninteractive",
        "password",
    ] {
        assert_eq!(
            root.common(kind),
            std::fs::read_to_string(format!("/etc/pam.d/common-{kind}")).unwrap(),
            "common-{kind} after the profile is removed"
        );
    }
}

#[test]
fn make_install_puts_the_files_of_the_deb_where_the_deb_does() {
    require!(
        Need::Packages,
        Need::Program("make"),
        Need::Program("dpkg-deb")
    );
    let dir = tmp::temp_dir("destdir");
    let destdir = dir.path().join("root");
    let out = Command::new(skip::program("make"))
        .current_dir(bins::workspace_root())
        .args(["--no-print-directory", "install"])
        .arg(format!("DESTDIR={}", destdir.display()))
        .args(["PREFIX=/usr", &format!("PAMDIR=/{DEB_PAMDIR}")])
        .env("LANG", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run make install");
    assert!(
        out.status.success(),
        "make install: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut installed = BTreeMap::new();
    let mut dirs = vec![destdir.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(&destdir).unwrap();
                installed.insert(path_str(rel).to_string(), path);
            }
        }
    }
    // The deb compresses man pages and adds its Debian changelog;
    // otherwise the same files, byte for byte where they come from the tree.
    let mut expected = deb_files();
    expected.remove("usr/share/doc/apikey/changelog.Debian.gz");
    let expected: BTreeMap<String, Entry> = expected
        .into_iter()
        .map(|(path, e)| match path.strip_suffix(".gz") {
            Some(page) if path.starts_with("usr/share/man/") => (page.to_string(), e),
            _ => (path, e),
        })
        .collect();
    assert_same_set("make install", &installed, &expected);
    for (path, want) in &expected {
        if let Some(source) = &want.source {
            assert!(
                std::fs::read(&installed[path]).unwrap() == std::fs::read(source).unwrap(),
                "{path} differs from {}",
                source.display()
            );
        }
    }
}

/// `make VAR=... -n TARGETS`: the commands make would run, not run.
fn make_dry_run(targets: &[&str]) -> String {
    let out = Command::new(skip::program("make"))
        .current_dir(bins::workspace_root())
        .args(["--no-print-directory", "-n", "-B"])
        .args(targets)
        // Under cargo, CARGO names cargo by its full path.
        .env_remove("CARGO")
        .env("LANG", "C")
        .output()
        .expect("run make -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn make_install_and_the_packages_build_the_workspace_once() {
    require!(Need::Program("make"));
    for targets in [&["install", "DESTDIR=/nonexistent"][..], &["deb", "rpm"]] {
        let plan = make_dry_run(targets);
        let cargo_runs: Vec<&str> = plan
            .lines()
            .filter(|l| {
                l.contains("cargo build") || l.contains("cargo run") || l.contains("cargo rustc")
            })
            .collect();
        assert_eq!(
            cargo_runs,
            vec!["cargo build --release -p apikeyd -p apikey -p pam_apikey --lib --bins --example gen-docs"],
            "make {targets:?} should build once, in release:\n{plan}"
        );
    }
}

#[test]
fn the_cargo_tools_are_pinned_to_exact_versions_and_installed_as_pinned() {
    require!(Need::Packages);
    let makefile = std::fs::read_to_string(bins::workspace_root().join("Makefile")).unwrap();
    for (var, tool) in [
        ("CARGO_DEB_VERSION", "cargo-deb"),
        ("CARGO_GENERATE_RPM_VERSION", "cargo-generate-rpm"),
        ("CARGO_NEXTEST_VERSION", "cargo-nextest"),
        ("CARGO_AFL_VERSION", "cargo-afl"),
    ] {
        let version = makefile
            .lines()
            .find_map(|l| l.strip_prefix(var)?.trim().strip_prefix('=')?.trim().into())
            .unwrap_or_else(|| panic!("no {var} in the Makefile"));
        // cargo install takes no partial version: 3.8 would fail on a new
        // machine, and a tool already present would hide that.
        let parts: Vec<&str> = version.split('.').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
            "{var} = {version} is not an exact version"
        );
        // nextest may be the machine's own; cargo-afl is installed by
        // `make fuzz`, which runs after the tests.
        if tool == "cargo-nextest" || tool == "cargo-afl" {
            continue;
        }
        let bin = bins::workspace_root().join("target/tools/bin").join(tool);
        let sub = tool.trim_start_matches("cargo-");
        let out = Command::new(&bin)
            .args([sub, "--version"])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.split_whitespace().any(|w| w == version),
            "{} says {said}, the Makefile pins {version}",
            bin.display()
        );
    }
}

#[test]
fn packing_the_same_tree_twice_gives_byte_identical_packages() {
    require!(
        Need::Packages,
        Need::Program("make"),
        Need::Program("dpkg-deb")
    );
    let dir = tmp::temp_dir("repro");
    let out = Command::new(skip::program("make"))
        .current_dir(bins::workspace_root())
        .args(["--no-print-directory", "-s", "pack-deb", "pack-rpm"])
        .arg(format!("PACKAGES={}", dir.path().display()))
        .env("LANG", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make pack-deb pack-rpm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ext in ["deb", "rpm"] {
        let first = package(ext).unwrap();
        let again = dir.path().join(first.file_name().unwrap());
        assert!(
            std::fs::read(&first).unwrap() == std::fs::read(&again).unwrap(),
            "{} and {} differ",
            first.display(),
            again.display()
        );
    }
}
