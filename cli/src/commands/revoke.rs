//! `apikey revoke`

use super::print;
use crate::args::RevokeArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};

pub async fn run(args: RevokeArgs) -> Result<(), CliError> {
    let mut ids: Vec<&str> = Vec::with_capacity(args.ids.len());
    for id in &args.ids {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    let proxy = client::connect().await?;
    let revoked = if !args.all {
        proxy.revoke(&ids).await?
    } else if args.site {
        proxy.revoke_site().await?
    } else {
        proxy.revoke_all(args.user.as_deref().unwrap_or("")).await?
    };
    print(&summary(&revoked))?;

    let missed: Vec<String> = ids
        .iter()
        .filter(|id| !revoked.iter().any(|r| r == *id))
        .map(|id| safe(id, FIELD))
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "not revoked: {}",
            missed.join(" ")
        )))
    }
}

/// `revoked N key(s)`, then one id a line.
pub fn summary(revoked: &[String]) -> String {
    let mut out = format!("revoked {} key(s)\n", revoked.len());
    for id in revoked {
        out.push_str(&safe(id, FIELD));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_ids() {
        assert_eq!(summary(&[]), "revoked 0 key(s)\n");
        assert_eq!(
            summary(&["3fZk9QpLm2Xa".into(), "x\ny".into()]),
            "revoked 2 key(s)\n3fZk9QpLm2Xa\nx\\x0ay\n"
        );
    }
}
