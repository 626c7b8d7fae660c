//! Writing a key into `~/.netrc` (S14).
//!
//! `upsert` edits the text: it replaces the entry of one host and leaves
//! every other byte alone, including `default`, comments and `macdef`
//! bodies. `write_entry` puts the result in place without following links,
//! without writing through a file shared with someone else, and without
//! ever leaving a half-written `.netrc` or a stray temporary file.

use crate::text::safe;
use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{fsync, getuid, unlinkat, UnlinkatFlags, User};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const FILE_NAME: &str = ".netrc";
const TEMP_PREFIX: &str = ".netrc.apikey-";
/// A .netrc larger than this is not one we should be rewriting.
const MAX_SIZE: u64 = 1 << 20;
/// How long to wait for another writer holding the lock. Anyone who can
/// read the home directory can take the lock, so waiting forever would
/// let them hang us.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Why `.netrc` was not written. The text never contains the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetrcError(pub String);

impl fmt::Display for NetrcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetrcError {}

fn err(text: impl Into<String>) -> NetrcError {
    NetrcError(text.into())
}

// ---------------------------------------------------------------------
// The text

/// `existing` with the entry for `host` set to `login` and `password`.
///
/// An existing `machine` entry for `host` (compared without regard to
/// case, as host names are) is replaced with the new one on one line,
/// wherever its login/password/account tokens were; comments inside it
/// are kept after it; later duplicates are removed, since readers differ
/// on which of several entries they use. Without one, the entry goes
/// before `default` (readers stop at `default`) or at the end, after
/// closing an unterminated `macdef` body so the entry does not become part
/// of the macro.
///
/// `host`, `login` and `password` must be single `.netrc` tokens (see
/// `check_token`).
pub fn upsert(existing: &str, host: &str, login: &str, password: &str) -> String {
    let mut entry = Zeroizing::new(String::with_capacity(host.len() + login.len() + 64));
    entry.push_str("machine ");
    entry.push_str(host);
    entry.push_str(" login ");
    entry.push_str(login);
    entry.push_str(" password ");
    entry.push_str(password);

    let parsed = parse(existing);
    let matches: Vec<&Entry> = parsed
        .machines
        .iter()
        .filter(|e| existing[e.name.0..e.name.1].eq_ignore_ascii_case(host))
        .collect();

    // Room for every case, so the text holding the key is never moved.
    let mut out =
        String::with_capacity(existing.len() + entry.len() + 16 + 2 * parsed.comments.len());
    if matches.is_empty() {
        if let Some(at) = parsed.default_at {
            out.push_str(&existing[..at]);
            out.push_str(&entry);
            out.push('\n');
            out.push_str(&existing[at..]);
        } else {
            out.push_str(existing);
            if parsed.open_macro {
                // A macro body runs until an empty line.
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push('\n');
            } else if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&entry);
            out.push('\n');
        }
        return out;
    }

    let mut copied = 0;
    for (i, e) in matches.iter().enumerate() {
        out.push_str(&existing[copied..e.start]);
        let inner: Vec<&str> = parsed
            .comments
            .iter()
            .filter(|c| c.0 >= e.start && c.1 <= e.end)
            .map(|c| &existing[c.0..c.1])
            .collect();
        let mut end = e.end;
        if i == 0 {
            out.push_str(&entry);
        } else if inner.is_empty() {
            end = past_line_end(existing, end);
        }
        for comment in inner {
            out.push('\n');
            out.push_str(comment);
        }
        copied = end;
    }
    out.push_str(&existing[copied..]);
    out
}

/// After a removed entry: skip the rest of its line when nothing else is
/// on it, so the removal leaves no blank line behind.
fn past_line_end(text: &str, pos: usize) -> usize {
    let b = text.as_bytes();
    let mut p = pos;
    while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
        p += 1;
    }
    if b[p..].starts_with(b"\r\n") {
        p + 2
    } else if b[p..].starts_with(b"\n") {
        p + 1
    } else if p == b.len() {
        p
    } else {
        pos
    }
}

/// One `machine NAME [login|password|account VALUE]...` entry, as byte
/// ranges into the text.
#[derive(Debug)]
struct Entry {
    start: usize,
    end: usize,
    name: (usize, usize),
}

