//! `akt-bus`: a bare `org.apikey.Keys1` client for the end-to-end tests.
//!
//! The daemon judges a caller by its process (uid, loginuid, session), so
//! a test that needs a logged-in caller on the bus must make the call from
//! a child process whose loginuid was set (see `As`). The CLI cannot serve
//! there: it validates arguments itself, so malformed ones would never
//! reach the daemon, and it runs one request per process, far too slowly
//! for a crash test. This client sends exactly what it is given and prints
//! the error name exactly as it came off the wire.
//!
//! Output, one tab-separated record a line:
//! - `ok <fields...>` or `err <error name> <message>` for a single call;
//! - `stream`: `gen <id> <token>` and `rev <id>` for every acknowledged
//!   write, in order, then `end <error name> <message>` at the first error;
//! - `lines`: reads one call a line from standard input, its words
//!   separated by tabs, and answers each as a single call: one process,
//!   so one login session, for a whole test.

use std::io::Write;

use apikey_proto::names::{BUS_NAME, INTERFACE, OBJECT_PATH};
use apikey_proto::KeyInfo;
use zbus::{Connection, DBusError, Message};

const USAGE: &str = "usage: akt-bus generate NAME EXPIRES SERVICES USER
       akt-bus rotate ID
       akt-bus revoke ID...
       akt-bus stream USER
       akt-bus lines   (then one of the above a line, words tab-separated)
SERVICES is a comma-separated list; an empty argument is an empty list.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(&args));
    std::process::exit(code);
}

async fn run(args: &[String]) -> i32 {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    // Follows DBUS_SYSTEM_BUS_ADDRESS, which the tests point at their bus.
    let conn = match zbus::connection::Builder::system().build().await {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot connect to the bus: {e}")),
    };
    if words == ["lines"] {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => return 0,
                Ok(_) => {}
            }
            let words: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
            if dispatch(&conn, &words).await != 0 {
                record(&["err", "usage", USAGE]);
            }
        }
    }
    dispatch(&conn, &words).await
}

async fn dispatch(conn: &Connection, words: &[&str]) -> i32 {
    match words {
        ["generate", name, expires, services, user] => {
            let services = split_list(services);
            let reply = call(conn, "Generate", &(*name, *expires, services, *user)).await;
            print_key_reply(reply)
        }
        ["rotate", id] => print_key_reply(call(conn, "Rotate", &(*id,)).await),
        ["revoke", ids @ ..] if !ids.is_empty() => {
            let ids: Vec<&str> = ids.to_vec();
            match call(conn, "Revoke", &(ids,)).await {
                Ok(msg) => match msg.body().deserialize::<Vec<String>>() {
                    Ok(revoked) => record(&["ok", &revoked.join(",")]),
                    Err(e) => record(&["err", "bad-reply", &e.to_string()]),
                },
                Err((name, text)) => record(&["err", &name, &text]),
            }
            0
        }
        ["stream", user] => stream(conn, user).await,
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("akt-bus: {message}");
    1
}

fn split_list(text: &str) -> Vec<&str> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').collect()
    }
}

/// One method call; an error reply as (error name, message).
async fn call<B>(conn: &Connection, method: &str, body: &B) -> Result<Message, (String, String)>
where
    B: zbus::export::serde::ser::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(BUS_NAME), OBJECT_PATH, Some(INTERFACE), method, body)
        .await
        .map_err(describe)
}

fn describe(e: zbus::Error) -> (String, String) {
    match e {
        zbus::Error::MethodError(name, text, _) => (name.to_string(), text.unwrap_or_default()),
        zbus::Error::FDO(fdo) => (fdo.name().to_string(), fdo.to_string()),
        other => ("transport".to_string(), other.to_string()),
    }
}

fn print_key_reply(reply: Result<Message, (String, String)>) -> i32 {
    match reply {
        Ok(msg) => match msg.body().deserialize::<(String, KeyInfo)>() {
            Ok((token, info)) => record(&["ok", &info.id, &token]),
            Err(e) => record(&["err", "bad-reply", &e.to_string()]),
        },
        Err((name, text)) => record(&["err", &name, &text]),
    }
    0
}

/// Generates keys for `user` as fast as the daemon answers, revoking every
/// second one right after, until the first error. Each acknowledged write
/// is printed (and flushed) before the next call, so the record is complete
/// whenever the stream is cut.
async fn stream(conn: &Connection, user: &str) -> i32 {
    let mut n = 0u64;
    loop {
        n += 1;
        let name = format!("stream-{n}");
        let reply = call(
            conn,
            "Generate",
            &(name.as_str(), "", Vec::<&str>::new(), user),
        )
        .await;
        let id = match reply {
            Ok(msg) => match msg.body().deserialize::<(String, KeyInfo)>() {
                Ok((token, info)) => {
                    record(&["gen", &info.id, &token]);
                    info.id
                }
                Err(e) => {
                    record(&["end", "bad-reply", &e.to_string()]);
                    return 0;
                }
            },
            Err((name, text)) => {
                record(&["end", &name, &text]);
                return 0;
            }
        };
        if n.is_multiple_of(2) {
            match call(conn, "Revoke", &(vec![id.as_str()],)).await {
                Ok(msg) => match msg.body().deserialize::<Vec<String>>() {
                    Ok(revoked) if revoked == [id.clone()] => record(&["rev", &id]),
                    Ok(revoked) => {
                        record(&["end", "bad-reply", &format!("revoked {revoked:?}")]);
                        return 0;
                    }
                    Err(e) => {
                        record(&["end", "bad-reply", &e.to_string()]);
                        return 0;
                    }
                },
                Err((name, text)) => {
                    record(&["end", &name, &text]);
                    return 0;
                }
            }
        }
    }
}

fn record(fields: &[&str]) {
    let line: Vec<String> = fields
        .iter()
        .map(|f| f.replace(['\t', '\n'], " "))
        .collect();
    let mut out = std::io::stdout().lock();
    // A closed stdout means the test is gone; nothing left to report to.
    let _ = writeln!(out, "{}", line.join("\t"));
    let _ = out.flush();
}
