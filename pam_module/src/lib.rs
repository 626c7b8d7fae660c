//! pam_apikey.so: lets a host service accept an apikey API key as the
//! password. The hooks below only adapt libpam's types; what the module
//! decides is in `core`, how it talks to apikeyd in `daemon` and `dbus`.
//!
//! No runtime and no thread: every call is a blocking exchange on one
//! socket, bounded by `timeout=MS`. The socket is kept with the PAM handle
//! (pam_set_data) for its later hooks, so an nginx request costs one
//! connection, and closed when the handle ends (pam_end).

pub mod args;
pub mod core;
pub mod daemon;
pub mod dbus;
mod handle;
pub mod pam;

use crate::args::Args;
use crate::daemon::Link;
use crate::pam::Code;
use ::pam::constants::{PamFlag, PamResultCode};
use ::pam::module::{PamHandle, PamHooks};
use std::cell::RefCell;
use std::ffi::CStr;

struct PamApikey;
::pam::pam_hooks!(PamApikey);

fn parse(args: &[&CStr]) -> Args {
    Args::parse(args.iter().map(|a| a.to_bytes()))
}

/// The handle's data under which its connection is kept.
const LINK_DATA: &str = "pam_apikey_link";

/// What the handle keeps: libpam hands back a shared reference, so the
/// link is taken out for a hook and put back after.
type KeptLink = RefCell<Option<Link>>;

fn take_link(pamh: &PamHandle) -> Option<Link> {
    // SAFETY: only this module sets LINK_DATA, always as a KeptLink.
    let kept = unsafe { pamh.get_data::<KeptLink>(LINK_DATA) }.ok()?;
    kept.borrow_mut().take()
}

fn keep_link(pamh: &mut PamHandle, link: Link) {
    // SAFETY: as in take_link.
    if let Ok(kept) = unsafe { pamh.get_data::<KeptLink>(LINK_DATA) } {
        *kept.borrow_mut() = Some(link);
        return;
    }
    // Not kept if libpam cannot take it: the next hook connects again.
    let _ = pamh.set_data(LINK_DATA, Box::new(KeptLink::new(Some(link))));
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
    f: impl FnOnce(&mut handle::RealPam<'_>, &Args, &mut Link) -> Code,
) -> PamResultCode {
    let args = parse(args);
    // Connects at its first call only: most hooks of a password login
    // make none.
    let mut link = take_link(pamh).unwrap_or_else(|| Link::new(&args));
    link.start_hook(&args);
    let result = {
        let mut pam = handle::RealPam {
            handle: pamh,
            debug: args.debug,
        };
        f(&mut pam, &args, &mut link)
    };
    keep_link(pamh, link);
    code(result)
}

impl PamHooks for PamApikey {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, a, c| core::authenticate(pam, a, c))
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, a, c| core::acct_mgmt(pam, a, c))
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, _, link| core::open_session(pam, link))
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, _, link| core::close_session(pam, link))
    }

    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        with_pam(pamh, &args, |pam, _, _| core::setcred(pam))
    }

    fn sm_chauthtok(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
}

#[cfg(test)]
mod core_tests;
