//! A client connection's timer, re-armed lazily.
//!
//! Every request on a keep-alive connection waits under two deadlines that
//! almost never pass: its head must arrive within `header_read_timeout`,
//! and its upstream must answer within the upstream's `timeout`. A tokio
//! timer per wait is inserted into the timer wheel when the wait starts and
//! taken out when it ends microseconds later (`bench/instructions.sh`: the
//! header read timer alone was about 1,500 of the 33,400 instructions of a
//! request on a route without plugins, which takes 32,650 with both waits
//! on this timer).
//!
//! A `LazyTimer` keeps one tokio timer armed for the connection instead. A
//! wait whose deadline is later than the armed one leaves it armed and
//! waits on it; if it fires before that wait's own deadline, it is re-armed
//! for it then. So the wheel is touched about once per timeout period per
//! busy connection rather than twice per request, and a wait still ends at
//! its own deadline: never before it, and late only by the wheel's
//! millisecond. Waits that overlap (not the case for one HTTP/1.1
//! connection, whose requests take turns) each get their own timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// One connection's timer; clones share it.
#[derive(Clone, Default)]
pub struct LazyTimer {
    /// The armed timer while no wait holds it.
    idle: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl LazyTimer {
    /// A wait that ends at `deadline`.
    pub fn at(&self, deadline: Instant) -> LazySleep {
        LazySleep {
            deadline: tokio::time::Instant::from_std(deadline),
            armed: None,
            home: self.clone(),
        }
    }

    /// Runs `fut` until `deadline`; `None` if the deadline came first.
    pub fn timeout_at<F: Future>(&self, deadline: Instant, fut: F) -> Timeout<F> {
        Timeout {
            fut,
            sleep: self.at(deadline),
        }
    }

    fn take(&self) -> Option<Pin<Box<Sleep>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn put_back(&self, sleep: Pin<Box<Sleep>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.is_none() {
            *idle = Some(sleep);
        }
    }

    /// The deadline the idle timer is armed for.
    #[cfg(test)]
    fn armed_for(&self) -> Option<tokio::time::Instant> {
        let idle = self.idle.lock().unwrap();
        idle.as_ref().map(|s| s.deadline())
    }
}

pin_project_lite::pin_project! {
    /// A future with a deadline ([`LazyTimer::timeout_at`]). A struct
    /// rather than an `async fn`: an `async fn` would hold the wrapped
    /// future twice over (as its argument and pinned in its body), and the
    /// upstream send it wraps is about a kilobyte, which every enclosing
    /// future, up to each client connection's, carries.
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: LazySleep,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        Pin::new(this.sleep).poll(cx).map(|()| None)
    }
}

/// One wait on a connection's timer; gives the timer back when dropped.
pub struct LazySleep {
    deadline: tokio::time::Instant,
    /// Taken from the connection at the first poll.
    armed: Option<Pin<Box<Sleep>>>,
    home: LazyTimer,
}

impl Future for LazySleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let deadline = this.deadline;
        let home = &this.home;
        let armed = this.armed.get_or_insert_with(|| {
            home.take()
                .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)))
        });
        loop {
            if armed.deadline() > deadline {
                armed.as_mut().reset(deadline);
            }
            ready!(armed.as_mut().poll(cx));
            if armed.deadline() >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier wait's deadline: on to this one's.
            armed.as_mut().reset(deadline);
        }
    }
}

impl Drop for LazySleep {
    fn drop(&mut self) {
        if let Some(sleep) = self.armed.take() {
            self.home.put_back(sleep);
        }
    }
}

impl hyper::rt::Sleep for LazySleep {}

/// hyper's header read timeout on the connection's timer.
impl hyper::rt::Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.at(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.at(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<LazySleep>() {
            Some(mut s) => s.deadline = tokio::time::Instant::from_std(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Polls `sleep` once, so it arms (or takes) the connection's timer.
    async fn poll_once(sleep: &mut LazySleep) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *sleep).poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline_not_before() {
        let timer = LazyTimer::default();
        let start = Instant::now();
        timer.at(start + 60 * MS).await;
        assert!(start.elapsed() >= 60 * MS);
    }

    #[tokio::test]
    async fn a_later_wait_keeps_the_armed_timer_and_still_waits_its_own_time() {
        let timer = LazyTimer::default();
        let start = Instant::now();
        let mut first = timer.at(start + 100 * MS);
        assert!(!poll_once(&mut first).await);
        drop(first);
        let armed = timer
            .armed_for()
            .expect("the timer is kept when a wait ends");

        let mut second = timer.at(start + 250 * MS);
        assert!(!poll_once(&mut second).await);
        drop(second);
        // Not moved in the wheel: still armed for the first wait's deadline.
        assert_eq!(timer.armed_for(), Some(armed));

        // The armed timer fires at 100 ms; this wait goes on to its 250 ms.
        timer.at(start + 250 * MS).await;
        assert!(start.elapsed() >= 250 * MS);
    }

    #[tokio::test]
    async fn an_earlier_wait_moves_the_armed_timer_forward() {
        let timer = LazyTimer::default();
        let start = Instant::now();
        let mut long = timer.at(start + Duration::from_secs(30));
        assert!(!poll_once(&mut long).await);
        drop(long);
        timer.at(start + 50 * MS).await;
        let took = start.elapsed();
        assert!(
            took >= 50 * MS && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn overlapping_waits_each_end_at_their_own_deadline() {
        let timer = LazyTimer::default();
        let start = Instant::now();
        let short = timer.at(start + 40 * MS);
        let long = timer.at(start + 120 * MS);
        let (a, b) = tokio::join!(
            async {
                short.await;
                start.elapsed()
            },
            async {
                long.await;
                start.elapsed()
            }
        );
        assert!(a >= 40 * MS && a < 120 * MS, "{a:?}");
        assert!(b >= 120 * MS, "{b:?}");
    }

    #[tokio::test]
    async fn timeout_at_returns_the_output_or_none() {
        let timer = LazyTimer::default();
        let soon = Instant::now() + Duration::from_secs(30);
        assert_eq!(timer.timeout_at(soon, async { 7 }).await, Some(7));
        let start = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(timer.timeout_at(start + 30 * MS, never).await, None);
        assert!(start.elapsed() >= 30 * MS);
    }

    #[test]
    fn a_timeout_holds_its_future_once() {
        let timer = LazyTimer::default();
        let big = [0u8; 1024];
        let fut = async move { big.len() };
        let inner = std::mem::size_of_val(&fut);
        let timeout = timer.timeout_at(Instant::now(), fut);
        let outer = std::mem::size_of_val(&timeout);
        assert!(
            outer < inner + 128,
            "{outer} bytes around a {inner}-byte future"
        );
    }

    #[tokio::test]
    async fn hyper_can_reset_a_wait() {
        use hyper::rt::Timer;
        let timer = LazyTimer::default();
        let start = Instant::now();
        let mut sleep = timer.sleep_until(start + Duration::from_secs(30));
        timer.reset(&mut sleep, start + 30 * MS);
        sleep.await;
        let took = start.elapsed();
        assert!(
            took >= 30 * MS && took < Duration::from_secs(10),
            "{took:?}"
        );
    }
}
