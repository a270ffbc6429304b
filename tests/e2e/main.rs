//! End-to-end tests: the real gateway on 127.0.0.1:0 in front of real echo
//! upstreams, with real plugin components built from this repository.

mod access_log;
mod admin;
mod api_key;
mod c_plugin;
mod cache;
mod circuit_breaker;
mod compile_cache;
mod config;
mod cors;
mod go_plugin;
mod health;
mod hot_swap;
mod js_plugin;
mod jwt_auth;
mod outbound;
mod plugin_cli;
mod plugins;
mod proxy;
mod python_plugin;
mod quickstart;
mod rate_limit;
mod reload;
mod retries;
mod routing;
mod sandbox;
mod shutdown;
mod tiered;
mod transform;
mod trusted_proxies;