#[derive(Debug, Default)]
struct Parsed {
    machines: Vec<Entry>,
    default_at: Option<usize>,
    /// The text ends inside a `macdef` body.
    open_macro: bool,
    comments: Vec<(usize, usize)>,
}

fn parse(text: &str) -> Parsed {
    let mut lx = Lexer { text, pos: 0 };
    let mut parsed = Parsed::default();
    while let Some((ks, ke)) = lx.keyword(&mut parsed.comments) {
        match &text[ks..ke] {
            "machine" => {
                let Some(name) = lx.value() else { break };
                let end = lx.pairs(name.1, &mut parsed.comments);
                parsed.machines.push(Entry {
                    start: ks,
                    end,
                    name,
                });
            }
            "default" => {
                parsed.default_at.get_or_insert(ks);
                lx.pairs(ke, &mut parsed.comments);
            }
            "macdef" => {
                lx.value();
                parsed.open_macro = !lx.skip_macro_body();
            }
            // Tokens no reader knows at this place: left as they are.
            _ => {}
        }
    }
    parsed
}

/// Splits the text into whitespace-separated tokens. All the bytes it
/// stops at are ASCII, so every position is a char boundary.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    fn skip_space(&mut self) {
        while self.pos < self.text.len() && self.bytes()[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn line_end(&self, from: usize) -> usize {
        self.bytes()[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.text.len(), |i| from + i)
    }

    /// The next token where a keyword may stand. A `#` there starts a
    /// comment to the end of the line (as Python and curl read it).
    fn keyword(&mut self, comments: &mut Vec<(usize, usize)>) -> Option<(usize, usize)> {
        loop {
            self.skip_space();
            if self.pos >= self.text.len() {
                return None;
            }
            if self.bytes()[self.pos] == b'#' {
                let end = self.line_end(self.pos);
                if !comments.contains(&(self.pos, end)) {
                    comments.push((self.pos, end));
                }
                self.pos = end;
                continue;
            }
            return Some(self.word());
        }
    }

    /// The next token as a value: whatever it starts with.
    fn value(&mut self) -> Option<(usize, usize)> {
        self.skip_space();
        (self.pos < self.text.len()).then(|| self.word())
    }

    /// A token; a double-quoted one may hold spaces and backslash escapes
    /// but ends at the end of its line at the latest, so one stray quote
    /// cannot swallow the rest of the file.
    fn word(&mut self) -> (usize, usize) {
        let start = self.pos;
        let len = self.text.len();
        if self.bytes()[self.pos] == b'"' {
            self.pos += 1;
            while self.pos < len {
                match self.bytes()[self.pos] {
                    b'\n' => break,
                    b'"' => {
                        self.pos += 1;
                        break;
                    }
                    b'\\' if self.pos + 1 < len && self.bytes()[self.pos + 1] != b'\n' => {
                        self.pos += 2;
                    }
                    _ => self.pos += 1,
                }
            }
        } else {
            while self.pos < len && !self.bytes()[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
        }
        (start, self.pos)
    }

    /// The login/password/account pairs of an entry; returns where the
    /// entry ends (`end` if it has none).
    fn pairs(&mut self, mut end: usize, comments: &mut Vec<(usize, usize)>) -> usize {
        loop {
            let save = self.pos;
            match self.keyword(comments) {
                Some((a, b)) if matches!(&self.text[a..b], "login" | "password" | "account") => {
                    match self.value() {
                        Some((_, ve)) => end = ve,
                        None => return b,
                    }
                }
                _ => {
                    self.pos = save;
                    return end;
                }
            }
        }
    }

    /// Skips a macro body: the lines after the `macdef NAME` line up to and
    /// including the first empty one. False when the text ends first.
    fn skip_macro_body(&mut self) -> bool {
        let len = self.text.len();
        let eol = self.line_end(self.pos);
        if eol == len {
            self.pos = len;
            return false;
        }
        self.pos = eol + 1;
        while self.pos < len {
            let eol = self.line_end(self.pos);
            let line = &self.bytes()[self.pos..eol];
            let blank = line.is_empty() || line == b"\r";
            if eol == len {
                self.pos = len;
                return false;
            }
            self.pos = eol + 1;
            if blank {
                return true;
            }
        }
        false
    }
}

/// A host, login or password must be one token that every `.netrc`
/// reader takes as it is: no whitespace (which ends it), no control
/// characters, no quotes or backslashes (quoting and escapes), no `#` in
/// front (a comment). The message names what was wrong, never the value,
/// since it may be the key.
pub fn check_token(what: &str, value: &str) -> Result<(), NetrcError> {
    let bad = value.is_empty()
        || value.starts_with('#')
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
    if bad {
        Err(err(format!(
            "the {what} cannot be written to .netrc (empty, or it contains spaces, control characters, quotes or backslashes)"
        )))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------
// The file

/// The home directory of the real user, from the password database: not
/// `$HOME`, which need not be the caller's own.
pub fn home_dir() -> Result<PathBuf, NetrcError> {
    let uid = getuid();
    match User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.dir),
        Ok(None) => Err(err(format!(
            "uid {uid} has no entry in the password database"
        ))),
        Err(e) => Err(err(format!(
            "cannot look up the home directory of uid {uid}: {e}"
        ))),
    }
}

fn show(path: &Path) -> String {
    safe(&path.to_string_lossy(), 256)
}

/// Where the file is, for messages.
pub fn file_path(home: &Path) -> PathBuf {
    home.join(FILE_NAME)
}

fn open_dir(home: &Path) -> Result<OwnedFd, NetrcError> {
    open(
        home,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format!("cannot open {}: {}", show(home), e.desc())))
}

