//! The breaker's state machine, kept in host state and changed only by
//! compare-and-swap, so concurrent instances agree on every transition.

use gatehouse_sdk::{log, metrics, state};
use std::time::Duration;

pub enum Trip {
    /// Open after this many failures in a row.
    Consecutive(u32),
    /// Open when at least `min_calls` calls in `window` failed at `rate` or more.
    Rate {
        rate: f64,
        min_calls: u32,
        window: Duration,
    },
}

pub struct Breaker {
    pub trip: Trip,
    pub open_for_ms: u64,
    pub half_open: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: u64,
    },
    /// Since `since_ms`, `started` trials let through, `passed` succeeded.
    HalfOpen {
        since_ms: u64,
        started: u32,
        passed: u32,
    },
}

pub enum Admit {
    Closed,
    Trial,
    Refuse { retry_after_ms: u64 },
}

impl State {
    fn encode(self) -> Vec<u8> {
        match self {
            State::Closed { failures } => format!("closed {failures}"),
            State::Open { until_ms } => format!("open {until_ms}"),
            State::HalfOpen {
                since_ms,
                started,
                passed,
            } => format!("half-open {since_ms} {started} {passed}"),
        }
        .into_bytes()
    }

    fn decode(bytes: Option<&[u8]>) -> State {
        // Read on every request (twice), so by bytes: no UTF-8 check, no
        // char searcher. A name, then one to three numbers, one space apart.
        let mut words = bytes.unwrap_or_default().split(|b| *b == b' ');
        let name = words.next().unwrap_or_default();
        let mut numbers = [0u64; 3];
        let mut count = 0;
        for word in words {
            match (numbers.get_mut(count), number(word)) {
                (Some(slot), Some(n)) => *slot = n,
                _ => return State::Closed { failures: 0 },
            }
            count += 1;
        }
        match (name, &numbers[..count]) {
            (b"open", [until]) => State::Open { until_ms: *until },
            (b"half-open", [since, started, passed]) => State::HalfOpen {
                since_ms: *since,
                started: *started as u32,
                passed: *passed as u32,
            },
            (b"closed", [failures]) => State::Closed {
                failures: *failures as u32,
            },
            _ => State::Closed { failures: 0 },
        }
    }
}

