//! The binary against a fake `org.apikey.Keys1` on a private bus: what
//! it sends, what it prints, and its exit statuses. Needs dbus-daemon;
//! without it the tests say so and pass.

use apikey_proto::{ExtraDict, KeyInfo, KeysError, Settings, StatusInfo, Token, UseInfo};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

const NEW_ID: &str = "NEWKEY000001";
const ROTATED_ID: &str = "ROTATED00001";

fn good_token() -> &'static Token {
    static GOOD: OnceLock<Token> = OnceLock::new();
    GOOD.get_or_init(|| Token::generate().unwrap())
}

fn key(id: &str, name: &str) -> KeyInfo {
    KeyInfo {
        id: id.into(),
        user: "alice".into(),
        uid: 1000,
        name: name.into(),
        services: vec![],
        created: 1_700_000_000,
        expires: 0,
        last_used: 0,
        last_service: String::new(),
        last_rhost: String::new(),
        created_by_uid: 1000,
        session: false,
        revoked: 0,
    }
}

fn settings() -> Settings {
    Settings {
        allow_user_keys: true,
        expires: "90d".into(),
        users_see_own: true,
        session_timeout: 1800,
    }
}

struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[zbus::interface(name = "org.apikey.Keys1")]
impl Fake {
    async fn generate(
        &self,
        name: String,
        expires: String,
        services: Vec<String>,
        user: String,
    ) -> Result<(String, KeyInfo), KeysError> {
        self.record(format!(
            "Generate name={name} expires={expires} services={services:?} user={user}"
        ));
        match name.as_str() {
            "denied" => Err(KeysError::Denied(
                "only administrators make keys for others".into(),
            )),
            "forbidden" => Err(KeysError::PolicyForbids(
                "users may not create API keys on this host".into(),
            )),
            "malformed" => Ok(("not a key\u{1b}[2J".into(), key(NEW_ID, &name))),
            _ => Ok((
                Token::generate().unwrap().as_str().to_string(),
                key(NEW_ID, &name),
            )),
        }
    }

    async fn list(&self, user: String, all: bool, sessions: bool) -> Vec<KeyInfo> {
        self.record(format!("List user={user} all={all} sessions={sessions}"));
        if user == "nobody" {
            return vec![];
        }
        let mut used = key("3fZk9QpLm2Xa", "ci");
        used.last_used = 1_700_000_000;
        used.last_service = "sshd".into();
        used.last_rhost = "10.1.2.3".into();
        used.services = vec!["sshd".into()];
        vec![
            used,
            key("Zz00Zz00Zz00", "evil\u{1b}]0;owned\u{7}\u{1b}[2J"),
        ]
    }

    #[allow(clippy::too_many_arguments)]
    async fn list_page(
        &self,
        user: String,
        all: bool,
        sessions: bool,
        show: Vec<String>,
        after: String,
        limit: u32,
    ) -> (Vec<KeyInfo>, String) {
        self.record(format!(
            "ListPage user={user} all={all} sessions={sessions} show={show:?} after={after:?} limit={limit}"
        ));
        // Two pages of one key each, as a daemon paging a big site would.
        let keys = self.list(user, all, sessions).await;
        match after.as_str() {
            "" => (keys.into_iter().take(1).collect(), "1".into()),
            _ => (keys.into_iter().skip(1).collect(), String::new()),
        }
    }

    async fn revoke(&self, ids: Vec<String>) -> Vec<String> {
        self.record(format!("Revoke {ids:?}"));
        ids.into_iter().filter(|i| i != "MISSINGKEY01").collect()
    }

    async fn revoke_all(&self, user: String) -> Vec<String> {
        self.record(format!("RevokeAll user={user}"));
        vec!["AAAAAAAAAAAA".into()]
    }

    async fn revoke_site(&self) -> Vec<String> {
        self.record("RevokeSite".into());
        vec!["AAAAAAAAAAAA".into(), "BBBBBBBBBBBB".into()]
    }

