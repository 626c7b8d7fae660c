//! Lines of the PAM configuration that name pam_apikey.so and would fail
//! every login of their service once the module is gone.
//!
//! `make uninstall` and the packages' removal scripts take the packaged
//! profile out of the stacks first; a line an administrator added by hand
//! (docs/pam.md) is still there then, and libpam answers "Module is
//! unknown" for the whole stack, passwords included: on a remote host, a
//! lockout. `apikeyd --pam-references` lists such lines so that removal
//! can refuse and name them.

use std::path::{Path, PathBuf};

/// The module's file name, as a PAM line names it (bare or with a path).
const MODULE: &str = "pam_apikey.so";

/// One line that names the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// Whether one line of a PAM file needs the module to exist. A type with a
/// leading '-' (`-auth ...`) is libpam's "skip if the module is missing",
/// so it does not; comments do not either.
pub fn needs_module(line: &str, with_service_field: bool) -> bool {
    let active = line.split('#').next().unwrap_or("");
    let mut fields = active.split_whitespace();
    if with_service_field {
        // /etc/pam.conf: "service type control module ..."
        fields.next();
    }
    let Some(kind) = fields.next() else {
        return false;
    };
    if kind.starts_with('-') {
        return false;
    }
    let mut rest = fields;
    // The control is one word or a bracketed list that may hold blanks.
    let Some(control) = rest.next() else {
        return false;
    };
    if control.starts_with('[') && !control.contains(']') {
        for word in rest.by_ref() {
            if word.contains(']') {
                break;
            }
        }
    }
    rest.next()
        .is_some_and(|module| Path::new(module).file_name() == Some(MODULE.as_ref()))
}

/// Every line of `pam_d/*` and `pam_conf` that needs the module, in file
/// and line order. Files that cannot be read are skipped: removal then
/// goes ahead as it did before this check.
pub fn find(pam_d: &Path, pam_conf: &Path) -> Vec<Reference> {
    let mut files: Vec<(PathBuf, bool)> = std::fs::read_dir(pam_d)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| (e.path(), false))
                .filter(|(p, _)| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.push((pam_conf.to_path_buf(), true));
    let mut found = Vec::new();
    for (file, with_service_field) in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if needs_module(line, with_service_field) {
                found.push(Reference {
                    file: file.clone(),
                    line: i + 1,
                    text: line.trim().to_string(),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_lines_naming_the_module_need_it() {
        assert!(needs_module("auth sufficient pam_apikey.so", false));
        assert!(needs_module(
            "auth\t[success=done ignore=ignore default=die]\tpam_apikey.so debug",
            false
        ));
        assert!(needs_module(
            "auth [success=1 default=ignore] /lib/x86_64-linux-gnu/security/pam_apikey.so",
            false
        ));
        assert!(needs_module("account required pam_apikey.so # keys", false));
        assert!(needs_module("sshd auth sufficient pam_apikey.so", true));
    }

    #[test]
    fn comments_optional_lines_other_modules_and_arguments_do_not() {
        assert!(!needs_module("# auth sufficient pam_apikey.so", false));
        assert!(!needs_module("  #auth sufficient pam_apikey.so", false));
        assert!(!needs_module("-auth sufficient pam_apikey.so", false));
        assert!(!needs_module("auth required pam_unix.so", false));
        assert!(!needs_module(
            "auth required pam_exec.so /x/pam_apikey.so",
            false
        ));
        assert!(!needs_module("auth required pam_apikey.so.bak", false));
        assert!(!needs_module("@include common-auth", false));
        assert!(!needs_module("", false));
        assert!(!needs_module(
            "auth [success=1 default=ignore] pam_unix.so pam_apikey.so",
            false
        ));
    }

    #[test]
    fn every_file_and_pam_conf_are_searched_and_named_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let pam_d = dir.path().join("pam.d");
        std::fs::create_dir(&pam_d).unwrap();
        std::fs::write(
            pam_d.join("sshd"),
            "# header\n@include common-auth\nauth sufficient pam_apikey.so\n",
        )
        .unwrap();
        std::fs::write(pam_d.join("login"), "auth required pam_unix.so\n").unwrap();
        std::fs::write(
            pam_d.join("vsftpd"),
            b"-auth optional pam_apikey.so\n\xff\n",
        )
        .unwrap();
        let conf = dir.path().join("pam.conf");
        std::fs::write(&conf, "ftp account required pam_apikey.so\n").unwrap();
        let found = find(&pam_d, &conf);
        assert_eq!(
            found,
            vec![
                Reference {
                    file: pam_d.join("sshd"),
                    line: 3,
                    text: "auth sufficient pam_apikey.so".into()
                },
                Reference {
                    file: conf.clone(),
                    line: 1,
                    text: "ftp account required pam_apikey.so".into()
                },
            ]
        );
        assert!(find(&dir.path().join("missing"), &dir.path().join("none")).is_empty());
    }
}
