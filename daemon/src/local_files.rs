//! Answers from /etc/passwd, /etc/shadow and /etc/group without asking NSS
//! each time, where that gives the same answer NSS would.
//!
//! glibc reads and parses those files afresh on every `getpwuid` and
//! `getspnam`; for a key login that was over half of the daemon's work.
//! Where /etc/nsswitch.conf puts `files` first for passwd, shadow and
//! group (Debian's default `files systemd` included), an entry that is in
//! the file is exactly what NSS returns: the first line that matches, and
//! no later source is asked. So the daemon keeps the entries glibc's own
//! files reader returned ([`crate::files_source`]: the parser NSS's files
//! source uses, not one of ours), only what the checks need (uid, name,
//! gid, whether the shadow entry is locked, its expiry day; never a
//! password hash), and answers from that.
//!
//! Why not simply remember what `getpwnam_r` answered: its answer does not
//! say which source gave it. A user of systemd-homed, sss or ldap locked
//! there changes none of these files, and a remembered answer would
//! outlive the lock (S8). Entries read from the files are known to be
//! what the files source answers.
//!
//! Correct by construction:
//! - Every lookup first takes a stamp of the four files (device, inode,
//!   size, mtime and ctime in ns). `usermod -L`, `userdel`, `vipw` and the
//!   like replace the file by rename or rewrite it, which changes the
//!   stamp; any change of any stamp drops everything read, so a lock
//!   (S8) is seen on the very next lookup.
//! - Only positive answers come from here. An entry that is not in the
//!   files goes to NSS as before, uncached: "definitely gone" (which
//!   revokes keys) is never answered from memory, and later NSS sources
//!   (systemd, sss, ldap) are asked exactly as glibc would ask them.
//! - Anything unusual turns the shortcut off for that file and leaves NSS
//!   in charge: nsswitch.conf not naming `files` first (or with an action
//!   right after it), a file too large or unreadable, a line too long.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::files_source::{read_group, read_passwd, read_shadow};
pub use crate::files_source::{PasswdTable, ShadowEntry, MAX_FILE_BYTES};

/// The four files whose state the answers depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub nsswitch: PathBuf,
    pub passwd: PathBuf,
    pub shadow: PathBuf,
    pub group: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            nsswitch: "/etc/nsswitch.conf".into(),
            passwd: "/etc/passwd".into(),
            shadow: "/etc/shadow".into(),
            group: "/etc/group".into(),
        }
    }
}

/// What identifies one version of a file. `None` when it could not be
/// stat'ed (missing, no permission): then nothing is answered from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

pub fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
    })
}

/// Which databases nsswitch.conf lets us answer from the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilesFirst {
    pub passwd: bool,
    pub shadow: bool,
    pub group: bool,
}

/// glibc's `isspace` in the C locale; nothing else counts as a blank.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// A source list as glibc's `nss_action_parse` reads it:
/// `( <source> ( "[" "!"? (<status> "=" <action>)+ "]" )? )*`. Returns
/// each source's name and whether an action list follows it; `None` where
/// glibc would reject the line (and with it the whole file).
fn parse_sources(mut line: &str) -> Option<Vec<(&str, bool)>> {
    let mut out = Vec::new();
    let word = |l: &str, stops: &[char]| -> usize {
        l.find(|c: char| is_c_space(c) || stops.contains(&c))
            .unwrap_or(l.len())
    };
    loop {
        line = line.trim_start_matches(is_c_space);
        if line.is_empty() {
            return Some(out);
        }
        let end = word(line, &['[']);
        if end == 0 {
            // glibc stops reading sources at a stray '['.
            return Some(out);
        }
        let name = &line[..end];
        line = line[end..].trim_start_matches(is_c_space);
        let has_actions = line.starts_with('[');
        if has_actions {
            line = line[1..].trim_start_matches(is_c_space);
            loop {
                line = line.strip_prefix('!').unwrap_or(line);
                let end = word(line, &['=', ']']);
                let status = line[..end].to_ascii_uppercase();
                if !["SUCCESS", "UNAVAIL", "NOTFOUND", "TRYAGAIN"].contains(&status.as_str()) {
                    return None;
                }
                line = line[end..].trim_start_matches(is_c_space);
                line = line.strip_prefix('=')?.trim_start_matches(is_c_space);
                let end = word(line, &['=', ']']);
                let action = line[..end].to_ascii_uppercase();
                if !["RETURN", "CONTINUE", "MERGE"].contains(&action.as_str()) {
                    return None;
                }
                line = line[end..].trim_start_matches(is_c_space);
                if let Some(rest) = line.strip_prefix(']') {
                    line = rest;
                    break;
                }
                if line.is_empty() {
                    return None;
                }
            }
        }
        out.push((name, has_actions));
    }
}

