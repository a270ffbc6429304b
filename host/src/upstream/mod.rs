//! Upstreams: target balancing, health, keep-alive connections per target
//! and the connect/request timeouts.

mod conns;

pub use conns::UpstreamBody;

use crate::config::{Balance, HealthCheck, Outlier, Retries, Upstream};
use crate::error::{Body, GatewayError};
use crate::timer::LazyTimer;
use conns::{Connections, SendError, Settings};
use http::{Request, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Target {
    pub authority: http::uri::Authority,
    in_flight: AtomicUsize,
    /// Passing its active health checks (always, without them).
    healthy: AtomicBool,
    /// Ejected by passive checks until this time (ms since the Unix epoch).
    ejected_until: AtomicU64,
    /// Consecutive failures seen by passive checks.
    failures: AtomicU32,
    conns: Arc<Connections>,
}

impl Target {
    /// Requests sent to this target whose response head has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        // Read the clock only while an ejection is on record, and clear the
        // record once it has run out: every request asks this of a target.
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if until > now_ms() {
            return true;
        }
        let _ = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    fn available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Counts a request against its target while it is in flight.
pub struct TargetGuard {
    pool: Arc<UpstreamPool>,
    index: usize,
}

impl TargetGuard {
    /// The target's position in the upstream's list.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.pool.targets[self.index].authority
    }

    /// Tells passive checks how the exchange went: `false` for a connect
    /// error, a timeout or a 5xx answer.
    pub fn report(&self, ok: bool) {
        let Some(outlier) = self.pool.outlier else {
            return;
        };
        let target = &self.pool.targets[self.index];
        if ok {
            target.failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = target.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= outlier.consecutive_failures {
            target.failures.store(0, Ordering::Relaxed);
            let until = now_ms() + outlier.eject_for.as_millis() as u64;
            target.ejected_until.store(until, Ordering::Relaxed);
            tracing::warn!(
                upstream = %self.pool.name,
                target = %target.authority,
                failures,
                eject_for = ?outlier.eject_for,
                "target ejected after consecutive failures"
            );
        }
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.pool.targets[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct UpstreamPool {
    pub name: std::sync::Arc<str>,
    pub targets: Vec<Target>,
    balance: Balance,
    next: AtomicUsize,
    timeout: Duration,
    outlier: Option<Outlier>,
    pub retries: Option<Retries>,
}

impl UpstreamPool {
    pub fn new(cfg: &Upstream) -> Arc<UpstreamPool> {
        let settings = Settings {
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            max_idle: cfg.max_idle_per_target,
        };
        let pool = Arc::new(UpstreamPool {
            name: cfg.name.as_str().into(),
            targets: cfg
                .targets
                .iter()
                .map(|a| Target {
                    authority: a.clone(),
                    in_flight: AtomicUsize::new(0),
                    healthy: AtomicBool::new(true),
                    ejected_until: AtomicU64::new(0),
                    failures: AtomicU32::new(0),
                    conns: Connections::new(a.clone(), settings),
                })
                .collect(),
            balance: cfg.balance,
            next: AtomicUsize::new(0),
            timeout: cfg.timeout,
            outlier: cfg.outlier,
            retries: cfg.retries.clone(),
        });
        if let Some(check) = &cfg.health {
            tokio::spawn(health_checks(Arc::downgrade(&pool), check.clone()));
        }
        pool
    }

    /// Picks an available target (healthy, not ejected) by the upstream's
    /// balancing rule; `None` when there is none.
    pub fn pick(self: &Arc<Self>) -> Option<TargetGuard> {
        self.pick_avoiding(&[])
    }

    /// As [`UpstreamPool::pick`], preferring targets not in `tried` (a
    /// retry goes elsewhere when it can).
    pub fn pick_avoiding(self: &Arc<Self>, tried: &[usize]) -> Option<TargetGuard> {
        if !tried.is_empty() {
            let fresh =
                (0..self.targets.len()).any(|i| !tried.contains(&i) && self.targets[i].available());
            if fresh {
                return self.pick_where(|i| !tried.contains(&i));
            }
        }
        self.pick_where(|_| true)
    }

    fn pick_where(self: &Arc<Self>, allowed: impl Fn(usize) -> bool) -> Option<TargetGuard> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = match self.balance {
            Balance::Random => fastrand::usize(..n),
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        };
        // Scan from the rule's choice onwards, skipping unavailable targets.
        let mut candidates = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| allowed(i) && self.targets[i].available());
        let index = match self.balance {
            Balance::RoundRobin | Balance::Random => candidates.next()?,
            // Least connections among the available; ties go to the first
            // from the rotating start, so they spread out.
            Balance::LeastConnections => {
                candidates.min_by_key(|&i| self.targets[i].in_flight.load(Ordering::Relaxed))?
            }
        };
        self.targets[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Some(TargetGuard {
            pool: self.clone(),
            index,
        })
    }

    /// Whether `target` answers its health check now.
    async fn check(&self, target: &Target, check: &HealthCheck) -> bool {
        let Ok(req) = Request::get(check.path.as_str())
            .header(http::header::USER_AGENT, "gatehouse-health-check")
            .body(crate::error::full(bytes::Bytes::new()))
        else {
            return false;
        };
        let sent = target.conns.send(Box::new(req), Instant::now());
        match tokio::time::timeout(check.timeout, sent).await {
            Ok(Ok(resp)) => resp.status().is_success() || resp.status().is_redirection(),
            _ => false,
        }
    }

    /// The longest a request (all its tries) may wait for a response head.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl TargetGuard {
    /// Sends a request (its URI in origin form) to this target at `sent`
    /// (the caller's clock reading), waiting for the response head until
    /// `deadline` on the client connection's `timer`.
    pub async fn send(
        &self,
        req: Box<Request<Body>>,
        (sent, deadline): (Instant, Instant),
        timer: &LazyTimer,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let target = &self.pool.targets[self.index];
        let result = timer
            .timeout_at(deadline, target.conns.send(req, sent))
            .await;
        let (error, detail) = match result {
            None => return Err(GatewayError::UpstreamTimeout),
            Some(Ok(resp)) => return Ok(resp),
            Some(Err(SendError::Connect(e))) => (GatewayError::UpstreamConnect, e.to_string()),
            Some(Err(SendError::Failed(e))) => {
                // hyper's own message is terse ("connection closed before
                // message completed"): log the causes too.
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    source = s.source();
                }
                (GatewayError::UpstreamFailed, detail)
            }
        };
        tracing::debug!(upstream = %self.pool.name, target = %target.authority, "{error}: {detail}");
        Err(error)
    }
}

/// Checks every target each interval while the upstream exists, flipping a
/// target's health after `unhealthy_after` failures or `healthy_after` passes
/// in a row.
async fn health_checks(pool: std::sync::Weak<UpstreamPool>, check: HealthCheck) {
    let mut streaks: Vec<(u32, u32)> = Vec::new();
    loop {
        tokio::time::sleep(check.interval).await;
        let Some(pool) = pool.upgrade() else { return };
        streaks.resize(pool.targets.len(), (0, 0));
        for (target, (passes, fails)) in pool.targets.iter().zip(streaks.iter_mut()) {
            if pool.check(target, &check).await {
                *passes += 1;
                *fails = 0;
                if !target.is_healthy() && *passes >= check.healthy_after {
                    target.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(upstream = %pool.name, target = %target.authority, "target healthy again");
                }
            } else {
                *fails += 1;
                *passes = 0;
                if target.is_healthy() && *fails >= check.unhealthy_after {
                    target.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(upstream = %pool.name, target = %target.authority, path = %check.path, "target failed its health checks");
                }
            }
        }
    }
}
