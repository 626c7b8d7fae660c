//! Where the project's own binaries are. The tests exercise what
//! `cargo build` produced, not a copy linked into the test binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Overrides the directory holding `apikeyd` and `apikey` (e.g. a release
/// build, or an installed package's /usr/bin).
pub const BIN_DIR_ENV: &str = "APIKEY_BIN_DIR";

/// The workspace root: this crate lives one level below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `APIKEY_BIN_DIR`, else `$CARGO_TARGET_DIR/debug`, else
/// `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_relative() {
            workspace_root().join(dir)
        } else {
            dir
        };
        return dir.join("debug");
    }
    workspace_root().join("target").join("debug")
}

/// Path of a project binary; panics with what to do when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: run `cargo build --workspace` first (or set {BIN_DIR_ENV})",
            path.display()
        );
    }
    path
}

pub fn apikeyd() -> PathBuf {
    binary("apikeyd")
}

pub fn apikey() -> PathBuf {
    binary("apikey")
}

/// The tests' own bus client (`src/bin/akt-bus.rs`).
pub fn akt_bus() -> PathBuf {
    helper("akt-bus")
}

/// What a login's session hook does (`src/bin/akt-login.rs`).
pub fn akt_login() -> PathBuf {
    helper("akt-login")
}

/// One of the tests' own programs. Cargo builds them with the test
/// binaries, into the directory above their `deps/`; that is where they
/// are looked for first, since `APIKEY_BIN_DIR` may name an installed
/// package, which does not ship them.
fn helper(name: &str) -> PathBuf {
    let beside_tests = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)));
    match beside_tests {
        Some(path) if path.is_file() => path,
        _ => binary(name),
    }
}

/// True when any user can execute `path`: the file and every directory
/// above it have the "others" execute bit. A checkout under /root would
/// fail this, and test users could not run the CLI from there.
pub fn usable_by_others(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}
