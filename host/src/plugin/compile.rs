//! Turning `.wasm` bytes into machine code, in one tier or two.
//!
//! Cranelift, the optimising compiler, makes the fastest code but needs
//! seconds of CPU for the built-in plugins; Winch, a baseline compiler,
//! needs about a fifth of that and its code runs a chain of built-ins about
//! 15 % slower. A tiered runtime (the gateway's `run`) serves a plugin that
//! is in no cache with Winch's code at once and compiles it with Cranelift
//! on one background thread; when that is done the plugin's code is swapped
//! and its pools start new instances from the optimised code, retiring the
//! baseline ones as their calls end. Only optimised code is kept in the
//! memory and disk caches, so a restart, or a reload of a plugin optimised
//! before, starts at full speed.

use super::disk_cache::DiskCache;
use super::host::StoreData;
use super::{Compiled, LoadedPlugin};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak, mpsc};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Strategy};

/// Compiled components kept for reuse.
const COMPILED_CACHE: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(64) {
    Some(n) => n,
    None => panic!("the compiled-component cache holds at least one"),
};

/// One engine (a compiler and the runtime for its code) and the plugin
/// contract linked into it. Instances of a component run in stores of the
/// engine that compiled it.
pub(super) struct Tier {
    pub engine: Engine,
    pub linker: Linker<StoreData>,
}

impl Tier {
    fn new(mut config: wasmtime::Config) -> anyhow::Result<Tier> {
        let engine = super::new_engine(&mut config)?;
        let linker = super::contract_linker(&engine)?;
        Ok(Tier { engine, linker })
    }
}

pub(super) struct Compiler {
    pub optimising: Tier,
    tiered: bool,
    /// Made when a tiered runtime first needs it (a start with every
    /// plugin in the cache never does); `None` if it could not be.
    baseline: OnceLock<Option<Tier>>,
    cache: Mutex<Cache>,
    disk: OnceLock<DiskCache>,
    /// To the optimising thread, started with the first baseline compile.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// While true the optimising thread waits before its next compile.
    held: (Mutex<bool>, Condvar),
}

struct Cache {
    /// Optimised code by the SHA-256 of the `.wasm`: loading the same file
    /// again (another gateway, a reload) skips the compiler. Bounded, so
    /// replaced versions do not pile up.
    optimised: lru::LruCache<[u8; 32], Component>,
    /// Files served with baseline code while Cranelift compiles them.
    pending: HashMap<[u8; 32], Pending>,
}

struct Pending {
    baseline: Component,
    /// The loaded plugins to give the optimised code to.
    waiting: Vec<Weak<LoadedPlugin>>,
}

/// A file for the optimising thread.
struct Job {
    key: [u8; 32],
    bytes: Vec<u8>,
}

impl Compiler {
    pub fn new(tiered: bool) -> anyhow::Result<Compiler> {
        let mut config = super::engine_config(Strategy::Cranelift);
        // Tiered, the optimising compiler works in the background on one
        // thread: the baseline compiles and the traffic keep the others.
        config.parallel_compilation(!tiered);
        Ok(Compiler {
            optimising: Tier::new(config)?,
            tiered,
            baseline: OnceLock::new(),
            cache: Mutex::new(Cache {
                optimised: lru::LruCache::new(COMPILED_CACHE),
                pending: HashMap::new(),
            }),
            disk: OnceLock::new(),
            jobs: Mutex::new(None),
            held: (Mutex::new(false), Condvar::new()),
        })
    }

    pub fn use_disk_cache(&self, disk: DiskCache) {
        let _ = self.disk.set(disk);
    }

