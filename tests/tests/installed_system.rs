//! The .deb installed on this machine, as an administrator would install
//! it, and an upgrade to the next version.
//!
//! Everything runs in a throwaway copy of the machine: an overlay of `/`
//! whose changes live in a tmpfs, with a /run and /tmp of its own, in a
//! mount and pid namespace of the test's own. dpkg, adduser, pam-auth-update
//! and the daemons change the copy; the machine's /etc, dpkg database and
//! system bus are never touched, and every process started in there dies
//! with the namespace, whether the test passes, fails or is killed.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use apikey_tests::packaging::{next_version, package};
use apikey_tests::prelude::*;
use apikey_tests::{skip, tmp};

/// Run as PID 1 of the new pid namespace: builds the copy of the machine
/// and runs `inner.sh` chrooted into it. $1: the work dir (holding `in/`).
const OUTER: &str = r#"
set -eu
work=$1; shift
mkdir -p "$work/ovl" "$work/root"
mount -t tmpfs -o mode=0755 apikey-test "$work/ovl"
mkdir "$work/ovl/upper" "$work/ovl/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/ovl/upper,workdir=$work/ovl/work" "$work/root"
mount -t proc proc "$work/root/proc"
mount --rbind /dev "$work/root/dev"
mount -t tmpfs -o mode=0755 apikey-run "$work/root/run"
mount -t tmpfs -o mode=1777 apikey-tmp "$work/root/tmp"
cp "$work/in/"* "$work/root/tmp/"
exec chroot "$work/root" /bin/sh -eu /tmp/inner.sh "$@"
"#;

/// Inside the copy, as root. $1: install | upgrade; $2: the package;
/// $3: a free loopback port; $4 (upgrade): the next version's package.
const INNER: &str = r##"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C DEBIAN_FRONTEND=noninteractive
mode=$1 deb=$2 port=$3 next=${4:-}
user=akinst password=akt-Pw-Inst4ll3d
say() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

owner_pid() {
	set -- $(dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus / \
		org.freedesktop.DBus.GetConnectionUnixProcessID string:org.apikey.Keys1 2>/dev/null || true)
	[ "${1:-}" = uint32 ] && echo "$2"
}

# As apikeyd.service starts it: the account, the group shadow, no
# capabilities, no new privileges.
start_daemon() {
	setpriv --reuid=apikeyd --regid=apikeyd --groups=shadow --no-new-privs \
		--bounding-set=-all /usr/sbin/apikeyd >>/tmp/apikeyd.log 2>&1 &
	for _ in $(seq 100); do
		[ -n "$(owner_pid)" ] && break
		sleep 0.1
	done
	pid=$(owner_pid) || fail "apikeyd did not take its name: $(cat /tmp/apikeyd.log)"
	[ "$(stat -c %U /proc/$pid)" = apikeyd ] || fail "the daemon does not run as apikeyd"
	grep -q "^Groups:.*\b$(getent group shadow | cut -d: -f3)\b" /proc/$pid/status ||
		fail "the daemon lacks the group shadow"
}

