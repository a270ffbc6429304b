//! Upstreams: targets, balancing, timeouts, health checks, passive
//! ejection and retries, and their validation.

use super::Validator;
use super::raw::{self, RawUpstream};
use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `host:port` authorities.
    pub targets: Vec<http::uri::Authority>,
    pub balance: Balance,
    pub connect_timeout: std::time::Duration,
    pub timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub max_idle_per_target: usize,
    /// Active checks: a target failing them leaves the balancer.
    pub health: Option<HealthCheck>,
    /// Passive checks: consecutive failures eject a target for a while.
    pub outlier: Option<Outlier>,
    pub retries: Option<Retries>,
}

/// Trying again on another target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// Tries after the first.
    pub attempts: u32,
    pub on_connect_error: bool,
    pub on_timeout: bool,
    /// Statuses that are retried.
    pub statuses: Vec<u16>,
    pub backoff: std::time::Duration,
    /// Methods that may be retried (by default the idempotent ones).
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `GET` this path on each target; 2xx or 3xx is healthy.
    pub path: String,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    /// Consecutive failed checks that mark a healthy target unhealthy.
    pub unhealthy_after: u32,
    /// Consecutive passed checks that bring an unhealthy target back.
    pub healthy_after: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive connect errors, timeouts or 5xx answers that eject a target.
    pub consecutive_failures: u32,
    pub eject_for: std::time::Duration,
}

impl Validator<'_> {
    pub(super) fn upstream(&mut self, name: String, raw: RawUpstream) -> Option<Upstream> {
        let mut targets = Vec::new();
        if raw.targets.get_ref().is_empty() {
            return self.err(
                raw.targets.span(),
                format!("upstream \"{name}\" has no targets: expected at least one \"host:port\""),
            );
        }
        for t in raw.targets.into_inner() {
            match parse_target(t.get_ref()) {
                Some(a) => targets.push(a),
                None => {
                    let msg = format!(
                        "invalid target \"{}\" in upstream \"{name}\": expected \"host:port\"",
                        t.get_ref()
                    );
                    self.err::<()>(t.span(), msg);
                }
            }
        }
        let health = match raw.health {
            None => None,
            Some(h) => {
                let span = h.span();
                let h = h.into_inner();
                let check = HealthCheck {
                    path: h.path,
                    interval: h
                        .interval
                        .map_or(std::time::Duration::from_secs(5), |d| d.0),
                    timeout: h.timeout.map_or(std::time::Duration::from_secs(1), |d| d.0),
                    unhealthy_after: h.unhealthy_after.unwrap_or(3),
                    healthy_after: h.healthy_after.unwrap_or(2),
                };
                let ok = check.path.starts_with('/')
                    && !check.interval.is_zero()
                    && !check.timeout.is_zero()
                    && check.unhealthy_after > 0
                    && check.healthy_after > 0;
                if !ok {
                    let msg = format!(
                        "upstream \"{name}\": health needs a path starting with '/', an interval and timeout over 0, and unhealthy_after and healthy_after of at least 1"
                    );
                    return self.err(span, msg);
                }
                Some(check)
            }
        };
        let outlier = match raw.outlier {
            None => None,
            Some(o) => {
                let span = o.span();
                let o = o.into_inner();
                let outlier = Outlier {
                    consecutive_failures: o.consecutive_failures.unwrap_or(5),
                    eject_for: o
                        .eject_for
                        .map_or(std::time::Duration::from_secs(30), |d| d.0),
                };
                if outlier.consecutive_failures == 0 || outlier.eject_for.is_zero() {
                    let msg = format!(
                        "upstream \"{name}\": outlier needs consecutive_failures of at least 1 and eject_for over 0"
                    );
                    return self.err(span, msg);
                }
                Some(outlier)
            }
        };
        let retries = match raw.retries {
            None => None,
            Some(r) => {
                let span = r.span();
                match retries(r.into_inner()) {
                    Ok(r) => Some(r),
                    Err(why) => {
                        return self.err(span, format!("upstream \"{name}\": retries: {why}"));
                    }
                }
            }
        };
        Some(Upstream {
            name,
            targets,
            health,
            outlier,
            retries,
            balance: raw.balance.unwrap_or(Balance::RoundRobin),
            connect_timeout: raw
                .connect_timeout
                .map_or(std::time::Duration::from_secs(1), |d| d.0),
            timeout: raw
                .timeout
                .map_or(std::time::Duration::from_secs(30), |d| d.0),
            idle_timeout: raw
                .idle_timeout
                .map_or(std::time::Duration::from_secs(60), |d| d.0),
            max_idle_per_target: raw.max_idle_per_target.unwrap_or(128),
        })
    }
}

fn retries(r: raw::RawRetries) -> Result<Retries, String> {
    if r.attempts == 0 || r.attempts > 10 {
        return Err(format!(
            "attempts {} is out of range: expected 1 to 10",
            r.attempts
        ));
    }
    let on = r.on.unwrap_or_else(|| {
        ["connect-error", "502", "503", "504"]
            .map(String::from)
            .to_vec()
    });
    let mut policy = Retries {
        attempts: r.attempts,
        on_connect_error: false,
        on_timeout: false,
        statuses: Vec::new(),
        backoff: r
            .backoff
            .map_or(std::time::Duration::from_millis(25), |d| d.0),
        methods: Vec::new(),
    };
    for cond in &on {
        match cond.as_str() {
            "connect-error" => policy.on_connect_error = true,
            "timeout" => policy.on_timeout = true,
            code => match code.parse::<u16>() {
                Ok(c) if (500..600).contains(&c) => policy.statuses.push(c),
                _ => {
                    return Err(format!(
                        "\"{cond}\" is not connect-error, timeout or a 5xx status"
                    ));
                }
            },
        }
    }
    let methods = r.methods.unwrap_or_else(|| {
        ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
            .map(String::from)
            .to_vec()
    });
    for m in methods {
        let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("invalid method \"{m}\""))?;
        policy.methods.push(method);
    }
    Ok(policy)
}

fn parse_target(s: &str) -> Option<http::uri::Authority> {
    let a: http::uri::Authority = s.parse().ok()?;
    a.port_u16()?;
    (!a.host().is_empty() && !s.contains('/')).then_some(a)
}
