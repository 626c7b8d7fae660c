//! `akt-fake-keys OWNER`: an impostor `org.apikey.Keys1`, for the tests of
//! rule S1 (trusted bus only).
//!
//! Run as an ordinary user on a bus whose policy lets anyone own the name,
//! it plays the attacker's daemon: every Verify is answered "valid, owned by
//! OWNER, key AAAAAAAAAAAA". A module that trusted it would log anyone in as
//! OWNER. It prints `ready` once it owns the name, then one line per call
//! it receives (never the token itself), so a test can also tell whether
//! the module sent it a token at all.

use std::io::Write;

use apikey_proto::names::{BUS_NAME, OBJECT_PATH};

struct Fake {
    owner: String,
}

#[zbus::interface(name = "org.apikey.Keys1")]
impl Fake {
    async fn verify(
        &self,
        token: String,
        user: String,
        service: String,
        rhost: String,
    ) -> (String, String) {
        say(&format!(
            "verify token_len={} user={user:?} service={service:?} rhost={rhost:?}",
            token.len()
        ));
        (self.owner.clone(), "AAAAAAAAAAAA".into())
    }

    async fn open_session(
        &self,
        user: String,
        service: String,
        _rhost: String,
        _tty: String,
        key_id: String,
        auth: String,
    ) -> String {
        say(&format!(
            "open-session user={user:?} service={service:?} key={key_id:?} auth={auth:?}"
        ));
        "AAAAAAAAAAAAAAAAAAAAAA".into()
    }

    async fn close_session(&self, _handle: String) {
        say("close-session");
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the test is gone; nothing left to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(owner), None) = (args.next(), args.next()) else {
        eprintln!("usage: akt-fake-keys OWNER");
        std::process::exit(2);
    };
    let code = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(serve(owner));
    std::process::exit(code);
}

async fn serve(owner: String) -> i32 {
    // Follows DBUS_SYSTEM_BUS_ADDRESS, as a real attacker's environment
    // would point a naive client at this bus.
    let built = zbus::connection::Builder::system()
        .serve_at(OBJECT_PATH, Fake { owner })
        .name(BUS_NAME)
        .build()
        .await;
    let _conn = match built {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("akt-fake-keys: cannot serve {BUS_NAME}: {e}");
            return 1;
        }
    };
    say("ready");
    std::future::pending::<()>().await;
    0
}
