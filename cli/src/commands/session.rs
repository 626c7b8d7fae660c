//! `apikey session`: the daemon does not offer session keys yet; the
//! command is here so that scripts and documentation see the final shape.

use crate::args::SessionArgs;
use crate::exit::CliError;

pub fn run(_args: SessionArgs) -> Result<(), CliError> {
    Err(CliError::Failed(
        "session keys are not available in this version".to_string(),
    ))
}
