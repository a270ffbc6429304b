//! The thread that advances every engine's epoch, which is what ends a
//! plugin call at its CPU deadline. An epoch is a millisecond of wall time;
//! the thread wakes every tenth of the shortest plugin timeout (1-10 ms)
//! and credits the milliseconds since its last wake-up, while guest code
//! may run, and sleeps otherwise: a gateway with no plugin call for a while
//! (idle, or serving only routes without plugins) is not woken for nothing.

use super::EPOCH_TICK;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Bounds of the time between two wake-ups. Each wake-up advances the
/// epoch by the milliseconds since the last one, so an epoch stays a
/// millisecond of wall time however long the thread slept; waking less
/// often only makes a deadline fire later (by up to one interval), and
/// each wake-up costs the machine a context switch.
const FINEST: Duration = Duration::from_millis(1);
const COARSEST: Duration = Duration::from_millis(10);

/// Time without a guest call before the thread sleeps: long enough that a
/// loaded gateway, whose calls leave gaps between them, never pays for a
/// wake-up.
const IDLE: Duration = Duration::from_millis(100);

pub struct Ticker {
    /// Guest calls (and instantiations) in progress.
    running: AtomicUsize,
    /// Set by each call; the thread clears it to see whether any came.
    called: AtomicBool,
    /// Set by the thread before it sleeps; a call that sees it wakes it.
    asleep: AtomicBool,
    stop: AtomicBool,
    /// Microseconds between wake-ups: the finest any entry asked for.
    interval_us: AtomicU64,
    thread: OnceLock<Thread>,
}

/// Whole epochs in `d`, rounded up.
pub fn epochs(d: Duration) -> u64 {
    (d.as_micros() as u64).div_ceil(EPOCH_TICK.as_micros() as u64)
}

/// The most epochs one wake-up credits: an interval's worth, and one for
/// the sleep's own slack. Also each deadline's margin.
fn most_per_wake(interval: Duration) -> u64 {
    epochs(interval) + 1
}

/// Held while guest code may run: the epoch advances until it is dropped.
pub struct Ticking<'a>(&'a Ticker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