/// Which databases nsswitch.conf lets us answer from the files: those
/// whose line names a plain `files` first (no action list after it), so
/// that glibc asks the files first and, by the default action, returns
/// what they found. Read the way glibc 2.33 and later read the file: a
/// line is `<database> ":" <sources>`, a `#` is a comment only where it
/// starts a line (elsewhere it is part of a name). Anything glibc would
/// reject (an action list that does not parse, on any line) or that we
/// do not follow exactly (a database given twice, a name that is not
/// plain ASCII) gives no shortcut at all.
pub fn parse_nsswitch(text: &str) -> FilesFirst {
    let mut seen: HashMap<&str, bool> = HashMap::new();
    for line in text.split('\n') {
        let line = line.trim_start_matches(is_c_space);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|c: char| is_c_space(c) || c == ':')
            .unwrap_or(line.len());
        let (name, rest) = line.split_at(end);
        if rest.is_empty() || name.is_empty() {
            // glibc skips a line without a database name and colon.
            continue;
        }
        let sources = rest.trim_start_matches(|c: char| is_c_space(c) || c == ':');
        let Some(list) = parse_sources(sources) else {
            return FilesFirst::default();
        };
        if !name.is_ascii() {
            return FilesFirst::default();
        }
        let files_first = matches!(list.first(), Some(("files", false)));
        if seen.insert(name, files_first).is_some() {
            return FilesFirst::default();
        }
    }
    let first = |db: &str| seen.get(db).copied().unwrap_or(false);
    FilesFirst {
        passwd: first("passwd"),
        shadow: first("shadow"),
        group: first("group"),
    }
}

/// nsswitch.conf, which is small and holds no secret; `None` when it
/// cannot be read whole.
fn read_switch(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_FILE_BYTES).then_some(text)
}

/// Everything parsed from one set of file versions. A `None` table means
/// "ask NSS" for that database.
#[derive(Debug, Default)]
struct Snapshot {
    stamps: [Option<Stamp>; 4],
    /// False when a file had changed too recently to trust its stamp:
    /// file times move in clock ticks, so an edit in place within the same
    /// tick and of the same size would keep the stamp. Such a snapshot is
    /// never used.
    trusted: bool,
    /// The wall clock when it was parsed. A clock stepped back past this
    /// could let an edit reproduce an old stamp: then it is not used.
    parsed_at_ns: i128,
    passwd: Option<PasswdTable>,
    shadow: Option<HashMap<String, ShadowEntry>>,
    group: Option<HashMap<String, u32>>,
}

impl Snapshot {
    fn usable_for(&self, stamps: &[Option<Stamp>; 4]) -> bool {
        self.trusted && self.stamps == *stamps && wall_ns() >= self.parsed_at_ns
    }
}

fn wall_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// While a file changed less than this long ago, lookups go to NSS and
/// nothing is parsed (2 s: the coarsest file time granularity, FAT's).
const SETTLE_NS: i128 = 2_000_000_000;

/// The answer of a local lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local<T> {
    /// The files hold it, and it is what NSS would answer.
    Found(T),
    /// Not answerable here: ask NSS (not in the files, files not first,
    /// or not parsed).
    AskNss,
    /// The files changed since they were last parsed: only the lookups
    /// that may read files (not the `peek_` ones) parse them again.
    Stale,
}

pub struct LocalFiles {
    paths: Paths,
    settle_ns: i128,
    snap: Mutex<Snapshot>,
    /// Held while the files are parsed: lookups arriving meanwhile ask
    /// NSS instead of parsing the same files again (any user can make
    /// them change, with passwd or chfn).
    parsing: Mutex<()>,
}

impl LocalFiles {
    pub fn new(paths: Paths) -> LocalFiles {
        LocalFiles {
            paths,
            settle_ns: SETTLE_NS,
            snap: Mutex::new(Snapshot::default()),
            parsing: Mutex::new(()),
        }
    }

    /// How long after a change a file's stamp is not trusted (tests).
    pub fn with_settle(mut self, settle: std::time::Duration) -> LocalFiles {
        self.settle_ns = settle.as_nanos() as i128;
        self
    }

