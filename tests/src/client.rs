//! Calls through `akt-bus` (see `src/bin/akt-bus.rs`): the daemon's answer
//! to a caller in whatever login state an [`As`] sets up, with the error
//! name exactly as it was on the wire.

use apikey_proto::names::ERROR_PREFIX;

use crate::bins;
use crate::run::As;

/// One reply: the fields of a success, or an error's name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `generate`/`rotate`: [id, token]; `revoke`: [comma-separated ids].
    Ok(Vec<String>),
    Err {
        name: String,
        message: String,
    },
}

impl Reply {
    /// The first line `akt-bus` printed.
    pub fn parse(stdout: &str) -> Option<Reply> {
        let line = stdout.lines().next()?;
        let mut fields = line.split('\t');
        match fields.next()? {
            "ok" => Some(Reply::Ok(fields.map(str::to_string).collect())),
            "err" => Some(Reply::Err {
                name: fields.next()?.to_string(),
                message: fields.next().unwrap_or_default().to_string(),
            }),
            _ => None,
        }
    }

    /// The fields of a success; panics with the error otherwise.
    #[track_caller]
    pub fn expect_ok(&self) -> Vec<String> {
        match self {
            Reply::Ok(fields) => fields.clone(),
            Reply::Err { name, message } => panic!("expected success, got {name}: {message}"),
        }
    }

    /// Asserts the error `org.apikey.Keys1.Error.<short>`; returns its
    /// message.
    #[track_caller]
    pub fn expect_err(&self, short: &str) -> String {
        let want = format!("{ERROR_PREFIX}.{short}");
        match self {
            Reply::Err { name, message } if *name == want => message.clone(),
            other => panic!("expected {want}, got {other:?}"),
        }
    }
}

/// Runs `akt-bus ARGS` as `who` (give it the world's bus with
/// [`As::bus`], e.g. via `world.as_root()`) and parses its answer.
#[track_caller]
pub fn call(who: &As, args: &[&str]) -> Reply {
    let out = who.run(&bins::akt_bus().to_string_lossy(), args);
    out.ok();
    Reply::parse(&out.stdout).unwrap_or_else(|| {
        panic!(
            "{}: no reply line\nstdout:\n{}\nstderr:\n{}",
            out.description, out.stdout, out.stderr
        )
    })
}

/// One `akt-bus lines` process answering call after call: every call is
/// made from the same process, so from the one login session it was
/// started in (and registered, see [`As`]) however the daemon's store
/// fares meanwhile; a full disk, say, would stop a new registration.
pub struct HeldCaller {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl HeldCaller {
    pub fn start(who: &As) -> HeldCaller {
        let mut child = who.spawn(&bins::akt_bus().to_string_lossy(), &["lines"]);
        let stdin = child.stdin.take().expect("akt-bus stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("akt-bus stdout"));
        HeldCaller {
            child,
            stdin,
            stdout,
        }
    }

    /// One call, as [`call`] makes it.
    #[track_caller]
    pub fn call(&mut self, args: &[&str]) -> Reply {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{}", args.join("\t")).expect("write to akt-bus");
        self.stdin.flush().expect("flush akt-bus");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read akt-bus");
        Reply::parse(&line).unwrap_or_else(|| panic!("akt-bus answered {line:?}"))
    }
}

impl Drop for HeldCaller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
