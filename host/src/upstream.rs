//! Upstreams: a keep-alive connection pool per upstream, target balancing
//! and the connect/request timeouts.

use crate::config::{Balance, Upstream};
use crate::error::{Body, GatewayError};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Target {
    pub authority: http::uri::Authority,
    in_flight: AtomicUsize,
}

impl Target {
    /// Requests sent to this target whose response head has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a request against its target while it is in flight.
pub struct TargetGuard {
    pool: Arc<UpstreamPool>,
    index: usize,
}

impl TargetGuard {
    pub fn authority(&self) -> &http::uri::Authority {
        &self.pool.targets[self.index].authority
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
    client: Client<HttpConnector, Body>,
}

impl UpstreamPool {
    pub fn new(cfg: &Upstream) -> Arc<UpstreamPool> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.idle_timeout)
            .pool_max_idle_per_host(cfg.max_idle_per_target)
            .build(connector);
        Arc::new(UpstreamPool {
            name: cfg.name.as_str().into(),
            targets: cfg
                .targets
                .iter()
                .map(|a| Target {
                    authority: a.clone(),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            balance: cfg.balance,
            next: AtomicUsize::new(0),
            timeout: cfg.timeout,
            client,
        })
    }

    /// Picks a target by the upstream's balancing rule.
    pub fn pick(self: &Arc<Self>) -> Option<TargetGuard> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let index = match self.balance {
            Balance::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            Balance::Random => fastrand::usize(..n),
            Balance::LeastConnections => {
                // Start the scan at a rotating offset so ties spread out.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| self.targets[i].in_flight.load(Ordering::Relaxed))
                    .unwrap_or(0)
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

    /// Sends a request whose URI already names the target.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, GatewayError> {
        let target = req
            .uri()
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default();
        let result = tokio::time::timeout(self.timeout, self.client.request(req)).await;
        let (error, e) = match result {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) if e.is_connect() => (GatewayError::UpstreamConnect, e),
            Ok(Err(e)) => (GatewayError::UpstreamFailed, e),
        };
        // hyper's own message is terse ("client error (Connect)"): log the causes.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        tracing::debug!(upstream = %self.name, target, "{error}: {detail}");
        Err(error)
    }
}
