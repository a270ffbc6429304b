//! The three counting algorithms, on the host's atomic shared state.

use gatehouse_sdk::{clock, state};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    FixedWindow,
    /// The current window's count plus the previous window's, weighted by
    /// how much of it still overlaps the last `window`.
    #[default]
    SlidingWindow,
    /// GCRA: a bucket of `limit` tokens refilled evenly over `window`.
    TokenBucket,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub remaining: u64,
    /// Seconds until the quota is whole again (window end, or a full bucket).
    pub reset_secs: u64,
    /// Seconds until a refused request may succeed.
    pub retry_after_secs: u64,
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

impl Algorithm {
    pub fn decide(self, key: &str, limit: u64, window_ms: u64) -> Decision {
        match self {
            Algorithm::FixedWindow | Algorithm::SlidingWindow => {
                windowed(self, key, limit, window_ms)
            }
            Algorithm::TokenBucket => token_bucket(key, limit, window_ms),
        }
    }
}

fn windowed(algo: Algorithm, key: &str, limit: u64, window_ms: u64) -> Decision {
    let window = Duration::from_millis(window_ms);
    let c = state::incr(key, 1, window);
    let reset_ms = u64::try_from(c.reset.as_millis()).unwrap_or(window_ms);
    let current = c.current.max(0) as u64;
    // The share of the previous window still inside the sliding window.
    let carried = match algo {
        Algorithm::SlidingWindow => (c.previous.max(0) as u64).saturating_mul(reset_ms) / window_ms,
        _ => 0,
    };
    let used = current + carried;
    if used > limit {
        // Refused requests are not counted, so the remaining quota stays true.
        state::incr(key, -1, window);
        // When may the next request pass? In a fixed window: when it ends.
        // In a sliding one the previous window's share fades linearly, so
        // possibly sooner: when admitted + 1 + previous·(reset − t)/window ≤ limit.
        let admitted = current - 1;
        let previous = c.previous.max(0) as u64;
        let retry_ms = match algo {
            Algorithm::SlidingWindow if previous > 0 && admitted < limit => {
                let room = limit - admitted - 1;
                reset_ms.saturating_sub(room.saturating_mul(window_ms) / previous)
            }
            _ => reset_ms,
        };
        return Decision {
            allowed: false,
            remaining: 0,
            reset_secs: ceil_secs(reset_ms),
            retry_after_secs: ceil_secs(retry_ms).max(1),
        };
    }
    Decision {
        allowed: true,
        remaining: limit - used,
        reset_secs: ceil_secs(reset_ms),
        retry_after_secs: 0,
    }
}

/// GCRA with the theoretical arrival time kept in host state and updated by
/// compare-and-swap, so concurrent instances never over-admit.
fn token_bucket(key: &str, limit: u64, window_ms: u64) -> Decision {
    let interval = (window_ms / limit).max(1);
    let ttl = Some(Duration::from_millis(window_ms.saturating_mul(2)));
    for _ in 0..64 {
        let now = clock::now_ms();
        let old = state::get(key);
        let tat = old
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
            .max(now);
        let new_tat = tat + interval;
        if new_tat - now > window_ms {
            let retry_ms = new_tat - now - window_ms;
            return Decision {
                allowed: false,
                remaining: 0,
                reset_secs: ceil_secs(tat - now),
                retry_after_secs: ceil_secs(retry_ms).max(1),
            };
        }
        if state::compare_and_swap(key, old.as_deref(), &new_tat.to_le_bytes(), ttl) {
            let remaining = (window_ms - (new_tat - now)) / interval;
            return Decision {
                allowed: true,
                remaining,
                reset_secs: ceil_secs(new_tat - now),
                retry_after_secs: 0,
            };
        }
    }
    // Lost the race 64 times in a row: the bucket is that busy, refuse.
    Decision {
        allowed: false,
        remaining: 0,
        reset_secs: ceil_secs(window_ms),
        retry_after_secs: 1,
    }
}
