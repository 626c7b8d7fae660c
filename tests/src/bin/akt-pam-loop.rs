//! `akt-pam-loop CONFDIR SERVICE USER WARMUP`: many logins through libpam
//! in one process, the way a long-lived host service (vsftpd's parent,
//! an nginx worker) runs them, to show that the module leaves nothing
//! behind: no file descriptor, no thread, no memory.
//!
//! It links libpam itself and uses `pam_start_confdir`, so the service
//! files come from CONFDIR without a private mount. Each login is a whole
//! `pam_start`, `pam_authenticate`, `pam_end`; a `PAM_FAIL_DELAY` callback
//! records the delay libpam asks for instead of sleeping it, so refusals
//! cost only what the module itself spends.
//!
//! Passwords come on stdin, never in argv: one phase a line,
//! `NAME<TAB>COUNT<TAB>EXPECTED_PAM_CODE<TAB>PASSWORD`. The answer is one
//! JSON object on stdout: per phase the PAM codes seen and the login times;
//! and open fds, threads, RSS and the bytes malloc has handed out and not
//! had back, sampled after the first WARMUP logins (`start`) and after the
//! last (`end`).
//!
//! After the phases, one handle is authenticated with the first phase's
//! password and then forked: the child and the parent each run
//! `pam_acct_mgmt` on it (`fork`: both codes), as sshd's processes share a
//! handle. Each sample also counts the copies of pam_apikey.so mapped.
//!
//! With `AKT_PAM_SESSION=1` in the environment, a login that
//! authenticated also runs `pam_acct_mgmt`, `pam_open_session` and
//! `pam_close_session`, as sshd does around a shell; its code is the
//! first of them that failed.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::BufRead;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use serde_json::json;

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_CONV_ERR: c_int = 19;
const PAM_BUF_ERR: c_int = 5;
const PAM_SUCCESS: c_int = 0;
const PAM_FAIL_DELAY: c_int = 10;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

type DelayFn = extern "C" fn(c_int, c_uint, *mut c_void);

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
}

/// The largest delay libpam asked for during the current login.
static DELAY_ASKED: AtomicU32 = AtomicU32::new(0);

extern "C" fn record_delay(_status: c_int, usec: c_uint, _appdata: *mut c_void) {
    DELAY_ASKED.fetch_max(usec, Ordering::Relaxed);
}

/// Answers every prompt with the password (`appdata` is its C string).
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    let n = num_msg as usize;
    // SAFETY: libpam frees the array and every `resp` with free(3), so
    // they come from calloc/strdup; `msg` holds `num_msg` pointers (the
    // Linux-PAM layout) and `appdata` is the CString given to pam_start.
    unsafe {
        let out = libc::calloc(n, std::mem::size_of::<PamResponse>()) as *mut PamResponse;
        if out.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..n {
            let m = *msg.add(i);
            if m.is_null() {
                continue;
            }
            let answer = match (*m).msg_style {
                PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => libc::strdup(appdata as *const c_char),
                _ => std::ptr::null_mut(),
            };
            (*out.add(i)).resp = answer;
        }
        *resp = out;
    }
    PAM_SUCCESS
}

struct Phase {
    name: String,
    count: usize,
    expected: c_int,
    password: CString,
}

fn read_phases() -> Vec<Phase> {
    let mut phases = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        if line.is_empty() {
            continue;
        }
        let mut f = line.splitn(4, '\t');
        let (Some(name), Some(count), Some(expected), Some(password)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            usage("a phase line needs NAME, COUNT, EXPECTED and PASSWORD");
        };
        phases.push(Phase {
            name: name.to_string(),
            count: count.parse().unwrap_or_else(|_| usage("COUNT")),
            expected: expected.parse().unwrap_or_else(|_| usage("EXPECTED")),
            password: CString::new(password).unwrap_or_else(|_| usage("PASSWORD has a NUL")),
        });
    }
    phases
}

fn usage(what: &str) -> ! {
    eprintln!("akt-pam-loop: {what}\nusage: akt-pam-loop CONFDIR SERVICE USER WARMUP < phases");
    std::process::exit(2);
}

/// A new handle; `conv` must outlive it.
fn start(confdir: &CStr, service: &CStr, user: &CStr, conv: &PamConv) -> *mut c_void {
    let mut pamh: *mut c_void = std::ptr::null_mut();
    // SAFETY: every pointer outlives the handle (the caller's part).
    unsafe {
        let rc = pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            conv,
            confdir.as_ptr(),
            &mut pamh,
        );
        if rc != PAM_SUCCESS {
            eprintln!("akt-pam-loop: pam_start_confdir failed: {rc}");
            std::process::exit(1);
        }
        let delay: DelayFn = record_delay;
        pam_set_item(pamh, PAM_FAIL_DELAY, delay as *const c_void);
    }
    pamh
}

