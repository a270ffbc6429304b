//! The TOML configuration: parsing, validation and the validated model.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and every problem is
//! reported with its file, line and column. Validation collects every error
//! rather than stopping at the first, so `gatehouse check` can list them all.

mod error;
mod net;
mod raw;
mod units;
mod upstream;

pub use error::{ConfigError, ConfigErrors, Location};
pub use net::{AllowedHost, TrustedProxies};
pub use units::{Duration, Size};
pub use upstream::{Balance, HealthCheck, Outlier, Retries, Upstream};

use crate::router::Pattern;
use error::SourceText;
use http::{HeaderName, HeaderValue, Method};
use raw::{RawConfig, RawPluginEntry, RawRoute};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The most memory any plugin entry may be given: the pooling allocator
/// reserves address space for this much per instance slot.
pub const MAX_PLUGIN_MEMORY: u64 = 256 * 1024 * 1024;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub server: Server,
    pub upstreams: BTreeMap<String, Upstream>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    /// Absolute, or relative to the working directory: already resolved
    /// against the config file's folder.
    pub plugins_dir: PathBuf,
    /// Tokio worker threads; 0 means one per core.
    pub workers: usize,
    /// Cap on a body that a plugin asked to see (buffered in memory): 413 past it.
    pub max_body_size: u64,
    /// A client must send its whole request head within this time.
    pub header_read_timeout: std::time::Duration,
    /// Most request header bytes accepted (431 past it).
    pub max_header_size: usize,
    /// Most request headers accepted (431 past it).
    pub max_headers: usize,
    /// Peers whose `X-Forwarded-For` names the client (empty: trust none).
    pub trusted_proxies: TrustedProxies,
    /// How long requests in flight may take to finish once shutdown starts.
    pub shutdown_timeout: std::time::Duration,
    /// The admin API's own listener; off when `None`.
    pub admin_listen: Option<SocketAddr>,
    /// A bearer token the admin API requires (always, when set).
    pub admin_token: Option<String>,
    /// Where compiled plugins are kept across restarts; `None` when off.
    pub compile_cache: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// The path as written.
    pub path: String,
    pub pattern: Pattern,
    /// `None` matches every method.
    pub methods: Option<Vec<Method>>,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub upstream: String,
    pub strip_prefix: Option<String>,
    pub plugins: Vec<PluginEntry>,
    pub location: Location,
}

/// What to do when a plugin fails (traps, runs out of time or memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Fail the request with 503.
    #[default]
    FailClosed,
    /// Skip the plugin and carry on with the chain.
    FailOpen,
}

impl OnError {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail-closed",
            OnError::FailOpen => "fail-open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap per instance, in bytes.
    pub memory: u64,
    /// CPU deadline per call.
    pub timeout: std::time::Duration,
    /// Most instances serving at once; further requests wait for one, so a
    /// burst on one route cannot take every instance slot of the gateway.
    pub instances: usize,
    /// The longest an outbound request may take, connect to last body byte.
    pub fetch_timeout: std::time::Duration,
}

/// The longest `limits.fetch_timeout` may be.
pub const MAX_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most instances one entry may be allowed.
pub const MAX_INSTANCES_PER_ENTRY: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 32 * 1024 * 1024,
            timeout: std::time::Duration::from_millis(50),
            instances: 128,
            fetch_timeout: std::time::Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// The plugin's name: `NAME.wasm` in the plugins folder.
    pub plugin: String,
    /// The entry's `config` table, as JSON for the plugin's `init`.
    pub config_json: String,
    pub on_error: OnError,
    pub limits: Limits,
    /// Hosts the entry's outbound requests may reach (none: no outbound requests).
    pub allow_hosts: Vec<AllowedHost>,
    /// Where the entry's `plugin = …` stands, for error messages.
    pub location: Location,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text; `path` names it in errors and
    /// anchors the relative `plugins_dir`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let src = SourceText { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigErrors(vec![src.error(span, e.message().trim_end().to_owned())])
        })?;
        Validator {
            src: &src,
            errors: Vec::new(),
        }
        .validate(raw)
    }
}