    /// The engines whose epochs the deadline ticker advances.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        let baseline = self.baseline.get().and_then(Option::as_ref);
        std::iter::once(&self.optimising.engine).chain(baseline.map(|t| &t.engine))
    }

    fn baseline(&self) -> Option<&Tier> {
        if !self.tiered {
            return None;
        }
        self.baseline
            .get_or_init(|| {
                Tier::new(super::engine_config(Strategy::Winch))
                    .inspect_err(|e| {
                        tracing::warn!(
                            "plugins are compiled by the optimising compiler only: {e:#}"
                        )
                    })
                    .ok()
            })
            .as_ref()
    }

    /// The tier a component of this origin runs in.
    pub fn tier(&self, compiled: Compiled) -> &Tier {
        match compiled {
            Compiled::Baseline => self.baseline().unwrap_or(&self.optimising),
            _ => &self.optimising,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The compiled component for `bytes` (whose SHA-256 is `key`) and
    /// where it came from: memory, the disk cache, the baseline compiler
    /// (optimising follows in the background) or the optimising one.
    pub fn compile(
        self: &Arc<Self>,
        key: [u8; 32],
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Compiled)> {
        {
            let mut cache = self.lock();
            if let Some(c) = cache.optimised.get(&key) {
                return Ok((c.clone(), Compiled::Memory));
            }
            if let Some(p) = cache.pending.get(&key) {
                return Ok((p.baseline.clone(), Compiled::Baseline));
            }
        }
        if let Some(c) = self
            .disk
            .get()
            .and_then(|d| d.load(&self.optimising.engine, &key))
        {
            self.lock().optimised.put(key, c.clone());
            return Ok((c, Compiled::Disk));
        }
        if let Some(baseline) = self.baseline() {
            // A component Winch cannot compile (a proposal it lacks) is
            // compiled by Cranelift now, which also words any real error.
            match Component::from_binary(&baseline.engine, bytes) {
                Ok(c) => {
                    super::release_freed_memory();
                    self.optimise_later(key, bytes, &c);
                    return Ok((c, Compiled::Baseline));
                }
                Err(e) => tracing::debug!("the baseline compiler refused a plugin: {e:#}"),
            }
        }
        // Compiled outside the lock: other plugins may compile meanwhile.
        let component = Component::from_binary(&self.optimising.engine, bytes)?;
        super::release_freed_memory();
        self.keep(key, &component);
        Ok((component, Compiled::Compiler))
    }

    /// Puts optimised code in the memory and disk caches.
    fn keep(&self, key: [u8; 32], component: &Component) {
        self.lock().optimised.put(key, component.clone());
        if let Some(disk) = self.disk.get() {
            disk.store(&key, component);
        }
    }

    fn optimise_later(self: &Arc<Self>, key: [u8; 32], bytes: &[u8], baseline: &Component) {
        {
            let mut cache = self.lock();
            if cache.pending.contains_key(&key) {
                return; // loaded twice at once: one job is enough
            }
            cache.pending.insert(
                key,
                Pending {
                    baseline: baseline.clone(),
                    waiting: Vec::new(),
                },
            );
        }
        let job = Job {
            key,
            bytes: bytes.to_vec(),
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let sender = jobs.get_or_insert_with(|| self.start_optimiser());
        if sender.send(job).is_err() {
            // The thread is gone (it could not start): serve baseline code.
            self.lock().pending.remove(&key);
        }
    }

    /// One thread compiles every queued file in turn (Cranelift spreads each
    /// compile over the cores). It holds the compiler weakly, so it ends
    /// when the runtime is dropped and the queue closes.
    fn start_optimiser(self: &Arc<Self>) -> mpsc::Sender<Job> {
        let (tx, rx) = mpsc::channel::<Job>();
        let weak = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("gatehouse-optimise".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match weak.upgrade() {
                        Some(compiler) => {
                            compiler.wait_while_held();
                            compiler.optimise(job)
                        }
                        None => break,
                    }
                }
            });
        if let Err(e) = started {
            tracing::warn!(
                "plugins stay on baseline code: the optimising thread did not start: {e}"
            );
        }
        tx
    }

    /// Holds (or releases) background optimisation: plugins keep running
    /// baseline code meanwhile. For the tests of baseline code.
    pub fn hold(&self, held: bool) {
        let (lock, wake) = &self.held;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = held;
        wake.notify_all();
    }

    fn wait_while_held(&self) {
        let (lock, wake) = &self.held;
        let held = lock.lock().unwrap_or_else(|e| e.into_inner());
        drop(
            wake.wait_while(held, |held| *held)
                .unwrap_or_else(|e| e.into_inner()),
        );
    }

    fn optimise(&self, job: Job) {
        let compiled = Component::from_binary(&self.optimising.engine, &job.bytes);
        super::release_freed_memory();
        let waiting = {
            let mut cache = self.lock();
            let pending = cache.pending.remove(&job.key);
            if let Ok(c) = &compiled {
                cache.optimised.put(job.key, c.clone());
            }
            pending.map(|p| p.waiting).unwrap_or_default()
        };
        let component = match compiled {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "a plugin stays on baseline code: the optimising compiler failed: {e:#}"
                );
                return;
            }
        };
        if let Some(disk) = self.disk.get() {
            disk.store(&job.key, &component);
        }
        for plugin in waiting.iter().filter_map(Weak::upgrade) {
            plugin.upgrade(&self.optimising, &component);
        }
    }

    /// Has `plugin`, served with baseline code, upgraded when the optimised
    /// code is ready (at once if it already is).
    pub fn when_optimised(&self, key: [u8; 32], plugin: &Arc<LoadedPlugin>) {
        let ready = {
            let mut cache = self.lock();
            match cache.pending.get_mut(&key) {
                Some(p) => {
                    p.waiting.retain(|w| w.strong_count() > 0);
                    p.waiting.push(Arc::downgrade(plugin));
                    None
                }
                None => cache.optimised.get(&key).cloned(),
            }
        };
        if let Some(component) = ready {
            plugin.upgrade(&self.optimising, &component);
        }
    }
}