/// A handle authenticated in this process, then acct_mgmt in a forked
/// child and in this process: (child's code, parent's code).
fn fork_mid_handle(confdir: &CStr, service: &CStr, user: &CStr, password: &CStr) -> (c_int, c_int) {
    let conv = PamConv {
        conv: converse,
        appdata_ptr: password.as_ptr() as *mut c_void,
    };
    let pamh = start(confdir, service, user, &conv);
    // SAFETY: the handle lives until pam_end in each process; the child
    // runs only libpam and the module, then _exit.
    unsafe {
        let rc = pam_authenticate(pamh, 0);
        if rc != PAM_SUCCESS {
            pam_end(pamh, rc);
            return (-1, rc);
        }
        let pid = libc::fork();
        if pid == 0 {
            let rc = pam_acct_mgmt(pamh, 0);
            pam_end(pamh, rc);
            libc::_exit(rc);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        let child = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -2
        };
        let rc = pam_acct_mgmt(pamh, 0);
        pam_end(pamh, rc);
        (child, rc)
    }
}

/// One whole login; returns the code of pam_authenticate, or with
/// `sessions` of the first step that failed.
fn login(confdir: &CStr, service: &CStr, user: &CStr, password: &CStr, sessions: bool) -> c_int {
    let conv = PamConv {
        conv: converse,
        appdata_ptr: password.as_ptr() as *mut c_void,
    };
    let pamh = start(confdir, service, user, &conv);
    // SAFETY: every pointer outlives the handle, which ends below.
    unsafe {
        let mut rc = pam_authenticate(pamh, 0);
        if sessions && rc == PAM_SUCCESS {
            rc = pam_acct_mgmt(pamh, 0);
            if rc == PAM_SUCCESS {
                rc = pam_open_session(pamh, 0);
                if rc == PAM_SUCCESS {
                    rc = pam_close_session(pamh, 0);
                }
            }
        }
        pam_end(pamh, rc);
        rc
    }
}

fn sample() -> serde_json::Value {
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let heap = unsafe { libc::mallinfo2() };
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut module_files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|path| path.contains("pam_apikey"))
        .collect();
    module_files.sort_unstable();
    module_files.dedup();
    json!({
        "module_mapped": module_files.len(),
        "fds": fds,
        "threads": field("Threads:"),
        "rss_kb": field("VmRSS:"),
        "heap_in_use": heap.uordblks,
    })
}

fn median(sorted: &[u64]) -> u64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [confdir, service, user, warmup] = args.as_slice() else {
        usage("wrong number of arguments");
    };
    let warmup: usize = warmup.parse().unwrap_or_else(|_| usage("WARMUP"));
    let c = |s: &str| CString::new(s).unwrap_or_else(|_| usage("an argument has a NUL"));
    let (confdir, service, user) = (c(confdir), c(service), c(user));
    let phases = read_phases();
    let sessions = std::env::var("AKT_PAM_SESSION").is_ok_and(|v| v == "1");

    // Everything the bookkeeping needs is allocated before the first
    // sample and freed after the last, so the heap samples see only what
    // libpam and the module keep.
    let mut times_us: Vec<Vec<u64>> = phases.iter().map(|p| Vec::with_capacity(p.count)).collect();
    let mut codes: Vec<BTreeMap<c_int, u64>> = phases
        .iter()
        .map(|p| BTreeMap::from([(PAM_SUCCESS, 0), (p.expected, 0)]))
        .collect();
    let mut delay_max = vec![0u32; phases.len()];

    let started = Instant::now();
    let mut done = 0usize;
    let mut start = (warmup == 0).then(sample);
    for (i, phase) in phases.iter().enumerate() {
        for _ in 0..phase.count {
            DELAY_ASKED.store(0, Ordering::Relaxed);
            let t = Instant::now();
            let rc = login(&confdir, &service, &user, &phase.password, sessions);
            times_us[i].push(t.elapsed().as_micros() as u64);
            if rc != PAM_SUCCESS {
                delay_max[i] = delay_max[i].max(DELAY_ASKED.load(Ordering::Relaxed));
            }
            *codes[i].entry(rc).or_default() += 1;
            done += 1;
            if done == warmup {
                start = Some(sample());
            }
        }
    }
    let total_ms = started.elapsed().as_millis() as u64;
    let end = sample();
    let fork = phases
        .first()
        .map(|p| fork_mid_handle(&confdir, &service, &user, &p.password));

    let results: Vec<serde_json::Value> = phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let times = &mut times_us[i];
            times.sort_unstable();
            let seen: BTreeMap<String, u64> = codes[i]
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(rc, n)| (rc.to_string(), *n))
                .collect();
            json!({
                "name": phase.name,
                "count": phase.count,
                "expected": phase.expected,
                "as_expected": codes[i].get(&phase.expected).copied().unwrap_or(0),
                "codes": seen,
                "median_us": median(times),
                "max_us": times.last().copied().unwrap_or(0),
                "fail_delay_asked_us": delay_max[i],
            })
        })
        .collect();
    let report = json!({
        "phases": results,
        "start": start.unwrap_or_else(sample),
        "end": end,
        "total_ms": total_ms,
        "fork": fork.map(|(child, parent)| json!({"child": child, "parent": parent})),
    });
    println!("{report}");
}
