//! `apikey scan`'s search: keys in files, found by their shape and
//! checksum (a string that merely looks like a key is not one), in text or
//! inside binary files, through directory trees that are walked without
//! following symbolic links, so a link can neither lead the walk outside
//! the paths it was given nor into a loop.

use apikey_proto::token::{ALIAS_PREFIX, PREFIX, TOKEN_LEN};
use apikey_proto::Token;
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How much of a file is read at a time.
const CHUNK: usize = 1 << 20;

/// A key found: where, and the key itself (never printed).
pub struct Found {
    pub path: PathBuf,
    /// 1-based.
    pub line: u64,
    pub token: Token,
}

/// What could not be looked into, and why.
pub struct Unreadable {
    pub path: PathBuf,
    pub error: String,
}

#[derive(Default)]
pub struct Scan {
    pub found: Vec<Found>,
    pub unreadable: Vec<Unreadable>,
    pub files: u64,
    /// Symbolic links met below the given paths (not followed).
    pub links: u64,
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The keys in `text`, with the byte offset of each: a prefix, then
/// exactly the key's letters and digits (a longer run is not a key), with
/// a valid checksum.
pub fn keys_in(text: &[u8]) -> Vec<(usize, Token)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = find_prefix(&text[i..]) {
        let start = i + at;
        let end = start + TOKEN_LEN;
        let whole = end <= text.len()
            && text[start + PREFIX.len()..end]
                .iter()
                .all(|&b| is_base62(b))
            && text.get(end).is_none_or(|&b| !is_base62(b));
        if whole {
            if let Ok(token) = Token::parse(&text[start..end]) {
                out.push((start, token));
                i = end;
                continue;
            }
        }
        i = start + 1;
    }
    out
}

fn find_prefix(text: &[u8]) -> Option<usize> {
    let stem = &PREFIX.as_bytes()[..PREFIX.len() - 1];
    debug_assert_eq!(stem, &ALIAS_PREFIX.as_bytes()[..ALIAS_PREFIX.len() - 1]);
    let mut from = 0;
    while from + PREFIX.len() <= text.len() {
        let at = text[from..].windows(stem.len()).position(|w| w == stem)?;
        let sep = from + at + stem.len();
        match text.get(sep) {
            Some(b'|') | Some(b'_') => return Some(from + at),
            Some(_) => from += at + 1,
            None => return None,
        }
    }
    None
}

/// Scans every path: a file, or a directory walked whole. A path given
/// here that is a symbolic link is followed (it was named); links below
/// it are not.
pub fn scan(paths: &[PathBuf]) -> Scan {
    let mut scan = Scan::default();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut scan, &mut seen_dirs),
            Ok(meta) if meta.is_file() => scan_file(path, &mut scan),
            Ok(_) => scan.unreadable.push(Unreadable {
                path: path.clone(),
                error: "not a regular file or directory".into(),
            }),
            Err(e) => scan.unreadable.push(Unreadable {
                path: path.clone(),
                error: e.to_string(),
            }),
        }
    }
    scan
}

/// Depth first, each directory's entries in name order, so a report
/// reads like a listing.
fn walk(root: &Path, scan: &mut Scan, seen_dirs: &mut HashSet<(u64, u64)>) {
    // The root was named, so a link there is followed; none below it is.
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let looked = match path == root {
            true => std::fs::metadata(&path),
            false => std::fs::symlink_metadata(&path),
        };
        let meta = match looked {
            Ok(meta) => meta,
            Err(e) => {
                scan.unreadable.push(Unreadable {
                    path,
                    error: e.to_string(),
                });
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            scan.links += 1;
        } else if meta.is_file() {
            scan_file(&path, scan);
        } else if meta.is_dir() {
            // The same directory twice (a bind mount, say) is walked once.
            if !seen_dirs.insert((meta.dev(), meta.ino())) {
                continue;
            }
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    let mut names: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    // The stack pops the last first.
                    names.sort_unstable_by(|a, b| b.cmp(a));
                    stack.extend(names);
                }
                Err(e) => scan.unreadable.push(Unreadable {
                    path,
                    error: e.to_string(),
                }),
            }
        }
        // Devices, FIFOs and sockets hold no file's contents.
    }
}

fn scan_file(path: &Path, scan: &mut Scan) {
    match keys_in_file(path) {
        Ok(found) => {
            scan.files += 1;
            scan.found
                .extend(found.into_iter().map(|(line, token)| Found {
                    path: path.to_path_buf(),
                    line,
                    token,
                }));
        }
        Err(e) => scan.unreadable.push(Unreadable {
            path: path.to_path_buf(),
            error: e,
        }),
    }
}

