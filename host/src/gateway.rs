//! The gateway built from a config: compiled router, upstream pools and
//! every route's plugin chain, loaded and initialised.

use crate::config::{Config, ConfigError, ConfigErrors, Server};
use crate::plugin::{Chain, EntryPool, LoadedPlugin, Runtime};
use crate::router::{Predicates, Router};
use crate::upstream::UpstreamPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Warm instances kept per plugin entry.
const MAX_IDLE_PER_ENTRY: usize = 64;

pub struct RouteRuntime {
    pub name: Arc<str>,
    pub upstream: Arc<UpstreamPool>,
    pub strip_prefix: Option<String>,
    pub chain: Chain,
    pub metrics: crate::metrics::RouteMetrics,
}

pub struct Gateway {
    pub(crate) router: Router,
    pub(crate) routes: Vec<RouteRuntime>,
    pub(crate) server: Server,
    /// The config it was built from, for the admin API.
    pub(crate) config: Config,
    /// The plugins it loaded, by name.
    pub(crate) plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) access_log: Option<Arc<crate::access_log::AccessLog>>,
}

impl Gateway {
    /// Loads every plugin the config names and initialises every entry with
    /// its config. Every problem found is reported, each where it stands.
    pub async fn build(config: &Config, runtime: &Runtime) -> Result<Gateway, ConfigErrors> {
        Gateway::rebuild(config, runtime, None).await
    }

    /// As [`Gateway::build`], for a reload: a plugin whose file has been
    /// removed keeps the version `previous` loaded (with a warning).
    pub async fn rebuild(
        config: &Config,
        runtime: &Runtime,
        previous: Option<&Gateway>,
    ) -> Result<Gateway, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let plugins = load_plugins(config, runtime, previous, &mut errors).await;
        let upstreams: BTreeMap<&str, Arc<UpstreamPool>> = config
            .upstreams
            .iter()
            .map(|(name, u)| (name.as_str(), UpstreamPool::new(u)))
            .collect();

        let mut routes = Vec::new();
        for route in &config.routes {
            let name: Arc<str> = Arc::from(route.name.as_str());
            let mut entries = Vec::new();
            for entry in &route.plugins {
                let Some(plugin) = plugins.get(&entry.plugin) else {
                    continue;
                };
                match EntryPool::new(
                    plugin.clone(),
                    entry,
                    name.clone(),
                    runtime.services.clone(),
                    MAX_IDLE_PER_ENTRY,
                )
                .await
                {
                    Ok(pool) => entries.push(pool),
                    Err(e) => errors.push(entry.location.error(format!(
                        "route \"{}\", plugin \"{}\": {e}",
                        route.name, entry.plugin
                    ))),
                }
            }
            let Some(upstream) = upstreams.get(route.upstream.as_str()) else {
                continue;
            };
            let chain = Chain::new(entries);
            routes.push(RouteRuntime {
                metrics: runtime.services.metrics.route(&name, &route.upstream),
                name,
                upstream: upstream.clone(),
                strip_prefix: route.strip_prefix.clone(),
                chain,
            });
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(ConfigErrors(errors));
        }
        let router = Router::new(
            config
                .routes
                .iter()
                .map(|r| {
                    let predicates = Predicates {
                        methods: r.methods.clone(),
                        host: r.host.clone(),
                        headers: r.headers.clone(),
                    };
                    (r.pattern.clone(), predicates)
                })
                .collect(),
        );
        Ok(Gateway {
            router,
            routes,
            server: config.server.clone(),
            config: config.clone(),
            plugins: plugins.into_iter().collect(),
            metrics: runtime.services.metrics.clone(),
            access_log: None,
        })
    }

    /// Writes a line per request to `log`.
    pub fn with_access_log(mut self, log: crate::access_log::AccessLog) -> Gateway {
        self.access_log = Some(Arc::new(log));
        self
    }

    /// Writes to the same access log as `other` (a reload keeps the log).
    pub fn with_access_log_of(mut self, other: &Gateway) -> Gateway {
        self.access_log = other.access_log.clone();
        self
    }

    /// The plugin entries of every route, for inspection.
    pub fn chains(&self) -> impl Iterator<Item = (&str, &Chain)> {
        self.routes.iter().map(|r| (&*r.name, &r.chain))
    }
}

/// Compiles each plugin named by the config once, from `NAME.wasm`, off
/// the workers serving requests.
async fn load_plugins(
    config: &Config,
    runtime: &Runtime,
    previous: Option<&Gateway>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, Arc<LoadedPlugin>> {
    let dir = &config.server.plugins_dir;
    let mut loaded: HashMap<String, Arc<LoadedPlugin>> = HashMap::new();
    let mut failed: HashMap<String, String> = HashMap::new();
    for route in &config.routes {
        for entry in &route.plugins {
            let name = &entry.plugin;
            if loaded.contains_key(name) {
                continue;
            }
            let message = match failed.get(name) {
                Some(m) => m.clone(),
                None => {
                    let path = dir.join(format!("{name}.wasm"));
                    let kept = previous.and_then(|g| g.plugins.get(name));
                    if let (false, Some(kept)) = (path.exists(), kept) {
                        tracing::warn!(
                            plugin = name.as_str(),
                            file = %path.display(),
                            "the plugin file is gone; the version already loaded keeps serving"
                        );
                        loaded.insert(name.clone(), kept.clone());
                        continue;
                    }
                    let result = if path.is_file() {
                        runtime
                            .load_off_thread(name, &path)
                            .await
                            .map_err(|e| e.to_string())
                    } else {
                        Err(format!(
                            "no file {name}.wasm in the plugins folder {} ({})",
                            dir.display(),
                            available(dir)
                        ))
                    };
                    match result {
                        Ok(p) => {
                            tracing::info!(
                                plugin = name.as_str(),
                                compiled_by = p.compiled().as_str(),
                                "plugin loaded"
                            );
                            loaded.insert(name.clone(), p);
                            continue;
                        }
                        Err(m) => {
                            failed.insert(name.clone(), m.clone());
                            m
                        }
                    }
                }
            };
            errors.push(entry.location.error(format!(
                "route \"{}\", plugin \"{name}\": {message}",
                route.name
            )));
        }
    }
    loaded
}

fn available(dir: &std::path::Path) -> String {
    if !dir.is_dir() {
        return "the folder does not exist".to_owned();
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".wasm")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "it has no plugins".to_owned()
    } else {
        format!("available: {}", names.join(", "))
    }
}
