//! `apikey-bench --quick` runs every part of the benchmark (its own bus
//! and daemon, test users, a seeded store, PAM logins, writes) and writes
//! a report with every section. Only that it runs is checked: timings on
//! a shared CI machine say nothing, so none is asserted.

use apikey_tests::bins;
use apikey_tests::prelude::*;

const SECTIONS: &[&str] = &[
    "machine",
    "setup",
    "ipc_floor",
    "verify",
    "scaling",
    "pam",
    "nginx_auth_pam",
    "writes",
    "fleet",
    "targets",
];

#[test]
fn the_quick_bench_runs_every_part_and_reports_every_section() {
    require!(Need::World, Need::Postgres);
    // `cargo build --workspace` puts it in the directory above the test
    // binaries' deps/, where the harness finds its own helpers.
    let bench = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("apikey-bench")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| bins::binary("apikey-bench"));
    let out_dir = apikey_tests::tmp::temp_dir("bench-out");
    let mut root = As::root().timeout(Duration::from_secs(300));
    // The same daemon and module as the rest of the suite, when it was
    // pointed at other binaries.
    if let Some(dir) = std::env::var_os(bins::BIN_DIR_ENV) {
        root = root.env(bins::BIN_DIR_ENV, &dir.to_string_lossy());
    }
    let out = root.run(
        &bench.to_string_lossy(),
        &["--quick", "--out", &out_dir.path().to_string_lossy()],
    );
    out.ok();
    let path = out_dir.path().join("apikey-bench-quick.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\nstderr:\n{}", path.display(), out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    for section in SECTIONS {
        assert!(
            !report[section].is_null(),
            "no `{section}` in the report:\n{text}"
        );
    }
    assert_eq!(report["mode"], "quick", "{text}");
    assert_eq!(report["errors"]["count"], 0, "{text}");
    // Every row was measured: a part that silently did nothing would
    // leave zero calls behind.
    let calls = |v: &serde_json::Value| v["calls"].as_u64().unwrap_or(0);
    for row in report["ipc_floor"]["ping"].as_array().expect("ping rows") {
        assert!(calls(row) > 0, "{row}");
    }
    let verify = report["verify"]["rows"].as_array().expect("verify rows");
    assert_eq!(verify.len(), 6, "valid and invalid at 1, 8 and 64 callers");
    for row in verify {
        assert!(calls(row) > 0, "{row}");
    }
    let logins = report["pam"]["logins"].as_array().expect("login rows");
    assert_eq!(
        logins.len(),
        6,
        "pam_permit, the module alone, the sshd stack on the socket and on the bus, \
         the module with no key, pam_unix: {text}"
    );
    for size in report["scaling"]["sizes"].as_array().expect("sizes") {
        let socket = size["pam_socket"].as_array().expect("socket rows");
        assert_eq!(
            socket.len(),
            3,
            "Ping and Verify over the socket at 1, 8, 64 callers"
        );
        for row in socket {
            assert!(
                calls(&row["ping"]) > 0 && calls(&row["verify"]) > 0,
                "{row}"
            );
        }
    }
    let servers = report["nginx_auth_pam"]["servers"]
        .as_array()
        .expect("nginx rows");
    assert_eq!(servers.len(), 3, "key, pam_permit, no auth: {text}");
    for server in servers {
        assert!(
            server["median_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{server}"
        );
    }
    for w in ["generate", "revoke"] {
        assert!(calls(&report["writes"][w]) > 0, "{w}: {text}");
    }
    assert!(
        report["daemon_at_end"]["rss_kib"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    // The table went to stdout too.
    let fleet = report["fleet"]["postgresql"]
        .as_array()
        .expect("fleet rows");
    assert_eq!(fleet.len(), 2, "two database sizes: {text}");
    for size in fleet {
        for row in size["verify"].as_array().expect("verify rows") {
            assert!(calls(row) > 0, "{row}");
        }
    }
    assert_eq!(
        calls(&report["fleet"]["revocation_visible_on_other_host"]),
        10,
        "{text}"
    );
    assert!(
        out.stdout.contains("Targets (issues 7, 16 and 18)"),
        "{}",
        out.stdout
    );
    // The soak ran: key logins with sessions through restarts of the
    // daemon and the bus, beside a bad-key flood.
    assert!(out.stdout.contains("soak: "), "{}", out.stdout);
    let path = out_dir.path().join("apikey-soak.json");
    let soak: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert!(soak["logins_ok"].as_u64().unwrap_or(0) > 0, "{soak}");
    assert!(soak["bad_keys_refused"].as_u64().unwrap_or(0) > 0, "{soak}");
    assert!(
        soak["daemon_rss_kib"]["end"].as_u64().unwrap_or(0) > 0,
        "{soak}"
    );
}
