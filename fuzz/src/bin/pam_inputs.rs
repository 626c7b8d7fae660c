//! The module's decisions on whatever a client can put in PAM's items:
//! the user name, the remote host and the password (huge, binary, not
//! UTF-8, key-shaped or a key with junk around it), through every hook,
//! against a daemon whose answer the input also picks. What must hold
//! for any input: a key-shaped password never stays in PAM_AUTHTOK for
//! the modules below (S10), every refusal of a key takes the fail delay
//! (S15), and nothing is accepted the daemon did not accept.

use apikey_fuzz::fields;
use pam_apikey::args::Args;
use pam_apikey::core;
use pam_apikey::daemon::{Daemon, DaemonError, OpenedSession};
use pam_apikey::pam::{Code, Level, Pam};
use zeroize::Zeroizing;

#[derive(Default)]
struct FuzzPam {
    service: String,
    user: Vec<u8>,
    rhost: String,
    authtok: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    data: Vec<(String, String)>,
    delayed: bool,
    sshd: bool,
    /// What the user was shown (PAM_TEXT_INFO).
    shown: Vec<String>,
}

impl Pam for FuzzPam {
    fn service(&self) -> Option<String> {
        Some(self.service.clone())
    }
    fn user(&mut self) -> Option<Vec<u8>> {
        Some(self.user.clone())
    }
    fn rhost(&self) -> Option<String> {
        Some(self.rhost.clone())
    }
    fn tty(&self) -> Option<String> {
        None
    }
    fn authtok(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        self.authtok.clone().map(Zeroizing::new)
    }
    fn clear_authtok(&mut self) {
        self.authtok = None;
    }
    fn set_user(&mut self, name: &str) -> bool {
        self.user = name.as_bytes().to_vec();
        true
    }
    fn getenv(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn putenv(&mut self, name: &str, value: &str) {
        self.env.push((name.into(), value.into()));
    }
    fn set_data(&mut self, key: &str, value: String) {
        self.data.push((key.into(), value));
    }
    fn get_data(&self, key: &str) -> Option<String> {
        self.data
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn fail_delay(&mut self, _micros: u32) {
        self.delayed = true;
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn info(&mut self, text: &str) {
        self.shown.push(text.into());
    }
    fn host_is_sshd(&self) -> bool {
        self.sshd
    }
    fn account_exists(&self, name: &str) -> bool {
        name == "alice"
    }
    fn uid_of(&self, name: &str) -> Option<u32> {
        (name == "alice").then_some(1000)
    }
}

/// Answers as the input's first byte says.
#[derive(Clone, Copy)]
struct FuzzDaemon(u8);

impl FuzzDaemon {
    fn answer<T>(self, ok: T) -> Result<T, DaemonError> {
        match self.0 % 3 {
            0 => Ok(ok),
            1 => Err(DaemonError::Refused),
            _ => Err(DaemonError::Unavailable("down".into())),
        }
    }
}

impl Daemon for FuzzDaemon {
    fn verify(
        &mut self,
        token: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<(String, String), DaemonError> {
        if token.is_empty() {
            return Err(DaemonError::Refused);
        }
        self.answer(("alice".into(), "Kid000000001".into()))
    }
    fn check_key(&mut self, _: &str, _: &str, _: &str, _: &str) -> Result<(), DaemonError> {
        self.answer(())
    }
    fn open_session(
        &mut self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<OpenedSession, DaemonError> {
        assert!(apikey_proto::login_auth::is_valid(auth), "{auth:?}");
        assert!(key_id.is_empty() || auth == apikey_proto::login_auth::KEY);
        // Any time left, as the input's first byte says: none, soon, or
        // as far as a u32 goes.
        let key_expires_in = match self.0 >> 4 & 3 {
            0 => 0,
            1 => 1,
            2 => 3 * 86_400,
            _ => u32::MAX,
        };
        self.answer(OpenedSession {
            handle: "handle".into(),
            key_expires_in,
        })
    }
    fn close_session(&mut self, _: &str) -> Result<(), DaemonError> {
        self.answer(())
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let f = fields(rest, 5);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut pam = FuzzPam {
            service: text(f[0]),
            user: f[1].to_vec(),
            rhost: text(f[2]),
            authtok: Some(f[3].to_vec()),
            sshd: mode & 0x80 != 0,
            ..FuzzPam::default()
        };
        if !f[4].is_empty() {
            pam.env.push(("SSH_AUTH_INFO_0".into(), text(f[4])));
        }
        let args = Args::parse(
            (mode & 0x40 != 0)
                .then_some(b"map_user=apikey".as_slice())
                .into_iter(),
        );
        let mut daemon = FuzzDaemon(mode);
        let key_shaped = apikey_proto::token::is_key_shaped(f[3]);
        let code = core::authenticate(&mut pam, &args, &mut daemon);
        if key_shaped {
            assert!(pam.authtok.is_none(), "a key stayed in PAM_AUTHTOK (S10)");
            if code != Code::Success {
                assert!(
                    pam.delayed,
                    "a refused key took no fail delay (S15): {code:?}"
                );
            }
        }
        if code == Code::Success {
            assert!(
                key_shaped && mode % 3 == 0,
                "accepted what the daemon did not"
            );
        }
        let _ = core::acct_mgmt(&mut pam, &args, &mut daemon);
        let _ = core::open_session(&mut pam, &mut daemon);
        let _ = core::close_session(&mut pam, &mut daemon);
        // The user is told of a key's expiry only after a key login, and
        // never shown the password, whatever it was.
        assert!(pam.shown.len() <= 1, "{:?}", pam.shown);
        if !pam.shown.is_empty() {
            assert!(code == Code::Success, "{code:?} {:?}", pam.shown);
        }
        if key_shaped {
            let key = String::from_utf8_lossy(f[3]);
            assert!(pam.shown.iter().all(|s| !s.contains(key.as_ref())));
        }
    });
}
