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
