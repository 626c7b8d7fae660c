//! apikeyd: the key store daemon. The library holds everything but the
//! process set-up, so that tests and benchmarks use the same code.

pub mod args;
pub mod config;
pub mod store;
