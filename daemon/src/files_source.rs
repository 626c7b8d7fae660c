//! The entries of /etc/passwd, /etc/shadow and /etc/group as glibc's own
//! files source reads them: `fgetpwent_r`, `fgetspent_r` and
//! `fgetgrent_r` run the same line parser (`_nss_files_parse_*`) as
//! `getpwnam_r` and friends do when nsswitch.conf says `files`, so every
//! odd line (a carriage return, a stray NUL, a bad number, a NIS `+`/`-`
//! entry) is read exactly as NSS reads it. This module only collects
//! what glibc returned; it parses nothing itself.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use zeroize::Zeroizing;

/// Files larger than this are left to NSS (and not held in memory).
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// A line longer than this (glibc reports ERANGE) leaves the file to NSS.
const MAX_LINE_BYTES: usize = 1 << 20;

/// passwd, first line winning as in NSS.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PasswdTable {
    pub by_uid: HashMap<u32, String>,
    pub by_name: HashMap<String, u32>,
}

/// What a shadow entry says for the S8 checks: whether the hash is locked
/// and the expiry day (-1 for none). The hash itself is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowEntry {
    pub locked: bool,
    pub expire_day: i64,
}

/// nss_files never answers an entry whose name starts with `+` or `-`
/// (NIS compatibility lines); neither does the table.
fn answered_by_nss_files(name: &[u8]) -> bool {
    !name.is_empty() && name[0] != b'+' && name[0] != b'-'
}

pub fn read_passwd(path: &Path) -> Option<PasswdTable> {
    let mut t = PasswdTable::default();
    each_entry(path, libc::fgetpwent_r, |pw: &libc::passwd| {
        let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_bytes();
        if answered_by_nss_files(name) {
            let name = std::str::from_utf8(name).ok()?.to_string();
            t.by_uid.entry(pw.pw_uid).or_insert_with(|| name.clone());
            t.by_name.entry(name).or_insert(pw.pw_uid);
        }
        Some(())
    })?;
    Some(t)
}

pub fn read_shadow(path: &Path) -> Option<HashMap<String, ShadowEntry>> {
    let mut t = HashMap::new();
    each_entry(path, libc::fgetspent_r, |sp: &libc::spwd| {
        let name = unsafe { CStr::from_ptr(sp.sp_namp) }.to_bytes();
        if answered_by_nss_files(name) {
            let name = std::str::from_utf8(name).ok()?.to_string();
            let hash = unsafe { CStr::from_ptr(sp.sp_pwdp) }.to_string_lossy();
            // Locked or not by the same rule as for NSS answers.
            let locked =
                crate::host::shadow_state(&hash, -1, 0) == crate::host::ShadowState::Locked;
            let expire_day = sp.sp_expire;
            t.entry(name).or_insert(ShadowEntry { locked, expire_day });
        }
        Some(())
    })?;
    Some(t)
}

pub fn read_group(path: &Path) -> Option<HashMap<String, u32>> {
    let mut t = HashMap::new();
    each_entry(path, libc::fgetgrent_r, |gr: &libc::group| {
        let name = unsafe { CStr::from_ptr(gr.gr_name) }.to_bytes();
        if answered_by_nss_files(name) {
            let name = std::str::from_utf8(name).ok()?.to_string();
            t.entry(name).or_insert(gr.gr_gid);
        }
        Some(())
    })?;
    Some(t)
}

/// The signature `fgetpwent_r`, `fgetspent_r` and `fgetgrent_r` share.
type GetEnt<T> = unsafe extern "C" fn(
    *mut libc::FILE,
    *mut T,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut T,
) -> libc::c_int;

/// Runs `getent` over the file, handing each entry to `take`; `None` when
/// the file cannot be read whole (missing, too large, a line too long, a
/// read error) or `take` gives up (a name that is not UTF-8: the daemon
/// compares strings, glibc bytes). Every buffer that held the file's text
/// is wiped: /etc/shadow's hashes pass through them.
fn each_entry<T>(
    path: &Path,
    getent: GetEnt<T>,
    mut take: impl FnMut(&T) -> Option<()>,
) -> Option<()> {
    if std::fs::metadata(path).ok()?.len() > MAX_FILE_BYTES {
        return None;
    }
    let stream = Stream::open(path)?;
    let mut line = Zeroizing::new(vec![0 as libc::c_char; 16 * 1024]);
    loop {
        let mut entry: T = unsafe { std::mem::zeroed() };
        let mut result: *mut T = std::ptr::null_mut();
        let rc = unsafe {
            getent(
                stream.file,
                &mut entry,
                line.as_mut_ptr(),
                line.len(),
                &mut result,
            )
        };
        match rc {
            0 if !result.is_null() => take(&entry)?,
            // glibc went back to the start of the line: try it again with
            // room for it.
            libc::ERANGE if line.len() < MAX_LINE_BYTES => {
                let bigger = line.len() * 2;
                line = Zeroizing::new(vec![0; bigger]);
                continue;
            }
            libc::ENOENT => return stream.complete().then_some(()),
            _ => return None,
        }
    }
}

/// A stdio stream whose buffer is ours, so it can be wiped.
struct Stream {
    file: *mut libc::FILE,
    _buffer: Zeroizing<Vec<u8>>,
}

