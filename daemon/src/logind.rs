//! logind's SessionRemoved signal ends the session keys of that session
//! (S5), where logind runs. Only the current owner of
//! org.freedesktop.login1 is believed (S12): any client may emit a signal
//! that looks like logind's.

use crate::service::KeyService;
use futures_util::StreamExt;
use std::sync::Arc;
use zbus::fdo::DBusProxy;
use zbus::names::BusName;
use zbus::{MatchRule, MessageStream, OwnedObjectPath};

pub const LOGIND: &str = "org.freedesktop.login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";

/// Runs until the connection closes. Without logind nothing arrives.
pub async fn watch(conn: zbus::Connection, svc: Arc<KeyService>) {
    // No sender in the rule: the owner is checked per message below, by
    // unique name, which a rule on a well-known name cannot promise.
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(MANAGER)
        .member("SessionRemoved")
        .build();
    let stream = match rule {
        Ok(rule) => MessageStream::for_match_rule(rule, &conn, None).await,
        Err(e) => Err(e),
    };
    let (Ok(mut stream), Ok(dbus)) = (stream, DBusProxy::new(&conn).await) else {
        eprintln!(
            "apikeyd: cannot watch logind's SessionRemoved; session keys end by the other rules"
        );
        return;
    };
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { continue };
        let header = msg.header();
        let Some(sender) = header.sender() else {
            continue;
        };
        let owner = dbus
            .get_name_owner(BusName::from_static_str(LOGIND).expect("valid name"))
            .await;
        let from_logind = owner.is_ok_and(|o| o.as_str() == sender.as_str());
        let Ok((id, _path)) = msg.body().deserialize::<(String, OwnedObjectPath)>() else {
            continue;
        };
        let svc = svc.clone();
        let sender = sender.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            svc.logind_session_removed(&id, &sender, from_logind)
        })
        .await;
    }
}
