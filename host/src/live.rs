//! The gateway being served, swappable at run time. A reload builds a whole
//! new [`Gateway`] from the config file (every plugin loaded and
//! initialised) before anything changes, then swaps it in atomically: new
//! requests use the new one, requests in flight finish on the one they
//! started with. State shared by plugins, compiled components and metrics
//! live in the runtime, so they outlive the swap.

use crate::config::{Config, ConfigErrors};
use crate::gateway::Gateway;
use crate::plugin::Runtime;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a reload rebuilds from.
struct Source {
    path: PathBuf,
    runtime: Arc<Runtime>,
}

pub struct Live {
    current: ArcSwap<Gateway>,
    source: Option<Source>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Set when shutdown begins: `/readyz` then says so.
    pub draining: AtomicBool,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file, so it cannot reload")]
    NoSource,
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("{0} cannot change without a restart")]
    NeedsRestart(&'static str),
}

impl Live {
    /// Serves `gateway`; `reload` rebuilds from `path` with `runtime`.
    pub fn new(gateway: Gateway, path: PathBuf, runtime: Arc<Runtime>) -> Live {
        Live {
            current: ArcSwap::from_pointee(gateway),
            source: Some(Source { path, runtime }),
            reloading: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
        }
    }

    /// Serves `gateway`, which cannot be reloaded.
    pub fn fixed(gateway: Gateway) -> Live {
        Live {
            current: ArcSwap::from_pointee(gateway),
            source: None,
            reloading: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
        }
    }

    /// The gateway new requests go to.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Reads the config file again and, if all of it is valid (plugins
    /// loaded, every entry's `init` passing), swaps the new gateway in.
    /// Returns the number of routes now served.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let _one = self.reloading.lock().await;
        let result = self.rebuild().await;
        let old = self.gateway();
        let outcome = match &result {
            Ok(_) => "success",
            Err(_) => "failure",
        };
        old.metrics.reload(outcome);
        match result {
            Ok(new) => {
                let routes = new.config.routes.len();
                self.current.store(Arc::new(new));
                tracing::info!(routes, "configuration reloaded");
                Ok(routes)
            }
            Err(e) => {
                tracing::warn!("reload refused, the running configuration stays:\n{e}");
                Err(e)
            }
        }
    }

    async fn rebuild(&self) -> Result<Gateway, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let config = Config::load(&source.path).map_err(ReloadError::Invalid)?;
        let old = self.gateway();
        if config.server.listen != old.server.listen {
            return Err(ReloadError::NeedsRestart("server.listen"));
        }
        if config.server.admin_listen != old.server.admin_listen
            || config.server.admin_token != old.server.admin_token
        {
            return Err(ReloadError::NeedsRestart("the admin API's settings"));
        }
        let new = Gateway::build(&config, &source.runtime)
            .await
            .map_err(ReloadError::Invalid)?;
        Ok(new.with_access_log_of(&old))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
