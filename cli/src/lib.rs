//! The `apikey` command line: generate, list and revoke API keys held by
//! `apikeyd`.

pub mod args;
mod client;
mod commands;
pub mod exit;
pub mod netrc;
mod scan;
mod text;
/// Times for people and programs, shared with the daemon's messages.
pub use apikey_proto::timefmt;

use clap::{CommandFactory, Parser};

/// The full command-line definition, for man pages and completions.
pub fn command() -> clap::Command {
    args::Cli::command()
}

/// Runs the command line; returns the exit status.
pub fn run() -> i32 {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let outcome = client::runtime().and_then(|rt| rt.block_on(commands::dispatch(cli.command)));
    match outcome {
        Ok(()) => exit::OK,
        Err(e) => exit::report(&e),
    }
}
