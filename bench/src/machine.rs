//! What the numbers were measured on: they mean little without it.

use serde_json::{json, Value};

pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub os: String,
    pub mem_total_mib: u64,
    pub loadavg: String,
    /// How an idle CPU waits (see [`idle_wait`]).
    pub idle: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let processors = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        // What this process may run on (cgroup or affinity limits) can be
        // fewer than /proc/cpuinfo lists.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(processors.max(1));
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            })
            .unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        Machine {
            cores,
            cpu_model,
            kernel,
            os,
            mem_total_mib,
            loadavg: loadavg(),
            idle: idle_wait(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} cores, {}, {} MiB RAM, {}, {}; load average at start {}; idle CPUs: {}",
            self.cores,
            self.cpu_model,
            self.mem_total_mib,
            self.os,
            self.kernel,
            self.loadavg,
            self.idle
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "cores": self.cores,
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "os": self.os,
            "mem_total_mib": self.mem_total_mib,
            "loadavg_at_start": self.loadavg,
            "idle": self.idle,
        })
    }
}

/// The cpuidle driver, and for a virtual machine's `haltpoll` driver how
/// long an idle vCPU polls before it halts to the host. Latencies of work
/// handed between processes depend on it: at 0 every wake-up of an idle
/// vCPU is a round trip through the hypervisor (measured here: a SQLite
/// Verify's p50 about 90 us with 200 us of polling, 200-300 us with none).
pub fn idle_wait() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let driver = read("/sys/devices/system/cpu/cpuidle/current_driver")
        .unwrap_or_else(|| "no cpuidle driver".into());
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) if driver == "haltpoll" => {
            format!("{driver}, polling {ns} ns before halting to the host")
        }
        _ => driver,
    }
}

/// The 1, 5 and 15 minute load averages: a shared machine's neighbours.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