/// A decimal number of ASCII digits only, as `State::encode` writes them.
fn number(word: &[u8]) -> Option<u64> {
    if word.is_empty() {
        return None;
    }
    word.iter().try_fold(0u64, |n, &d| {
        let digit = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn key(upstream: &str) -> String {
    // Built on every request: joined by hand, not through `format!`.
    let mut key = String::with_capacity(6 + upstream.len());
    key.push_str("state|");
    key.push_str(upstream);
    key
}

impl Breaker {
    /// Reads, computes the next state, and swaps it in; retries on a race.
    fn update<T>(&self, upstream: &str, mut step: impl FnMut(State) -> (Option<State>, T)) -> T {
        let key = key(upstream);
        loop {
            let old = state::get(&key);
            let current = State::decode(old.as_deref());
            let (next, out) = step(current);
            match next {
                None => return out,
                Some(next) if next == current => return out,
                Some(next) => {
                    if state::compare_and_swap(&key, old.as_deref(), &next.encode(), None) {
                        if std::mem::discriminant(&next) != std::mem::discriminant(&current) {
                            log::warn(&format!(
                                "circuit breaker for upstream \"{upstream}\": {} -> {}",
                                name(current),
                                name(next)
                            ));
                            // For /metrics and the admin API: 0 closed, 1 open, 2 half-open.
                            let code = match next {
                                State::Closed { .. } => 0,
                                State::Open { .. } => 1,
                                State::HalfOpen { .. } => 2,
                            };
                            if let Err(e) =
                                metrics::gauge_set("circuit_state", &[("upstream", upstream)], code)
                            {
                                log::warn(&format!("circuit_state not reported: {e}"));
                            }
                        }
                        return out;
                    }
                }
            }
        }
    }

    /// Whether a request may go to the upstream. The clock is read only
    /// when the breaker is not closed: a closed breaker admits whatever the
    /// time, and is what nearly every request finds.
    pub fn admit(&self, upstream: &str, now: impl Fn() -> u64) -> Admit {
        self.update(upstream, |s| match s {
            State::Closed { .. } => (None, Admit::Closed),
            s => self.admit_at(s, now()),
        })
    }

    /// `admit`'s decision at `now`.
    fn admit_at(&self, s: State, now: u64) -> (Option<State>, Admit) {
        match s {
            State::Closed { .. } => (None, Admit::Closed),
            State::Open { until_ms } if now < until_ms => (
                None,
                Admit::Refuse {
                    retry_after_ms: until_ms - now,
                },
            ),
            State::Open { .. } => (
                Some(State::HalfOpen {
                    since_ms: now,
                    started: 1,
                    passed: 0,
                }),
                Admit::Trial,
            ),
            // Trials that never reported (their request died) do not hold the
            // breaker half-open for ever: after open_for, start afresh.
            State::HalfOpen { since_ms, .. } if now >= since_ms + self.open_for_ms => (
                Some(State::HalfOpen {
                    since_ms: now,
                    started: 1,
                    passed: 0,
                }),
                Admit::Trial,
            ),
            State::HalfOpen {
                since_ms,
                started,
                passed,
            } if started < self.half_open => (
                Some(State::HalfOpen {
                    since_ms,
                    started: started + 1,
                    passed,
                }),
                Admit::Trial,
            ),
            State::HalfOpen { since_ms, .. } => (
                None,
                Admit::Refuse {
                    retry_after_ms: (since_ms + self.open_for_ms).saturating_sub(now).max(1),
                },
            ),
        }
    }

    /// Records a call's result; `now` dates an opening, so it is read only
    /// when `failed`. Whether the call was a half-open trial matters only to
    /// a failure rate or a half-open breaker, so `trial` is asked only then:
    /// a success through a closed breaker, nearly every call, never asks.
    pub fn record(&self, upstream: &str, trial: impl Fn() -> bool, failed: bool, now: u64) {
        let rate_trips = match &self.trip {
            Trip::Rate {
                rate,
                min_calls,
                window,
            } if !trial() => {
                let calls = state::incr(&format!("calls|{upstream}"), 1, *window);
                let failures =
                    state::incr(&format!("failures|{upstream}"), i64::from(failed), *window);
                let (calls, failures) =
                    (calls.current.max(0) as f64, failures.current.max(0) as f64);
                failed && calls >= f64::from(*min_calls) && failures / calls >= *rate
            }
            _ => false,
        };
        let open = State::Open {
            until_ms: now + self.open_for_ms,
        };
        self.update(upstream, |s| match s {
            State::Closed { failures } => {
                let failures = if failed { failures + 1 } else { 0 };
                let trips = match self.trip {
                    Trip::Consecutive(n) => failures >= n,
                    Trip::Rate { .. } => rate_trips,
                };
                (
                    Some(if trips {
                        open
                    } else {
                        State::Closed { failures }
                    }),
                    (),
                )
            }
            State::HalfOpen { .. } if failed && trial() => (Some(open), ()),
            State::HalfOpen {
                since_ms,
                started,
                passed,
            } if trial() => {
                let passed = passed + 1;
                if passed >= self.half_open {
                    (Some(State::Closed { failures: 0 }), ())
                } else {
                    (
                        Some(State::HalfOpen {
                            since_ms,
                            started,
                            passed,
                        }),
                        (),
                    )
                }
            }
            // Calls admitted before the breaker opened finish while it is
            // open or half-open: they change nothing.
            _ => (None, ()),
        });
    }
}

fn name(s: State) -> &'static str {
    match s {
        State::Closed { .. } => "closed",
        State::Open { .. } => "open",
        State::HalfOpen { .. } => "half-open",
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn states_read_back_as_written() {
        for state in [
            State::Closed { failures: 0 },
            State::Closed { failures: 7 },
            State::Open {
                until_ms: 1_700_000_000_123,
            },
            State::HalfOpen {
                since_ms: 42,
                started: 3,
                passed: 1,
            },
        ] {
            assert_eq!(State::decode(Some(&state.encode())), state);
        }
    }

    #[test]
    fn anything_else_reads_as_closed() {
        for stored in [
            &b""[..],
            b"open",
            b"open 1 2",
            b"half-open 1 2",
            b"half-open 1 2 3 4",
            b"closed x",
            b"closed 1 x",
            b"closed -1",
            b"closed  1",
            b"closed 99999999999999999999",
            b"\xff",
        ] {
            assert_eq!(
                State::decode(Some(stored)),
                State::Closed { failures: 0 },
                "{stored:?}"
            );
        }
        assert_eq!(State::decode(None), State::Closed { failures: 0 });
    }
}