    async fn rotate(&self, id: String) -> Result<(String, KeyInfo), KeysError> {
        self.record(format!("Rotate {id}"));
        Ok((
            Token::generate().unwrap().as_str().to_string(),
            key(ROTATED_ID, "ci"),
        ))
    }

    async fn show_key(&self, id: String) -> Result<(KeyInfo, ExtraDict, Vec<UseInfo>), KeysError> {
        self.record(format!("ShowKey {id}"));
        if id == "MISSINGKEY01" {
            return Err(KeysError::NotFound(format!("no key with id {id}")));
        }
        let used = |rhost: &str, first, last| UseInfo {
            service: "sshd".into(),
            rhost: rhost.into(),
            first,
            last,
            host: String::new(),
        };
        Ok((
            key(&id, "ci"),
            ExtraDict::new(),
            vec![
                used("10.9.8.7\u{1b}[2J", 1_700_000_100, 1_700_000_200),
                used("", 1_700_000_050, 1_700_000_050),
            ],
        ))
    }

    async fn get_settings(&self) -> Settings {
        self.record("GetSettings".into());
        settings()
    }

    async fn set_settings(
        &self,
        allow_user_keys: String,
        expires: String,
        users_see_own: String,
        session_timeout: String,
    ) -> Result<Settings, KeysError> {
        self.record(format!(
            "SetSettings {allow_user_keys:?} {expires:?} {users_see_own:?} {session_timeout:?}"
        ));
        Err(KeysError::Denied(
            "only administrators change the policy".into(),
        ))
    }

    async fn status(&self) -> StatusInfo {
        StatusInfo {
            version: "9.9.9".into(),
            uid: 1000,
            user: "alice".into(),
            admin: false,
            verifier: false,
            logged_in: true,
            impersonating: false,
            session_keys: 0,
            settings: settings(),
            store: String::new(),
        }
    }

    async fn verify(
        &self,
        token: String,
        user: String,
        service: String,
        rhost: String,
    ) -> Result<(String, String), KeysError> {
        self.record(format!(
            "Verify user={user} service={service} rhost={rhost}"
        ));
        if token == good_token().as_str() {
            Ok(("alice".into(), "3fZk9QpLm2Xa".into()))
        } else {
            Err(KeysError::Refused("no such key".into()))
        }
    }
}

/// A private dbus-daemon, with the fake daemon on it unless asked not to.
struct Bus {
    _dir: tempfile::TempDir,
    daemon: Child,
    address: String,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Bus {
    fn start(with_fake: bool) -> Option<Bus> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().display()
            ),
        )
        .unwrap();
        let mut daemon = match Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                skip(&format!("cannot run dbus-daemon: {e}"));
                return None;
            }
        };
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(!address.is_empty(), "dbus-daemon printed no address");

        let calls = Arc::new(Mutex::new(Vec::new()));
        if with_fake {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let fake = Fake {
                calls: calls.clone(),
            };
            let addr = address.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let conn = zbus::connection::Builder::address(addr.as_str())
                        .name("org.apikey.Keys1")
                        .serve_at("/org/apikey/Keys1", fake)
                        .build()
                        .await
                        .unwrap();
                    ready_tx.send(()).unwrap();
                    // Serve until the test process ends.
                    std::future::pending::<()>().await;
                    drop(conn);
                });
            });
            ready_rx.recv().unwrap();
        }
        Some(Bus {
            _dir: dir,
            daemon,
            address,
            calls,
        })
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_with(args, stdin, Stdio::piped())
    }

    fn run_with(&self, args: &[&str], stdin: &[u8], stdout: Stdio) -> Output {
        self.run_as(args, stdin, stdout, None)
    }

    fn run_as(&self, args: &[&str], stdin: &[u8], stdout: Stdio, uid: Option<u32>) -> Output {
        // Another uid may not be able to reach the build tree (a checkout
        // under a private home): it runs a copy from a world-readable dir.
        let copy = uid.map(|_| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let bin = dir.path().join("apikey");
            std::fs::copy(env!("CARGO_BIN_EXE_apikey"), &bin).unwrap();
            (dir, bin)
        });
        let program = match &copy {
            Some((_, bin)) => bin.clone(),
            None => std::path::PathBuf::from(env!("CARGO_BIN_EXE_apikey")),
        };
        let mut cmd = Command::new(program);
        if let Some(uid) = uid {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        }
        let mut child = cmd
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

