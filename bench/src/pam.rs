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
    /// The median of the rounds' medians.
    pub median_us: f64,
    /// The lowest and highest median of one round: how much the machine
    /// moved under the measurement.
    pub round_medians_us: (f64, f64),
    pub max_us: f64,
}

impl Logins {
    pub fn to_json(&self) -> Value {
        json!({
            "stack": self.label,
            "logins": self.count,
            "median_us": round1(self.median_us),
            "round_medians_us": [round1(self.round_medians_us.0), round1(self.round_medians_us.1)],
            "max_us": round1(self.max_us),
        })
    }
}

/// What one run of the loop measured.
struct Round {
    logins: u64,
    median_us: f64,
    max_us: f64,
}

/// Logs in through every stack in `rounds` rounds, the stacks taking turns
/// within each round, so that a neighbour's burst on a shared machine
/// lands in a few rounds of every stack rather than in all of one. Each
/// round runs `count / rounds` logins (at least one) after its warm-up;
/// the first round warms up with the stack's full `warmup`.
pub fn run_interleaved(stacks: &[Stack<'_>], rounds: usize) -> Result<Vec<Logins>, String> {
    let rounds = rounds.max(1);
    let services: Vec<PamServices> = stacks
        .iter()
        .map(|stack| {
            let services = PamServices::new();
            services.add(stack.service, &stack.text);
            services
        })
        .collect();
    let mut measured: Vec<Vec<Round>> = stacks.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for ((stack, services), out) in stacks.iter().zip(&services).zip(&mut measured) {
            let warmup = match r {
                0 => stack.warmup,
                _ => (stack.warmup / 10).max(1),
            };
            let count = (stack.count / rounds as u64).max(1);
            out.push(run_once(stack, services, warmup, count)?);
        }
    }
    Ok(stacks
        .iter()
        .zip(measured)
        .map(|(stack, rounds_of_stack)| summarize(stack, &rounds_of_stack))
        .collect())
}

fn summarize(stack: &Stack<'_>, rounds_of_stack: &[Round]) -> Logins {
    let mut medians: Vec<f64> = rounds_of_stack.iter().map(|r| r.median_us).collect();
    medians.sort_by(f64::total_cmp);
    let n = medians.len();
    let median_us = match n % 2 {
        1 => medians[n / 2],
        _ => (medians[n / 2 - 1] + medians[n / 2]) / 2.0,
    };
    Logins {
        label: stack.label.to_string(),
        count: rounds_of_stack.iter().map(|r| r.logins).sum(),
        median_us,
        round_medians_us: (medians[0], medians[n - 1]),
        max_us: rounds_of_stack.iter().map(|r| r.max_us).fold(0.0, f64::max),
    }
}

/// One run of the loop for one stack; every counted login must succeed.
fn run_once(
    stack: &Stack<'_>,
    services: &PamServices,
    warmup: u64,
    count: u64,
) -> Result<Round, String> {
    let program = bins::binary("akt-pam-loop");
    // Tab-separated phases on stdin, so no password is ever in argv.
    let phases = format!(
        "warmup\t{w}\t{PAM_SUCCESS}\t{p}\nmeasured\t{count}\t{PAM_SUCCESS}\t{p}\n",
        w = warmup.max(1),
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
    if num("as_expected")? != count {
        return Err(format!(
            "{}: not every login succeeded: {report}",
            stack.label
        ));
    }
    Ok(Round {
        logins: count,
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
