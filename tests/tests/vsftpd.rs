//! vsftpd with pam_apikey, and curl logging in from a `.netrc` the real
//! `apikey generate --netrc` wrote: as the owner, and as LabKey's
//! `login apikey` where the module line says `map_user`. vsftpd honours
//! the PAM_USER the module sets, so the mapped session runs as the owner,
//! home directory and all.

use std::os::unix::fs::PermissionsExt;

use apikey_tests::prelude::*;
use apikey_tests::services::{Vsftpd, SANDBOX_PROGRAM};

/// Matches the default `key_services` entry `vsftpd*`.
const SERVICE: &str = "vsftpd-apikey";
const MARKER: &str = "marker-for-the-listing";
const PRIVATE_MARKER: &str = "only-its-owner-sees-this";
/// curl: "The user name, password, or similar was not accepted".
const CURL_LOGIN_DENIED: i32 = 67;
const LOG_WAIT: Duration = Duration::from_secs(10);

macro_rules! require_vsftpd {
    () => {
        require!(
            Need::World,
            Need::Program("vsftpd"),
            Need::Program("curl"),
            Need::Program(SANDBOX_PROGRAM),
        )
    };
}

/// The stack docs/pam.md shows for vsftpd, as an edit of this machine's
/// own /etc/pam.d/vsftpd: its ftpusers and shells checks stay in force.
fn stack(daemon: &apikey_tests::daemon::Daemon, extra: &str) -> String {
    apikey_tests::pam::documented_stack("vsftpd", &apikey_tests::pam::module(daemon, extra))
}

fn site(world: &World, extra: &str) -> (PamServices, Vsftpd) {
    world
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let pam = PamServices::new();
    pam.add_machine_includes();
    pam.add(SERVICE, &stack(world.daemon(), extra));
    let ftp = Vsftpd::start(&pam, SERVICE);
    (pam, ftp)
}

/// Files in `user`'s home that only a session running as that user can
/// list (`private/`) or cannot list (`roots/`, which root could).
fn furnish_home(user: &TestUser) {
    let home = user.home();
    std::fs::write(home.join(MARKER), "x").unwrap();
    let private = home.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join(PRIVATE_MARKER), "x").unwrap();
    for path in [
        home.join(MARKER),
        private.clone(),
        private.join(PRIVATE_MARKER),
    ] {
        std::os::unix::fs::chown(&path, Some(user.uid()), Some(user.gid())).unwrap();
    }
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let roots = home.join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::write(roots.join(PRIVATE_MARKER), "x").unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// `apikey generate --netrc 127.0.0.1 ...` as the logged-in user; the
/// login field it wrote.
fn generate_netrc(world: &World, user: &TestUser, extra: &[&str]) -> String {
    let args = [&["generate", "--netrc", "127.0.0.1"][..], extra].concat();
    let out = world.as_user(user).logged_in().apikey(&args);
    out.ok();
    assert!(out.stdout.is_empty(), "no secret on stdout: {}", out.stdout);
    let netrc = std::fs::read_to_string(user.home().join(".netrc")).expect("read .netrc");
    let words: Vec<&str> = netrc.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "127.0.0.1")
        .expect("an entry for 127.0.0.1");
    assert_eq!(words.get(at + 1), Some(&"login"), "{:?}", &words[..at + 2]);
    words[at + 2].to_string()
}

fn curl(ftp: &Vsftpd, user: &TestUser, path: &str) -> Output {
    let netrc = user.home().join(".netrc");
    As::user(user).run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "60",
            "--netrc-file",
            &netrc.to_string_lossy(),
            &ftp.url(path),
        ],
    )
}

#[track_caller]
fn assert_lists(out: &Output, ftp: &Vsftpd, name: &str) {
    if out.code() != 0 || !out.stdout.contains(name) {
        panic!(
            "{}: expected a listing with {name}, got exit {}\nstdout:\n{}\nstderr:\n{}\nvsftpd log:\n{}",
            out.description,
            out.code(),
            out.stdout,
            out.stderr,
            ftp.log_text()
        );
    }
}

/// The session is the owner's: it lists the owner's 0700 directory and
/// not root's.
#[track_caller]
fn assert_runs_as_owner(ftp: &Vsftpd, user: &TestUser) {
    assert_lists(&curl(ftp, user, ""), ftp, MARKER);
    assert_lists(&curl(ftp, user, "private/"), ftp, PRIVATE_MARKER);
    let out = curl(ftp, user, "roots/");
    assert!(
        out.code() != 0 && !out.stdout.contains(PRIVATE_MARKER),
        "the session must not run as root: {out:?}"
    );
}