/// The keys in one regular file with their line numbers, read in chunks
/// that overlap by a key's length (and the byte after it, which says
/// whether the key ends there), so a key across two chunks is found once.
pub fn keys_in_file(path: &Path) -> Result<Vec<(u64, Token)>, String> {
    // No link followed and no wait on a FIFO put in the file's place.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let keep = TOKEN_LEN;
    let mut buf = zeroize::Zeroizing::new(vec![0u8; CHUNK + keep]);
    let mut held = 0;
    let mut line = 1u64;
    let mut found = Vec::new();
    loop {
        let n = read_some(&mut file, &mut buf[held..]).map_err(|e| e.to_string())?;
        let len = held + n;
        let last = n == 0;
        let text = &buf[..len];
        // Keys starting in the part not kept for the next round.
        let settled = if last { len } else { len.saturating_sub(keep) };
        let mut counted = 0;
        for (at, token) in keys_in(text) {
            if at >= settled {
                break;
            }
            line += count_lines(&text[counted..at]);
            counted = at;
            found.push((line, token));
        }
        line += count_lines(&text[counted..settled]);
        if last {
            return Ok(found);
        }
        buf.copy_within(settled..len, 0);
        held = len - settled;
    }
}

fn read_some(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn count_lines(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Token {
        Token::generate().unwrap()
    }

    fn alias(t: &Token) -> String {
        t.as_str().replacen('|', "_", 1)
    }

    #[test]
    fn keys_are_found_by_shape_and_checksum_in_either_spelling() {
        let (a, b) = (key(), key());
        let mistyped = {
            let mut s = a.as_str().to_string();
            let last = s.pop().unwrap();
            s.push(if last == 'a' { 'b' } else { 'a' });
            s
        };
        let text = format!(
            "x={}\npassword {} # {}\nlonger {}9 apikey|short apikey_",
            a.as_str(),
            alias(&b),
            mistyped,
            b.as_str()
        );
        let found: Vec<(usize, String)> = keys_in(text.as_bytes())
            .into_iter()
            .map(|(at, t)| (at, t.as_str().to_string()))
            .collect();
        assert_eq!(
            found,
            [
                (2, a.as_str().to_string()),
                (2 + TOKEN_LEN + "\npassword ".len(), b.as_str().to_string())
            ]
        );
    }

    #[test]
    fn a_key_inside_binary_bytes_is_found() {
        let k = key();
        let mut bytes = vec![0u8, 0xff, b'\n', 0x80];
        bytes.extend_from_slice(k.as_str().as_bytes());
        bytes.extend_from_slice(&[0, 0xfe]);
        let found = keys_in(&bytes);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 4);
    }

    #[test]
    fn keys_across_chunks_are_found_once_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let (a, b) = (key(), key());
        let mut text = "\n".repeat(3);
        text.push_str(a.as_str());
        // The second key straddles the first chunk's end.
        let pad = CHUNK - text.len() - 20;
        text.push_str(&" ".repeat(pad));
        text.push('\n');
        text.push_str(b.as_str());
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let found: Vec<(u64, String)> = keys_in_file(&path)
            .unwrap()
            .into_iter()
            .map(|(l, t)| (l, t.as_str().to_string()))
            .collect();
        assert_eq!(
            found,
            [(4, a.as_str().to_string()), (5, b.as_str().to_string())]
        );
    }

    #[test]
    fn a_walk_follows_no_link_and_reports_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        let k = key();
        std::fs::write(root.join("sub/env"), format!("KEY={}\n", k.as_str())).unwrap();
        // A loop, and a link out of the tree to a key it must not reach.
        std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("k"), key().as_str()).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), outside.path().join("named")).unwrap();
        let scan = scan(&[
            root.to_path_buf(),
            root.join("missing"),
            outside.path().join("named"),
        ]);
        // sub/env once, though a link given by name leads to it again.
        assert_eq!(scan.found.len(), 1);
        assert_eq!(scan.found[0].path, root.join("sub/env"));
        assert_eq!(scan.found[0].line, 1);
        assert_eq!(scan.links, 2);
        assert_eq!(scan.files, 1);
        assert_eq!(scan.unreadable.len(), 1);
        assert_eq!(scan.unreadable[0].path, root.join("missing"));
    }
}
