//! State shared by every instance of this plugin, kept by the host:
//! windowed counters and key-value pairs with a time to live. Keys are
//! private to the plugin; each call is atomic across all instances.
//!
//! ```no_run
//! use std::time::Duration;
//! let count = gatehouse_sdk::state::incr("ip:10.0.0.1", 1, Duration::from_secs(60));
//! if count.current > 100 { /* over the limit */ }
//! ```

use crate::__bindings::gatehouse::plugin::state;
use std::time::Duration;

/// A counter's value in the current window and the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// The count in the current window, after the increment.
    pub current: i64,
    /// The final count of the previous window.
    pub previous: i64,
    /// Time until the current window ends.
    pub reset: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Adds `delta` to `key`'s counter in the current window (windows are
/// aligned to the Unix epoch) and returns the counts.
///
/// ```no_run
/// let c = gatehouse_sdk::state::incr("global", 1, std::time::Duration::from_secs(1));
/// ```
pub fn incr(key: &str, delta: i64, window: Duration) -> WindowCount {
    let c = state::incr(key, delta, millis(window).max(1));
    WindowCount {
        current: c.current,
        previous: c.previous,
        reset: Duration::from_millis(c.reset_ms),
    }
}

/// A value, unless absent or expired.
///
/// ```no_run
/// let open = gatehouse_sdk::state::get("breaker:open").is_some();
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    state::get(key)
}

/// Stores a value, for `ttl` or until replaced.
///
/// ```no_run
/// gatehouse_sdk::state::set("breaker:open", b"1", Some(std::time::Duration::from_secs(30)));
/// ```
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) {
    state::set(key, value, ttl.map(millis))
}

/// Stores a value only if the key is absent or expired; true if stored.
///
/// ```no_run
/// let won = gatehouse_sdk::state::set_if_absent("probe", b"1", Some(std::time::Duration::from_secs(5)));
/// ```
pub fn set_if_absent(key: &str, value: &[u8], ttl: Option<Duration>) -> bool {
    state::set_if_absent(key, value, ttl.map(millis))
}

/// Stores `value` only if the current value is `expected` (`None`: absent
/// or expired); true if stored. Read, compute, swap, and retry on `false`
/// to make any update atomic across instances.
///
/// ```no_run
/// use gatehouse_sdk::state;
/// loop {
///     let old = state::get("hits");
///     let n = old.as_deref().map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
///     if state::compare_and_swap("hits", old.as_deref(), &(n + 1).to_le_bytes(), None) {
///         break;
///     }
/// }
/// ```
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    value: &[u8],
    ttl: Option<Duration>,
) -> bool {
    state::compare_and_swap(key, expected, value, ttl.map(millis))
}

/// Removes a value.
///
/// ```no_run
/// gatehouse_sdk::state::delete("breaker:open");
/// ```
pub fn delete(key: &str) {
    state::delete(key)
}
