//! apikeyd: the key store daemon. The library holds everything but the
//! process set-up, so that tests and benchmarks use the same code.

pub mod args;
pub mod audit;
pub mod bus;
pub mod bus_args;
pub mod caller_binding;
pub mod config;
pub mod files_source;
pub mod fleet_start;
pub mod host;
pub mod journal;
pub mod key_logins;
pub mod local_files;
pub mod login_calls;
pub mod logind;
pub mod metrics;
pub mod notify;
pub mod pam_references;
pub mod pam_socket;
pub mod policy;
pub mod privileges;
pub mod refusal_log;
pub mod service;
pub mod stop;
pub mod store;
pub mod throttle;
pub mod usage;

#[cfg(test)]
mod audit_line_tests;
#[cfg(test)]
mod fleet_service_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod session_key_tests;
#[cfg(test)]
mod source_limit_tests;
