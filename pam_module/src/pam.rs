//! What the decision code needs from libpam and the host process, as a
//! trait: the real handle in `handle.rs`, a scripted one in the tests.

use zeroize::Zeroizing;

/// PAM return codes the module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    Ignore,
    AuthErr,
    AuthinfoUnavail,
    PermDenied,
    SessionErr,
    ServiceErr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Info,
    Debug,
}

pub trait Pam {
    fn service(&self) -> Option<String>;
    /// PAM_USER, asking the application if it has none yet.
    fn user(&mut self) -> Option<Vec<u8>>;
    fn rhost(&self) -> Option<String>;
    fn tty(&self) -> Option<String>;
    /// The password through pam_get_authtok (honours use_first_pass /
    /// try_first_pass); `None` when the conversation failed.
    fn authtok(&mut self) -> Option<Zeroizing<Vec<u8>>>;
    /// Removes PAM_AUTHTOK so a key never reaches another module (S10).
    fn clear_authtok(&mut self);
    fn set_user(&mut self, name: &str) -> bool;
    fn getenv(&self, name: &str) -> Option<String>;
    fn putenv(&mut self, name: &str, value: &str);
    fn set_data(&mut self, key: &str, value: String);
    fn get_data(&self, key: &str) -> Option<String>;
    /// Asks libpam to delay a failure by at least this long.
    fn fail_delay(&mut self, micros: u32);
    fn log(&self, level: Level, message: &str);
    /// Shows `text` to the user through the application's conversation
    /// (PAM_TEXT_INFO). sshd shows it after login as it shows pam_motd's;
    /// applications that show none (vsftpd, nginx) drop it.
    fn info(&mut self, text: &str);
    /// True inside sshd (sshd, sshd-session or sshd-auth), judged by the
    /// running executable, not the service name (S9).
    fn host_is_sshd(&self) -> bool;
    fn account_exists(&self, name: &str) -> bool;
    fn uid_of(&self, name: &str) -> Option<u32>;
}
