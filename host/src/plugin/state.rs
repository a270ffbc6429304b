//! Shared plugin state that outlives a request: windowed counters and
//! key-value pairs with a TTL, kept in the host and namespaced per plugin.
//!
//! Every operation takes one short lock, so a check-and-increment is atomic
//! across all instances and workers: that is what makes rate limits exact.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The count of one key in the current window, and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub current: i64,
    pub previous: i64,
    pub reset_ms: u64,
}

struct Counter {
    window_ms: u64,
    /// Index of the current window since the Unix epoch.
    window: u64,
    current: i64,
    previous: i64,
}

struct Value {
    bytes: Vec<u8>,
    expires: Option<Instant>,
}

#[derive(Default)]
struct Maps {
    counters: HashMap<String, Counter>,
    values: HashMap<String, Value>,
    ops: u64,
}

/// The host's store for every plugin's shared state.
#[derive(Default)]
pub struct SharedState {
    maps: Mutex<Maps>,
}

/// How often (in operations) stale entries are swept out.
const SWEEP_EVERY: u64 = 4096;

fn key(namespace: &str, key: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + 1 + key.len());
    k.push_str(namespace);
    k.push('\0');
    k.push_str(key);
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SharedState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than refusing service would.
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `delta` to a counter in the current epoch-aligned window.
    pub fn incr(&self, namespace: &str, k: &str, delta: i64, window_ms: u64) -> WindowCount {
        let window_ms = window_ms.max(1);
        let now = now_ms();
        let window = now / window_ms;
        let mut maps = self.lock();
        maps.tick(now);
        let c = maps.counters.entry(key(namespace, k)).or_insert(Counter {
            window_ms,
            window,
            current: 0,
            previous: 0,
        });
        if c.window_ms != window_ms {
            *c = Counter {
                window_ms,
                window,
                current: 0,
                previous: 0,
            };
        } else if c.window != window {
            c.previous = if c.window + 1 == window { c.current } else { 0 };
            c.current = 0;
            c.window = window;
        }
        c.current = c.current.saturating_add(delta);
        WindowCount {
            current: c.current,
            previous: c.previous,
            reset_ms: (window + 1) * window_ms - now,
        }
    }

    pub fn get(&self, namespace: &str, k: &str) -> Option<Vec<u8>> {
        let mut maps = self.lock();
        let full = key(namespace, k);
        match maps.values.get(&full) {
            Some(v) if v.expires.is_some_and(|e| e <= Instant::now()) => {
                maps.values.remove(&full);
                None
            }
            Some(v) => Some(v.bytes.clone()),
            None => None,
        }
    }

    pub fn set(&self, namespace: &str, k: &str, bytes: Vec<u8>, ttl: Option<Duration>) {
        let mut maps = self.lock();
        maps.tick(now_ms());
        maps.values.insert(
            key(namespace, k),
            Value {
                bytes,
                expires: ttl.map(|t| Instant::now() + t),
            },
        );
    }

    /// A compare-and-swap that expects nothing there.
    pub fn set_if_absent(
        &self,
        namespace: &str,
        k: &str,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
    ) -> bool {
        self.compare_and_swap(namespace, k, None, bytes, ttl)
    }

    pub fn compare_and_swap(
        &self,
        namespace: &str,
        k: &str,
        expected: Option<&[u8]>,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
    ) -> bool {
        let mut maps = self.lock();
        maps.tick(now_ms());
        let full = key(namespace, k);
        let now = Instant::now();
        let current = maps
            .values
            .get(&full)
            .filter(|v| v.expires.is_none_or(|e| e > now))
            .map(|v| v.bytes.as_slice());
        if current != expected {
            return false;
        }
        maps.values.insert(
            full,
            Value {
                bytes,
                expires: ttl.map(|t| now + t),
            },
        );
        true
    }

    pub fn delete(&self, namespace: &str, k: &str) {
        self.lock().values.remove(&key(namespace, k));
    }
}

impl Maps {
    /// Every so often, drop expired values and counters two windows stale,
    /// so keys made from client input cannot grow the maps without bound.
    fn tick(&mut self, now_ms: u64) {
        self.ops += 1;
        if !self.ops.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        let now = Instant::now();
        self.values.retain(|_, v| v.expires.is_none_or(|e| e > now));
        self.counters
            .retain(|_, c| now_ms / c.window_ms <= c.window + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_namespace_and_window() {
        let s = SharedState::default();
        assert_eq!(s.incr("a", "k", 1, 60_000).current, 1);
        assert_eq!(s.incr("a", "k", 2, 60_000).current, 3);
        assert_eq!(
            s.incr("b", "k", 1, 60_000).current,
            1,
            "namespaces are separate"
        );
        let c = s.incr("a", "k", 0, 60_000);
        assert!(c.reset_ms <= 60_000);
    }

    #[test]
    fn compare_and_swap_only_replaces_the_expected_value() {
        let s = SharedState::default();
        assert!(
            !s.compare_and_swap("p", "k", Some(b"1"), b"2".to_vec(), None),
            "absent is not 1"
        );
        assert!(s.compare_and_swap("p", "k", None, b"1".to_vec(), None));
        assert!(
            !s.compare_and_swap("p", "k", None, b"9".to_vec(), None),
            "present is not absent"
        );
        assert!(s.compare_and_swap("p", "k", Some(b"1"), b"2".to_vec(), None));
        assert_eq!(s.get("p", "k").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn values_expire_and_set_if_absent_is_exclusive() {
        let s = SharedState::default();
        assert!(s.set_if_absent("p", "lock", b"1".to_vec(), Some(Duration::from_millis(20))));
        assert!(!s.set_if_absent("p", "lock", b"2".to_vec(), None));
        assert_eq!(s.get("p", "lock").as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get("q", "lock"), None, "another plugin cannot see it");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(s.get("p", "lock"), None);
        assert!(s.set_if_absent("p", "lock", b"3".to_vec(), None));
        s.delete("p", "lock");
        assert_eq!(s.get("p", "lock"), None);
    }
}
