//! Two hosts of a fleet on one machine: a throwaway PostgreSQL cluster
//! with the shipped roles and schema, and two worlds (each its own bus,
//! daemon and local store) whose daemons share keys through it as
//! `host-a` (an issuer) and `host-b` (an ordinary host).

use std::path::{Path, PathBuf};
use std::process::Command;

pub use apikey_test_pg::{Cluster, SUPERUSER};

use crate::daemon::DaemonConfig;
use crate::world::World;
use crate::{bins, tmp};

pub const HOST_A: (&str, &str, bool) = ("host-a", "apikeyd_a", true);
pub const HOST_B: (&str, &str, bool) = ("host-b", "apikeyd_b", false);

/// What the fleet tests need beyond a world.
pub fn unmet() -> Option<String> {
    apikey_test_pg::unmet()
}

/// The `[fleet]` section of a daemon that is `host` with database role
/// `role`.
pub fn fleet_toml(cluster: &Cluster, (host, role, _): (&str, &str, bool), timeout: &str) -> String {
    format!(
        "[fleet]\ndatabase = \"{}\"\nhost = \"{host}\"\ntimeout = \"{timeout}\"\n",
        cluster.conninfo(role, "apikey")
    )
}

/// `apikeyd --upgrade-fleet-schema` as the migrating role.
pub fn upgrade_schema(cluster_owner_conninfo: &str) -> Result<String, String> {
    run_as_migrator(
        cluster_owner_conninfo,
        "migrator",
        &["--upgrade-fleet-schema"],
    )
}

/// The migrator's conninfo (a member of apikey_owner, made by
/// `fleet_database`).
pub fn migrator_conninfo(cluster: &Cluster) -> String {
    cluster.conninfo("apikey_migrator", "apikey")
}

/// `apikeyd ARGS` with a configuration whose [fleet] connects as the
/// migrator and names this host `host`; its standard output.
pub fn run_as_migrator(conninfo: &str, host: &str, args: &[&str]) -> Result<String, String> {
    let dir = tmp::temp_dir("fleet-migrate");
    let config = dir.path().join("apikeyd.toml");
    std::fs::write(
        &config,
        format!("[fleet]\ndatabase = \"{conninfo}\"\nhost = \"{host}\"\ntimeout = \"10s\"\n"),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new(bins::apikeyd())
        .arg("--config")
        .arg(&config)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(format!(
            "apikeyd {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn packaging() -> PathBuf {
    bins::workspace_root().join("packaging")
}

/// A cluster with the fleet database, host-a and host-b registered.
pub fn fleet_cluster() -> Cluster {
    let cluster = Cluster::start().expect("a throwaway PostgreSQL cluster");
    apikey_test_pg::fleet_database(&cluster, &packaging(), &[HOST_A, HOST_B], |owner| {
        upgrade_schema(owner).map(|said| assert!(said.contains("version"), "{said}"))
    })
    .expect("the fleet database");
    cluster
}

/// Fields drop in order: the daemons before the cluster they talk to.
pub struct Fleet {
    pub a: World,
    pub b: World,
    pub cluster: Cluster,
}

impl Fleet {
    /// Both hosts, user keys allowed fleet-wide; `edit_b` changes host-b's
    /// configuration before it starts.
    pub fn start(timeout: &str, edit_b: impl FnOnce(&mut DaemonConfig)) -> Fleet {
        Fleet::start_on(fleet_cluster(), timeout, edit_b)
    }

    /// [`Fleet::start`] on a cluster made by [`fleet_cluster`].
    pub fn start_on(
        cluster: Cluster,
        timeout: &str,
        edit_b: impl FnOnce(&mut DaemonConfig),
    ) -> Fleet {
        let a = World::with_config(|c| c.extra_toml = fleet_toml(&cluster, HOST_A, timeout));
        // Before host-b starts, so that it reads the policy with this in.
        a.as_root()
            .apikey(&["settings", "--allow-user-keys", "yes"])
            .ok();
        let b = World::with_config(|c| {
            c.extra_toml = fleet_toml(&cluster, HOST_B, timeout);
            edit_b(c)
        });
        Fleet { a, b, cluster }
    }

    pub fn psql(&self, sql: &str) -> String {
        self.cluster
            .psql_as(SUPERUSER, "apikey", sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The pids of the server processes serving `role`.
    pub fn backends_of(&self, role: &str) -> Vec<i32> {
        self.psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
    }
}

/// A [`DaemonConfig::wrapper`] that shows the daemon `etc` as its /etc
/// (a bind mount in a mount namespace of its own): another host, where the
/// same user names have other uids. The whole directory, not one file: a
/// file bind-mounted over /etc/passwd is unmounted as soon as useradd in
/// another test renames a new passwd over the original.
pub fn etc_wrapper(etc: &Path) -> Vec<String> {
    vec![
        crate::skip::program("unshare")
            .to_string_lossy()
            .into_owned(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "/bin/sh".into(),
        "-c".into(),
        r#"mount --bind "$1" /etc && shift && exec "$@""#.into(),
        "sh".into(),
        etc.to_string_lossy().into_owned(),
    ]
}

/// A copy of /etc in `dir` whose passwd gives `user` the uid `uid`.
pub fn etc_with_uid(dir: &Path, user: &str, uid: u32) -> PathBuf {
    let etc = dir.join("etc");
    let copied = Command::new("cp")
        .args(["-a", "/etc"])
        .arg(&etc)
        .status()
        .expect("cp -a /etc");
    assert!(copied.success(), "cp -a /etc failed");
    let text = std::fs::read_to_string(etc.join("passwd")).expect("read the passwd copy");
    let uid_text = uid.to_string();
    let changed: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(':').collect();
            if f.first() == Some(&user) && f.len() > 2 {
                f[2] = &uid_text;
                return f.join(":");
            }
            l.to_string()
        })
        .collect();
    assert!(
        changed
            .iter()
            .any(|l| l.starts_with(&format!("{user}:x:{uid}:"))),
        "{user} is not in the copy of /etc/passwd"
    );
    std::fs::write(etc.join("passwd"), changed.join("\n") + "\n").expect("write passwd copy");
    etc
}
