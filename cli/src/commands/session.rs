//! `apikey session`: a key bound to this login session.

use super::{accept_token, expiry_text, hand_over, note};
use crate::args::SessionArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};

pub async fn run(args: SessionArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let name = args.name.as_deref().unwrap_or("");
    let (raw, info) = proxy.create_session_key(name).await?;
    let token = accept_token(&proxy, raw, &info).await?;
    hand_over(
        &proxy,
        &token,
        &info,
        &apikey_proto::KeyExtra::default(),
        args.json,
    )
    .await?;
    note(&format!(
        "session key {} for {} ends with this login session (at the latest {}); \
         it will not be shown again.",
        safe(&info.id, FIELD),
        safe(&info.user, FIELD),
        expiry_text(info.expires)
    ));
    Ok(())
}
