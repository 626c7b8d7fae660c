//! The .deb on a machine booted with systemd as PID 1, as an administrator
//! installs it: apt and dpkg with the real maintainer scripts, the unit
//! with its sandbox, bus activation, journald, logind and Debian's own
//! sshd and PAM stacks; then a reboot, an upgrade, removal and purge.
//!
//! One machine goes through the whole story (booting is the slow part);
//! each step says what it checks, and the first failing check ends the
//! test with the transcript, the daemon's journal and the console.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use apikey_tests::packaging::{next_version, offline_exposure, package};
use apikey_tests::prelude::*;
use apikey_tests::systemd::{Machine, Run};
use apikey_tests::{skip, tmp};

/// Helpers every step script starts with.
const PRELUDE: &str = r##"
user=akboot password=akb-Pw-B00ted-7
say() { echo "== $*"; }
fail() {
	echo "FAIL: $*"
	echo "--- systemctl status apikeyd"; systemctl status --no-pager apikeyd 2>&1 | tail -n 20 || true
	echo "--- journal of apikeyd"; journalctl --no-pager -u apikeyd 2>&1 | tail -n 40 || true
	exit 1
}
# -e: the secret travels in the environment, never in argv.
ssh_as() {
	secret=$1; shift
	SSHPASS=$secret timeout 30 sshpass -e ssh -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 \
		-o PreferredAuthentications=keyboard-interactive,password -o PubkeyAuthentication=no \
		"$user@127.0.0.1" "$@"
}
logs_in() { ssh_as "$1" true; }
# Within a few seconds: bus restarts and daemon starts take a moment.
logs_in_soon() {
	for _ in $(seq 50); do logs_in "$1" 2>/dev/null && return 0; sleep 0.2; done
	return 1
}
main_pid() { systemctl show -P MainPID apikeyd; }
restarts() { systemctl show -P NRestarts apikeyd; }
# Installs with apt or dpkg; fails on any sign of a start that went wrong.
installs() {
	log=/root/install.log
	"$@" >"$log" 2>&1 || fail "$* failed: $(cat $log)"
	if grep -q "Could not execute systemctl" "$log"; then fail "$*: $(cat $log)"; fi
	systemctl is-active --quiet apikeyd || fail "apikeyd is not active after $*: $(cat $log)"
	[ "$(restarts)" = 0 ] || fail "apikeyd needed $(restarts) restarts to start after $*"
}
same_pam_files() {
	for f in /root/before/common-*; do
		cmp "$f" "/etc/pam.d/${f##*/}" || fail "/etc/pam.d/${f##*/} differs from before the install"
	done
}
"##;

/// First boot: a clean machine, the package installed three ways, the
/// daemon's sandbox, logins, bus restarts.
const FIRST_BOOT: &str = r##"
offline_score=$1
mkdir -p /root/before
cp -p /etc/pam.d/common-* /root/before/
rm -f /var/lib/man-db/auto-update

say "an account apikeyd that is not a system account is refused"
useradd -m -s /bin/sh apikeyd
if dpkg -i /pkg/apikey.deb >/root/refused.log 2>&1; then fail "installed over a regular account apikeyd"; fi
grep -q "refusing to use the existing account apikeyd" /root/refused.log || fail "no clear reason: $(cat /root/refused.log)"
[ ! -e /usr/sbin/apikeyd ] || fail "files were unpacked after the refusal"
dpkg --purge apikey >/dev/null 2>&1 || true
userdel -r apikeyd 2>/dev/null
same_pam_files

say "dpkg -i with a slow package configured after it: the first start works"
installs dpkg -i /pkg/apikey.deb /pkg/slow.deb
dpkg --purge apikey apikey-test-slow >/dev/null
# As new: the account and groups the package made go too.
userdel apikeyd
for g in apikeyd apikey-admin apikey-auth; do ! getent group $g >/dev/null || groupdel $g; done
same_pam_files

say "apt install ./apikey.deb: the first start works"
installs apt-get install -y /pkg/apikey.deb

say "the daemon runs as the unit says"
pid=$(main_pid)
uid=$(id -u apikeyd)
status=/proc/$pid/status
grep -Eq "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid$" $status || fail "not uid $uid: $(grep Uid $status)"
grep -q "^CapEff:[[:space:]]*0000000000000000$" $status || fail "capabilities: $(grep CapEff $status)"
grep -q "^NoNewPrivs:[[:space:]]*1$" $status || fail "no NoNewPrivs"
grep -q "^Seccomp:[[:space:]]*2$" $status || fail "no seccomp filter"
grep -Eq "^Groups:.*\b$(getent group shadow | cut -d: -f3)\b" $status || fail "no group shadow: $(grep Groups $status)"
[ "$(systemctl show -P MemoryMax apikeyd)" = 268435456 ] || fail "MemoryMax is $(systemctl show -P MemoryMax apikeyd)"
[ "$(systemctl show -P TasksMax apikeyd)" = 64 ] || fail "TasksMax is $(systemctl show -P TasksMax apikeyd)"

