//! `akt-login ADDRESS LOGINUID AUTH PROGRAM [ARGS...]`: what a login's PAM
//! session hook does for a process the tests put in a login session.
//!
//! Run as root in the fresh audit session the test's loginuid write
//! opened, it registers that session with the daemon on ADDRESS as
//! pam_apikey's open_session would (OpenSession, authenticated by AUTH),
//! then execs PROGRAM, which inherits the audit session. Keys are made
//! only in a session registered so (S6). A failed registration is not
//! reported here: the test sees the daemon's own "no record of a password
//! login" refusal, which names the cause.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use apikey_proto::names::{BUS_NAME, INTERFACE, OBJECT_PATH};
use pam_apikey::dbus::{Call, Client};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: akt-login ADDRESS LOGINUID AUTH PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    let text = |a: &OsString| a.to_string_lossy().into_owned();
    let (address, loginuid, auth) = (text(&args[0]), text(&args[1]), text(&args[2]));
    let user = loginuid
        .parse()
        .ok()
        .and_then(|uid| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()?)
        .map(|u| u.name)
        .unwrap_or(loginuid);
    register(&address, &user, &auth);
    let argv: Vec<CString> = args[3..]
        .iter()
        .map(|a| CString::new(a.clone().into_vec()).expect("no NUL in arguments"))
        .collect();
    let err = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
    eprintln!("akt-login: exec {:?}: {err}", argv[0]);
    std::process::exit(127);
}

fn register(address: &str, user: &str, auth: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let Ok(mut client) = Client::connect(address, deadline) else {
        return;
    };
    let _ = client.call(&Call {
        destination: Some(BUS_NAME),
        path: OBJECT_PATH,
        interface: INTERFACE,
        member: "OpenSession",
        args: &[user, "login", "", "pts/akt", "", auth],
    });
}
