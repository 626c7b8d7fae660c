//! Whole logins through libpam: `akt-pam-loop` (the tests' own program)
//! runs pam_start / pam_authenticate / pam_end in a loop in one process,
//! reading the service file from a directory of its own through
//! `pam_start_confdir`, so the machine's /etc/pam.d is never touched.

use std::time::Duration;

use apikey_tests::{bins, As, PamServices};
use serde_json::{json, Value};

use crate::load::round1;

const PAM_SUCCESS: u32 = 0;

/// One stack, logged in with one password `count` times after `warmup`
/// logins that are not counted (libpam loads the modules and NSS opens
/// its files on the first ones).
pub struct Stack<'a> {
    pub label: &'a str,
    /// Service name: the key stack must match the daemon's key_services.
    pub service: &'a str,
    pub text: String,
    pub user: &'a str,
    pub password: &'a str,
    pub warmup: u64,
    pub count: u64,
}

pub struct Logins {
    pub label: String,
    pub count: u64,
    pub median_us: f64,
    pub max_us: f64,
}

impl Logins {
    pub fn to_json(&self) -> Value {
        json!({
            "stack": self.label,
            "logins": self.count,
            "median_us": round1(self.median_us),
            "max_us": round1(self.max_us),
        })
    }
}

/// Runs the loop for one stack; every counted login must succeed.
pub fn run(stack: &Stack<'_>) -> Result<Logins, String> {
    let services = PamServices::new();
    services.add(stack.service, &stack.text);
    let program = bins::binary("akt-pam-loop");
    // Tab-separated phases on stdin, so no password is ever in argv.
    let phases = format!(
        "warmup\t{w}\t{PAM_SUCCESS}\t{p}\nmeasured\t{c}\t{PAM_SUCCESS}\t{p}\n",
        w = stack.warmup.max(1),
        c = stack.count,
        p = stack.password,
    );
    let out = As::root()
        .stdin(phases)
        .timeout(Duration::from_secs(600))
        .run(
            &program.to_string_lossy(),
            &[
                &services.dir().to_string_lossy(),
                stack.service,
                stack.user,
                "0",
            ],
        );
    if out.code != 0 {
        return Err(format!(
            "{}: exit {}\n{}{}",
            out.description, out.code, out.stdout, out.stderr
        ));
    }
    let report: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("akt-pam-loop printed no JSON ({e}): {}", out.stdout))?;
    let measured = &report["phases"][1];
    let num = |k: &str| {
        measured[k]
            .as_u64()
            .ok_or_else(|| format!("no {k}: {report}"))
    };
    if num("as_expected")? != stack.count {
        return Err(format!(
            "{}: not every login succeeded: {report}",
            stack.label
        ));
    }
    Ok(Logins {
        label: stack.label.to_string(),
        count: stack.count,
        median_us: num("median_us")? as f64,
        max_us: num("max_us")? as f64,
    })
}

/// The hash scheme and parameters of `user`'s password in /etc/shadow
/// (`$y$j9T` for yescrypt at Debian's default cost), nothing secret.
pub fn hash_scheme(user: &str) -> String {
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    shadow
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user)).then(|| f.next().unwrap_or("").to_string())
        })
        .map(|hash| {
            let parts: Vec<&str> = hash.split('$').collect();
            match parts.as_slice() {
                ["", scheme, params, ..] if *scheme == "y" => format!("${scheme}${params}"),
                ["", scheme, ..] => format!("${scheme}"),
                _ => "unknown".into(),
            }
        })
        .unwrap_or_else(|| "unknown".into())
}
