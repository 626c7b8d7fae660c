//! pam_apikey.so: lets a host service accept an apikey API key as the
//! password. The hooks below only adapt libpam's types; what the module
//! decides is in `core`, how it talks to apikeyd in `daemon` and `dbus`.
//!
//! No runtime and no thread: every call is a blocking exchange on one
//! socket, bounded by `timeout=MS`, and the socket is closed before the
//! hook returns.

pub mod args;
pub mod core;
pub mod daemon;
pub mod dbus;
mod handle;
pub mod pam;

use crate::args::Args;
use crate::daemon::{BusDaemon, Daemon, DaemonError};
use crate::pam::Code;
use ::pam::constants::{PamFlag, PamResultCode};
use ::pam::module::{PamHandle, PamHooks};
use std::ffi::CStr;
use std::time::{Duration, Instant};

struct PamApikey;
::pam::pam_hooks!(PamApikey);

fn parse(args: &[&CStr]) -> Args {
    Args::parse(args.iter().map(|a| a.to_bytes()))
}

fn connect(args: &Args) -> Result<Box<dyn Daemon>, DaemonError> {
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    let daemon_uid = handle::uid_of(&args.daemon_user).ok_or_else(|| {
        DaemonError::Unavailable(format!("no account {} for the daemon", args.daemon_user))
    })?;
    Ok(Box::new(BusDaemon::connect(
        &args.bus, daemon_uid, deadline,
    )?))
}

fn code(c: Code) -> PamResultCode {
    match c {
        Code::Success => PamResultCode::PAM_SUCCESS,
        Code::Ignore => PamResultCode::PAM_IGNORE,
        Code::AuthErr => PamResultCode::PAM_AUTH_ERR,
        Code::AuthinfoUnavail => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        Code::PermDenied => PamResultCode::PAM_PERM_DENIED,
        Code::SessionErr => PamResultCode::PAM_SESSION_ERR,
        Code::ServiceErr => PamResultCode::PAM_SERVICE_ERR,
    }
}

fn with_pam(
    pamh: &mut PamHandle,
    args: &[&CStr],
    f: impl FnOnce(&mut handle::RealPam<'_>, &Args) -> Code,
) -> PamResultCode {
    let args = parse(args);
    let mut pam = handle::RealPam {
        handle: pamh,
        debug: args.debug,
    };
    code(f(&mut pam, &args))
}

impl PamHooks for PamApikey {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, a| {
            core::authenticate(pam, a, &mut connect)
        })
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, a| core::acct_mgmt(pam, a, &mut connect))
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, a| {
            core::open_session(pam, a, &mut connect)
        })
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, a| {
            core::close_session(pam, a, &mut connect)
        })
    }

    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, _| core::setcred(pam))
    }

    fn sm_chauthtok(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
}

#[cfg(test)]
mod core_tests;
