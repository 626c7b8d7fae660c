//! A connection is bound to the process that made it, not to its pid
//! (S4). Before, a process could connect, hand the connection to a child
//! and exit; once its pid came round to a process of the same user in a
//! login session, the child's calls were judged by that process's login
//! (a long-lived or session key for a caller in no login session at all).
//!
//! Made deterministic in a pid namespace of the test's own, where
//! /proc/sys/kernel/ns_last_pid puts the victim on the attacker's old pid:
//! bus, daemon, attacker and victim all run in it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use apikey_tests::prelude::*;
use apikey_tests::{bins, skip, tmp};

/// PID 1 of the namespace: bus, daemon, the attack, the verdict.
const SCENARIO: &str = r#"
work=$1 apikeyd=$2 apikey=$3 helper=$4 uid=$5 gid=$6
dbus-daemon --config-file="$work/bus.conf" --nofork --print-address=1 > "$work/addr" 2>"$work/bus.log" &
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.05; done
addr=$(head -n 1 "$work/addr" | sed 's/,guid=.*//')
export DBUS_SYSTEM_BUS_ADDRESS="$addr"
"$apikeyd" --config "$work/apikeyd.toml" 2>"$work/apikeyd.log" &
for _ in $(seq 100); do "$apikey" status >/dev/null 2>&1 && break; sleep 0.1; done
"$apikey" settings --allow-user-keys yes >/dev/null

# The attacker: the user, in no login session.
mkfifo "$work/go"
setpriv --reuid="$uid" --regid="$gid" --clear-groups "$helper" "$addr" <"$work/go" >"$work/attacker" 2>&1 &
parent=$!
exec 3>"$work/go"
for _ in $(seq 100); do grep -q '^ready ' "$work/attacker" && break; sleep 0.05; done
wait "$parent"
echo "attacker's pid $parent is free"

# The victim: the same user in a login session, on that pid.
echo $((parent - 1)) > /proc/sys/kernel/ns_last_pid
sh -c "echo $uid > /proc/self/loginuid && exec setpriv --reuid=$uid --regid=$gid --clear-groups sleep 60" &
victim=$!
echo "victim's pid $victim"
[ "$victim" = "$parent" ] || { echo "FAIL: the pid did not come round"; exit 1; }
for _ in $(seq 100); do
	[ "$(cat /proc/$victim/loginuid 2>/dev/null)" = "$uid" ] && [ "$(stat -c %u /proc/$victim)" = "$uid" ] && break
	sleep 0.02
done

echo go >&3
for _ in $(seq 100); do grep -q '^result ' "$work/attacker" && break; sleep 0.05; done
grep '^result ' "$work/attacker" || { echo "FAIL: no result"; cat "$work/attacker"; exit 1; }
echo "session keys: $("$apikey" list --all --sessions --json | tr -d '\n ')"
"#;

#[test]
fn a_connection_whose_process_exited_cannot_borrow_the_login_of_the_process_on_its_pid() {
    require!(
        Need::World,
        Need::Program("unshare"),
        Need::Program("mkfifo")
    );
    let alice = TestUser::create("alice");
    let work = tmp::temp_dir("pidreuse");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = work.path();
    // The harness's permissive policy: root owns the name, anyone calls.
    std::fs::create_dir(w.join("system.d")).unwrap();
    std::fs::write(
        w.join("bus.conf"),
        apikey_tests::bus::bus_config(&w.join("bus.sock"), &w.join("system.d"), true),
    )
    .unwrap();
    let config = DaemonConfig::default().to_toml(
        &w.join("keys.db"),
        &w.join("no-syslog"),
        &w.join("pam.sock"),
    );
    std::fs::write(w.join("apikeyd.toml"), config).unwrap();
    let helper = bins::akt_bus().with_file_name("akt-pid-reuse");
    let out = Command::new(skip::program("unshare"))
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(["/bin/sh", "-euc", SCENARIO, "sh"])
        .arg(w)
        .arg(bins::apikeyd())
        .arg(bins::apikey())
        .arg(&helper)
        .arg(alice.uid().to_string())
        .arg(alice.gid().to_string())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let transcript = format!(
        "{}\n{}\n--- apikeyd\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(w.join("apikeyd.log")).unwrap_or_default()
    );
    assert!(out.status.success(), "{transcript}");
    assert!(
        transcript.contains("result err org.apikey.Keys1.Error.Denied"),
        "the call was not refused:\n{transcript}"
    );
    assert!(
        transcript.contains("session keys: []"),
        "a key was made:\n{transcript}"
    );
}
