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
    /// How the last reload went, for the admin API.
    last_reload: std::sync::Mutex<Option<ReloadReport>>,
    /// Kept alive while the files are watched.
    watcher: std::sync::Mutex<Option<notify::RecommendedWatcher>>,
}

/// The outcome of the last reload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// Reloads tried since start, this one included.
    pub number: u64,
    pub at_ms: u64,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// Quiet time after the last file event before a reload: a file still
/// being written keeps producing events, so a half-written one is not read.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

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
            last_reload: Default::default(),
            watcher: Default::default(),
        }
    }

    /// Serves `gateway`, which cannot be reloaded.
    pub fn fixed(gateway: Gateway) -> Live {
        Live {
            current: ArcSwap::from_pointee(gateway),
            source: None,
            reloading: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            last_reload: Default::default(),
            watcher: Default::default(),
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
        let errors = match &result {
            Ok(_) => Vec::new(),
            Err(ReloadError::Invalid(errs)) => errs.0.iter().map(|e| e.to_string()).collect(),
            Err(other) => vec![other.to_string()],
        };
        let mut last = self.last_reload.lock().unwrap_or_else(|p| p.into_inner());
        let number = last.as_ref().map_or(1, |r| r.number + 1);
        *last = Some(ReloadReport {
            number,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            ok: result.is_ok(),
            errors,
        });
        drop(last);
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
        let new = Gateway::rebuild(&config, &source.runtime, Some(&old))
            .await
            .map_err(ReloadError::Invalid)?;
        Ok(new.with_access_log_of(&old))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn last_reload(&self) -> Option<ReloadReport> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads whenever the config file or a `.wasm` file in the plugins
    /// folder changes (is written, replaced, added or removed), once the
    /// files have been quiet for a moment.
    pub fn watch(self: &Arc<Self>) -> notify::Result<()> {
        use notify::{RecursiveMode, Watcher};
        let Some(source) = &self.source else {
            return Ok(());
        };
        let config_file = source.path.file_name().map(|n| n.to_owned());
        let config_dir = match source.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let plugins_dir = self.gateway().server.plugins_dir.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let relevant = event.paths.iter().any(|p| {
                    p.extension().is_some_and(|e| e == "wasm")
                        || (p.file_name().map(|n| n.to_owned()) == config_file)
                });
                if relevant {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
        if plugins_dir.is_dir() && plugins_dir != config_dir {
            watcher.watch(&plugins_dir, RecursiveMode::NonRecursive)?;
        }
        *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
        let live = Arc::downgrade(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Wait until the files have been quiet for DEBOUNCE.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                let Some(live) = live.upgrade() else { break };
                tracing::info!("files changed: reloading");
                // The outcome, either way, is logged and kept for the admin API.
                let _ = live.reload().await;
            }
        });
        Ok(())
    }
}
