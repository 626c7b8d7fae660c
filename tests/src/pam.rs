//! PAM service files in a directory of the test's own, seen by libpam as
//! /etc/pam.d only inside a private mount namespace (bwrap): the
//! machine's /etc/pam.d is never touched, and nothing outlives the
//! process that needs it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::daemon::Daemon;
use crate::{bins, tmp};

pub struct PamServices {
    dir: TempDir,
}

impl PamServices {
    pub fn new() -> PamServices {
        let dir = tmp::temp_dir("pamd");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod pam.d dir");
        PamServices { dir }
    }

    /// Writes /etc/pam.d/`service` as the services will see it.
    pub fn add(&self, service: &str, text: &str) -> &PamServices {
        let path = self.dir.path().join(service);
        std::fs::write(&path, text).expect("write PAM service file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `bwrap` arguments that run a program with this directory as
    /// /etc/pam.d; put the program and its arguments after them.
    pub fn bwrap_args(&self) -> Vec<String> {
        // --dev-bind: a plain --bind remounts /dev nodev, and programs that
        // open /dev/null (sshd) then fail.
        vec![
            "--dev-bind".into(),
            "/".into(),
            "/".into(),
            "--bind".into(),
            self.dir.path().display().to_string(),
            "/etc/pam.d".into(),
            "--".into(),
        ]
    }
}

impl Default for PamServices {
    fn default() -> Self {
        PamServices::new()
    }
}

/// The module as built (`target/debug/libpam_apikey.so`), named by its
/// full path in service files so nothing is installed system-wide.
pub fn module_path() -> PathBuf {
    bins::binary("libpam_apikey.so")
}

/// `/path/to/libpam_apikey.so bus=... socket=... daemon_user=root` plus
/// `extra`: the module arguments a test stack uses against the test's
/// daemon (root, on a private bus, with its own PAM socket).
pub fn module(daemon: &Daemon, extra: &str) -> String {
    module_line(&module_path(), daemon, extra)
}

/// The module line for the module at `path`. `APIKEY_TEST_LOGIN_PATH=bus`
/// runs every stack over the bus instead of the daemon's socket.
pub fn module_line(path: &Path, daemon: &Daemon, extra: &str) -> String {
    let socket = match std::env::var("APIKEY_TEST_LOGIN_PATH").as_deref() {
        Ok("bus") => "none".to_string(),
        _ => daemon.pam_socket().display().to_string(),
    };
    format!(
        "{} bus={} socket={socket} daemon_user=root {extra}",
        path.display(),
        daemon.bus_address()
    )
    .trim_end()
    .to_string()
}

/// The stack docs/pam.md recommends for sshd and vsftpd: a good key ends
/// authentication, a refused key ends the attempt, any other password goes
/// on to pam_unix without a second prompt; the account step re-checks the
/// key and the session is registered. `module` is a [`module`] line.
pub fn key_or_password_stack(module: &str) -> String {
    format!(
        "auth [success=done ignore=ignore default=die] {module}\n\
         auth required pam_unix.so try_first_pass\n\
         account required pam_unix.so\n\
         account required {module}\n\
         session optional {module}\n"
    )
}

impl PamServices {
    /// Copies this machine's `common-*` files in, so that the `@include`
    /// lines of a Debian service file (docs/pam.md's edits keep them)
    /// find what they find on the machine.
    pub fn add_machine_includes(&self) -> &PamServices {
        for entry in std::fs::read_dir("/etc/pam.d")
            .expect("read /etc/pam.d")
            .flatten()
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("common-") {
                let text = std::fs::read_to_string(entry.path()).expect("read a common-* file");
                self.add(name, &text);
            }
        }
        self
    }
}

/// One PAM setup docs/pam.md shows, found by the marker before its
/// fenced block: `<!-- test: NAME edits PATH -->` (an edit of the file
/// Debian ships) or `<!-- test: NAME is PATH -->` (a whole new file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSnippet {
    pub path: String,
    pub edit: bool,
    pub text: String,
}

pub fn pam_doc() -> String {
    let path = bins::workspace_root().join("docs/pam.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The snippet named `name` in the markdown `doc`.
pub fn doc_snippet(doc: &str, name: &str) -> Result<DocSnippet, String> {
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(marker) = line
            .trim()
            .strip_prefix("<!-- test: ")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            continue;
        };
        let words: Vec<&str> = marker.split_whitespace().collect();
        let (edit, path) = match words.as_slice() {
            [n, "edits", p] if *n == name => (true, p),
            [n, "is", p] if *n == name => (false, p),
            _ => continue,
        };
        let fence = lines
            .next()
            .filter(|l| l.starts_with("```"))
            .ok_or_else(|| format!("no fenced block right after the marker of {name}"))?;
        let mut text = String::new();
        for l in lines.by_ref() {
            if l.starts_with(&fence[..3]) {
                return Ok(DocSnippet {
                    path: path.to_string(),
                    edit,
                    text,
                });
            }
            text.push_str(l);
            text.push('\n');
        }
        return Err(format!("the block of {name} is not closed"));
    }
    Err(format!("no `<!-- test: {name} ... -->` marker"))
}

/// Applies an edit as docs/pam.md writes them: a line starting with '+'
/// is added; '-' removes the next line of `base` that reads the same; ' '
/// (context) is the next line of `base` that reads the same, kept. Lines
/// are compared with blanks folded. Everything between anchors is kept,
/// so an edit shows only where it goes, yet cannot drift from the file:
/// a context or removed line that `base` lacks (in order) is an error.
pub fn apply_edit(base: &str, edit: &str) -> Result<String, String> {
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let base: Vec<&str> = base.lines().collect();
    let mut at = 0;
    let mut out = String::new();
    for line in edit.lines() {
        let (op, rest) = match line.chars().next() {
            Some(c @ ('+' | '-' | ' ')) => (c, &line[1..]),
            None => (' ', ""),
            Some(_) => return Err(format!("not an edit line: {line:?}")),
        };
        if op == '+' {
            out.push_str(rest);
            out.push('\n');
            continue;
        }
        let want = fold(rest);
        let found = base[at..]
            .iter()
            .position(|l| fold(l) == want)
            .ok_or_else(|| format!("the file has no line {rest:?} here (after line {at})"))?;
        for l in &base[at..at + found] {
            out.push_str(l);
            out.push('\n');
        }
        if op == ' ' {
            out.push_str(base[at + found]);
            out.push('\n');
        }
        at += found + 1;
    }
    for l in &base[at..] {
        out.push_str(l);
        out.push('\n');
    }
    Ok(out)
}

/// The service file docs/pam.md shows for `name`, applied to this
/// machine's file where the docs show an edit, with every `pam_apikey.so`
/// replaced by `module` (a [`module`] line: the built module, the test's
/// bus and daemon user, and any extra arguments a test adds).
pub fn documented_stack(name: &str, module: &str) -> String {
    let snippet = doc_snippet(&pam_doc(), name).unwrap_or_else(|e| panic!("docs/pam.md: {e}"));
    let text = if snippet.edit {
        let base = std::fs::read_to_string(&snippet.path)
            .unwrap_or_else(|e| panic!("{}: {e}", snippet.path));
        apply_edit(&base, &snippet.text)
            .unwrap_or_else(|e| panic!("docs/pam.md's edit of {}: {e}", snippet.path))
    } else {
        snippet.text
    };
    text.lines()
        .map(|l| {
            let mut words: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            match words.iter().position(|w| w == "pam_apikey.so") {
                Some(i) if !l.trim_start().starts_with('#') => {
                    words[i] = module.to_string();
                    words.join(" ")
                }
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
