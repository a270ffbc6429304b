//! Prometheus metrics, served by the admin API at `/metrics`. Label sets of
//! plugin entries are resolved once, when the entry is built, so the
//! request path only bumps counters and histogram buckets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    plugin: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrapLabels {
    plugin: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    upstream: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 250 µs to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn plugin_buckets() -> Histogram {
    // 1 µs to ~16 ms.
    Histogram::new(exponential_buckets(0.000_001, 2.0, 15))
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteLabel>,
    upstream_duration: Histograms<UpstreamLabel>,
    plugin_duration: Histograms<PhaseLabels>,
    plugin_traps: Family<TrapLabels, Counter>,
    plugin_instances: Family<PluginLabel, Gauge>,
    reloads: Family<ResultLabel, Counter>,
    upstream_healthy: Family<TargetLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        let request_duration: Histograms<RouteLabel> =
            Family::new_with_constructor(seconds_buckets);
        registry.register(
            "request_duration_seconds",
            "Time from the request head to the response head, by route",
            request_duration.clone(),
        );
        let upstream_duration: Histograms<UpstreamLabel> =
            Family::new_with_constructor(seconds_buckets);
        registry.register(
            "upstream_duration_seconds",
            "Time from sending to an upstream to its response head",
            upstream_duration.clone(),
        );
        let plugin_duration: Histograms<PhaseLabels> = Family::new_with_constructor(plugin_buckets);
        registry.register(
            "plugin_duration_seconds",
            "Time of one plugin call, by plugin and phase (request or response)",
            plugin_duration.clone(),
        );
        let plugin_traps = Family::<TrapLabels, Counter>::default();
        registry.register(
            "plugin_traps",
            "Plugin calls stopped by a trap, by reason (deadline, memory, trap)",
            plugin_traps.clone(),
        );
        let plugin_instances = Family::<PluginLabel, Gauge>::default();
        registry.register(
            "plugin_instances",
            "Warm plugin instances waiting for work",
            plugin_instances.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads, by result (success or failure)",
            reloads.clone(),
        );
        let upstream_healthy = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "upstream_healthy",
            "1 while a target takes traffic (passing health checks, not ejected), else 0",
            upstream_healthy.clone(),
        );
        Metrics {
            registry,
            reloads,
            upstream_healthy,
            requests,
            request_duration,
            upstream_duration,
            plugin_duration,
            plugin_traps,
            plugin_instances,
        }
    }
}

/// An entry's handles, resolved once.
#[derive(Clone)]
pub struct PluginMetrics {
    pub on_request: Histogram,
    pub on_response: Histogram,
    plugin: String,
    traps: Family<TrapLabels, Counter>,
}

impl PluginMetrics {
    pub fn trap(&self, reason: &str) {
        self.traps
            .get_or_create(&TrapLabels {
                plugin: self.plugin.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

impl Metrics {
    pub fn request(&self, route: &str, method: &http::Method, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.as_str().to_owned(),
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn upstream(&self, upstream: &str, took: Duration) {
        self.upstream_duration
            .get_or_create(&UpstreamLabel {
                upstream: upstream.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn plugin(&self, plugin: &str) -> PluginMetrics {
        let phase = |phase: &str| {
            self.plugin_duration
                .get_or_create(&PhaseLabels {
                    plugin: plugin.to_owned(),
                    phase: phase.to_owned(),
                })
                .clone()
        };
        PluginMetrics {
            on_request: phase("request"),
            on_response: phase("response"),
            plugin: plugin.to_owned(),
            traps: self.plugin_traps.clone(),
        }
    }

    pub fn set_target_health(&self, upstream: &str, target: &str, up: bool) {
        self.upstream_healthy
            .get_or_create(&TargetLabels {
                upstream: upstream.to_owned(),
                target: target.to_owned(),
            })
            .set(i64::from(up));
    }

    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Warm instances of `plugin` right now (set when scraped).
    pub fn set_instances(&self, plugin: &str, n: usize) {
        self.plugin_instances
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition, which Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