#[test]
fn bus_without_daemon_is_unreachable() {
    let Some(bus) = Bus::start(false) else { return };
    let out = bus.run(&["status"], b"");
    assert_eq!(code(&out), 69, "{}", text(&out.stderr));
    assert!(text(&out.stderr)
        .starts_with("apikey: the apikey daemon is not reachable on the system bus ("));
}

#[test]
fn status_and_settings() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(&["status"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("answers (apikeyd 9.9.9)"), "{shown}");
    assert!(shown.contains("alice (uid 1000)"));
    assert!(shown.contains("Expire API keys:            90d"));

    let out = bus.run(&["status", "--json"], b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "9.9.9");
    assert_eq!(v["settings"]["session_timeout_seconds"], 1800);

    let out = bus.run(&["settings"], b"");
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).contains("Let users create API keys:  yes"));

    // Denied: exit 77, the daemon's sentence.
    let out = bus.run(
        &["settings", "--expires", "30d", "--session-timeout", "90m"],
        b"",
    );
    assert_eq!(code(&out), 77);
    assert_eq!(
        text(&out.stderr),
        "apikey: only administrators change the policy\n"
    );
    assert!(bus
        .calls()
        .contains(&"SetSettings \"\" \"30d\" \"\" \"90m\"".to_string()));
}

#[test]
fn generate_prints_the_token_alone() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(
        &["generate", "--name", "ci", "--services", "sshd, nginx*"],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1);
    assert!(Token::parse(stdout.trim_end().as_bytes()).is_ok());
    assert_eq!(
        text(&out.stderr),
        format!("apikey: key {NEW_ID} for alice expires never; it will not be shown again.\n")
    );
    assert!(!text(&out.stderr).contains(stdout.trim_end()));
    assert!(bus
        .calls()
        .contains(&"Generate name=ci expires= services=[\"sshd\", \"nginx*\"] user=".to_string()));

    let out = bus.run(&["generate", "--json", "--expires", "7d"], b"");
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(Token::parse(v["token"].as_str().unwrap().as_bytes()).is_ok());
    assert_eq!(v["id"], NEW_ID);
    assert_eq!(v["created"], "2023-11-14T22:13:20Z");
    assert!(v["expires"].is_null());
}

#[test]
fn generate_refusals() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(&["generate", "--name", "denied", "--user", "bob"], b"");
    assert_eq!(code(&out), 77);
    assert!(out.stdout.is_empty());
    let out = bus.run(&["generate", "--name", "forbidden"], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(
        text(&out.stderr),
        "apikey: users may not create API keys on this host\n"
    );
}

#[test]
fn a_key_that_cannot_be_handed_over_is_revoked() {
    let Some(bus) = Bus::start(true) else { return };
    // A malformed token is neither printed nor kept.
    let out = bus.run(&["generate", "--name", "malformed"], b"");
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!("apikey: the daemon sent a malformed key; key {NEW_ID} was revoked\n")
    );
    assert!(bus.calls().contains(&format!("Revoke [\"{NEW_ID}\"]")));

    // Nowhere to write it: revoked too.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    if let Ok(full) = full {
        let before = bus.calls().len();
        let out = bus.run_with(&["rotate", "3fZk9QpLm2Xa"], b"", Stdio::from(full));
        assert_eq!(code(&out), 1);
        let err = text(&out.stderr);
        assert!(
            err.starts_with("apikey: cannot write the key to standard output ("),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("; key {ROTATED_ID} was revoked\n")),
            "{err}"
        );
        assert!(bus.calls()[before..].contains(&format!("Revoke [\"{ROTATED_ID}\"]")));
    }
}

