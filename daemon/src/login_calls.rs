//! The calls of the login path (Verify, CheckKey and the blocking calls
//! behind every other method), shared by the bus interface and the PAM
//! socket: whichever way a caller came, once it is identified the same
//! code decides, delays and audits.

use crate::service::{Caller, Delayed, KeyService};
use apikey_proto::KeysError;
use std::sync::Arc;
use std::time::Duration;

type Reply<T> = Result<T, KeysError>;

/// Runs `f` with the caller on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    svc: &Arc<KeyService>,
    caller: Caller,
    f: impl FnOnce(&KeyService, &Caller) -> Reply<T> + Send + 'static,
) -> Reply<T> {
    on_pool(svc, caller, f).await?
}

/// `f` with the caller on the blocking pool; a panic there is answered as
/// an internal error.
async fn on_pool<T: Send + 'static>(
    svc: &Arc<KeyService>,
    caller: Caller,
    f: impl FnOnce(&KeyService, &Caller) -> T + Send + 'static,
) -> Reply<T> {
    let svc = svc.clone();
    tokio::task::spawn_blocking(move || f(&svc, &caller))
        .await
        .map_err(|e| KeysError::Failed(format!("internal error: {e}")))
}

/// The answer once its delay has passed, slept without holding a thread
/// (S7).
async fn after_delay<T>(answer: Delayed<T>) -> Reply<T> {
    if answer.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(answer.delay_ms)).await;
    }
    answer.result
}

/// Verify: answered on the async worker when nothing in the check can
/// block (see `KeyService::try_verify_inline`), or when the only wait is
/// the store's lookup over the network (fleet mode), awaited there; on the
/// blocking pool otherwise.
pub async fn verify(
    svc: &Arc<KeyService>,
    caller: Caller,
    token: zeroize::Zeroizing<String>,
    user: String,
    service: String,
    rhost: String,
) -> Reply<(String, String)> {
    let inline =
        answer_inline(|| svc.try_verify_inline(&caller, token.as_bytes(), &user, &service, &rhost));
    let answer = match inline {
        Some(answer) => answer?,
        None => {
            let on_worker =
                svc.try_verify_async(&caller, token.as_bytes(), &user, &service, &rhost);
            match answer_future(on_worker).await? {
                Ok(answer) => answer,
                Err(found) => {
                    on_pool(svc, caller, move |s, c| {
                        let token = token.as_bytes();
                        s.verify_found(c, found.as_deref(), token, &user, &service, &rhost)
                    })
                    .await?
                }
            }
        }
    };
    after_delay(answer).await
}

/// A token holder's call (`service::token_holder`), on the blocking pool,
/// its refusal delayed as Verify's is.
pub async fn token_holder<T: Send + 'static>(
    svc: &Arc<KeyService>,
    caller: Caller,
    f: impl FnOnce(&KeyService, &Caller) -> Delayed<T> + Send + 'static,
) -> Reply<T> {
    after_delay(on_pool(svc, caller, f).await?).await
}

/// CheckKey: like Verify, inline when it can be.
pub async fn check_key(
    svc: &Arc<KeyService>,
    caller: Caller,
    id: String,
    user: String,
    service: String,
    rhost: String,
) -> Reply<()> {
    let inline = answer_inline(|| svc.try_check_key_inline(&caller, &id, &user, &service, &rhost));
    if let Some(answer) = inline {
        return answer.unwrap_or_else(Err);
    }
    blocking(svc, caller, move |s, c| {
        s.check_key(c, &id, &user, &service, &rhost)
    })
    .await
}

/// Runs a check on an async worker. A panic in it is answered as an
/// internal error, as a panic on the blocking pool is, rather than leaving
/// the caller (a login) waiting for its timeout.
fn answer_inline<T>(check: impl FnOnce() -> Option<T>) -> Option<Result<T, KeysError>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(answer) => answer.map(Ok),
        Err(_) => Some(Err(KeysError::Failed("internal error".into()))),
    }
}

/// [`answer_inline`] for a check that awaits.
async fn answer_future<T>(check: impl std::future::Future<Output = T>) -> Reply<T> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(check)
        .catch_unwind()
        .await
        .map_err(|_| KeysError::Failed("internal error".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_the_worker_is_answered_as_an_internal_error() {
        assert!(answer_inline(|| None::<u32>).is_none());
        assert!(matches!(answer_inline(|| Some(7)), Some(Ok(7))));
        let panicked = answer_inline::<u32>(|| panic!("a bug in a check"));
        assert!(
            matches!(&panicked, Some(Err(KeysError::Failed(m))) if m == "internal error"),
            "{panicked:?}"
        );
    }
}