fn ok_logins(ftp: &Vsftpd, user: &TestUser) -> usize {
    ftp.log_text()
        .lines()
        .filter(|l| l.contains(&format!("[{}] OK LOGIN", user.name())))
        .count()
}

fn key_ids(world: &World, user: &TestUser) -> Vec<String> {
    world
        .block_on(world.proxy_as_root().list(user.name(), false, false))
        .expect("List as root")
        .into_iter()
        .map(|k| k.id)
        .collect()
}

#[test]
fn the_owners_login_and_login_apikey_both_reach_the_owners_home() {
    require_vsftpd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    furnish_home(&alice);
    let (_pam, ftp) = site(&world, "map_user");

    assert_eq!(generate_netrc(&world, &alice, &[]), alice.name());
    assert_runs_as_owner(&ftp, &alice);
    let first = key_ids(&world, &alice);
    assert_eq!(first.len(), 1);

    assert_eq!(
        generate_netrc(&world, &alice, &["--netrc-login", "apikey"]),
        "apikey"
    );
    let logins_before = ok_logins(&ftp, &alice);
    assert_runs_as_owner(&ftp, &alice);
    // vsftpd names the user PAM ended with, not the one the client sent.
    assert!(
        ok_logins(&ftp, &alice) > logins_before,
        "{}",
        ftp.log_text()
    );
    assert!(
        !ftp.log_text().contains("[apikey] OK LOGIN"),
        "{}",
        ftp.log_text()
    );

    let second: Vec<String> = key_ids(&world, &alice)
        .into_iter()
        .filter(|id| !first.contains(id))
        .collect();
    assert_eq!(second.len(), 1);
    world.log().expect(
        "a verify of the mapped login",
        |l| {
            l.contains("event=verify ")
                && l.contains(&format!("service=\"{SERVICE}\""))
                && l.contains("rhost=\"127.0.0.1\"")
                && l.contains(&format!("key=\"{}\"", second[0]))
                && l.contains("outcome=\"ok\"")
        },
        LOG_WAIT,
    );
}

#[test]
fn without_map_user_login_apikey_is_refused() {
    require_vsftpd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    furnish_home(&alice);
    let (_pam, ftp) = site(&world, "");

    generate_netrc(&world, &alice, &["--netrc-login", "apikey"]);
    let out = curl(&ftp, &alice, "");
    assert_eq!(out.code(), CURL_LOGIN_DENIED, "{out:?}\n{}", ftp.log_text());
    assert!(!out.stdout.contains(MARKER), "{out:?}");

    // The same server takes the owner's own name, until the key is revoked.
    generate_netrc(&world, &alice, &[]);
    assert_runs_as_owner(&ftp, &alice);
    for id in key_ids(&world, &alice) {
        world
            .as_user(&alice)
            .logged_in()
            .apikey(&["revoke", &id])
            .ok();
    }
    let out = curl(&ftp, &alice, "");
    assert_eq!(out.code(), CURL_LOGIN_DENIED, "{out:?}\n{}", ftp.log_text());
}

/// Debian's deny list (/etc/ftpusers) holds for key logins too, in both
/// `.netrc` forms; here the documented stack reads a list of the test's
/// own in its place.
#[test]
fn an_account_on_the_ftp_deny_list_is_refused_with_its_key() {
    require_vsftpd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    furnish_home(&alice);
    world
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let deny = world.dir().join("ftpusers");
    std::fs::write(&deny, format!("root\n{}\n", alice.name())).unwrap();
    let pam = PamServices::new();
    pam.add_machine_includes();
    let documented = stack(world.daemon(), "map_user");
    assert_eq!(documented.matches("file=/etc/ftpusers").count(), 2);
    pam.add(
        SERVICE,
        &documented.replace("file=/etc/ftpusers", &format!("file={}", deny.display())),
    );
    let ftp = Vsftpd::start(&pam, SERVICE);

    for form in [&[][..], &["--netrc-login", "apikey"][..]] {
        generate_netrc(&world, &alice, form);
        let out = curl(&ftp, &alice, "");
        assert_eq!(
            out.code(),
            CURL_LOGIN_DENIED,
            "{form:?}: {out:?}\n{}",
            ftp.log_text()
        );
        assert!(!out.stdout.contains(MARKER), "{out:?}");
    }
    // Off the list, the same key gets in.
    std::fs::write(&deny, "root\n").unwrap();
    assert_runs_as_owner(&ftp, &alice);
}
