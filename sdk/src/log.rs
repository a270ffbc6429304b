//! Writing to the gateway's log. Lines are tagged with the route, the
//! plugin and the request id by the host.
//!
//! ```no_run
//! gatehouse_sdk::log::warn("token expires in less than a minute");
//! ```

use crate::__bindings::gatehouse::plugin::host::{self, Level};

/// Logs at `debug`.
///
/// ```no_run
/// gatehouse_sdk::log::debug("cache miss");
/// ```
pub fn debug(message: &str) {
    host::log(Level::Debug, message)
}

/// Logs at `info`.
///
/// ```no_run
/// gatehouse_sdk::log::info("consumer resolved");
/// ```
pub fn info(message: &str) {
    host::log(Level::Info, message)
}

/// Logs at `warn`.
///
/// ```no_run
/// gatehouse_sdk::log::warn("unknown key id");
/// ```
pub fn warn(message: &str) {
    host::log(Level::Warn, message)
}

/// Logs at `error`.
///
/// ```no_run
/// gatehouse_sdk::log::error("config drift");
/// ```
pub fn error(message: &str) {
    host::log(Level::Error, message)
}
