//! nginx's `auth_pam` (HTTP Basic) with pam_apikey: PAM runs in the
//! workers, as an unprivileged account that may verify keys only because
//! it is in a verifier group allowed `nginx*`. Clients are curl with
//! `--netrc-file` and Python `requests`, which reads `~/.netrc` itself.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use apikey_tests::prelude::*;
use apikey_tests::services::{module_for_workers, Nginx, SANDBOX_PROGRAM};

/// Matches the default `key_services` entry `nginx*`.
const SERVICE: &str = "nginx-apikey";
const LOG_WAIT: Duration = Duration::from_secs(10);

/// Debian's interpreter, where python3-requests installs; not whatever
/// `python3` the test runner's PATH finds first.
const PYTHON: &str = "/usr/bin/python3";

macro_rules! require_nginx {
    ($($extra:expr),*) => {
        require!(
            Need::World,
            Need::Program("nginx"),
            Need::Program("curl"),
            Need::Program(SANDBOX_PROGRAM),
            $($extra),*
        )
    };
}

/// Keys only. pam_unix has no place here: in a worker it may check
/// neither another user's password nor their account (unix_chkpwd
/// serves the caller's own account only), so `account required
/// pam_unix.so` would turn every key login into a 401.
fn stack(module: &str) -> String {
    apikey_tests::pam::documented_stack("nginx", module)
}

/// A site whose nginx workers run as a member of a verifier group.
struct Site {
    // Drop order: nginx before the accounts and the daemon it uses.
    nginx: Nginx,
    _pam: PamServices,
    worker: TestUser,
    _group: TestGroup,
    world: World,
}

impl Site {
    /// `in_group`: whether the worker is in the verifier group.
    fn start(extra: &str, in_group: bool) -> Site {
        let group = TestGroup::create();
        let world = World::with_config(|c| {
            c.verifier_groups = vec![(group.name().to_string(), vec!["nginx*".to_string()])];
        });
        world
            .as_root()
            .apikey(&["settings", "--allow-user-keys", "yes"])
            .ok();
        let worker = TestUser::create("www");
        if in_group {
            group.add_member(&worker);
        }
        let pam = PamServices::new();
        let module = module_for_workers(world.dir(), world.daemon(), extra);
        pam.add(SERVICE, &stack(&module));
        let nginx = Nginx::start(&pam, SERVICE, &worker);
        Site {
            nginx,
            _pam: pam,
            worker,
            _group: group,
            world,
        }
    }

    fn generate_netrc(&self, user: &TestUser, extra: &[&str]) -> String {
        let args = [&["generate", "--netrc", "127.0.0.1"][..], extra].concat();
        let out = self.world.as_user(user).logged_in().apikey(&args);
        out.ok();
        assert!(out.stdout.is_empty(), "no secret on stdout: {}", out.stdout);
        let keys = self
            .world
            .block_on(self.world.proxy_as_root().list(user.name(), false, false))
            .expect("List as root");
        keys.iter()
            .max_by_key(|k| k.created)
            .expect("a key")
            .id
            .clone()
    }

    fn generate(&self, user: &TestUser) -> String {
        let out = self.world.as_user(user).logged_in().apikey(&["generate"]);
        out.ok();
        out.stdout_trimmed().to_string()
    }

    /// `curl` as `user`, with `netrc` (or no credentials): (status, body).
    fn curl(&self, user: &TestUser, netrc: Option<&Path>) -> (u16, String) {
        let url = self.nginx.url();
        let mut args = vec!["-sS", "--max-time", "60", "-w", "\n%{http_code}"];
        let netrc = netrc.map(|p| p.to_string_lossy().into_owned());
        if let Some(netrc) = &netrc {
            args.extend(["--netrc-file", netrc.as_str()]);
        }
        args.push(&url);
        let out = As::user(user).run("curl", &args);
        out.ok();
        let (body, status) = out.stdout.rsplit_once('\n').expect("status line");
        let status = status
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: no status in {:?}", out.description, out.stdout));
        (status, body.to_string())
    }

    #[track_caller]
    fn assert_status(&self, got: (u16, String), status: u16, body: Option<&str>) {
        if got.0 != status || body.is_some_and(|b| got.1 != b) {
            panic!(
                "expected {status} {body:?}, got {got:?}\nnginx log:\n{}\naudit log:\n{:#?}",
                self.nginx.log_text(),
                self.world.log().lines()
            );
        }
    }
}

