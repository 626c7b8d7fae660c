//! Whether a test that cannot run here skips or fails.
//!
//! Some tests need root, a real `dbus-daemon` or a program the machine may
//! lack. On a developer's laptop such a test says `SKIP <test>: <reason>`
//! on standard error and passes; with `APIKEY_STRICT_TESTS` set to a true
//! value (CI) the missing prerequisite is a failure, so that a broken
//! machine cannot turn the suite silently green. Every crate's tests skip
//! through here: one rule, one message, never hidden by the test runner.

use std::io::Write;

/// Environment variable that turns skips into failures.
pub const STRICT_ENV: &str = "APIKEY_STRICT_TESTS";

/// What a test does once its prerequisites are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// Print the message and return without testing anything.
    Skip(String),
    /// Panic with the message (strict mode).
    Fail(String),
}

/// The whole policy in one pure function, so it can be tested without
/// touching the environment of the test process.
pub fn decide(test: &str, unmet: Option<&str>, strict: bool) -> Verdict {
    match unmet {
        None => Verdict::Run,
        Some(reason) if strict => Verdict::Fail(format!(
            "{test}: {reason} ({STRICT_ENV}=1 forbids skipping)"
        )),
        Some(reason) => Verdict::Skip(format!("SKIP {test}: {reason}")),
    }
}

/// True when `APIKEY_STRICT_TESTS` is set to anything true-ish: 1, true,
/// yes, y, on (any case). A value meant as "on" must never keep skipping.
pub fn strict_from_env() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| strict_value(&v))
}

/// The reading of one value of `APIKEY_STRICT_TESTS`.
pub fn strict_value(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on" | "y"
    )
}

/// The running test's name: libtest (and nextest) name the test thread
/// after the test.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// True when the test should go on: `unmet` is `None`. Otherwise the
/// test is skipped (false, after the `SKIP` line) or, in strict mode,
/// fails here.
pub fn proceed_unless(unmet: Option<&str>) -> bool {
    match decide(&current_test(), unmet, strict_from_env()) {
        Verdict::Run => true,
        Verdict::Skip(msg) => {
            // Straight to fd 2: libtest captures `eprintln!`, which would
            // hide the skip from anyone reading the run.
            let _ = writeln!(std::io::stderr(), "{msg}");
            false
        }
        Verdict::Fail(msg) => panic!("{msg}"),
    }
}

/// A field of /proc/self/status (`Uid:`, `CapEff:`), trimmed: read there,
/// not through libc, because this crate has no dependencies.
fn own_status(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
}

/// Why a test that needs root cannot run here, if it cannot:
/// `if !proceed_unless(unmet_root()) { return; }`.
pub fn unmet_root() -> Option<&'static str> {
    let euid =
        own_status("Uid:").and_then(|ids| ids.split_whitespace().nth(1)?.parse::<u32>().ok());
    (euid != Some(0)).then_some("needs root")
}

/// Why a test cannot give a process a login uid (and with it a new audit
/// session) here, if it cannot.
pub fn unmet_loginuid() -> Option<&'static str> {
    if !std::path::Path::new("/proc/self/loginuid").exists() {
        return Some("kernel without audit support (/proc/self/loginuid missing)");
    }
    // Only CAP_AUDIT_CONTROL may set the loginuid of a process; the file
    // itself is writable by its owner, so its mode tells nothing.
    const CAP_AUDIT_CONTROL: u32 = 30;
    let eff = own_status("CapEff:").and_then(|hex| u64::from_str_radix(&hex, 16).ok())?;
    (eff & (1 << CAP_AUDIT_CONTROL) == 0)
        .then_some("needs CAP_AUDIT_CONTROL to write /proc/self/loginuid")
}
