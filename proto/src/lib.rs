//! The contract shared by `apikeyd`, the `apikey` command line and
//! `pam_apikey.so`: bus names, the key format, the error names, the types
//! that travel on the bus and the client proxy.

pub mod duration;
pub mod errors;
pub mod extra;
pub mod hosts;
pub mod login_auth;
pub mod names;
pub mod proxy;
pub mod services;
pub mod sources;
pub mod text;
pub mod timefmt;
pub mod token;
pub mod types;
pub mod wire;

pub use errors::KeysError;
pub use extra::{ExtraDict, GenerateOptions, KeyExtra, SettingsExtra, StatusExtra};
pub use proxy::Keys1Proxy;
pub use token::{Token, TokenError};
pub use types::{Expiry, KeyInfo, Settings, StatusInfo, UseInfo};