stop_daemon() {
	pid=$(owner_pid) || return 0
	kill "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# A key made by the user in a password login through the system's own
# sshd stack, whose common-session line registers it with the daemon:
# keys are made only in a login registered so (S6).
new_key() {
	ssh_run "$password" apikey generate --name installed
}

key_is_valid() {
	printf '%s\n' "$1" | apikey verify --user "$user" --service sshd >/dev/null
}

start_sshd() {
	mkdir -p /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f /tmp/hostkey
	cat >/tmp/sshd_config <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey /tmp/hostkey
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication yes
PubkeyAuthentication no
PidFile /run/sshd-test.pid
EOF
	/usr/sbin/sshd -D -e -f /tmp/sshd_config 2>/tmp/sshd.log &
	for _ in $(seq 100); do
		grep -q "Server listening" /tmp/sshd.log && return 0
		sleep 0.1
	done
	fail "sshd did not start: $(cat /tmp/sshd.log)"
}

# ssh_run SECRET COMMAND...: the command in a login of $user. -e: the
# secret travels in the environment, never in argv.
ssh_run() {
	secret=$1
	shift
	SSHPASS=$secret sshpass -e ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o PreferredAuthentications=keyboard-interactive,password -o PubkeyAuthentication=no \
		-o LogLevel=ERROR -o ConnectTimeout=10 -p "$port" "$user@127.0.0.1" "$@"
}

ssh_login() {
	ssh_run "$1" true
}

mkdir -p /tmp/before
cp -p /etc/pam.d/common-* /tmp/before/
# Saves man-db's index rebuild at every dpkg run (seconds each); the
# copy is thrown away anyway.
rm -f /var/lib/man-db/auto-update

say "dpkg -i $deb"
dpkg -i "$deb"
getent passwd apikeyd >/dev/null || fail "no account apikeyd"
getent group apikey-admin >/dev/null || fail "no group apikey-admin"
getent group apikey-auth >/dev/null || fail "no group apikey-auth"
[ "$(stat -c '%U %G %a' /var/lib/apikey)" = "apikeyd apikeyd 700" ] ||
	fail "/var/lib/apikey is $(stat -c '%U %G %a' /var/lib/apikey)"
grep -q "pam_apikey.so" /etc/pam.d/common-auth || fail "common-auth lacks pam_apikey.so"
grep -q "^account.*pam_apikey.so" /etc/pam.d/common-account || fail "common-account lacks pam_apikey.so"

say "the system bus and the daemon"
mkdir -p /run/dbus
dbus-daemon --system --fork
start_daemon
apikey status
apikey settings --allow-user-keys yes >/dev/null

useradd -m -s /bin/sh "$user"
echo "$user:$password" | chpasswd
say "sshd with the system's /etc/pam.d/sshd"
start_sshd
key=$(new_key)
key_is_valid "$key" || fail "a fresh key is not valid"

if [ "$mode" = upgrade ]; then
	echo "# the administrator's own line" >>/etc/apikey/apikeyd.toml
	say "dpkg -i $next"
	dpkg -i "$next"
	version=$(dpkg-query -W -f '${Version}' apikey)
	say "now $version"
	grep -q "^# the administrator's own line" /etc/apikey/apikeyd.toml ||
		fail "the upgrade replaced the administrator's configuration"
	grep -q "pam_apikey.so" /etc/pam.d/common-auth || fail "the upgrade left the PAM stacks"
	# What the unit's restart after an upgrade does.
	stop_daemon
	start_daemon
	[ "$(readlink /proc/$(owner_pid)/exe)" = /usr/sbin/apikeyd ] || fail "not the new binary"
	key_is_valid "$key" || fail "the key does not survive the upgrade"
fi

say "logins through sshd"
ssh_login "$key" || fail "sshd refused the key"
ssh_login "$password" || fail "sshd refused the password"
apikey revoke --all --user "$user" >/dev/null
if ssh_login "$key"; then fail "sshd accepted a revoked key"; fi
ssh_login "$password" || fail "sshd refused the password after the revocation"
kill "$(cat /run/sshd-test.pid)"

say "dpkg --purge apikey"
dpkg --purge apikey
for f in /tmp/before/common-*; do
	cmp "$f" "/etc/pam.d/${f##*/}" || fail "/etc/pam.d/${f##*/} differs from before the install"
done
[ ! -e /var/lib/apikey ] || fail "/var/lib/apikey is left"
[ ! -e /etc/apikey ] || fail "/etc/apikey is left"
for _ in $(seq 50); do
	pgrep -x apikeyd >/dev/null || break
	sleep 0.1
done
if pgrep -x apikeyd >/dev/null; then fail "apikeyd still runs after the purge"; fi
say "ok"
"##;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Runs the scenario in a copy of the machine; panics with the transcript
/// unless it ends well.
fn run_in_copy(mode: &str, packages: &[&Path]) {
    let work = tmp::temp_dir("installed");
    let input = work.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("inner.sh"), INNER).unwrap();
    let mut args = vec![mode.to_string()];
    for (i, deb) in packages.iter().enumerate() {
        let name = format!("package-{i}.deb");
        std::fs::copy(deb, input.join(&name)).unwrap();
        args.push(format!("/tmp/{name}"));
        if i == 0 {
            args.push(free_port().to_string());
        }
    }
    let mut cmd = Command::new(skip::program("unshare"));
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
    ])
    .args(["/bin/sh", "-c", OUTER, "outer"])
    .arg(work.path())
    .args(&args)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run unshare");
    let transcript = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && out.stdout.ends_with(b"== ok\n"),
        "{mode} in a copy of the machine: {}\n{transcript}",
        out.status
    );
}

#[test]
fn the_package_installs_serves_sshd_through_the_system_stack_and_purges_cleanly() {
    require!(
        Need::Root,
        Need::Packages,
        Need::Program("unshare"),
        Need::Program("chroot"),
        Need::Program("dpkg"),
        Need::Program("sshd"),
        Need::Program("sshpass"),
        Need::Program("dbus-daemon"),
        Need::Program("setpriv")
    );
    let deb = package("deb").unwrap();
    run_in_copy("install", &[&deb]);
}

#[test]
fn a_key_made_before_an_upgrade_still_works_after_it() {
    require!(
        Need::Root,
        Need::Packages,
        Need::Program("unshare"),
        Need::Program("chroot"),
        Need::Program("dpkg"),
        Need::Program("dpkg-deb"),
        Need::Program("sshd"),
        Need::Program("sshpass"),
        Need::Program("dbus-daemon"),
        Need::Program("setpriv")
    );
    let deb = package("deb").unwrap();
    let scratch = tmp::temp_dir("upgrade");
    let next = next_version(&deb, scratch.path());
    run_in_copy("upgrade", &[&deb, &next]);
}