impl Ticker {
    /// Starts the thread, which calls `tick(n)` to advance the epoch by `n`
    /// [`EPOCH_TICK`]s while some call holds a [`Ticking`], until `tick`
    /// returns false or the ticker is stopped.
    pub fn start(tick: impl Fn(u64) -> bool + Send + 'static) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker {
            running: AtomicUsize::new(0),
            called: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            interval_us: AtomicU64::new(COARSEST.as_micros() as u64),
            thread: OnceLock::new(),
        });
        let shared = ticker.clone();
        let handle = std::thread::Builder::new()
            .name("gatehouse-epoch".into())
            .spawn(move || shared.run(tick))?;
        let _ = ticker.thread.set(handle.thread().clone());
        Ok(ticker)
    }

    /// The epochs a call with `timeout` gets: the thread is asked to wake
    /// at least every tenth of it, and the margin keeps the deadline from
    /// being reached before the timeout is up.
    pub fn deadline(&self, timeout: Duration) -> u64 {
        self.resolve(timeout / 10);
        epochs(timeout) + self.margin()
    }

    /// Asks for a wake-up at least every `every` (kept within 1-10 ms); the
    /// finest asked for holds.
    fn resolve(&self, every: Duration) {
        let us = every.clamp(FINEST, COARSEST).as_micros() as u64;
        self.interval_us.fetch_min(us, SeqCst);
    }

    fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us.load(SeqCst))
    }

    /// Epochs to add to a deadline so that it is never reached early: a
    /// wake-up credits the time since the last one, part of which may have
    /// passed before the deadline was set.
    fn margin(&self) -> u64 {
        most_per_wake(self.interval())
    }

    fn run(&self, tick: impl Fn(u64) -> bool) {
        let unit = EPOCH_TICK.as_micros() as u64;
        let origin = Instant::now();
        let since_origin = || origin.elapsed().as_micros() as u64 / unit;
        // Epochs accounted for: every EPOCH_TICK since `origin`, except
        // time asleep and time the thread itself could not run.
        let mut accounted = since_origin();
        let mut last_call = Instant::now();
        while !self.stop.load(SeqCst) {
            if self.running.load(SeqCst) > 0 || self.called.swap(false, SeqCst) {
                last_call = Instant::now();
            } else if last_call.elapsed() >= IDLE {
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
                // The time asleep is not credited: deadlines set meanwhile
                // count from the epoch as it stood.
                accounted = since_origin();
                last_call = Instant::now();
                continue;
            }
            let interval = self.interval();
            std::thread::sleep(interval);
            // At most `most_per_wake`: a thread kept from running makes
            // deadlines later, as the guest was kept from running too,
            // never earlier than `margin` allows for.
            let now = since_origin();
            let due = (now - accounted).min(most_per_wake(interval));
            accounted = now;
            if due > 0 && !tick(due) {
                return;
            }
        }
    }

    /// Marks guest code as running (a call, or an instantiation) until the
    /// returned guard is dropped, waking the thread if it sleeps.
    pub fn hold(&self) -> Ticking<'_> {
        self.running.fetch_add(1, SeqCst);
        self.called.store(true, Relaxed);
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

    fn counting() -> (Arc<AtomicU64>, Arc<Ticker>) {
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        let ticker = Ticker::start(move |n| {
            counted.fetch_add(n, SeqCst);
            true
        })
        .expect("thread");
        (count, ticker)
    }

    fn ticks_during(count: &AtomicU64, wait: Duration) -> u64 {
        let before = count.load(SeqCst);
        std::thread::sleep(wait);
        count.load(SeqCst) - before
    }

    fn wait_until_asleep(ticker: &Ticker) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ticker.is_asleep() {
            assert!(Instant::now() < deadline, "the ticker never went to sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn ticks_while_held_and_sleeps_when_idle() {
        let (count, ticker) = counting();
        // Idle: after IDLE it sleeps and the count stops.
        wait_until_asleep(&ticker);
        assert_eq!(ticks_during(&count, Duration::from_millis(50)), 0);
        // A call wakes it at once, and it ticks for as long as the call runs.
        {
            let _held = ticker.hold();
            assert!(ticks_during(&count, Duration::from_millis(100)) >= 5);
        }
        ticker.stop();
    }

    #[test]
    fn the_epoch_never_runs_ahead_of_the_clock() {
        let (count, ticker) = counting();
        ticker.resolve(Duration::from_millis(5));
        assert_eq!(ticker.margin(), 6);
        // Asleep for a while: waking credits none of that time.
        wait_until_asleep(&ticker);
        let held = ticker.hold();
        let (start, before) = (Instant::now(), count.load(SeqCst));
        std::thread::sleep(Duration::from_millis(200));
        let ticked = count.load(SeqCst) - before;
        let elapsed = start.elapsed().as_millis() as u64;
        drop(held);
        // One wake-up may credit time from before `start`: at most an
        // interval and the sleep's slack, which `margin` allows for.
        assert!(
            ticked <= elapsed + ticker.margin(),
            "{ticked} epochs in {elapsed} ms"
        );
        assert!(ticked >= 20, "{ticked} epochs in {elapsed} ms");
        ticker.stop();
    }

    #[test]
    fn the_finest_interval_asked_for_holds() {
        let (_, ticker) = counting();
        assert_eq!(ticker.margin(), 11);
        ticker.resolve(Duration::from_millis(3));
        ticker.resolve(Duration::from_millis(8));
        assert_eq!(ticker.margin(), 4);
        ticker.resolve(Duration::from_micros(10));
        assert_eq!(ticker.margin(), 2);
        ticker.stop();
    }
}
