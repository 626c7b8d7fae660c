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
    text.windows(PREFIX.len())
        .position(|w| w == PREFIX.as_bytes() || w == ALIAS_PREFIX.as_bytes())
}

/// Scans every path: a file, or a directory walked whole. A path given
/// here that is a symbolic link is followed (it was named); links below
/// it are not.
pub fn scan(paths: &[PathBuf]) -> Scan {
    let mut scan = Scan::default();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        walk(path, &mut scan, &mut seen_dirs);
    }
    scan
}

/// Depth first, each directory's entries in name order, so a report
/// reads like a listing.
fn walk(root: &Path, scan: &mut Scan, seen_dirs: &mut HashSet<(u64, u64)>) {
    // The root was named, so a link there is followed; none below it is.
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let named = path == root;
        let looked = match named {
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
            // A file named through a link is read where the link leads.
            let opened = match named {
                true => std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()),
                false => path.clone(),
            };
            scan_file(&path, &opened, scan);
        } else if !meta.is_dir() {
            // Devices, FIFOs and sockets hold no file's contents: skipped
            // in a tree, named when given.
            if named {
                scan.unreadable.push(Unreadable {
                    path,
                    error: "not a regular file or directory".into(),
                });
            }
        } else {
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
    }
}

/// The keys of the file at `opened`, reported as found in `path`.
fn scan_file(path: &Path, opened: &Path, scan: &mut Scan) {
    match keys_in_file(opened) {
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
    // Room for what is kept, a chunk and the probe read_to_end makes at
    // the end: the buffer never moves, so no copy is left unwiped.
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(keep + CHUNK + 64));
    let mut line = 1u64;
    let mut found = Vec::new();
    loop {
        // read_to_end reads again after EINTR; a short chunk is the end.
        let n = (&mut file)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        let last = n < CHUNK;
        // Keys starting in the part not kept for the next round.
        let settled = if last {
            buf.len()
        } else {
            buf.len().saturating_sub(keep)
        };
        let mut counted = 0;
        for (at, token) in keys_in(&buf) {
            if at >= settled {
                break;
            }
            line += count_lines(&buf[counted..at]);
            counted = at;
            found.push((line, token));
        }
        line += count_lines(&buf[counted..settled]);
        if last {
            return Ok(found);
        }
        buf.drain(..settled);
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

    /// Keys before, across and after chunk ends, in a file of several
    /// chunks that ends where a chunk ends, each found once with its line.
    #[test]
    fn keys_across_chunks_are_found_once_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let keys: Vec<Token> = (0..4).map(|_| key()).collect();
        let mut text = "\n".repeat(3);
        text.push_str(keys[0].as_str());
        text.push('\n');
        // The second key straddles the first chunk's end.
        while text.len() < CHUNK - 20 {
            text.push_str("x\n");
        }
        text.push(' ');
        text.push_str(keys[1].as_str());
        // The third starts a byte before the second chunk's end.
        text.push_str(&" ".repeat(2 * CHUNK - text.len() - 1));
        text.push_str(keys[2].as_str());
        text.push('\n');
        text.push_str(keys[3].as_str());
        text.push_str(&"\n".repeat(4 * CHUNK - text.len()));
        std::fs::write(&path, &text).unwrap();
        let expected: Vec<(u64, String)> = keys
            .iter()
            .map(|k| {
                let at = text.find(k.as_str()).unwrap();
                let line = text[..at].matches('\n').count() as u64 + 1;
                (line, k.as_str().to_string())
            })
            .collect();
        let found: Vec<(u64, String)> = keys_in_file(&path)
            .unwrap()
            .into_iter()
            .map(|(l, t)| (l, t.as_str().to_string()))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(expected[0].0, 4);
    }

    /// Opened, a file is what it says: a link in its place is not
    /// followed, and a FIFO does not make the scan wait for a writer.
    #[test]
    fn a_link_or_a_fifo_in_a_files_place_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, key().as_str()).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        assert_eq!(keys_in_file(&real).unwrap().len(), 1);
        assert!(keys_in_file(&dir.path().join("link")).is_err());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(keys_in_file(&fifo).unwrap_err(), "not a regular file");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
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
        std::os::unix::fs::symlink(root.join("sub/env"), outside.path().join("file")).unwrap();
        let scan = scan(&[
            root.to_path_buf(),
            root.join("missing"),
            outside.path().join("named"),
            root.join("fifo"),
            outside.path().join("file"),
        ]);
        // sub/env once through the tree (though a link given by name
        // leads to its directory again), and once more as a file named.
        let places: Vec<&Path> = scan.found.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(places, [root.join("sub/env"), outside.path().join("file")]);
        assert_eq!(scan.found[0].line, 1);
        assert_eq!(scan.links, 2);
        assert_eq!(scan.files, 2);
        let unreadable: Vec<(&Path, &str)> = scan
            .unreadable
            .iter()
            .map(|u| (u.path.as_path(), u.error.as_str()))
            .collect();
        assert_eq!(unreadable.len(), 2, "{unreadable:?}");
        assert_eq!(unreadable[0].0, root.join("missing"));
        assert_eq!(
            unreadable[1],
            (
                root.join("fifo").as_path(),
                "not a regular file or directory"
            )
        );
    }
}