struct Validator<'a> {
    src: &'a SourceText<'a>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err<T>(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) -> Option<T> {
        self.errors.push(self.src.error(span, message));
        None
    }

    fn validate(mut self, raw: RawConfig) -> Result<Config, ConfigErrors> {
        let server = self.server(raw.server);
        let mut upstreams = BTreeMap::new();
        for (name, up) in raw.upstreams {
            if let Some(u) = self.upstream(name.clone(), up) {
                upstreams.insert(name, u);
            }
        }
        let mut routes: Vec<Route> = Vec::new();
        let mut names: BTreeMap<String, Location> = BTreeMap::new();
        for r in raw.routes {
            let name_span = r.name.span();
            let name = r.name.get_ref().clone();
            if let Some(first) = names.get(&name) {
                let msg = format!("duplicate route name \"{name}\" (first defined at {first})");
                self.err::<()>(name_span.clone(), msg);
            } else {
                names.insert(name.clone(), self.src.locate(name_span));
            }
            if let Some(route) = self.route(r, &upstreams) {
                self.check_conflict(&route, &routes);
                routes.push(route);
            }
        }
        if self.errors.is_empty()
            && let Some(server) = server
        {
            return Ok(Config {
                file: self.src.file.to_path_buf(),
                server,
                upstreams,
                routes,
            });
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(self.errors))
    }

    fn server(&mut self, raw: raw::RawServer) -> Option<Server> {
        let listen = match raw.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => self.err(
                raw.listen.span(),
                format!(
                    "invalid listen address \"{}\": expected ip:port, e.g. \"127.0.0.1:8080\"",
                    raw.listen.get_ref()
                ),
            ),
        };
        let base = self.src.file.parent().unwrap_or(Path::new("."));
        let plugins_dir = base.join(raw.plugins_dir.as_deref().unwrap_or("plugins"));
        let max_header_size = raw.max_header_size.map_or(64 * 1024, |s| s.0 as usize);
        let admin_token = raw.admin_token.filter(|t| !t.is_empty());
        let mut admin_listen = None;
        if let Some(a) = raw.admin_listen {
            match a.get_ref().parse::<SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() && admin_token.is_none() => {
                    let msg = format!(
                        "admin_listen \"{}\" is not a loopback address: set server.admin_token so the admin API is not open to the network",
                        a.get_ref()
                    );
                    self.err::<()>(a.span(), msg);
                }
                Ok(addr) => admin_listen = Some(addr),
                Err(_) => {
                    let msg = format!(
                        "invalid admin_listen address \"{}\": expected ip:port, e.g. \"127.0.0.1:9901\"",
                        a.get_ref()
                    );
                    self.err::<()>(a.span(), msg);
                }
            }
        }
        let mut nets = Vec::new();
        for p in raw.trusted_proxies.unwrap_or_default() {
            match TrustedProxies::parse_one(p.get_ref()) {
                Ok(n) => nets.push(n),
                Err(msg) => {
                    self.err::<()>(p.span(), format!("server.trusted_proxies: {msg}"));
                }
            }
        }
        let compile_cache = match raw.compile_cache {
            None => default_compile_cache(),
            Some(c) if c.get_ref() == "off" => None,
            Some(c) if c.get_ref().trim().is_empty() => self.err(
                c.span(),
                "server.compile_cache is empty: name a folder for compiled plugins, or \"off\"",
            ),
            Some(c) => Some(base.join(c.get_ref())),
        };
        Some(Server {
            listen: listen?,
            plugins_dir,
            workers: raw.workers,
            max_body_size: raw.max_body_size.map_or(8 * 1024 * 1024, |s| s.0),
            header_read_timeout: raw
                .header_read_timeout
                .map_or(std::time::Duration::from_secs(10), |d| d.0),
            max_header_size: max_header_size.max(8192),
            max_headers: raw.max_headers.unwrap_or(100),
            trusted_proxies: TrustedProxies::new(nets),
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(std::time::Duration::from_secs(30), |d| d.0),
            admin_listen,
            admin_token,
            compile_cache,
        })
    }

    fn route(&mut self, r: RawRoute, upstreams: &BTreeMap<String, Upstream>) -> Option<Route> {
        let name = r.name.get_ref().clone();
        let location = self.src.locate(r.name.span());
        let pattern = match Pattern::parse(r.path.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => self.err(
                r.path.span(),
                format!(
                    "route \"{name}\": invalid path \"{}\": {e}",
                    r.path.get_ref()
                ),
            ),
        };
        let methods = match r.methods {
            None => Some(None),
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for m in list {
                    match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                        Ok(method) => out.push(method),
                        Err(_) => {
                            ok = false;
                            let msg =
                                format!("route \"{name}\": invalid method \"{}\"", m.get_ref());
                            self.err::<()>(m.span(), msg);
                        }
                    }
                }
                ok.then_some(Some(out))
            }
        };
        let mut headers = Vec::new();
        for (k, v) in r.headers {
            let parsed = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v.get_ref()),
            );
            match parsed {
                (Ok(n), Ok(val)) => headers.push((n, val)),
                _ => {
                    let msg = format!(
                        "route \"{name}\": invalid header match \"{k}\" = \"{}\"",
                        v.get_ref()
                    );
                    self.err::<()>(v.span(), msg);
                }
            }
        }
        headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let upstream = r.upstream.get_ref().clone();
        if !upstreams.contains_key(&upstream) {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            let expected = if known.is_empty() {
                "no upstreams are defined".to_owned()
            } else {
                format!("expected one of: {}", known.join(", "))
            };
            self.err::<()>(
                r.upstream.span(),
                format!("route \"{name}\": unknown upstream \"{upstream}\" ({expected})"),
            );
        }
        let strip_prefix = match r.strip_prefix {
            None => Some(None),
            Some(p) => {
                let prefix = p.get_ref().trim_end_matches('/').to_owned();
                let fits = pattern
                    .as_ref()
                    .is_none_or(|pat| pat.has_literal_prefix(&prefix));
                if !prefix.starts_with('/') || !fits {
                    let msg = format!(
                        "route \"{name}\": strip_prefix \"{}\" must be a leading part of the path \"{}\"",
                        p.get_ref(),
                        r.path.get_ref()
                    );
                    self.err(p.span(), msg)
                } else {
                    Some(Some(prefix))
                }
            }
        };
        let mut plugins = Vec::new();
        for entry in r.plugins {
            if let Some(p) = self.plugin_entry(&name, entry) {
                plugins.push(p);
            }
        }
        Some(Route {
            name,
            path: r.path.get_ref().clone(),
            pattern: pattern?,
            methods: methods?,
            host: r.host.map(|h| h.to_ascii_lowercase()),
            headers,
            upstream,
            strip_prefix: strip_prefix?,
            plugins,
            location,
        })
    }

    fn plugin_entry(&mut self, route: &str, e: RawPluginEntry) -> Option<PluginEntry> {
        let plugin = e.plugin.get_ref().clone();
        let valid_name = !plugin.is_empty()
            && plugin
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            let msg = format!(
                "route \"{route}\": invalid plugin name \"{plugin}\": expected lower-case letters, digits, '-' or '_' (the file NAME.wasm)"
            );
            return self.err(e.plugin.span(), msg);
        }
        let mut limits = Limits::default();
        if let Some(l) = e.limits {
            if let Some(m) = l.memory {
                if m.get_ref().0 > MAX_PLUGIN_MEMORY || m.get_ref().0 < 64 * 1024 {
                    let msg = format!(
                        "route \"{route}\", plugin \"{plugin}\": memory limit {} is out of range: expected 64KiB to 256MiB",
                        m.get_ref()
                    );
                    return self.err(m.span(), msg);
                }
                limits.memory = m.get_ref().0;
            }
            if let Some(t) = l.timeout {
                if t.get_ref().0.is_zero() {
                    let msg = format!(
                        "route \"{route}\", plugin \"{plugin}\": timeout must be more than 0"
                    );
                    return self.err(t.span(), msg);
                }
                limits.timeout = t.get_ref().0;
            }
            if let Some(n) = l.instances {
                if *n.get_ref() == 0 || *n.get_ref() > MAX_INSTANCES_PER_ENTRY {
                    let msg = format!(
                        "route \"{route}\", plugin \"{plugin}\": instances {} is out of range: expected 1 to {MAX_INSTANCES_PER_ENTRY}",
                        n.get_ref()
                    );
                    return self.err(n.span(), msg);
                }
                limits.instances = *n.get_ref();
            }
            if let Some(t) = l.fetch_timeout {
                let d = t.get_ref().0;
                if d.is_zero() || d > MAX_FETCH_TIMEOUT {
                    let msg = format!(
                        "route \"{route}\", plugin \"{plugin}\": fetch_timeout {} is out of range: expected more than 0 and at most 60s",
                        t.get_ref()
                    );
                    return self.err(t.span(), msg);
                }
                limits.fetch_timeout = d;
            }
        }
        let mut allow_hosts = Vec::new();
        for h in e.allow_hosts.unwrap_or_default() {
            match AllowedHost::parse(h.get_ref()) {
                Ok(a) => allow_hosts.push(a),
                Err(msg) => {
                    return self.err(
                        h.span(),
                        format!("route \"{route}\", plugin \"{plugin}\": {msg}"),
                    );
                }
            }
        }
        let config_json = match e.config {
            None => "{}".to_owned(),
            Some(v) => match serde_json::to_string(v.get_ref()) {
                Ok(s) => s,
                Err(err) => return self.err(v.span(), format!("route \"{route}\", plugin \"{plugin}\": config cannot be passed to the plugin: {err}")),
            },
        };
        Some(PluginEntry {
            plugin,
            config_json,
            on_error: e.on_error.unwrap_or_default(),
            limits,
            allow_hosts,
            location: self.src.locate(e.plugin.span()),
        })
    }

    /// Two routes that match the same requests: the later could never win.
    fn check_conflict(&mut self, route: &Route, earlier: &[Route]) {
        for other in earlier {
            let overlap = match (&route.methods, &other.methods) {
                (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                _ => true,
            };
            if overlap
                && route.pattern.same_shape(&other.pattern)
                && route.host == other.host
                && route.headers == other.headers
            {
                let msg = format!(
                    "route \"{}\" conflicts with route \"{}\" (defined at {}): same path, host, headers and methods, so it could never match",
                    route.name, other.name, other.location
                );
                self.errors.push(route.location.error(msg));
                return;
            }
        }
    }
}

/// `$XDG_CACHE_HOME/gatehouse/compiled`, else `~/.cache/gatehouse/compiled`.
pub fn default_compile_cache() -> Option<PathBuf> {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_CACHE_HOME")
        .or_else(|| non_empty("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("gatehouse").join("compiled"))
}