const STREAM_BUFFER: usize = 64 * 1024;

impl Stream {
    fn open(path: &Path) -> Option<Stream> {
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        // "e": close on exec, like every file the daemon opens.
        let file = unsafe { libc::fopen(c.as_ptr(), c"re".as_ptr()) };
        if file.is_null() {
            return None;
        }
        let mut buffer = Zeroizing::new(vec![0u8; STREAM_BUFFER]);
        let rc =
            unsafe { libc::setvbuf(file, buffer.as_mut_ptr().cast(), libc::_IOFBF, buffer.len()) };
        if rc != 0 {
            unsafe { libc::fclose(file) };
            return None;
        }
        Some(Stream {
            file,
            _buffer: buffer,
        })
    }

    /// True when the stream ended at the end of the file, not at an error.
    fn complete(&self) -> bool {
        unsafe { libc::ferror(self.file) == 0 && libc::feof(self.file) != 0 }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Closed before the buffer is wiped and freed.
        unsafe { libc::fclose(self.file) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    /// A passwd file with a comment, a blank line and a uid given twice.
    pub(crate) const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        \n\
        alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
        bob:x:1001:1001::/home/bob:/bin/sh\n\
        alias:x:1000:1000::/:/bin/false\n";

    #[test]
    fn passwd_first_line_wins() {
        let t = read_passwd(file(PASSWD).path()).unwrap();
        assert_eq!(t.by_uid.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(t.by_name.get("alias"), Some(&1000));
        assert_eq!(t.by_name.get("bob"), Some(&1001));
        assert_eq!(t.by_name.get("root"), Some(&0));
        assert_eq!(t.by_uid.get(&7), None);
    }

    #[test]
    fn lines_are_read_as_nss_files_reads_them() {
        // A line glibc's parser rejects is skipped and the next answers:
        // with a carriage return the first (unlocked) alice is dropped
        // and the locked one counts, as getspnam would answer.
        let crlf = "alice:$y$ok:19000:0:99999:7:::\r\nalice:!$y$ok:19000:0:99999:7:::\n";
        let t = read_shadow(file(crlf).path()).unwrap();
        assert!(t["alice"].locked, "{t:?}");
        // NIS compatibility lines are never answered by nss_files.
        let t = read_passwd(file(&format!("+::::::\n-bob::::::\n{PASSWD}")).path()).unwrap();
        assert!(!t.by_name.contains_key("+") && !t.by_name.contains_key("-bob"));
        assert_eq!(t.by_name.get("bob"), Some(&1001));
        // A malformed uid drops the line, not the file.
        let t = read_passwd(
            file("carol:x:10x0:1000::/:/bin/sh\ncarol:x:1002:1002::/:/bin/sh\n").path(),
        )
        .unwrap();
        assert_eq!(t.by_name.get("carol"), Some(&1002));
    }

    #[test]
    fn shadow_keeps_lock_and_expiry_only() {
        let shadow = "root:*:19000:0:99999:7:::\n\
            alice:$y$j9T$abc$def:19000:0:99999:7:::\n\
            bob:!:19000:0:99999:7::20000:\n";
        let t = read_shadow(file(shadow).path()).unwrap();
        assert_eq!(
            t["alice"],
            ShadowEntry {
                locked: false,
                expire_day: -1
            }
        );
        assert_eq!(
            t["bob"],
            ShadowEntry {
                locked: false,
                expire_day: 20000
            }
        );
        assert!(!t["root"].locked);
        let t = read_shadow(file("alice:!$y$j9T$abc:19000:0:99999:7:::\n").path()).unwrap();
        assert!(t["alice"].locked);
        // Numbers as glibc reads them: a sign is taken, junk drops the line.
        let t = read_shadow(file("alice:x:1:2:3:4:5:+5:\n").path()).unwrap();
        assert_eq!(t["alice"].expire_day, 5);
        for bad in ["4294967296", "abc"] {
            let t = read_shadow(file(&format!("alice:x:1:2:3:4:5:{bad}:\n")).path()).unwrap();
            assert!(!t.contains_key("alice"), "{bad}: {t:?}");
        }
    }

    #[test]
    fn group_names_to_gids() {
        let t = read_group(
            file("root:x:0:\nshadow:x:42:\napikey-auth:x:998:www-data\nshadow:x:43:\n").path(),
        )
        .unwrap();
        assert_eq!(t.get("shadow"), Some(&42));
        assert_eq!(t.get("apikey-auth"), Some(&998));
    }

    #[test]
    fn long_lines_are_read_and_unreadable_files_are_left_to_nss() {
        let gecos = "g".repeat(100_000);
        let t = read_passwd(file(&format!("dave:x:1003:1003:{gecos}:/:/bin/sh\n")).path()).unwrap();
        assert_eq!(t.by_name.get("dave"), Some(&1003));
        let huge = "h".repeat(MAX_LINE_BYTES + 10);
        assert_eq!(
            read_passwd(file(&format!("erin:x:1004:1004:{huge}:/:/bin/sh\n")).path()),
            None
        );
        assert_eq!(read_passwd(Path::new("/nonexistent/passwd")), None);
    }
}
