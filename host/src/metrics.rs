//! Prometheus metrics, served by the admin API at `/metrics`. Label sets of
//! plugin entries are resolved once, when the entry is built, so the
//! request path only bumps counters and histogram buckets.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
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

/// Metrics plugins report through `host.counter-add` and `host.gauge-set`,
/// encoded with the rest on each scrape.
#[derive(Debug, Default)]
struct Reported {
    series: std::sync::Mutex<BTreeMap<String, Series>>,
}

#[derive(Debug)]
struct Series {
    counter: bool,
    values: BTreeMap<Vec<(String, String)>, i64>,
}

/// Names the gateway's own metrics use; plugins cannot take them.
const OWN_NAMES: [&str; 8] = [
    "requests",
    "request_duration_seconds",
    "upstream_duration_seconds",
    "plugin_duration_seconds",
    "plugin_traps",
    "plugin_instances",
    "reloads",
    "upstream_healthy",
];
const MAX_LABELS: usize = 8;
const MAX_SERIES_PER_NAME: usize = 1000;

fn valid_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Reported {
    fn update(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
        counter: bool,
        apply: impl FnOnce(&mut i64),
    ) -> Result<(), String> {
        if !valid_name(name) || OWN_NAMES.contains(&name) || name.ends_with("_total") {
            return Err(format!(
                "invalid metric name \"{name}\": lower-case letters, digits and '_', not ending in _total, and not one of the gateway's own"
            ));
        }
        if labels.len() > MAX_LABELS {
            return Err(format!("too many labels: at most {MAX_LABELS}"));
        }
        if let Some((k, _)) = labels.iter().find(|(k, v)| !valid_name(k) || v.len() > 256) {
            return Err(format!(
                "invalid label \"{k}\" (or its value is over 256 bytes)"
            ));
        }
        let mut labels = labels;
        labels.sort();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.entry(name.to_owned()).or_insert_with(|| Series {
            counter,
            values: BTreeMap::new(),
        });
        if s.counter != counter {
            let kind = if s.counter { "a counter" } else { "a gauge" };
            return Err(format!("metric \"{name}\" is already {kind}"));
        }
        if !s.values.contains_key(&labels) && s.values.len() >= MAX_SERIES_PER_NAME {
            return Err(format!(
                "metric \"{name}\" has {MAX_SERIES_PER_NAME} label sets already"
            ));
        }
        apply(s.values.entry(labels).or_insert(0));
        Ok(())
    }

    /// A gauge's current value.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<i64> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.get(name).filter(|s| !s.counter)?;
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        key.sort();
        s.values.get(&key).copied()
    }
}

