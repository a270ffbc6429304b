//! The thread that advances every engine's epoch, which is what ends a
//! plugin call at its CPU deadline. It ticks while guest code may run and
//! sleeps otherwise: a gateway with no plugin call for a while (idle, or
//! serving only routes without plugins) is not woken a thousand times a
//! second for nothing.

use super::EPOCH_TICK;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

/// Ticks without a guest call before the thread sleeps: long enough that a
/// loaded gateway, whose calls leave gaps between them, never pays for a
/// wake-up.
const IDLE_TICKS: u32 = 100;

pub struct Ticker {
    /// Guest calls (and instantiations) in progress.
    running: AtomicUsize,
    /// Set by the thread before it sleeps; a call that sees it wakes it.
    asleep: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

/// Held while guest code may run: the epoch advances until it is dropped.
pub struct Ticking<'a>(&'a Ticker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

impl Ticker {
    /// Starts the thread, which calls `tick` every [`EPOCH_TICK`] while some
    /// call holds a [`Ticking`], until `tick` returns false or the ticker is
    /// stopped.
    pub fn start(tick: impl Fn() -> bool + Send + 'static) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker {
            running: AtomicUsize::new(0),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let shared = ticker.clone();
        let handle = std::thread::Builder::new()
            .name("gatehouse-epoch".into())
            .spawn(move || shared.run(tick))?;
        let _ = ticker.thread.set(handle.thread().clone());
        Ok(ticker)
    }

    fn run(&self, tick: impl Fn() -> bool) {
        let mut idle = 0;
        while !self.stop.load(SeqCst) {
            if self.running.load(SeqCst) > 0 {
                idle = 0;
            } else if idle < IDLE_TICKS {
                idle += 1;
            } else {
                // Announce the sleep, then look again: a call that started
                // before the announcement is seen here, one that starts
                // after it sees the announcement and wakes the thread.
                // Woken by a call, or spuriously: the loop looks again,
                // and sleeps again at once if nothing runs.
                self.asleep.store(true, SeqCst);
                if self.running.load(SeqCst) == 0 && !self.stop.load(SeqCst) {
                    std::thread::park();
                }
                self.asleep.store(false, SeqCst);
                continue;
            }
            std::thread::sleep(EPOCH_TICK);
            if !tick() {
                return;
            }
        }
    }

    /// Marks guest code as running (a call, or an instantiation) until the
    /// returned guard is dropped, waking the thread if it sleeps.
    pub fn hold(&self) -> Ticking<'_> {
        self.running.fetch_add(1, SeqCst);
        if self.asleep.load(SeqCst) {
            self.wake();
        }
        Ticking(self)
    }

    /// Whether the thread sleeps (for tests).
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(SeqCst)
    }

    pub fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    fn ticks_during(count: &AtomicU64, wait: Duration) -> u64 {
        let before = count.load(SeqCst);
        std::thread::sleep(wait);
        count.load(SeqCst) - before
    }

    #[test]
    fn ticks_while_held_and_sleeps_when_idle() {
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        let ticker = Ticker::start(move || {
            counted.fetch_add(1, SeqCst);
            true
        })
        .expect("thread");
        // Idle: after IDLE_TICKS it sleeps and the count stops.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ticker.is_asleep() {
            assert!(Instant::now() < deadline, "the ticker never went to sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ticks_during(&count, Duration::from_millis(50)), 0);
        // A call wakes it at once, and it ticks for as long as the call runs.
        {
            let _held = ticker.hold();
            assert!(ticks_during(&count, Duration::from_millis(100)) >= 5);
        }
        ticker.stop();
    }
}
