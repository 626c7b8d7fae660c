//! The binary's argument handling and failure paths, without a daemon.

use apikey_proto::Token;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const NO_BUS: &str = "unix:path=/nonexistent/apikey-test/system_bus_socket";

fn apikey(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apikey"))
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The program may exit before reading everything; that is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["revoke"],
        &["revoke", "--site"],
        &["revoke", "--user", "bob"],
        &["revoke", "3fZk9QpLm2Xa", "--all"],
        &["revoke", "not-a-key-id"],
        &["generate", "--user", "bob", "--netrc", "example.org"],
        &["generate", "--netrc-login", "apikey"],
        &["generate", "--services", "su do"],
        &["generate", "--expires", "8d"],
        &["list", "--all", "--user", "bob"],
        &["rotate"],
        &["show"],
        &["show", "not-a-key-id"],
        &["settings", "--session-timeout", "soon"],
        &["verify", "apikey_0123456789"],
        &["revoke", "--token", "3fZk9QpLm2Xa"],
        &["revoke", "--token", "--all"],
        &["revoke", "--all", "--json"],
        &["scan", "--frobnicate"],
    ] {
        let out = apikey(args, b"");
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["--version"], &["generate", "--help"]] {
        let out = apikey(args, b"");
        assert_eq!(code(&out), 0, "{args:?}");
    }
    let out = apikey(&["revoke", "--help"], b"");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Usage: apikey revoke ID... | --all [--user USER | --site [--yes]]"));
}

#[test]
fn unreachable_daemon_exits_69() {
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["list"],
        &["generate"],
        &["revoke", "--all"],
        &["revoke", "3fZk9QpLm2Xa"],
        &["rotate", "3fZk9QpLm2Xa"],
        &["show", "3fZk9QpLm2Xa"],
        &["settings"],
        &["settings", "--allow-user-keys", "yes"],
    ] {
        let out = apikey(args, b"");
        assert_eq!(code(&out), 69, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("apikey: the apikey daemon is not reachable on the system bus ("),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn session_needs_the_daemon() {
    let out = apikey(&["session", "--name", "x"], b"");
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stdout_is_empty(&out));
}

#[test]
fn verify_reads_the_key_from_stdin() {
    let token = Token::generate().unwrap();
    // A well-formed key gets as far as the bus.
    let out = apikey(&["verify"], format!("{}\n", token.as_str()).as_bytes());
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(!stderr(&out).contains(token.as_str()));
    let alias = token.alias();
    let out = apikey(
        &["verify", "--service", "sshd"],
        format!("{}\r\n", &*alias).as_bytes(),
    );
    assert_eq!(code(&out), 69);
}

#[test]
fn verify_refuses_bad_input_locally() {
    let cases: [(&[u8], &str); 5] = [
        (b"", "apikey: no key on standard input\n"),
        (b"\n", "apikey: no key on standard input\n"),
        (b"hunter2\n", "apikey: not an API key"),
        (
            b"apikey_\xff\xfe\n",
            "apikey: the key on standard input is not valid UTF-8\n",
        ),
        (&[b'a'; 5000], "apikey: token too long\n"),
    ];
    for (input, expected) in cases {
        let out = apikey(&["verify"], input);
        assert_eq!(code(&out), 1, "{expected}");
        assert!(stderr(&out).starts_with(expected), "{}", stderr(&out));
        assert!(!stderr(&out).contains("hunter2"));
    }
    let mut bad = Token::generate().unwrap().as_str().to_string();
    let last = bad.pop().unwrap();
    bad.push(if last == 'a' { 'b' } else { 'a' });
    let out = apikey(&["verify"], bad.as_bytes());
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
}

fn stdout_is_empty(out: &std::process::Output) -> bool {
    out.stdout.is_empty()
}

#[test]
fn revoke_by_token_reads_the_key_from_stdin_and_checks_it_first() {
    let out = apikey(&["revoke", "--token"], b"apikey|not-a-key\n");
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).starts_with("apikey: malformed API key"),
        "{}",
        stderr(&out)
    );
    let token = Token::generate().unwrap();
    let out = apikey(
        &["revoke", "--token"],
        format!("{}\n", token.as_str()).as_bytes(),
    );
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(!stderr(&out).contains(token.as_str()));
}

/// Without a daemon, a tree without keys passes and one with a key fails
/// as "could not ask", the key never shown.
#[test]
fn scan_passes_a_clean_tree_and_fails_one_holding_a_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes"), "apikey|looks-like-one\n").unwrap();
    let tree = dir.path().to_str().unwrap();
    let out = apikey(&["scan", tree], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let token = Token::generate().unwrap();
    std::fs::write(
        dir.path().join("env"),
        format!("\nKEY={}\n", token.as_str()),
    )
    .unwrap();
    let out = apikey(&["scan", tree], b"");
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text,
        format!(
            "{}/env:2: a key (not checked: the daemon could not be asked)\n",
            tree
        )
    );
    assert!(!stderr(&out).contains(token.as_str()));
    let out = apikey(&["scan", "--json", tree], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["found"][0]["line"], 2);
    assert_eq!(json["found"][0]["state"], "not-checked");
    assert_eq!(json["files"], 2);
}
