//! `akt-pid-reuse ADDRESS`: the client half of the pid-reuse attack the
//! daemon must refuse (tests/tests/pid_reuse.rs).
//!
//! Connects to the bus and says Hello, so the bus records this process's
//! pid for the connection; prints `ready <pid>`; forks; the parent exits
//! two seconds later, and the child keeps the connection, waits for a line on
//! standard input (by then the test has put another process on the
//! parent's pid), and asks the daemon for a session key over the
//! inherited connection. Prints `result err <error name>` for an error
//! reply, `result answered <what>` for anything else.
//!
//! Blocking and single-threaded (pam_apikey's own bus client), so the
//! fork is safe.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use apikey_proto::names::{BUS_NAME, INTERFACE, OBJECT_PATH};
use pam_apikey::dbus::{BusError, Call, Client};

fn main() {
    let address = std::env::args()
        .nth(1)
        .expect("usage: akt-pid-reuse ADDRESS");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut client = Client::connect(&address, deadline).expect("connect");
    // The first call carries BEGIN and Hello.
    client
        .call(&Call {
            destination: Some("org.freedesktop.DBus"),
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "GetNameOwner",
            args: &[BUS_NAME],
        })
        .expect("GetNameOwner");
    let parent = std::process::id();
    println!("ready {parent}");
    std::io::stdout().flush().unwrap();
    // SAFETY: single-threaded process; the child only uses what it owns.
    match unsafe { libc::fork() } {
        0 => {}
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        // The parent lingers a moment, as the pids coming round would
        // take seconds in a real attack; the test then makes it instant.
        _ => {
            std::thread::sleep(Duration::from_secs(2));
            std::process::exit(0)
        }
    }
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    let result = client.call(&Call {
        destination: Some(BUS_NAME),
        path: OBJECT_PATH,
        interface: INTERFACE,
        member: "CreateSessionKey",
        args: &["borrowed login"],
    });
    match result {
        Err(BusError::Error { name, .. }) => println!("result err {name}"),
        Ok(values) => println!("result answered {values:?}"),
        Err(other) => println!("result answered {other:?}"),
    }
}