/// Refuses a `.netrc` we must not write over: a link of either kind, not
/// a plain file, or someone else's. `None` when there is none yet.
fn inspect(dir: &OwnedFd, home: &Path) -> Result<Option<FileStat>, NetrcError> {
    match fstatat(dir, FILE_NAME, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            check_stat(&st, home)?;
            Ok(Some(st))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(err(format!(
            "cannot examine {}: {}",
            show(&file_path(home)),
            e.desc()
        ))),
    }
}

fn check_stat(st: &FileStat, home: &Path) -> Result<(), NetrcError> {
    let path = show(&file_path(home));
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFLNK {
        return Err(err(format!("{path} is a symbolic link; not writing to it")));
    }
    if kind != SFlag::S_IFREG {
        return Err(err(format!(
            "{path} is not a regular file; not writing to it"
        )));
    }
    let uid = getuid().as_raw();
    if st.st_uid != uid {
        return Err(err(format!(
            "{path} belongs to uid {}, not to you (uid {uid}); not writing to it",
            st.st_uid
        )));
    }
    if st.st_nlink > 1 {
        return Err(err(format!(
            "{path} has {} hard links; not writing to it",
            st.st_nlink
        )));
    }
    Ok(())
}

/// The checks `write_entry` makes, without writing: run before a key is
/// made so that the usual refusals cost no key.
pub fn precheck(home: &Path) -> Result<(), NetrcError> {
    let dir = open_dir(home)?;
    inspect(&dir, home).map(|_| ())
}

/// Reads the `.netrc` that `inspect` approved, through a descriptor that
/// is checked to be that same file.
fn read_existing(
    dir: &OwnedFd,
    home: &Path,
    seen: &FileStat,
) -> Result<Zeroizing<String>, NetrcError> {
    let path = show(&file_path(home));
    let fd = openat(
        dir,
        FILE_NAME,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY
            | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| err(format!("cannot open {path}: {}", e.desc())))?;
    let st = fstat(&fd).map_err(|e| err(format!("cannot examine {path}: {}", e.desc())))?;
    if st.st_dev != seen.st_dev || st.st_ino != seen.st_ino {
        return Err(err(format!("{path} was replaced while being read")));
    }
    check_stat(&st, home)?;
    let mut bytes = Zeroizing::new(Vec::new());
    File::from(fd)
        .take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read {path}: {e}")))?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(err(format!("{path} is larger than {MAX_SIZE} bytes")));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_string())),
        Err(_) => Err(err(format!("{path} is not valid UTF-8; not changing it"))),
    }
}

