//! Throwaway PostgreSQL clusters for fleet-mode tests: `initdb` and
//! `pg_ctl` from Debian's postgresql-15 run as the `postgres` user, in a
//! temporary directory, listening on 127.0.0.1 and a socket in that
//! directory only, and stopped and removed when dropped. Trust
//! authentication: the tests log in as whichever role they test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What a test needs for a cluster, `None` when all is there.
pub fn unmet() -> Option<String> {
    if let Some(reason) = apikey_test_skip::unmet_root() {
        return Some(reason.to_string());
    }
    if bin_dir().is_none() {
        return Some("PostgreSQL's server programs are not installed (postgresql-15)".into());
    }
    if user_ids("postgres").is_none() {
        return Some("there is no postgres user".into());
    }
    None
}

/// The newest installed server's programs.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
    /// With TLS: the CA that signed the server's certificate (for
    /// `localhost` only, not 127.0.0.1), and another CA that did not.
    pub tls: Option<TestCas>,
}

pub struct TestCas {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
}

/// The superuser of every test cluster.
pub const SUPERUSER: &str = "postgres";

impl Cluster {
    /// A new cluster, started; about a second.
    pub fn start() -> Result<Cluster, String> {
        Cluster::start_with(false)
    }

    /// A cluster that also speaks TLS, with a certificate for the name
    /// `localhost` signed by a CA of its own ([`Cluster::tls`]).
    pub fn start_with_tls() -> Result<Cluster, String> {
        Cluster::start_with(true)
    }

    /// A cluster not yet made: a directory of the server's own (mode 0700,
    /// owned by postgres) and a free port.
    fn unmade(prefix: &str, bin: PathBuf) -> Result<Cluster, String> {
        let (uid, gid) = user_ids("postgres").ok_or("no postgres user")?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        Ok(Cluster {
            port: free_port()?,
            bin,
            dir,
            running: false,
            tls: None,
        })
    }

    fn start_with(tls: bool) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("no PostgreSQL server programs")?;
        let (uid, gid) = user_ids("postgres").ok_or("no postgres user")?;
        let mut cluster = Cluster::unmade("apikey-pg.", bin)?;
        cluster.as_postgres(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if tls {
            cluster.tls = Some(make_certificates(cluster.dir.path(), uid, gid)?);
        }
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn as_postgres(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        match out.status.success() {
            true => Ok(out),
            false => Err(format!(
                "{program} {args:?}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let mut options = format!(
            "-k {} -h 127.0.0.1 -p {} -c fsync=off -c max_connections=200",
            self.socket_dir().display(),
            self.port
        );
        if self.tls.is_some() {
            let dir = self.dir.path().display();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ));
        }
        let log = self.dir.path().join("server.log");
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        )?;
        self.running = true;
        Ok(())
    }

    /// Stops the server at once (as a crash would), keeping its files.
    pub fn stop(&mut self) -> Result<(), String> {
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// A streaming standby of this cluster, started, on a port of its own:
    /// a base backup that follows the primary from then on.
    pub fn start_standby(&self) -> Result<Cluster, String> {
        let mut standby = Cluster::unmade("apikey-pg-standby.", self.bin.clone())?;
        let primary = format!(
            "host=127.0.0.1 port={} user={SUPERUSER} application_name=standby",
            self.port
        );
        standby.as_postgres(
            "pg_basebackup",
            &[
                "-d",
                &primary,
                "-D",
                &standby.data().to_string_lossy(),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        )?;
        standby.pg_ctl_start()?;
        Ok(standby)
    }

    /// Commits wait for a standby to have them (synchronous replication).
    pub fn require_a_synchronous_standby(&self) -> Result<(), String> {
        self.psql_as(
            SUPERUSER,
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        )?;
        self.psql_as(SUPERUSER, "postgres", "SELECT pg_reload_conf()")?;
        // Until the standby is streaming and counted as synchronous.
        for _ in 0..100 {
            let state = self.psql_as(
                SUPERUSER,
                "postgres",
                "SELECT sync_state FROM pg_stat_replication",
            )?;
            if state == "sync" {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err("the standby never became synchronous".into())
    }

    /// Promotes a standby to a primary, waiting until it takes writes.
    pub fn promote(&self) -> Result<(), String> {
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-w", "promote"],
        )?;
        Ok(())
    }

    /// Runs SQL through psql as `role` in database `db`; stdout, or the
    /// error psql printed.
    pub fn psql_as(&self, role: &str, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", role, "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }
    }

    /// Runs an SQL file as the superuser.
    pub fn psql_file(&self, db: &str, file: &Path) -> Result<String, String> {
        let sql = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        self.psql_as(SUPERUSER, db, &sql)
    }

    /// A key=value connection string for `role` in `db`.
    pub fn conninfo(&self, role: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user='{role}' dbname={db} sslmode=disable",
            self.port
        )
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop();
        }
        if let Some(cas) = &self.tls {
            let _ = std::fs::remove_file(&cas.ca);
            let _ = std::fs::remove_file(&cas.other_ca);
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// Two CAs and a server certificate for `localhost` signed by the first,
/// its key readable by the server alone.
fn make_certificates(dir: &Path, uid: u32, gid: u32) -> Result<TestCas, String> {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=apikey test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        )?;
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n")
        .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    )?;
    for file in ["server.key", "server.crt"] {
        let path = dir.join(file);
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    // The clients' copies, outside the server's private directory.
    let public = |name: &str| -> Result<PathBuf, String> {
        let to = std::env::temp_dir().join(format!(
            "apikey-pg-{}-{}-{name}",
            std::process::id(),
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        ));
        std::fs::copy(dir.join(name), &to).map_err(|e| e.to_string())?;
        Ok(to)
    };
    Ok(TestCas {
        ca: public("ca.crt")?,
        other_ca: public("other-ca.crt")?,
    })
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The fleet database every fleet test starts from: database `apikey`,
/// the shipped roles and schema, the schema migrated by `migrate` (given
/// the owner's connection string), and `hosts` (name, role, issuer)
/// registered with login roles of their own.
pub fn fleet_database(
    cluster: &Cluster,
    packaging: &Path,
    hosts: &[(&str, &str, bool)],
    migrate: impl FnOnce(&str) -> Result<(), String>,
) -> Result<(), String> {
    cluster.psql_as(SUPERUSER, "postgres", "CREATE DATABASE apikey")?;
    cluster.psql_file("apikey", &packaging.join("fleet/roles.sql"))?;
    cluster.psql_as(
        SUPERUSER,
        "apikey",
        "DO $$ BEGIN CREATE ROLE apikey_migrator LOGIN IN ROLE apikey_owner; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )?;
    migrate(&cluster.conninfo("apikey_migrator", "apikey"))?;
    for (host, role, issuer) in hosts {
        let group = if *issuer {
            "apikey_issuer"
        } else {
            "apikey_host"
        };
        cluster.psql_as(
            SUPERUSER,
            "apikey",
            &format!(
                "CREATE ROLE \"{role}\" LOGIN IN ROLE {group}; \
                 SET ROLE apikey_owner; SELECT apikey.add_host('{host}', '{role}')"
            ),
        )?;
    }
    Ok(())
}
