//! S8 whichever way the daemon is started: it must be able to read the
//! lock state of local accounts, or refuse their keys.
//!
//! Before, a daemon started by D-Bus activation without systemd ran
//! without the group shadow, read no shadow entries, and took every
//! account as unlocked: a locked account's key still logged in.

use apikey_tests::packaging::bus_policy_for;
use apikey_tests::prelude::*;
use apikey_tests::world::apikey_for_users;
use apikey_tests::{tmp, Output};

struct Site {
    daemon: Daemon,
    bus: PrivateBus,
    alice: TestUser,
    apikey: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A bus with the packaged policy, `daemon_user` standing in for apikeyd,
/// and the daemon started through `wrapper`.
fn site(daemon_user: &TestUser, wrapper: Vec<String>) -> Site {
    let dir = tmp::temp_dir("acctstate");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let policy = bus_policy_for(daemon_user.name(), dir.path());
    let bus = PrivateBus::start_with(&BusOptions {
        permissive: false,
        policy_files: vec![policy],
    });
    let daemon = Daemon::start(
        &bus,
        &DaemonConfig {
            wrapper,
            ..DaemonConfig::default()
        },
    );
    let apikey = apikey_for_users(dir.path());
    // A password of her own: `usermod -L` locks a real hash only (S8).
    let alice = TestUser::create("alice");
    alice.set_password("akt-Acct-St4te-pw");
    Site {
        daemon,
        bus,
        alice,
        apikey,
        _dir: dir,
    }
}

impl Site {
    fn root(&self) -> As {
        As::root().bus(self.bus.address()).apikey_bin(&self.apikey)
    }

    fn new_key(&self) -> String {
        self.root()
            .apikey(&["settings", "--allow-user-keys", "yes"])
            .ok();
        let out = As::user(&self.alice)
            .bus(self.bus.address())
            .apikey_bin(&self.apikey)
            .logged_in()
            .apikey(&["generate"]);
        out.ok();
        out.stdout_trimmed().to_string()
    }

    fn verify(&self, token: &str) -> Output {
        self.root().stdin(format!("{token}\n")).apikey(&[
            "verify",
            "--user",
            self.alice.name(),
            "--service",
            "sshd",
        ])
    }
}

fn status_field(pid: u32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn shadow_gid() -> String {
    nix::unistd::Group::from_name("shadow")
        .unwrap()
        .expect("a group shadow")
        .gid
        .to_string()
}

#[test]
fn without_the_group_shadow_the_daemon_says_so_and_refuses_keys_of_unlocked_accounts_too() {
    require!(Need::World);
    let daemon_user = TestUser::create("akd");
    // As the unit starts it: the group shadow.
    let mut site = site(&daemon_user, apikey_tests::packaging::run_as(&daemon_user));
    let token = site.new_key();
    site.verify(&token).ok();

    // As bus activation used to start it without systemd: no group.
    let mut config = site.daemon.config().clone();
    config.wrapper = vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"u=$1 g=$2; shift 2; exec setpriv --reuid="$u" --regid="$g" --clear-groups --pdeathsig=KILL -- "$@""#.into(),
        "sh".into(),
        daemon_user.uid().to_string(),
        daemon_user.gid().to_string(),
    ];
    site.daemon.reconfigure(&config);
    assert_eq!(
        status_field(site.daemon.pid(), "Groups"),
        Vec::<String>::new()
    );
    let refused = site.verify(&token);
    refused.assert_code(1);
    site.alice.lock();
    site.verify(&token).assert_code(1);
    let log = site.daemon.stderr_text();
    assert!(
        log.contains("WARNING: cannot read /etc/shadow"),
        "said at start:\n{log}"
    );
}

#[test]
fn run_as_started_by_root_takes_the_account_and_the_group_shadow_and_tells_locked_accounts() {
    require!(Need::World);
    let daemon_user = TestUser::create("akd");
    // As bus activation (User=root) and make start run it.
    let wrapper = vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"u=$1; shift; chown -R "$u" "$(dirname "$3")" && exec "$@" --run-as "$u""#.into(),
        "sh".into(),
        daemon_user.name().to_string(),
    ];
    let site = site(&daemon_user, wrapper);
    let pid = site.daemon.pid();
    assert_eq!(
        status_field(pid, "Uid"),
        vec![daemon_user.uid().to_string(); 4]
    );
    assert_eq!(
        status_field(pid, "Gid"),
        vec![daemon_user.gid().to_string(); 4]
    );
    assert_eq!(status_field(pid, "Groups"), vec![shadow_gid()]);
    assert_eq!(status_field(pid, "NoNewPrivs"), vec!["1".to_string()]);
    assert_eq!(
        status_field(pid, "CapEff"),
        vec!["0000000000000000".to_string()]
    );

    let token = site.new_key();
    site.verify(&token).ok();
    site.alice.lock();
    site.verify(&token).assert_code(1);
    site.alice.unlock();
    site.verify(&token).ok();
    assert!(!site.daemon.stderr_text().contains("WARNING"));
}