/// A `.netrc` of the test's own for `user` (0600, theirs), so that refused
/// keys too reach curl only through a file.
fn netrc_file(dir: &Path, user: &TestUser, name: &str, login: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("machine 127.0.0.1 login {login} password {password}\n"),
    )
    .unwrap();
    std::os::unix::fs::chown(&path, Some(user.uid()), Some(user.gid())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_key_from_netrc_gets_in_with_curl_and_requests() {
    require_nginx!(Need::Program(PYTHON));
    let site = Site::start("", true);
    let alice = TestUser::create("alice");
    let id = site.generate_netrc(&alice, &[]);
    let netrc = alice.home().join(".netrc");

    let hello = format!("hello {}\n", alice.name());
    site.assert_status(site.curl(&alice, Some(&netrc)), 200, Some(&hello));
    site.assert_status(site.curl(&alice, None), 401, None);

    // requests finds ~/.netrc through $HOME: a home of the test's own.
    let home = site.world.dir().join("python-home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(alice.uid()), Some(alice.gid())).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let copy = home.join(".netrc");
    std::fs::copy(&netrc, &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(alice.uid()), Some(alice.gid())).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = As::user(&alice)
        .env("HOME", &home.to_string_lossy())
        .cwd(&home)
        .run(
            PYTHON,
            &[
                "-c",
                "import requests, sys\n\
                 r = requests.get(sys.argv[1], timeout=60)\n\
                 print(r.status_code)\n\
                 print(r.text, end='')",
                &site.nginx.url(),
            ],
        );
    out.ok();
    assert_eq!(out.stdout, format!("200\n{hello}"), "{out:?}");

    let worker_uid = format!("caller_uid={}", site.worker.uid());
    let line = site.world.log().expect(
        "a verify by the worker",
        |l| l.contains("event=verify ") && l.contains(&format!("key=\"{id}\"")),
        LOG_WAIT,
    );
    for field in [
        worker_uid.as_str(),
        &format!("service=\"{SERVICE}\""),
        &format!("user=\"{}\"", alice.name()),
        "outcome=\"ok\"",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[test]
fn revoked_wrong_and_mistyped_keys_get_401() {
    require_nginx!();
    let site = Site::start("", true);
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let dir = site.world.dir();

    let bobs = site.generate(&bob);
    let wrong = netrc_file(dir, &alice, "bobs-key", alice.name(), &bobs);
    site.assert_status(site.curl(&alice, Some(&wrong)), 401, None);

    // One character changed: the checksum no longer matches.
    let mut typo = bobs.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let typo = netrc_file(dir, &bob, "typo", bob.name(), &typo);
    site.assert_status(site.curl(&bob, Some(&typo)), 401, None);

    let id = site.generate_netrc(&alice, &[]);
    let netrc = alice.home().join(".netrc");
    let hello = format!("hello {}\n", alice.name());
    site.assert_status(site.curl(&alice, Some(&netrc)), 200, Some(&hello));
    site.world
        .as_user(&alice)
        .logged_in()
        .apikey(&["revoke", &id])
        .ok();
    site.assert_status(site.curl(&alice, Some(&netrc)), 401, None);
    site.world.log().expect(
        "a verify refused as revoked",
        |l| {
            l.contains("event=verify ")
                && l.contains(&format!("key=\"{id}\""))
                && l.contains("revoked")
        },
        LOG_WAIT,
    );
}

#[test]
fn login_apikey_with_map_user_gets_in_as_apikey() {
    require_nginx!();
    let site = Site::start("map_user", true);
    let alice = TestUser::create("alice");
    let id = site.generate_netrc(&alice, &["--netrc-login", "apikey"]);
    let netrc = alice.home().join(".netrc");
    // nginx keeps the name the client sent.
    site.assert_status(site.curl(&alice, Some(&netrc)), 200, Some("hello apikey\n"));
    site.world.log().expect(
        "a mapped verify",
        |l| {
            l.contains("event=verify ")
                && l.contains(&format!("key=\"{id}\""))
                && l.contains("user=\"\"")
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    );
    // Without a key, the mapping name is nobody.
    let guess = netrc_file(site.world.dir(), &alice, "guess", "apikey", "apikey");
    site.assert_status(site.curl(&alice, Some(&guess)), 401, None);
}

#[test]
fn a_worker_outside_the_verifier_groups_verifies_nothing() {
    require_nginx!();
    let site = Site::start("", false);
    let alice = TestUser::create("alice");
    site.generate_netrc(&alice, &[]);
    let netrc = alice.home().join(".netrc");
    site.assert_status(site.curl(&alice, Some(&netrc)), 401, None);
    let line = site.world.log().expect(
        "a verify denied to the worker",
        |l| l.contains("event=verify ") && l.contains(&format!("caller_uid={}", site.worker.uid())),
        LOG_WAIT,
    );
    assert!(!line.contains("outcome=\"ok\""), "{line}");
}
