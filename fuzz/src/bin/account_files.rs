//! The account-file shortcut: nsswitch.conf as the daemon reads it, and
//! passwd/shadow/group entries as glibc's files reader returns them.

use apikeyd::{files_source, local_files};
use std::io::Write;

fn main() {
    let dir = std::env::temp_dir().join(format!("apikey-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("file");
    afl::fuzz!(|data: &[u8]| {
        let _ = local_files::parse_nsswitch(&String::from_utf8_lossy(data));
        let mut f = std::fs::File::create(&path).expect("write the input");
        f.write_all(data).expect("write the input");
        drop(f);
        if let Some(t) = files_source::read_passwd(&path) {
            for (uid, name) in &t.by_uid {
                assert!(t.by_name.contains_key(name), "{uid} {name}");
            }
        }
        let _ = files_source::read_shadow(&path);
        let _ = files_source::read_group(&path);
    });
}