    /// Stamps of the four files; `None` if any cannot be stat'ed, and
    /// then everything is left to NSS.
    fn stamps(&self) -> Option<[Option<Stamp>; 4]> {
        let p = &self.paths;
        let all = [
            stamp(&p.nsswitch),
            stamp(&p.passwd),
            stamp(&p.shadow),
            stamp(&p.group),
        ];
        all.iter().all(Option::is_some).then_some(all)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when some file changed within the settling time.
    fn recent(&self, stamps: &[Option<Stamp>; 4]) -> bool {
        let wall = wall_ns();
        stamps
            .iter()
            .flatten()
            .any(|s| wall - s.mtime_ns.max(s.ctime_ns) <= self.settle_ns)
    }

    /// Reads the files, after `stamps` were taken: what is read is at
    /// least as new as the stamps. If a file changes while it is read, the
    /// next lookup's stamps differ and it is parsed again.
    fn parse(&self, stamps: [Option<Stamp>; 4]) -> Snapshot {
        let p = &self.paths;
        let first = read_switch(&p.nsswitch)
            .map(|t| parse_nsswitch(&t))
            .unwrap_or_default();
        let passwd = first.passwd.then(|| read_passwd(&p.passwd)).flatten();
        let shadow = first.shadow.then(|| read_shadow(&p.shadow)).flatten();
        let group = first.group.then(|| read_group(&p.group)).flatten();
        Snapshot {
            stamps,
            trusted: !self.recent(&stamps),
            parsed_at_ns: wall_ns(),
            passwd,
            shadow,
            group,
        }
    }

    /// Answers from memory after checking the stamps; never reads or
    /// parses a file, only stats four.
    fn peek<T>(&self, f: impl FnOnce(&Snapshot) -> Option<T>) -> Local<T> {
        let Some(now) = self.stamps() else {
            return Local::AskNss;
        };
        let snap = self.lock();
        if !snap.usable_for(&now) {
            return Local::Stale;
        }
        f(&snap).map_or(Local::AskNss, Local::Found)
    }

    /// Like `peek`, parsing the files first when they changed, unless
    /// one changed just now: then NSS answers until they have settled
    /// (account tools often write several files in a row, and parsing
    /// them on every lookup would cost more than NSS does).
    fn get<T>(&self, f: impl Fn(&Snapshot) -> Option<T>) -> Local<T> {
        let Some(now) = self.stamps() else {
            return Local::AskNss;
        };
        {
            let snap = self.lock();
            if snap.usable_for(&now) {
                return f(&snap).map_or(Local::AskNss, Local::Found);
            }
        }
        if self.recent(&now) {
            return Local::AskNss;
        }
        let _parsing = match self.parsing.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Local::AskNss,
        };
        let fresh = self.parse(now);
        let answer = match fresh.trusted {
            true => f(&fresh).map_or(Local::AskNss, Local::Found),
            false => Local::AskNss,
        };
        *self.lock() = fresh;
        answer
    }