#[test]
fn rotate_prints_the_new_token() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(&["rotate", "3fZk9QpLm2Xa"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(Token::parse(text(&out.stdout).trim_end().as_bytes()).is_ok());
    assert!(text(&out.stderr).contains(&format!(
        "key {ROTATED_ID} for alice replaces key 3fZk9QpLm2Xa"
    )));
}

#[test]
fn show_prints_a_key_and_where_it_was_used_from() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(&["show", "3fZk9QpLm2Xa"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("ID:         3fZk9QpLm2Xa\n"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(
        shown.contains("  sshd     10.9.8.7\\x1b[2J  2023-11-14T22:15:00Z  2023-11-14T22:16:40Z\n"),
        "{shown}"
    );
    assert!(shown.contains("  sshd     (local)"), "{shown}");
    let out = bus.run(&["show", "3fZk9QpLm2Xa", "--json"], b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "3fZk9QpLm2Xa");
    assert_eq!(v["uses"][0]["rhost"], "10.9.8.7\u{1b}[2J");
    assert!(v["uses"][1]["rhost"].is_null());
    let out = bus.run(&["show", "MISSINGKEY01"], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr), "apikey: no key with id MISSINGKEY01\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn list_escapes_what_it_shows() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(&["list", "--all"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.contains("evil\\x1b]0;owned\\x07\\x1b[2J"));
    assert!(shown.contains("(sshd from 10.1.2.3)"));
    assert!(shown.starts_with("ID "));
    // Two pages, one table: one header, both keys, aligned as one.
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert_eq!(shown.matches("ID ").count(), 1, "{shown}");
    let calls = bus.calls();
    for after in ["", "1"] {
        let call =
            format!("ListPage user= all=true sessions=false show=[] after={after:?} limit=1000");
        assert!(calls.contains(&call), "{call} not in {calls:?}");
    }

    let out = bus.run(&["list", "--json", "--user", "alice", "--sessions"], b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["last_used"], "2023-11-14T22:13:20Z");
    assert!(v[1]["last_used"].is_null());
    assert_eq!(v[1]["name"], "evil\u{1b}]0;owned\u{7}\u{1b}[2J");
    assert!(bus.calls().contains(
        &"ListPage user=alice all=false sessions=true show=[] after=\"\" limit=1000".to_string()
    ));
    bus.run(&["list", "--expired", "--revoked"], b"");
    assert!(bus
        .calls()
        .iter()
        .any(|c| c.starts_with("ListPage") && c.contains("show=[\"expired\", \"revoked\"]")));

    let out = bus.run(&["list", "--user", "nobody"], b"");
    assert_eq!(code(&out), 0);
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "apikey: no keys\n");
    let out = bus.run(&["list", "--user", "nobody", "--json"], b"");
    assert_eq!(text(&out.stdout), "[]\n");
}

#[test]
fn revoke_forms() {
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run(
        &["revoke", "3fZk9QpLm2Xa", "Zz00Zz00Zz00", "3fZk9QpLm2Xa"],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "revoked 2 key(s)\n3fZk9QpLm2Xa\nZz00Zz00Zz00\n"
    );
    assert!(bus
        .calls()
        .contains(&"Revoke [\"3fZk9QpLm2Xa\", \"Zz00Zz00Zz00\"]".to_string()));

    let out = bus.run(&["revoke", "--all"], b"");
    assert_eq!(text(&out.stdout), "revoked 1 key(s)\nAAAAAAAAAAAA\n");
    let out = bus.run(&["revoke", "--all", "--user", "bob"], b"");
    assert_eq!(code(&out), 0);
    // No terminal on stdin: refused without --yes, before any call.
    let out = bus.run(&["revoke", "--all", "--site"], b"yes\n");
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("give --yes"));
    assert!(!bus.calls().contains(&"RevokeSite".to_string()));
    let out = bus.run(&["revoke", "--all", "--site", "--yes"], b"");
    assert_eq!(
        text(&out.stdout),
        "revoked 2 key(s)\nAAAAAAAAAAAA\nBBBBBBBBBBBB\n"
    );
    let calls = bus.calls();
    assert!(calls.contains(&"RevokeAll user=".to_string()));
    assert!(calls.contains(&"RevokeAll user=bob".to_string()));
    assert!(calls.contains(&"RevokeSite".to_string()));

    let out = bus.run(&["revoke", "3fZk9QpLm2Xa", "MISSINGKEY01"], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stdout), "revoked 1 key(s)\n3fZk9QpLm2Xa\n");
    assert_eq!(text(&out.stderr), "apikey: not revoked: MISSINGKEY01\n");
}

