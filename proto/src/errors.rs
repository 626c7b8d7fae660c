//! Typed errors of `org.apikey.Keys1`. Each carries a sentence saying what
//! was refused and why; the name alone tells programs what happened.

/// An error returned by the daemon, as `org.apikey.Keys1.Error.<Name>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.apikey.Keys1.Error")]
pub enum KeysError {
    /// A transport or protocol error from the bus itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller may not do this to that object.
    Denied(String),
    /// No such key or user.
    NotFound(String),
    /// Revoke: the key was revoked before; the message says when, by whom
    /// and why. Nothing was changed.
    AlreadyRevoked(String),
    /// The site policy forbids it.
    PolicyForbids(String),
    /// The caller acts through su/sudo/runuser (loginuid differs from uid).
    Impersonating(String),
    /// The caller is not in a login session (loginuid unset).
    NotLoggedIn(String),
    /// An argument is malformed or out of range.
    InvalidArgument(String),
    /// The caller has no audit session to bind a session key to.
    NoSession(String),
    /// A limit was reached: keys per user, or the disk reserve.
    QuotaExceeded(String),
    /// Verify: the key was not accepted. One error for every reason (S15);
    /// the reason is in the daemon's audit log only.
    Refused(String),
    /// The daemon could not complete the request (store unavailable, disk
    /// full). Nothing was changed.
    Failed(String),
}

impl KeysError {
    /// The short D-Bus error name without the prefix, e.g. `Denied`.
    pub fn short_name(&self) -> &'static str {
        match self {
            KeysError::ZBus(_) => "Bus",
            KeysError::Denied(_) => "Denied",
            KeysError::NotFound(_) => "NotFound",
            KeysError::AlreadyRevoked(_) => "AlreadyRevoked",
            KeysError::PolicyForbids(_) => "PolicyForbids",
            KeysError::Impersonating(_) => "Impersonating",
            KeysError::NotLoggedIn(_) => "NotLoggedIn",
            KeysError::InvalidArgument(_) => "InvalidArgument",
            KeysError::NoSession(_) => "NoSession",
            KeysError::QuotaExceeded(_) => "QuotaExceeded",
            KeysError::Refused(_) => "Refused",
            KeysError::Failed(_) => "Failed",
        }
    }

    /// The human-readable sentence.
    pub fn message(&self) -> String {
        match self {
            KeysError::ZBus(e) => e.to_string(),
            KeysError::Denied(m)
            | KeysError::NotFound(m)
            | KeysError::AlreadyRevoked(m)
            | KeysError::PolicyForbids(m)
            | KeysError::Impersonating(m)
            | KeysError::NotLoggedIn(m)
            | KeysError::InvalidArgument(m)
            | KeysError::NoSession(m)
            | KeysError::QuotaExceeded(m)
            | KeysError::Refused(m)
            | KeysError::Failed(m) => m.clone(),
        }
    }
}
