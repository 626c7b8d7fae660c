//! What anyone holding a token may do with it: learn which key it is and
//! whether it still works (`apikey scan`), and revoke it (the leak
//! response: `apikey revoke --token`). Holding the token is the proof, as it
//! is at a login, so any caller may; a token that is no key counts against
//! its caller as a refused login does (S7), so these calls guess no better
//! than Verify.

use super::{store_error, Caller, Delayed, KeyService};
use crate::audit::Line;
use crate::store::KeyRecord;
use crate::throttle::Source;
use apikey_proto::{KeysError, Token};

/// Where a key stands, as `InspectToken` says it.
pub const ACTIVE: &str = "active";
pub const EXPIRED: &str = "expired";
pub const REVOKED: &str = "revoked";

/// The revocation's reason in the store and the audit log.
pub const LEAKED: &str = "leaked";

/// These calls' failures are throttled per caller apart from its logins'
/// sources (no remote host looks like this).
const HOLDER_SOURCE: &str = "(token holder)";

pub fn key_state(key: &KeyRecord, now: i64) -> &'static str {
    match (&key.revoked, key.expires) {
        (Some(_), _) => REVOKED,
        (None, Some(at)) if at <= now => EXPIRED,
        _ => ACTIVE,
    }
}

impl KeyService {
    /// The id of the key `token` is, and its state.
    pub fn inspect_token(&self, c: &Caller, token: &[u8]) -> Delayed<(String, &'static str)> {
        let line = holder_line("inspect-token", c);
        let key = match self.holder_key(c, token, &line) {
            Ok(key) => key,
            Err(refusal) => return refusal,
        };
        let state = key_state(&key, self.host.now());
        self.audit.log(
            &line
                .field("user", &key.owner_name)
                .field("key", &key.id)
                .field("state", state)
                .field("outcome", "ok"),
        );
        Delayed::now(Ok((key.id, state)))
    }

    /// Revokes the key `token` is, whoever owns it: its id, and whether
    /// this call revoked it (false: it was revoked already).
    pub fn revoke_by_token(&self, c: &Caller, token: &[u8]) -> Delayed<(String, bool)> {
        let line = holder_line("revoke-by-token", c);
        let key = match self.holder_key(c, token, &line) {
            Ok(key) => key,
            Err(refusal) => return refusal,
        };
        let line = line
            .field("user", &key.owner_name)
            .field("key", &key.id)
            .field("reason", LEAKED);
        if key.revoked.is_some() {
            self.audit.log(&line.field("outcome", "already-revoked"));
            return Delayed::now(Ok((key.id, false)));
        }
        let revoked = self
            .store
            .revoke(std::slice::from_ref(&key.id), self.revoke_by(c, LEAKED));
        match revoked {
            Ok(ids) => {
                let now = ids.contains(&key.id);
                let outcome = if now { "ok" } else { "already-revoked" };
                self.audit.log(&line.field("outcome", outcome).warn());
                Delayed::now(Ok((key.id, now)))
            }
            Err(e) => {
                let e = store_error(e);
                self.audit
                    .log(&line.field("outcome", e.short_name()).warn());
                Delayed::now(Err(e))
            }
        }
    }

    /// The key `token` is; otherwise the answer to give, a token that is
    /// no key delayed and logged as the throttle decides.
    fn holder_key<T>(
        &self,
        c: &Caller,
        token: &[u8],
        line: &Line,
    ) -> std::result::Result<KeyRecord, Delayed<T>> {
        let (reason, error) = match Token::parse(token) {
            Ok(t) => match self.store.by_hash(&t.hash()) {
                Ok(Some(key)) => return Ok(key),
                Ok(None) => (
                    "unknown-key",
                    KeysError::NotFound("no key has this token".into()),
                ),
                Err(e) => {
                    let e = store_error(e);
                    self.audit
                        .log(&line.clone().field("outcome", e.short_name()).warn());
                    return Err(Delayed::now(Err(e)));
                }
            },
            Err(e) => (
                super::token_refusal(e),
                KeysError::InvalidArgument(format!("not a key: {e}")),
            ),
        };
        let refusal = line
            .clone()
            .field("outcome", "refused")
            .field("reason", reason)
            .warn();
        Err(self.refuse(
            Source::new(c.uid, HOLDER_SOURCE),
            self.host.now(),
            &refusal,
            error,
        ))
    }
}

fn holder_line(event: &str, c: &Caller) -> Line {
    Line::new(event)
        .num("caller_uid", c.uid)
        .num("caller_pid", c.pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_tests::{world, BOB};
    use crate::store::Store;

    #[test]
    fn anyone_holding_a_key_learns_its_state_and_may_revoke_it() {
        let w = world();
        w.allow_users();
        let (token, info) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
        let bob = w.caller(BOB, Some(BOB), &[BOB]);
        let token = token.as_str().as_bytes();
        let seen = w.svc.inspect_token(&bob, token);
        assert_eq!(
            (seen.result.unwrap(), seen.delay_ms),
            ((info.id.clone(), ACTIVE), 0)
        );
        let done = w.svc.revoke_by_token(&bob, token).result.unwrap();
        assert_eq!(done, (info.id.clone(), true));
        let key = w.store.by_id(&info.id).unwrap().unwrap();
        let revoked = key.revoked.unwrap();
        assert_eq!((revoked.by_uid, revoked.reason.as_str()), (BOB, LEAKED));
        assert!(w
            .verify(std::str::from_utf8(token).unwrap(), "alice")
            .is_err());
        // Again: not an error, and nothing changes.
        let again = w.svc.revoke_by_token(&bob, token).result.unwrap();
        assert_eq!(again, (info.id.clone(), false));
        assert_eq!(
            w.svc.inspect_token(&bob, token).result.unwrap(),
            (info.id, REVOKED)
        );
    }

    #[test]
    fn an_expired_key_is_said_to_be_expired() {
        let w = world();
        w.allow_users();
        let (token, info) = w.svc.generate(&w.alice(), "", "7d", &[], "").unwrap();
        w.advance(7 * 86400 - 1);
        let seen = w.svc.inspect_token(&w.alice(), token.as_str().as_bytes());
        assert_eq!(seen.result.unwrap(), (info.id.clone(), ACTIVE));
        w.advance(1);
        let seen = w.svc.inspect_token(&w.alice(), token.as_str().as_bytes());
        assert_eq!(seen.result.unwrap(), (info.id, EXPIRED));
    }

    /// A caller trying tokens is held back as a source of refused logins
    /// is, apart from the logins it verifies.
    #[test]
    fn tokens_that_are_no_key_are_refused_and_throttled() {
        let w = world();
        // Root, who also verifies the logins: its own source must stay apart.
        let holder = w.root();
        let unknown = Token::generate().unwrap();
        let mut delays = vec![];
        for _ in 0..12 {
            let answer = w.svc.revoke_by_token(&holder, unknown.as_str().as_bytes());
            assert!(matches!(answer.result, Err(KeysError::NotFound(_))));
            delays.push(answer.delay_ms);
        }
        assert_eq!(delays[9..], [0, 250, 500]);
        let typo = w.svc.inspect_token(&holder, b"apikey|not-a-key");
        assert!(matches!(typo.result, Err(KeysError::InvalidArgument(_))));
        assert_eq!(typo.delay_ms, 1000);
        // Root's verifications from the same uid are another source.
        let other = w.svc.verify(&w.root(), b"apikey_x", "alice", "sshd", "");
        assert_eq!(other.delay_ms, 0);
    }
}