    pub fn peek_name_of_uid(&self, uid: u32) -> Local<String> {
        self.peek(|s| s.passwd.as_ref()?.by_uid.get(&uid).cloned())
    }
    /// The name of `uid` and its shadow entry, from one set of stats.
    pub fn peek_account(&self, uid: u32) -> Local<(String, ShadowEntry)> {
        self.peek(|s| {
            let name = s.passwd.as_ref()?.by_uid.get(&uid)?;
            let entry = s.shadow.as_ref()?.get(name)?;
            Some((name.clone(), *entry))
        })
    }
    pub fn name_of_uid(&self, uid: u32) -> Local<String> {
        self.get(|s| s.passwd.as_ref()?.by_uid.get(&uid).cloned())
    }
    pub fn peek_uid_of_name(&self, name: &str) -> Local<u32> {
        self.peek(|s| s.passwd.as_ref()?.by_name.get(name).copied())
    }
    pub fn uid_of_name(&self, name: &str) -> Local<u32> {
        self.get(|s| s.passwd.as_ref()?.by_name.get(name).copied())
    }
    pub fn peek_shadow(&self, name: &str) -> Local<ShadowEntry> {
        self.peek(|s| s.shadow.as_ref()?.get(name).copied())
    }
    pub fn shadow(&self, name: &str) -> Local<ShadowEntry> {
        self.get(|s| s.shadow.as_ref()?.get(name).copied())
    }
    pub fn peek_gid(&self, name: &str) -> Local<u32> {
        self.peek(|s| s.group.as_ref()?.get(name).copied())
    }
    pub fn gid(&self, name: &str) -> Local<u32> {
        self.get(|s| s.group.as_ref()?.get(name).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files_source::tests::PASSWD;
    use std::io::Write;
    use std::time::Duration;

    const NSS_FILES: &str = "passwd: files systemd\ngroup: files\nshadow:   files\n";
    const SHADOW: &str = "root:*:19000:0:99999:7:::\n\
        alice:$y$j9T$abc$def:19000:0:99999:7:::\n\
        bob:!:19000:0:99999:7::20000:\n";
    const GROUP: &str = "root:x:0:\nshadow:x:42:\napikey-auth:x:998:www-data\n";

    #[test]
    fn files_first_is_what_counts() {
        assert_eq!(
            parse_nsswitch(NSS_FILES),
            FilesFirst {
                passwd: true,
                shadow: true,
                group: true
            }
        );
        let debian = "# comment: passwd: ldap\npasswd:         files systemd\n\
            group:          files systemd\nshadow:         files systemd\n\
            gshadow:        files systemd\nhosts: files dns\n";
        assert_eq!(
            parse_nsswitch(debian),
            FilesFirst {
                passwd: true,
                shadow: true,
                group: true
            }
        );
        for no in [
            "passwd: sss files\n",
            "passwd: ldap\n",
            "passwd: compat\n",
            "passwd: systemd files\n",
            "passwd: files [SUCCESS=continue] ldap\n",
            "passwd: files\npasswd: ldap\n",
            "passwd:\n",
            "passwd: # files\n",
            "",
        ] {
            assert!(!parse_nsswitch(no).passwd, "{no:?}");
        }
        // An action after a later source does not matter: whatever the
        // files hold is returned before it is reached.
        assert!(parse_nsswitch("passwd: files sss [NOTFOUND=return]\n").passwd);
        let only_passwd = parse_nsswitch("passwd: files\ngroup: sss files\n");
        assert!(only_passwd.passwd && !only_passwd.group && !only_passwd.shadow);
    }

    #[test]
    fn the_switch_is_read_as_glibc_reads_it() {
        // '#' starts a comment only at the start of a line; elsewhere it
        // is part of a source's name.
        assert!(!parse_nsswitch("passwd: files#x sss\n").passwd);
        assert!(parse_nsswitch("passwd: files # sss\n").passwd);
        assert!(parse_nsswitch("  \tpasswd:files\r\n").passwd);
        assert!(!parse_nsswitch("passwd: files[NOTFOUND=return] sss\n").passwd);
        // An action list glibc cannot parse, on any line, makes glibc
        // reject the whole file: then nothing is answered here either.
        for broken in [
            "passwd: files\nhosts: files [NOTFOUND=retrun] dns\n",
            "passwd: files\nhosts: files [NOTFOUND=return dns\n",
            "passwd: files\nhosts: files [=return] dns\n",
        ] {
            assert_eq!(parse_nsswitch(broken), FilesFirst::default(), "{broken:?}");
        }
        assert!(parse_nsswitch("passwd: files\nhosts: files [!unavail=Return] dns\n").passwd);
        // A non-ASCII blank is not a blank to glibc.
        assert_eq!(
            parse_nsswitch("\u{a0}passwd: files\n"),
            FilesFirst::default()
        );
    }

    struct Files {
        _dir: tempfile::TempDir,
        paths: Paths,
    }

    fn files(nsswitch: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            nsswitch: dir.path().join("nsswitch.conf"),
            passwd: dir.path().join("passwd"),
            shadow: dir.path().join("shadow"),
            group: dir.path().join("group"),
        };
        std::fs::write(&paths.nsswitch, nsswitch).unwrap();
        std::fs::write(&paths.passwd, PASSWD).unwrap();
        std::fs::write(&paths.shadow, SHADOW).unwrap();
        std::fs::write(&paths.group, GROUP).unwrap();
        Files { _dir: dir, paths }
    }

    /// As shadow's tools do it: a new file renamed over the old one.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn answers_follow_every_change_at_once() {
        let f = files(NSS_FILES);
        let local = LocalFiles::new(f.paths.clone()).with_settle(Duration::ZERO);
        assert_eq!(local.peek_name_of_uid(1000), Local::Stale);
        assert_eq!(local.name_of_uid(1000), Local::Found("alice".into()));
        assert_eq!(local.peek_name_of_uid(1000), Local::Found("alice".into()));
        assert_eq!(local.uid_of_name("bob"), Local::Found(1001));
        assert_eq!(local.gid("apikey-auth"), Local::Found(998));
        assert_eq!(local.peek_gid("nosuch"), Local::AskNss);
        assert!(!matches!(local.shadow("alice"), Local::Found(e) if e.locked));
        assert!(
            matches!(local.peek_account(1000), Local::Found((n, e)) if n == "alice" && !e.locked)
        );

        // usermod -L: a new shadow renamed into place.
        replace(&f.paths.shadow, &SHADOW.replace("alice:$y$", "alice:!$y$"));
        assert_eq!(local.peek_shadow("alice"), Local::Stale);
        assert!(matches!(local.shadow("alice"), Local::Found(e) if e.locked));
        assert!(matches!(local.peek_account(1000), Local::Found((_, e)) if e.locked));
        // An account without a shadow line is for NSS to answer.
        assert_eq!(
            local.peek_account(0),
            Local::Found((
                "root".into(),
                ShadowEntry {
                    locked: false,
                    expire_day: -1
                }
            ))
        );
        replace(&f.paths.shadow, "bob:!:1:0:99999:7:::\n");
        local.shadow("bob");
        assert_eq!(local.peek_account(1000), Local::AskNss);

        // userdel: gone from the files means "ask NSS", never "gone".
        replace(&f.paths.passwd, &PASSWD.replace("bob:", "robert:"));
        assert_eq!(local.name_of_uid(1001), Local::Found("robert".into()));
        assert_eq!(local.uid_of_name("bob"), Local::AskNss);
    }

