//! Metrics the gateway shows at its admin API's `/metrics` beside its own:
//! a counter `gatehouse_NAME_total{labels}` or a gauge `gatehouse_NAME{labels}`.
//! Names and label names are lower-case letters, digits and '_'; at most 8
//! labels and 1,000 label sets per name. A refused call (a bad name, too many
//! label sets) returns the reason and changes nothing.
//!
//! ```no_run
//! use gatehouse_sdk::metrics;
//! # fn f(route: &str) {
//! let _ = metrics::counter_add("ratelimit_rejected", &[("route", route)], 1);
//! let _ = metrics::gauge_set("queue_depth", &[], 3);
//! # }
//! ```

use crate::__bindings::gatehouse::plugin::host;
use crate::{Error, Result};

/// Adds `delta` to the counter `gatehouse_NAME_total{labels}`.
pub fn counter_add(name: &str, labels: &[(&str, &str)], delta: u64) -> Result<()> {
    host::counter_add(name, labels, delta).map_err(Error::msg)
}

/// Sets the gauge `gatehouse_NAME{labels}`.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: i64) -> Result<()> {
    host::gauge_set(name, labels, value).map_err(Error::msg)
}
