//! `apikey backup`

use super::note;
use crate::args::BackupArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

pub async fn run(args: BackupArgs) -> Result<(), CliError> {
    let shown = safe(&args.file.to_string_lossy(), FIELD);
    let proxy = client::connect().await?;
    // Made by the caller, with the caller's rights: the daemon only
    // writes into the descriptor it is given.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&args.file)
        .map_err(|e| CliError::Failed(format!("cannot create {shown}: {e}")))?;
    let written = proxy.backup(file.as_fd().into()).await;
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            // Nothing half-written is left behind under the name given.
            drop(file);
            let _ = std::fs::remove_file(&args.file);
            return Err(e.into());
        }
    };
    file.sync_all()
        .map_err(|e| CliError::Failed(format!("cannot sync {shown}: {e}")))?;
    note(&format!(
        "the key store was copied to {shown} ({bytes} bytes)."
    ));
    Ok(())
}
