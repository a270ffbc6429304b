//! The config file as written: serde structs, strict about unknown keys.

use super::units::{Duration, Size};
use super::{Balance, OnError};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Spanned<String>,
    pub plugins_dir: Option<String>,
    #[serde(default)]
    pub workers: usize,
    pub max_body_size: Option<Size>,
    pub header_read_timeout: Option<Duration>,
    pub max_header_size: Option<Size>,
    pub max_headers: Option<usize>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub shutdown_timeout: Option<Duration>,
    pub admin_listen: Option<Spanned<String>>,
    pub admin_token: Option<String>,
    pub compile_cache: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub targets: Spanned<Vec<Spanned<String>>>,
    pub balance: Option<Balance>,
    pub connect_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_idle_per_target: Option<usize>,
    pub health: Option<Spanned<RawHealth>>,
    pub outlier: Option<Spanned<RawOutlier>>,
    pub retries: Option<Spanned<RawRetries>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub attempts: u32,
    pub on: Option<Vec<String>>,
    pub backoff: Option<Duration>,
    pub methods: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: String,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub unhealthy_after: Option<u32>,
    pub healthy_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub consecutive_failures: Option<u32>,
    pub eject_for: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    pub path: Spanned<String>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub upstream: Spanned<String>,
    pub strip_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub plugins: Vec<RawPluginEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginEntry {
    pub plugin: Spanned<String>,
    pub config: Option<Spanned<toml::Table>>,
    pub on_error: Option<OnError>,
    pub limits: Option<RawLimits>,
    pub allow_hosts: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory: Option<Spanned<Size>>,
    pub timeout: Option<Spanned<Duration>>,
    pub instances: Option<Spanned<usize>>,
    pub fetch_timeout: Option<Spanned<Duration>>,
}