say "systemd-analyze security, online"
score=$(systemd-analyze security --no-pager apikeyd.service | sed -n 's/.*Overall exposure level for apikeyd.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure score"
echo "online exposure $score, offline $offline_score"
awk -v a="$score" -v b="$offline_score" 'BEGIN { exit !(a <= b) }' || fail "online exposure $score above the offline $offline_score"

say "D-Bus activation after systemctl stop"
systemctl stop apikeyd
apikey status >/dev/null || fail "apikey status did not activate the daemon"
systemctl is-active --quiet apikeyd || fail "activation did not go through the unit"

say "a key made in an ssh password login logs in over ssh"
useradd -m -s /bin/sh "$user"
echo "$user:$password" | chpasswd
apikey settings --allow-user-keys yes >/dev/null
key=$(ssh_as "$password" apikey generate --name boot) || fail "generate in a password login: $key"
logs_in "$key" || fail "sshd refused the key"
logs_in "$password" || fail "sshd refused the password"
id=$(apikey list --all --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$id" ] || fail "no key listed"
journalctl --no-pager -u apikeyd -o cat | grep "event=verify" | grep "outcome=\"ok\"" | grep -q "key=\"$id\"" ||
	fail "no audit line for the login in the journal"
if journalctl --no-pager -o cat | grep -qF "$key"; then fail "the token is in the journal"; fi

say "the journal has the login's fields: MESSAGE_ID and APIKEY_* (journald's native protocol)"
entry=$(journalctl --no-pager -o json MESSAGE_ID=ba76703ea36e42cfb72dec6e9d31965e APIKEY_USER="$user" APIKEY_OUTCOME=ok |
	tail -n 1 | sed 's/" *: *"/":"/g')
[ -n "$entry" ] || fail "journalctl MESSAGE_ID=... APIKEY_USER=$user finds nothing"
for want in "\"APIKEY_KEY_ID\":\"$id\"" '"APIKEY_EVENT":"verify"' '"APIKEY_SERVICE":"sshd' \
	'"APIKEY_RHOST":"127.0.0.1"' '"SYSLOG_IDENTIFIER":"apikeyd"' '"_SYSTEMD_UNIT":"apikeyd.service"'; do
	case "$entry" in *"$want"*) ;; *) fail "the entry lacks $want: $entry" ;; esac
done
if journalctl --no-pager -o json APIKEY_USER="$user" | grep -qF "${key#apikey?}"; then
	fail "the token is in a journal field"
fi

say "the PAM socket: in the daemon's own directory, open to connect to, served"
[ "$(stat -c '%U %a' /run/apikey)" = "apikeyd 755" ] || fail "/run/apikey is $(stat -c '%U %a' /run/apikey)"
[ -S /run/apikey/pam.sock ] || fail "no socket at /run/apikey/pam.sock"
[ "$(stat -c '%a' /run/apikey/pam.sock)" = 666 ] || fail "pam.sock is mode $(stat -c '%a' /run/apikey/pam.sock)"
if journalctl --no-pager -u apikeyd -o cat | grep -q "not serving the PAM socket"; then
	fail "$(journalctl --no-pager -u apikeyd -o cat | grep 'PAM socket')"
fi

say "a locked account is refused, unlocked it works again"
usermod -L "$user"
if logs_in "$key"; then fail "a locked account logged in with its key"; fi
usermod -U "$user"
logs_in "$key" || fail "the key failed after the unlock"

say "systemctl restart apikeyd keeps the keys"
old=$(main_pid)
systemctl restart apikeyd
[ "$(main_pid)" != "$old" ] || fail "not restarted"
logs_in "$key" || fail "the key failed after a restart"

say "systemctl restart dbus: key logins work again within seconds"
old=$(main_pid)
systemctl restart dbus
logs_in_soon "$key" || fail "the key did not work within 10 s of a dbus restart"
systemctl is-active --quiet apikeyd || fail "apikeyd is not active after the dbus restart"
echo "apikeyd pid $old before, $(main_pid) after; restarts $(restarts)"

say "revoked: refused at the next login, the password still works"
apikey revoke --all --user "$user" >/dev/null
if logs_in "$key"; then fail "a revoked key logged in"; fi
logs_in "$password" || fail "the password failed after the revocation"

say "a key for after the reboot"
ssh_as "$password" apikey generate --name reboot > /root/key2 || fail "second key"
logs_in "$(cat /root/key2)" || fail "the second key"
say "ok"
"##;