/// An exclusive lock on the home directory, so two writers cannot both
/// read the old file and rename over each other. The directory rather
/// than a lock file, because a lock file would be left behind.
fn lock(dir: OwnedFd, home: &Path) -> Result<Flock<OwnedFd>, NetrcError> {
    lock_within(dir, home, LOCK_WAIT)
}

fn lock_within(dir: OwnedFd, home: &Path, wait: Duration) -> Result<Flock<OwnedFd>, NetrcError> {
    let deadline = Instant::now() + wait;
    let mut dir = dir;
    loop {
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((fd, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                dir = fd;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => {
                return Err(err(format!(
                    "cannot lock {}: {}",
                    show(home),
                    if e == Errno::EWOULDBLOCK {
                        "another program holds the lock"
                    } else {
                        e.desc()
                    }
                )))
            }
        }
    }
}

/// The temporary file, removed unless it was renamed into place.
struct Temp<'a> {
    dir: &'a OwnedFd,
    name: String,
    file: Option<File>,
    done: bool,
}

/// A new file `name` in `dir`, mode 0600: never one that is there already,
/// nor one a symbolic link there points to.
fn create_new(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
}

impl<'a> Temp<'a> {
    fn create(dir: &'a OwnedFd, home: &Path) -> Result<Temp<'a>, NetrcError> {
        let mut last = Errno::EEXIST;
        for _ in 0..16 {
            let name = format!("{TEMP_PREFIX}{}", random_suffix()?);
            match create_new(dir, &name) {
                Ok(fd) => {
                    return Ok(Temp {
                        dir,
                        name,
                        file: Some(File::from(fd)),
                        done: false,
                    })
                }
                Err(Errno::EEXIST) => last = Errno::EEXIST,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(err(format!(
            "cannot create a temporary file in {}: {}",
            show(home),
            last.desc()
        )))
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        self.file.take();
        if !self.done {
            let _ = unlinkat(self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn random_suffix() -> Result<String, NetrcError> {
    let id = apikey_proto::token::new_key_id()
        .map_err(|e| err(format!("no randomness from the operating system: {e}")))?;
    Ok(id.chars().take(6).collect())
}

/// Sets the entry for `host` in `home`/.netrc and returns the file's path.
/// On error nothing has changed and no temporary file is left.
pub fn write_entry(
    home: &Path,
    host: &str,
    login: &str,
    password: &str,
) -> Result<PathBuf, NetrcError> {
    check_token("host name", host)?;
    check_token("login name", login)?;
    check_token("key", password)?;

    let target = file_path(home);
    let path = show(&target);
    let dir = lock(open_dir(home)?, home)?;
    let existing = match inspect(&dir, home)? {
        Some(st) => read_existing(&dir, home, &st)?,
        None => Zeroizing::new(String::new()),
    };
    let updated = Zeroizing::new(upsert(&existing, host, login, password));

    let mut temp = Temp::create(&dir, home)?;
    {
        let file = temp.file.as_mut().expect("file is open until drop");
        let failed = |e: &dyn fmt::Display| err(format!("cannot write {path}: {e}"));
        // The umask may have taken bits off 0600, never added any; make
        // it exactly 0600 whatever the umask was.
        fchmod(&*file, Mode::from_bits_truncate(0o600)).map_err(|e| failed(&e.desc()))?;
        file.write_all(updated.as_bytes()).map_err(|e| failed(&e))?;
        file.sync_all().map_err(|e| failed(&e))?;
    }
    renameat(&*dir, temp.name.as_str(), &*dir, FILE_NAME)
        .map_err(|e| err(format!("cannot replace {path}: {}", e.desc())))?;
    temp.done = true;
    drop(temp);
    fsync(&*dir).map_err(|e| err(format!("cannot sync {}: {}", show(home), e.desc())))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const KEY: &str = "apikey|0123456789abcdefghijABCDEFGHIJ0123456789abcdef";

    fn set(text: &str) -> String {
        upsert(text, "h.example", "alice", "NEW")
    }

    #[test]
    fn empty_file() {
        assert_eq!(set(""), "machine h.example login alice password NEW\n");
    }

    #[test]
    fn appends_after_other_entries() {
        let old = "machine a login x password y\n";
        assert_eq!(
            set(old),
            format!("{old}machine h.example login alice password NEW\n")
        );
        assert_eq!(
            set("machine a login x password y"),
            "machine a login x password y\nmachine h.example login alice password NEW\n"
        );
    }

    #[test]
    fn replaces_one_line_entry_in_place() {
        let old = "machine a login x password y\n\
                   machine h.example login bob password OLD\n\
                   machine b login z password w\n";
        assert_eq!(
            set(old),
            "machine a login x password y\n\
             machine h.example login alice password NEW\n\
             machine b login z password w\n"
        );
    }

    #[test]
    fn replaces_entry_split_across_lines() {
        let old = "machine h.example\n\tlogin bob\n\tpassword OLD\n\taccount acct\n\nmachine b\n  login z\n  password w\n";
        assert_eq!(
            set(old),
            "machine h.example login alice password NEW\n\nmachine b\n  login z\n  password w\n"
        );
    }

    #[test]
    fn host_names_compare_without_case() {
        assert_eq!(
            set("machine H.Example login bob password OLD\n"),
            "machine h.example login alice password NEW\n"
        );
        assert_eq!(
            set("machine h.example.org login bob password OLD\n"),
            "machine h.example.org login bob password OLD\nmachine h.example login alice password NEW\n"
        );
    }

    #[test]
    fn duplicates_are_removed() {
        let old = "machine h.example login a password 1\n\
                   machine b login z password w\n\
                   machine h.example login c password 2\n\
                   machine c login q password r\n";
        assert_eq!(
            set(old),
            "machine h.example login alice password NEW\n\
             machine b login z password w\n\
             machine c login q password r\n"
        );
    }

    /// A removed duplicate takes the rest of its line (blanks and the
    /// line end, LF or CRLF) only when nothing else is on it.
    #[test]
    fn a_removed_duplicate_leaves_no_blank_line() {
        let first = "machine h.example login a password 1";
        let new = "machine h.example login alice password NEW";
        assert_eq!(
            set(&format!(
                "{first}\nmachine h.example login c password 2 \t \nmachine b login z password w\n"
            )),
            format!("{new}\nmachine b login z password w\n")
        );
        assert_eq!(
            set(&format!("{first}\r\nmachine h.example login c password 2  \r\nmachine b login z password w\r\n")),
            format!("{new}\r\nmachine b login z password w\r\n")
        );
        assert_eq!(
            set(&format!("{first}\nmachine h.example login c password 2  ")),
            format!("{new}\n")
        );
        assert_eq!(
            set(&format!(
                "{first}\nmachine h.example login c password 2 machine b login z password w\n"
            )),
            format!("{new}\n machine b login z password w\n")
        );
    }

    /// A file cut off after a keyword (a value missing at its very end)
    /// is kept as it is, the entry added after it.
    #[test]
    fn a_file_that_ends_where_a_value_should_be() {
        for cut in [
            "machine",
            "machine   ",
            "machine b login",
            "machine b login z password",
        ] {
            assert_eq!(
                set(cut),
                format!("{cut}\nmachine h.example login alice password NEW\n"),
                "{cut:?}"
            );
        }
    }

    /// A stray quote, even one whose line ends in a backslash, ends with
    /// its line: the entry on the next line is still found and replaced.
    /// One left open at the very end of the file ends there.
    #[test]
    fn a_quoted_value_never_runs_past_its_line() {
        let next = "machine h.example login bob password OLD\n";
        let new = "machine h.example login alice password NEW\n";
        for open in ["\"oops", "\"oops\\", "\"a \\\" b"] {
            let old = format!("machine a login x password {open}\n{next}");
            assert_eq!(
                set(&old),
                format!("machine a login x password {open}\n{new}"),
                "{open:?}"
            );
        }
        for end in ["\"oops", "\"oops\\"] {
            let old = format!("machine a login x password {end}");
            assert_eq!(set(&old), format!("{old}\n{new}"), "{end:?}");
        }
    }

    #[test]
    fn macdef_bodies_are_kept_and_not_parsed() {
        let old = "machine a login x password y\n\
                   macdef init\n\
                   machine h.example login evil password inside-macro\n\
                   \x20 cd /pub\n\
                   \n\
                   machine h.example login bob password OLD\n\
                   macdef bye\n\
                   quit\n\
                   \n";
        let new = set(old);
        assert_eq!(
            new,
            "machine a login x password y\n\
             macdef init\n\
             machine h.example login evil password inside-macro\n\
             \x20 cd /pub\n\
             \n\
             machine h.example login alice password NEW\n\
             macdef bye\n\
             quit\n\
             \n"
        );
    }

    /// With CRLF line ends a macro's body still starts on the line after
    /// `macdef`, whose own end is not an empty line.
    #[test]
    fn crlf_macro_bodies_are_kept_too() {
        let old = "macdef init\r\nmachine h.example login evil password inside\r\n\r\n\
                   machine h.example login bob password OLD\r\n";
        assert_eq!(
            set(old),
            "macdef init\r\nmachine h.example login evil password inside\r\n\r\n\
             machine h.example login alice password NEW\r\n"
        );
    }

    #[test]
    fn appending_closes_an_open_macro() {
        assert_eq!(
            set("machine a login x password y\nmacdef init\ncd /pub\n"),
            "machine a login x password y\nmacdef init\ncd /pub\n\nmachine h.example login alice password NEW\n"
        );
        assert_eq!(
            set("macdef init\ncd /pub"),
            "macdef init\ncd /pub\n\nmachine h.example login alice password NEW\n"
        );
        // A closed macro needs nothing more.
        assert_eq!(
            set("macdef init\ncd /pub\n\n"),
            "macdef init\ncd /pub\n\nmachine h.example login alice password NEW\n"
        );
    }

    #[test]
    fn new_entry_goes_before_default() {
        let old = "machine a login x password y\ndefault login anonymous password me@example.org\n";
        assert_eq!(
            set(old),
            "machine a login x password y\n\
             machine h.example login alice password NEW\n\
             default login anonymous password me@example.org\n"
        );
        // An entry that exists is replaced where it is.
        let old = "default login anonymous password p\nmachine h.example login b password OLD\n";
        assert_eq!(
            set(old),
            "default login anonymous password p\nmachine h.example login alice password NEW\n"
        );
    }

    #[test]
    fn comments_survive() {
        let old = "# my hosts\nmachine h.example # work\n  login bob\n  password OLD\n# end\n";
        assert_eq!(
            set(old),
            "# my hosts\nmachine h.example login alice password NEW\n# work\n# end\n"
        );
    }

    #[test]
    fn quoted_values_and_unknown_tokens() {
        let old = "machine h.example login \"bob smith\" password \"a \\\"b\" port 21\nmachine b login z password w\n";
        assert_eq!(
            set(old),
            "machine h.example login alice password NEW port 21\nmachine b login z password w\n"
        );
        // A stray quote ends with its line, not with the file.
        let old = "machine a login x password \"oops\nmachine b login z password w\n";
        assert_eq!(
            set(old),
            format!("{old}machine h.example login alice password NEW\n")
        );
    }

    #[test]
    fn other_bytes_are_untouched() {
        let old =
            "machine a\r\n  login x\r\n  password y\r\n\r\nmachine b login z password w   \n\n\n";
        let new = set(old);
        assert!(new.starts_with(old));
        assert_eq!(
            &new[old.len()..],
            "machine h.example login alice password NEW\n"
        );
    }

    #[test]
    fn idempotent() {
        let once = set("machine a login x password y\n");
        assert_eq!(set(&once), once);
        let other = upsert(&once, "h.example", "alice", "NEWER");
        assert_eq!(other, once.replace("NEW\n", "NEWER\n"));
    }

    #[test]
    fn tokens_are_checked() {
        assert!(check_token("key", KEY).is_ok());
        assert!(check_token("key", "apikey_abc").is_ok());
        for bad in [
            "",
            "a b",
            "a\nb",
            "a\u{85}b",
            "\"a",
            "a\\b",
            "#a",
            "a\u{2028}",
        ] {
            let e = check_token("key", bad).unwrap_err();
            if bad.len() > 1 {
                assert!(!e.0.contains(bad), "{e}");
            }
        }
    }

    // --- the file ---

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn writes_a_new_file_mode_0600() {
        let home = tempfile::tempdir().unwrap();
        let path = write_entry(home.path(), "h.example", "alice", KEY).unwrap();
        assert_eq!(path, home.path().join(".netrc"));
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("machine h.example login alice password {KEY}\n")
        );
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn rewrites_an_existing_file_and_tightens_its_mode() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".netrc");
        std::fs::write(
            &path,
            "machine a login x password y\nmachine h.example login a password OLD\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_entry(home.path(), "h.example", "apikey", KEY).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "machine a login x password y\nmachine h.example login apikey password {KEY}\n"
            )
        );
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), getuid().as_raw());
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn refuses_a_symlink() {
        let home = tempfile::tempdir().unwrap();
        let target = home.path().join("elsewhere");
        std::fs::write(&target, "machine a login x password y\n").unwrap();
        std::os::unix::fs::symlink(&target, home.path().join(".netrc")).unwrap();
        let e = write_entry(home.path(), "h.example", "alice", KEY).unwrap_err();
        assert!(e.0.contains("symbolic link"), "{e}");
        assert!(precheck(home.path()).is_err());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "machine a login x password y\n"
        );
        assert!(std::fs::symlink_metadata(home.path().join(".netrc"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn refuses_a_hard_link() {
        let home = tempfile::tempdir().unwrap();
        let other = home.path().join("other");
        std::fs::write(&other, "machine a login x password y\n").unwrap();
        std::fs::hard_link(&other, home.path().join(".netrc")).unwrap();
        let e = write_entry(home.path(), "h.example", "alice", KEY).unwrap_err();
        assert!(e.0.contains("hard links"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "machine a login x password y\n"
        );
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_file() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".netrc")).unwrap();
        let e = write_entry(home.path(), "h.example", "alice", KEY).unwrap_err();
        assert!(e.0.contains("not a regular file"), "{e}");
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn refuses_someone_elses_file() {
        if !getuid().is_root() {
            // Only root can give a file away; the check itself is the
            // same comparison either way.
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".netrc");
        std::fs::write(&path, "").unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = write_entry(home.path(), "h.example", "alice", KEY).unwrap_err();
        assert!(e.0.contains("belongs to uid 65534"), "{e}");
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn refuses_bad_tokens_before_touching_anything() {
        let home = tempfile::tempdir().unwrap();
        let e = write_entry(home.path(), "h.example", "alice", "has space").unwrap_err();
        assert!(!e.0.contains("has space"));
        assert!(write_entry(home.path(), "h example", "alice", KEY).is_err());
        assert!(!home.path().join(".netrc").exists());
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".netrc");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = write_entry(home.path(), "h.example", "alice", KEY).unwrap_err();
        assert!(e.0.contains("UTF-8"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), [0xff, 0xfe]);
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn temp_file_is_removed_unless_renamed() {
        let home = tempfile::tempdir().unwrap();
        let dir = open_dir(home.path()).unwrap();
        let temp = Temp::create(&dir, home.path()).unwrap();
        let name = temp.name.clone();
        assert!(name.starts_with(TEMP_PREFIX) && name.len() == TEMP_PREFIX.len() + 6);
        let meta = std::fs::symlink_metadata(home.path().join(&name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o077, 0);
        drop(temp);
        assert!(leftovers(home.path()).is_empty());
    }

    #[test]
    fn the_lock_is_exclusive_and_released() {
        let home = tempfile::tempdir().unwrap();
        let held = lock(open_dir(home.path()).unwrap(), home.path()).unwrap();
        let again = Flock::lock(
            open_dir(home.path()).unwrap(),
            FlockArg::LockExclusiveNonblock,
        );
        assert!(again.is_err());
        drop(held);
        write_entry(home.path(), "h.example", "alice", KEY).unwrap();
    }

    /// A lock another writer holds is waited for, up to a point.
    #[test]
    fn a_held_lock_is_waited_for_and_then_given_up() {
        let home = tempfile::tempdir().unwrap();
        let held = lock(open_dir(home.path()).unwrap(), home.path()).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let started = Instant::now();
        lock_within(
            open_dir(home.path()).unwrap(),
            home.path(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        releaser.join().unwrap();
        let _held = lock(open_dir(home.path()).unwrap(), home.path()).unwrap();
        let started = Instant::now();
        let e = lock_within(
            open_dir(home.path()).unwrap(),
            home.path(),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(e.0.contains("another program holds the lock"), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    /// The home directory is the password database's, and a home that is
    /// not a directory is refused when it is opened.
    #[test]
    fn the_home_is_a_directory_from_the_password_database() {
        let home = home_dir().unwrap();
        assert!(home.is_absolute() && home.is_dir(), "{}", home.display());
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let e = precheck(&file).unwrap_err();
        assert!(e.0.starts_with("cannot open"), "{e}");
        assert!(e.0.contains("Not a directory"), "{e}");
    }

    /// What was read is the file that was inspected: not one reached
    /// through a symbolic link put in its place, not another file.
    #[test]
    fn the_file_read_is_the_file_inspected() {
        let home = tempfile::tempdir().unwrap();
        let dir = open_dir(home.path()).unwrap();
        let target = home.path().join("elsewhere");
        std::fs::write(&target, "machine a login b password c\n").unwrap();
        let seen = fstatat(&dir, "elsewhere", AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        std::os::unix::fs::symlink(&target, file_path(home.path())).unwrap();
        let e = read_existing(&dir, home.path(), &seen).unwrap_err();
        assert!(e.0.starts_with("cannot open"), "{e}");
        std::fs::remove_file(file_path(home.path())).unwrap();
        std::fs::write(file_path(home.path()), "machine a\n").unwrap();
        let e = read_existing(&dir, home.path(), &seen).unwrap_err();
        assert!(e.0.contains("was replaced"), "{e}");
        let seen = fstatat(&dir, FILE_NAME, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(
            read_existing(&dir, home.path(), &seen).unwrap().as_str(),
            "machine a\n"
        );
    }

    /// A temporary file is always a new one: not a file already there, nor
    /// the target of a link put at its name (a dangling one would make it).
    #[test]
    fn a_temporary_file_is_always_new() {
        let home = tempfile::tempdir().unwrap();
        let dir = open_dir(home.path()).unwrap();
        let target = home.path().join("made-through-a-link");
        std::os::unix::fs::symlink(&target, home.path().join("t-link")).unwrap();
        assert_eq!(create_new(&dir, "t-link").unwrap_err(), Errno::EEXIST);
        assert!(!target.exists());
        std::fs::write(home.path().join("t-file"), "x").unwrap();
        assert_eq!(create_new(&dir, "t-file").unwrap_err(), Errno::EEXIST);
        create_new(&dir, "t-new").unwrap();
        let meta = std::fs::metadata(home.path().join("t-new")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    /// A FIFO put where the file was is opened without waiting for a
    /// writer, and refused.
    #[test]
    fn a_fifo_in_place_of_the_file_is_refused_at_once() {
        let home = tempfile::tempdir().unwrap();
        let dir = open_dir(home.path()).unwrap();
        nix::unistd::mkfifo(&file_path(home.path()), Mode::from_bits_truncate(0o600)).unwrap();
        let seen = fstatat(&dir, FILE_NAME, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        let e = read_existing(&dir, home.path(), &seen).unwrap_err();
        assert!(e.0.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn a_file_is_read_up_to_its_size_limit() {
        let home = tempfile::tempdir().unwrap();
        let dir = open_dir(home.path()).unwrap();
        let path = file_path(home.path());
        std::fs::write(&path, "#".repeat(MAX_SIZE as usize)).unwrap();
        let seen = fstatat(&dir, FILE_NAME, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(
            read_existing(&dir, home.path(), &seen).unwrap().len(),
            MAX_SIZE as usize
        );
        std::fs::write(&path, "#".repeat(MAX_SIZE as usize + 1)).unwrap();
        let seen = fstatat(&dir, FILE_NAME, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        let e = read_existing(&dir, home.path(), &seen).unwrap_err();
        assert!(e.0.contains("is larger than 1048576 bytes"), "{e}");
    }

    #[test]
    fn missing_home_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let gone = home.path().join("nope");
        assert!(precheck(&gone).is_err());
        let e = write_entry(&gone, "h.example", "alice", KEY).unwrap_err();
        // What the CLI prints is the error's own text.
        assert_eq!(e.to_string(), e.0);
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
