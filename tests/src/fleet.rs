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
pub fn fleet_toml(cluster: &Cluster, who: (&str, &str, bool), timeout: &str) -> String {
    fleet_toml_for(&cluster.conninfo(who.1, "apikey"), who.0, timeout)
}

/// The `[fleet]` section of a daemon that is `host` connecting by
/// `conninfo`.
pub fn fleet_toml_for(conninfo: &str, host: &str, timeout: &str) -> String {
    format!("[fleet]\ndatabase = \"{conninfo}\"\nhost = \"{host}\"\ntimeout = \"{timeout}\"\n")
}

/// `apikeyd --upgrade-fleet-schema` as the migrating role.
pub fn upgrade_schema(cluster_owner_conninfo: &str) -> Result<String, String> {
    run_as_migrator(
        cluster_owner_conninfo,
        "migrator",
        &["--upgrade-fleet-schema"],
    )
}

/// The environment that makes a (debug) apikeyd act as a release that
/// knew the fleet schema up to `version` only.
pub fn release_knowing(version: i32) -> (String, String) {
    ("APIKEYD_TEST_SCHEMA_KNOWN".into(), version.to_string())
}

/// The migrator's conninfo (a member of apikey_owner, made by
/// `fleet_database`).
pub fn migrator_conninfo(cluster: &Cluster) -> String {
    cluster.conninfo("apikey_migrator", "apikey")
}

/// `apikeyd ARGS` with a configuration whose [fleet] connects as the
/// migrator and names this host `host`; its standard output.
pub fn run_as_migrator(conninfo: &str, host: &str, args: &[&str]) -> Result<String, String> {
    run_as_migrator_with(conninfo, host, args, &[])
}

/// [`run_as_migrator`] with more environment.
pub fn run_as_migrator_with(
    conninfo: &str,
    host: &str,
    args: &[&str],
    env: &[(String, String)],
) -> Result<String, String> {
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
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    fleet_cluster_at(None)
}

/// [`fleet_cluster`] with the schema only as far as a release that knew
/// up to `version` takes it.
pub fn fleet_cluster_at(version: Option<i32>) -> Cluster {
    let cluster = Cluster::start().expect("a throwaway PostgreSQL cluster");
    let env: Vec<_> = version.map(release_knowing).into_iter().collect();
    apikey_test_pg::fleet_database(&cluster, &packaging(), &[HOST_A, HOST_B], |owner| {
        run_as_migrator_with(owner, "migrator", &["--upgrade-fleet-schema"], &env)
            .map(|said| assert!(said.contains("version"), "{said}"))
    })
    .expect("the fleet database");
    cluster
}

/// Fields drop in order: the daemons before the clusters they talk to.
pub struct Fleet {
    pub a: World,
    pub b: World,
    pub cluster: Cluster,
    /// A streaming standby of `cluster`, where there is one.
    pub standby: Option<Cluster>,
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
        let conninfo = |role: &str| cluster.conninfo(role, "apikey");
        let (a, b) = Fleet::hosts(&conninfo, timeout, |_| {}, edit_b);
        Fleet {
            a,
            b,
            cluster,
            standby: None,
        }
    }

    /// [`Fleet::start_on`] with `edit` applied to both hosts.
    pub fn start_both_on(
        cluster: Cluster,
        timeout: &str,
        edit: impl Fn(&mut DaemonConfig),
    ) -> Fleet {
        let conninfo = |role: &str| cluster.conninfo(role, "apikey");
        let (a, b) = Fleet::hosts(&conninfo, timeout, &edit, &edit);
        Fleet {
            a,
            b,
            cluster,
            standby: None,
        }
    }

    /// Both hosts on a primary and its synchronous standby, named in one
    /// connection string that asks for the writable one.
    pub fn start_replicated(timeout: &str) -> Fleet {
        let cluster = fleet_cluster();
        let standby = cluster.start_standby().expect("a streaming standby");
        cluster
            .require_a_synchronous_standby()
            .expect("synchronous replication");
        let conninfo = |role: &str| {
            format!(
                "host=127.0.0.1,127.0.0.1 port={},{} user={role} dbname=apikey \
                 sslmode=disable target_session_attrs=read-write",
                cluster.port, standby.port
            )
        };
        let (a, b) = Fleet::hosts(&conninfo, timeout, |_| {}, |_| {});
        Fleet {
            a,
            b,
            cluster,
            standby: Some(standby),
        }
    }

    fn hosts(
        conninfo: &dyn Fn(&str) -> String,
        timeout: &str,
        edit_a: impl FnOnce(&mut DaemonConfig),
        edit_b: impl FnOnce(&mut DaemonConfig),
    ) -> (World, World) {
        let a = World::with_config(|c| {
            c.extra_toml = fleet_toml_for(&conninfo(HOST_A.1), HOST_A.0, timeout);
            edit_a(c)
        });
        // Before host-b starts, so that it reads the policy with this in.
        a.as_root()
            .apikey(&["settings", "--allow-user-keys", "yes"])
            .ok();
        let b = World::with_config(|c| {
            c.extra_toml = fleet_toml_for(&conninfo(HOST_B.1), HOST_B.0, timeout);
            edit_b(c)
        });
        (a, b)
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
    crate::daemon::mount_namespace_wrapper(
        r#"mount --bind "$1" /etc && shift && exec "$@""#,
        &[etc.to_string_lossy().into_owned()],
    )
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