/// Second boot: the daemon comes up with the machine; upgrade, a removal
/// that hand-written PAM lines stop, removal and purge.
const SECOND_BOOT: &str = r##"
key=$(cat /root/key2)
say "after a reboot: the unit is up and the key works"
systemctl is-enabled --quiet apikeyd || fail "apikeyd is not enabled"
logs_in "$key" || fail "the key failed after a reboot"

say "upgrade to the next version"
old=$(main_pid)
installs apt-get install -y /pkg/next.deb
case "$(dpkg-query -W -f '${Version}' apikey)" in *+next1) ;; *) fail "not upgraded";; esac
[ "$(main_pid)" != "$old" ] || fail "the daemon was not restarted by the upgrade"
logs_in "$key" || fail "the key failed after the upgrade"

say "a hand-written PAM line stops the removal and is named"
cp -p /etc/pam.d/sshd /root/sshd.pam
sed -i '1i auth sufficient pam_apikey.so' /etc/pam.d/sshd
if apt-get remove -y apikey >/root/remove.log 2>&1; then fail "removed while /etc/pam.d/sshd needs the module"; fi
grep -q "/etc/pam.d/sshd:1: auth sufficient pam_apikey.so" /root/remove.log || fail "the line is not named: $(cat /root/remove.log)"
[ -e /lib/x86_64-linux-gnu/security/pam_apikey.so ] || fail "the module went anyway"
grep -q pam_apikey.so /etc/pam.d/common-auth || fail "the profile was not put back"
logs_in "$password" || fail "the password failed after the refused removal"
cp -p /root/sshd.pam /etc/pam.d/sshd

say "apt remove: the PAM files as before, no daemon, passwords work"
apt-get remove -y apikey >/root/remove.log 2>&1 || fail "remove: $(cat /root/remove.log)"
same_pam_files
for _ in $(seq 50); do pgrep -u apikeyd >/dev/null || break; sleep 0.1; done
if pgrep -u apikeyd >/dev/null; then fail "apikeyd still runs after the removal"; fi
logs_in "$password" || fail "the password failed after the removal"
[ -e /var/lib/apikey/keys.db ] || fail "remove took the keys"

say "apt purge: the keys and configuration go"
apt-get purge -y apikey >/root/purge.log 2>&1 || fail "purge: $(cat /root/purge.log)"
same_pam_files
[ ! -e /var/lib/apikey ] || fail "/var/lib/apikey is left"
[ ! -e /etc/apikey ] || fail "/etc/apikey is left"
if pgrep -u apikeyd >/dev/null; then fail "apikeyd runs after the purge"; fi
say "ok"
"##;

/// A package whose postinst takes 3 s, configured after apikey in the
/// same dpkg run: the daemon's first start must not depend on dbus's own
/// trigger running soon after apikey's postinst.
fn slow_package(dir: &Path) -> PathBuf {
    let tree = dir.join("slow");
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        "Package: apikey-test-slow\nVersion: 1\nArchitecture: all\n\
         Maintainer: apikey tests <tests@example.invalid>\n\
         Description: configures slowly\n",
    )
    .unwrap();
    let postinst = tree.join("DEBIAN/postinst");
    std::fs::write(&postinst, "#!/bin/sh\nsleep 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&postinst, std::fs::Permissions::from_mode(0o755)).unwrap();
    let deb = dir.join("slow.deb");
    let out = Command::new(skip::program("dpkg-deb"))
        .args(["-b", "--root-owner-group"])
        .arg(&tree)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

fn ok(step: &str, run: Run) {
    assert!(
        run.status.success() && run.stdout.ends_with("== ok\n"),
        "{step}: {}\n{}",
        run.status,
        run.transcript()
    );
    eprintln!("{step}:\n{}", run.stdout);
}

#[test]
fn the_package_under_systemd_installs_starts_first_time_survives_restarts_and_reboots_and_leaves_cleanly(
) {
    require!(
        Need::Root,
        Need::Packages,
        Need::SystemdMachine,
        Need::Program("nsenter"),
        Need::Program("dpkg-deb"),
        Need::Program("systemd-analyze")
    );
    let pkgs = tmp::temp_dir("boot-pkgs");
    std::fs::copy(package("deb").unwrap(), pkgs.path().join("apikey.deb")).unwrap();
    let next = next_version(&package("deb").unwrap(), pkgs.path());
    std::fs::rename(&next, pkgs.path().join("next.deb")).unwrap();
    slow_package(pkgs.path());
    let score = offline_exposure(false).0.to_string();

    let mut machine = Machine::new("apikey-boot", &[(pkgs.path(), "/pkg")]);
    machine.boot();
    ok(
        "first boot",
        machine.sh_args(&format!("{PRELUDE}{FIRST_BOOT}"), &[&score]),
    );
    machine.reboot();
    ok(
        "second boot",
        machine.sh(&format!("{PRELUDE}{SECOND_BOOT}")),
    );
    machine.sh("systemctl poweroff");
    machine.wait_down(Duration::from_secs(60));
}
