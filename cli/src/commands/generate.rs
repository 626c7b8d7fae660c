//! `apikey generate`

use super::{abandon, accept_token, expiry_text, hand_over, key_object, new_key_note, note, print};
use crate::args::{GenerateArgs, NetrcLogin};
use crate::client;
use crate::exit::CliError;
use crate::netrc;
use crate::text::{safe, FIELD};
use apikey_proto::{GenerateOptions, KeyExtra};
use std::path::PathBuf;

pub async fn run(args: GenerateArgs) -> Result<(), CliError> {
    // Refusals that need no key come first, so they cost none.
    let netrc_target = match &args.netrc {
        Some(host) => {
            let home = netrc::home_dir().map_err(|e| CliError::Failed(e.0))?;
            netrc::precheck(&home).map_err(|e| CliError::Failed(e.0))?;
            Some((host.as_str(), home))
        }
        None => None,
    };
    let services: Vec<&str> = args
        .services
        .as_ref()
        .map(|s| s.0.iter().map(String::as_str).collect())
        .unwrap_or_default();

    let proxy = client::connect().await?;
    let (name, expires, user) = (
        args.name.as_deref().unwrap_or(""),
        args.expires.as_deref().unwrap_or(""),
        args.user.as_deref().unwrap_or(""),
    );
    // GenerateWith only when an option needs it: plain keys are made the
    // same way with daemons that predate it.
    let options = GenerateOptions {
        hosts: args.hosts.map(|h| h.0).unwrap_or_default(),
        from: args.from.map(|f| f.0).unwrap_or_default(),
    };
    let (raw, info, extra) = match options == GenerateOptions::default() {
        true => {
            let (raw, info) = proxy.generate(name, expires, &services, user).await?;
            (raw, info, KeyExtra::default())
        }
        false => {
            let (raw, info, extra) = proxy
                .generate_with(name, expires, &services, user, options.to_dict())
                .await?;
            (raw, info, KeyExtra::from_dict(&extra))
        }
    };
    let token = accept_token(&proxy, raw, &info).await?;

    let Some((host, home)) = netrc_target else {
        hand_over(&proxy, &token, &info, &extra, args.json).await?;
        note(&new_key_note(&info, &extra));
        return Ok(());
    };

    let login = match args.netrc_login {
        Some(NetrcLogin::Apikey) => "apikey",
        None => info.user.as_str(),
    };
    let path: PathBuf = match netrc::write_entry(&home, host, login, token.as_str()) {
        Ok(path) => path,
        Err(e) => {
            return Err(abandon(&proxy, &info.id, format!(".netrc not written ({e})")).await);
        }
    };
    drop(token);

    let shown_path = safe(&path.to_string_lossy(), 256);
    note(&format!(
        "key {} for {} written to {} as the password for {} (login {}); it expires {}.",
        safe(&info.id, FIELD),
        safe(&info.user, FIELD),
        shown_path,
        safe(host, FIELD),
        safe(login, FIELD),
        expiry_text(info.expires)
    ));
    if args.json {
        let first = format!(
            "\"token\":null,\"netrc\":{{\"host\":{},\"login\":{},\"file\":{}}}",
            json_string(host),
            json_string(login),
            json_string(&path.to_string_lossy())
        );
        let text = key_object(&first, &info, &extra)?;
        print(&text)?;
    }
    Ok(())
}

fn json_string(s: &str) -> String {
    crate::text::json_safe(&serde_json::Value::from(s).to_string())
}
