//! The real PAM handle: libpam calls behind the `Pam` trait. Everything
//! here is a direct translation; decisions live in `core.rs`.

use crate::pam::{Level, Pam};
use libc::{c_char, c_int, c_uint};
use pam::items::{RHost, Service, Tty};
use pam::module::PamHandle;
use std::ffi::{CStr, CString};
use zeroize::Zeroizing;

const PAM_AUTHTOK: c_int = 6;

#[link(name = "pam")]
unsafe extern "C" {
    // Not wrapped by pam-bindings.
    fn pam_get_authtok(
        pamh: *mut PamHandle,
        item: c_int,
        authtok: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const libc::c_void) -> c_int;
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    fn pam_fail_delay(pamh: *mut PamHandle, usec: c_uint) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

pub struct RealPam<'a> {
    pub handle: &'a mut PamHandle,
    pub debug: bool,
}

impl RealPam<'_> {
    fn raw(&mut self) -> *mut PamHandle {
        self.handle as *mut PamHandle
    }

    fn item<'s, T: pam::items::Item<'s> + std::ops::Deref<Target = &'s CStr>>(
        &'s self,
    ) -> Option<String> {
        match self.handle.get_item::<T>() {
            Ok(Some(v)) => Some(String::from_utf8_lossy(v.to_bytes()).into_owned()),
            _ => None,
        }
    }
}

impl Pam for RealPam<'_> {
    fn service(&self) -> Option<String> {
        self.item::<Service>()
    }

    fn user(&mut self) -> Option<Vec<u8>> {
        let mut ptr: *const c_char = std::ptr::null();
        // pam-bindings' get_user insists on UTF-8; the bytes are wanted here
        // so that a non-UTF-8 name is refused cleanly rather than mistaken.
        unsafe extern "C" {
            fn pam_get_user(
                pamh: *mut PamHandle,
                user: *mut *const c_char,
                prompt: *const c_char,
            ) -> c_int;
        }
        let rc = unsafe { pam_get_user(self.raw(), &mut ptr, std::ptr::null()) };
        if rc != 0 || ptr.is_null() {
            return None;
        }
        Some(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
    }

    fn rhost(&self) -> Option<String> {
        self.item::<RHost>()
    }

    fn tty(&self) -> Option<String> {
        self.item::<Tty>()
    }

    fn authtok(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        let mut ptr: *const c_char = std::ptr::null();
        let rc = unsafe { pam_get_authtok(self.raw(), PAM_AUTHTOK, &mut ptr, std::ptr::null()) };
        if rc != 0 || ptr.is_null() {
            return None;
        }
        Some(Zeroizing::new(
            unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec(),
        ))
    }

    fn clear_authtok(&mut self) {
        // libpam wipes the old value when an item is replaced.
        unsafe { pam_set_item(self.raw(), PAM_AUTHTOK, std::ptr::null()) };
    }

    fn set_user(&mut self, name: &str) -> bool {
        match CString::new(name) {
            Ok(c) => self.handle.set_item_str(pam::items::User(&c)).is_ok(),
            Err(_) => false,
        }
    }

    fn getenv(&self, name: &str) -> Option<String> {
        let c = CString::new(name).ok()?;
        let p = unsafe {
            pam_getenv(
                self.handle as *const PamHandle as *mut PamHandle,
                c.as_ptr(),
            )
        };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    fn putenv(&mut self, name: &str, value: &str) {
        if let Ok(c) = CString::new(format!("{name}={value}")) {
            unsafe { pam_putenv(self.raw(), c.as_ptr()) };
        }
    }

    fn set_data(&mut self, key: &str, value: String) {
        let _ = self.handle.set_data(key, Box::new(value));
    }

    fn get_data(&self, key: &str) -> Option<String> {
        // SAFETY: only this module writes keys with the pam_apikey_ prefix,
        // and it always stores a String.
        unsafe { self.handle.get_data::<String>(key) }.ok().cloned()
    }

    fn fail_delay(&mut self, micros: u32) {
        unsafe { pam_fail_delay(self.raw(), micros) };
    }

    fn log(&self, level: Level, message: &str) {
        let priority = match level {
            Level::Err => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Info => libc::LOG_INFO,
            Level::Debug if self.debug => libc::LOG_DEBUG,
            Level::Debug => return,
        };
        if let Ok(msg) = CString::new(apikey_proto::services::printable(message, 400)) {
            unsafe {
                pam_syslog(
                    self.handle as *const PamHandle,
                    priority,
                    c"%s".as_ptr(),
                    msg.as_ptr(),
                )
            };
        }
    }

    fn info(&mut self, text: &str) {
        // A conversation that fails or shows nothing costs the message,
        // never the login.
        if let Ok(Some(conv)) = self.handle.get_item::<pam::conv::Conv>() {
            let _ = conv.send(pam::constants::PAM_TEXT_INFO, text);
        }
    }

    fn host_is_sshd(&self) -> bool {
        std::fs::read_link("/proc/self/exe")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .is_some_and(|n| matches!(n.as_str(), "sshd" | "sshd-session" | "sshd-auth"))
    }

    fn account_exists(&self, name: &str) -> bool {
        uid_of(name).is_some()
    }

    fn uid_of(&self, name: &str) -> Option<u32> {
        uid_of(name)
    }
}

/// getpwnam_r: the uid of `name`, `None` when there is no such account
/// or it cannot be looked up.
pub fn uid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pw.pw_uid)
}