#[test]
fn verify_outcomes() {
    let Some(bus) = Bus::start(true) else { return };
    let good = good_token();
    let out = bus.run(
        &["verify", "--user", "alice", "--service", "sshd"],
        format!("{}\n", &*good.alias()).as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "valid: key 3fZk9QpLm2Xa of alice\n");
    assert!(bus
        .calls()
        .contains(&"Verify user=alice service=sshd rhost=".to_string()));

    let other = Token::generate().unwrap();
    let out = bus.run(&["verify"], other.as_str().as_bytes());
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr), "apikey: key refused\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn netrc_refusals_cost_no_key() {
    // Needs an account whose home cannot be written; "nobody" (uid 65534,
    // home /nonexistent) on most systems, reachable only from root.
    if !nix::unistd::getuid().is_root() {
        skip("needs root to run as nobody");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_uid(65534.into()) else {
        skip("no uid 65534");
        return;
    };
    if nobody.dir.join(".netrc").exists() || std::fs::metadata(&nobody.dir).is_ok() {
        skip("uid 65534 has a home directory");
        return;
    }
    let Some(bus) = Bus::start(true) else { return };
    let out = bus.run_as(
        &["generate", "--netrc", "example.org"],
        b"",
        Stdio::piped(),
        Some(65534),
    );
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.starts_with("apikey: cannot open "), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!bus.calls().iter().any(|c| c.starts_with("Generate")));
}

/// A missing prerequisite: the skip every crate's tests take (a `SKIP`
/// line a developer sees; a failure in CI, under APIKEY_STRICT_TESTS).
fn skip(reason: &str) {
    assert!(!apikey_test_skip::proceed_unless(Some(reason)));
}

/// `revoke --all --site` at a terminal (a pty from util-linux's script):
/// it names what would go and revokes only on "yes".
#[test]
fn revoke_site_on_a_terminal_asks_and_only_yes_revokes() {
    let Some(bus) = Bus::start(true) else { return };
    if Command::new("script").arg("--version").output().is_err() {
        skip("script (util-linux) gives the command a terminal");
        return;
    }
    let command = format!("{} revoke --all --site", env!("CARGO_BIN_EXE_apikey"));
    for (answer, revokes) in [("no\n", false), ("yes\n", true)] {
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let screen = text(&out.stdout);
        assert!(
            screen.contains("Revoke 2 keys of 1 user on this host?"),
            "{screen}"
        );
        let revoked = bus.calls().contains(&"RevokeSite".to_string());
        assert_eq!(revoked, revokes, "answer {answer:?}: {screen}");
        if revokes {
            assert_eq!(code(&out), 0, "{screen}");
            assert!(screen.contains("revoked 2 key(s)"), "{screen}");
        } else {
            assert_eq!(code(&out), 1, "{screen}");
            assert!(
                screen.contains("not confirmed; nothing was revoked"),
                "{screen}"
            );
        }
    }
}
