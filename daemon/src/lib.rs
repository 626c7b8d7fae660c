//! apikeyd: the key store daemon. The library holds everything but the
//! process set-up, so that tests and benchmarks use the same code.

pub mod args;
pub mod config;
pub mod store;
pub mod policy;
pub mod audit;
pub mod host;
pub mod throttle;
pub mod usage;
