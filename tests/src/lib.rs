//! End-to-end harness for apikey: a private system-like bus, the real
//! `apikeyd` and `apikey` binaries, real local users, and a syslog socket
//! of the test's own.
//!
//! Every test starts with `require!(...)` (see [`skip`]) and builds what
//! it needs; everything is torn down on drop, panics included. Resources
//! are unique per test (temp dirs, user and group names), so tests run in
//! parallel threads or processes.

pub mod bins;
pub mod bus;
pub mod client;
pub mod cockpit;
pub mod daemon;
pub mod fleet;
pub mod packaging;
pub mod pam;
pub mod run;
pub mod services;
pub mod skip;
pub mod syslog;
pub mod systemd;
pub mod tmp;
pub mod users;
pub mod world;

pub use bus::{BusOptions, PrivateBus};
pub use client::Reply;
pub use daemon::{tmpfs_wrapper, Daemon, DaemonConfig, StartError, Throttle};
pub use pam::PamServices;
pub use run::{As, Output};
pub use skip::Need;
pub use syslog::{LogSink, SyslogLine};
pub use users::{TestGroup, TestUser};
pub use world::World;

/// `use apikey_tests::prelude::*;` brings in what most tests use.
pub mod prelude {
    pub use crate::require;
    pub use crate::{
        As, BusOptions, Daemon, DaemonConfig, LogSink, Need, Output, PamServices, PrivateBus,
        Reply, SyslogLine, TestGroup, TestUser, World,
    };
    pub use apikey_proto::{Keys1Proxy, KeysError};
    pub use std::time::Duration;
}
