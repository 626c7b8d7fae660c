//! `apikey rotate`

use super::{accept_token, expiry_text, hand_over, note};
use crate::args::RotateArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};

pub async fn run(args: RotateArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let (raw, info) = proxy.rotate(&args.id).await?;
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
        "key {} for {} replaces key {} and expires {}; it will not be shown again.",
        safe(&info.id, FIELD),
        safe(&info.user, FIELD),
        safe(&args.id, FIELD),
        expiry_text(info.expires)
    ));
    Ok(())
}
