//! apikeyd.toml as the daemon reads it at start.

use std::path::Path;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = apikeyd::config::Config::parse(text, Path::new("apikeyd.toml"));
        }
    });
}