impl Collector for Reported {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for (name, s) in series.iter() {
            let (kind, help) = if s.counter {
                (MetricType::Counter, "Counted by a plugin")
            } else {
                (MetricType::Gauge, "Set by a plugin")
            };
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (labels, value) in &s.values {
                let mut family = metric.encode_family(labels)?;
                if s.counter {
                    let v = u64::try_from(*value).unwrap_or(0);
                    family.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                } else {
                    family.encode_gauge(value)?;
                }
            }
        }
        Ok(())
    }
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
    reported: Arc<Reported>,
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
        let reported = Arc::new(Reported::default());
        registry.register_collector(Box::new(reported.clone()));
        Metrics {
            registry,
            reported,
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

/// How many (method, status) pairs a route keeps handles for; a route
/// seeing more looks the rest up by label set, as an unrouted request does.
const ROUTE_SERIES: usize = 16;

/// A route's handles, resolved when the route is built, so a request
/// neither formats nor hashes a label set.
pub struct RouteMetrics {
    route: String,
    duration: Histogram,
    upstream: Histogram,
    requests: Family<RequestLabels, Counter>,
    /// The route's (method, status) counters seen so far: a handful, so a
    /// scan beats a hash. Read-locked on the request path, as the families
    /// are, so workers do not queue behind each other.
    seen: std::sync::RwLock<Vec<(http::Method, u16, Counter)>>,
}

impl RouteMetrics {
    pub fn request(&self, method: &http::Method, status: u16, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        let found = |seen: &[(http::Method, u16, Counter)]| {
            seen.iter()
                .find(|(m, s, _)| *s == status && m == method)
                .map(|(_, _, c)| c.inc())
                .is_some()
        };
        if found(&self.seen.read().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if found(&seen) {
            return;
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                route: self.route.clone(),
                method: method.as_str().to_owned(),
                status,
            })
            .clone();
        counter.inc();
        if seen.len() < ROUTE_SERIES {
            seen.push((method.clone(), status, counter));
        }
    }

    pub fn upstream(&self, took: Duration) {
        self.upstream.observe(took.as_secs_f64());
    }
}

impl Metrics {
    /// The handles of a route sending to `upstream`.
    pub fn route(&self, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            duration: self
                .request_duration
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
            upstream: self
                .upstream_duration
                .get_or_create(&UpstreamLabel {
                    upstream: upstream.to_owned(),
                })
                .clone(),
            requests: self.requests.clone(),
            seen: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// Counts a request no route took (`route=""`).
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

    /// `host.counter-add` from a plugin.
    pub fn plugin_counter(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
        delta: u64,
    ) -> Result<(), String> {
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        self.reported
            .update(name, labels, true, |v| *v = v.saturating_add(delta))
    }

    /// `host.gauge-set` from a plugin.
    pub fn plugin_gauge(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
        value: i64,
    ) -> Result<(), String> {
        self.reported.update(name, labels, false, |v| *v = value)
    }

    /// A gauge a plugin set (the circuit breaker's state, say).
    pub fn plugin_gauge_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<i64> {
        self.reported.gauge(name, labels)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn a_route_counts_every_method_and_status_past_its_kept_handles() {
        let m = Metrics::default();
        let route = m.route("orders", "shop");
        // More (method, status) pairs than the route keeps handles for.
        for status in 200..200 + ROUTE_SERIES as u16 + 4 {
            route.request(&http::Method::GET, status, Duration::from_millis(1));
            route.request(&http::Method::GET, status, Duration::from_millis(1));
        }
        route.request(&http::Method::POST, 201, Duration::from_millis(1));
        route.upstream(Duration::from_millis(1));
        let text = m.encode();
        for status in 200..200 + ROUTE_SERIES as u16 + 4 {
            let line = format!(
                "gatehouse_requests_total{{route=\"orders\",method=\"GET\",status=\"{status}\"}} 2"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains(
            "gatehouse_requests_total{route=\"orders\",method=\"POST\",status=\"201\"} 1"
        ));
        let count = 2 * (ROUTE_SERIES + 4) + 1;
        assert!(
            text.contains(&format!(
                "gatehouse_request_duration_seconds_count{{route=\"orders\"}} {count}"
            )),
            "{text}"
        );
        assert!(text.contains("gatehouse_upstream_duration_seconds_count{upstream=\"shop\"} 1"));
    }

    #[test]
    fn plugin_metrics_are_checked_and_encoded() {
        let m = Metrics::default();
        m.plugin_counter("jobs_done", labels(&[("route", "a")]), 2)
            .unwrap();
        m.plugin_counter("jobs_done", labels(&[("route", "a")]), 3)
            .unwrap();
        m.plugin_gauge("queue_depth", labels(&[]), -4).unwrap();
        let text = m.encode();
        assert!(
            text.contains("gatehouse_jobs_done_total{route=\"a\"} 5"),
            "{text}"
        );
        assert!(text.contains("gatehouse_queue_depth -4"), "{text}");

        for bad in ["Requests", "requests", "x_total", "9lives", "a-b"] {
            assert!(m.plugin_gauge(bad, vec![], 1).is_err(), "{bad}");
        }
        assert!(
            m.plugin_gauge("jobs_done", vec![], 1).is_err(),
            "already a counter"
        );
        assert!(m.plugin_gauge("g", labels(&[("Bad", "x")]), 1).is_err());
        let nine: Vec<(String, String)> = (0..9).map(|i| (format!("l{i}"), "v".into())).collect();
        assert!(m.plugin_gauge("g", nine, 1).is_err());
        for i in 0..MAX_SERIES_PER_NAME {
            m.plugin_gauge("wide", labels(&[("n", &i.to_string())]), 1)
                .unwrap();
        }
        assert!(
            m.plugin_gauge("wide", labels(&[("n", "one-more")]), 1)
                .is_err()
        );
        assert!(
            m.plugin_gauge("wide", labels(&[("n", "0")]), 2).is_ok(),
            "existing sets still update"
        );
    }
}