    #[test]
    fn an_edit_in_place_is_seen_too() {
        let f = files(NSS_FILES);
        let local = LocalFiles::new(f.paths.clone()).with_settle(Duration::ZERO);
        assert!(matches!(local.shadow("alice"), Local::Found(e) if !e.locked));
        // Same inode, same size, written within the same clock tick is
        // possible in principle; the ctime and size still move here.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f.paths.shadow)
            .unwrap();
        file.write_all(SHADOW.replace("alice:$y$", "alice:!$y$").as_bytes())
            .unwrap();
        drop(file);
        assert!(matches!(local.shadow("alice"), Local::Found(e) if e.locked));
    }

    #[test]
    fn while_one_lookup_parses_the_others_ask_nss() {
        let f = files(NSS_FILES);
        let local = LocalFiles::new(f.paths.clone()).with_settle(Duration::ZERO);
        {
            let _parsing = local.parsing.lock().unwrap();
            assert_eq!(local.name_of_uid(1000), Local::AskNss);
        }
        assert_eq!(local.name_of_uid(1000), Local::Found("alice".into()));
    }

    #[test]
    fn files_changed_just_now_are_left_to_nss() {
        let f = files(NSS_FILES);
        // Every file is "just changed" for an hour.
        let local = LocalFiles::new(f.paths.clone()).with_settle(Duration::from_secs(3600));
        assert_eq!(local.name_of_uid(1000), Local::AskNss);
        assert_eq!(local.peek_name_of_uid(1000), Local::Stale);
        assert_eq!(local.shadow("alice"), Local::AskNss);
        assert_eq!(local.gid("shadow"), Local::AskNss);
    }

    #[test]
    fn nothing_is_answered_unless_files_come_first() {
        let f = files("passwd: sss files\ngroup: files\nshadow: files\n");
        let local = LocalFiles::new(f.paths.clone()).with_settle(Duration::ZERO);
        assert_eq!(local.name_of_uid(1000), Local::AskNss);
        assert_eq!(local.gid("shadow"), Local::Found(42));
        // The switch changing is a change like any other.
        replace(&f.paths.nsswitch, NSS_FILES);
        assert_eq!(local.name_of_uid(1000), Local::Found("alice".into()));
        replace(&f.paths.nsswitch, "passwd: ldap files\n");
        assert_eq!(local.name_of_uid(1000), Local::AskNss);
        assert_eq!(local.gid("shadow"), Local::AskNss);
    }

    #[test]
    fn a_missing_or_unparsable_file_leaves_it_to_nss() {
        let f = files(NSS_FILES);
        let local = LocalFiles::new(f.paths.clone()).with_settle(Duration::ZERO);
        assert_eq!(local.name_of_uid(0), Local::Found("root".into()));
        std::fs::remove_file(&f.paths.shadow).unwrap();
        assert_eq!(local.shadow("alice"), Local::AskNss);
        assert_eq!(local.name_of_uid(0), Local::AskNss);
        std::fs::write(&f.paths.shadow, SHADOW).unwrap();
        // A NIS line is skipped as nss_files skips it; the rest answers.
        replace(&f.paths.passwd, &format!("+@netgroup::::::\n{PASSWD}"));
        assert_eq!(local.name_of_uid(0), Local::Found("root".into()));
        assert_eq!(local.gid("shadow"), Local::Found(42));
        // One line too long for the reader leaves the whole file to NSS.
        let huge = "g".repeat(2 << 20);
        replace(
            &f.paths.passwd,
            &format!("{PASSWD}dave:x:7:7:{huge}:/:/bin/sh\n"),
        );
        assert_eq!(local.name_of_uid(0), Local::AskNss);
    }
}
