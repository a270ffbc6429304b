//! Warm instances per (route, plugin entry): instantiate from the linked
//! `InstancePre`, run `init` once, then reuse across requests. An instance
//! that fails in any way is dropped, never reused; one that reaches its reuse
//! cap is retired so a slow leak inside a plugin cannot grow without end.

use super::bindings::{Hooks, Plugin};
use super::edits::Declared;
use super::exchange::{ContextRes, LentContext, LentRequest, RequestRes, ResponseRes};
use super::host::{EntryTag, Services, StoreData};
use super::outbound::FetchPolicy;
use super::ticker::epochs;
use super::{Code, LoadedPlugin, PluginError};
use crate::config::{Limits, OnError, PluginEntry};
use crate::metrics::PluginMetrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::Store;
use wasmtime::component::{Resource, ResourceTable};

/// Calls an instance serves before it is retired.
const MAX_USES: u32 = 100_000;

/// An instance whose linear memory has grown past this share of its cap is
/// retired after the call it served, and a fresh one takes its place: linear
/// memory never shrinks, and runtimes with a garbage collector (JavaScript,
/// Python, Go) grow towards the cap over many calls. Retiring at the mark
/// replaces them between requests instead of failing the one that hits it.
const RETIRE_AT_MEMORY: f64 = 0.75;

/// The least CPU time an instance gets to start and run `init`.
const INIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// An instance's handles to the context, request and response it is lent
/// for a call. The table entries live as long as the instance: a call swaps
/// the request's values into them and back out, so lending costs no
/// allocation, and between calls they hold empty values (nothing of a
/// finished request stays alive in an idle instance).
pub(super) struct Slots {
    pub ctx: Resource<LentContext>,
    pub req: Resource<LentRequest>,
    pub resp: Resource<ResponseRes>,
}

impl Slots {
    fn new(table: &mut ResourceTable) -> Result<Slots, PluginError> {
        let full = |e: wasmtime::component::ResourceTableError| {
            PluginError::Load(format!("resource table: {e}"))
        };
        Ok(Slots {
            ctx: table.push(Box::new(ContextRes::vacant())).map_err(full)?,
            req: table.push(Box::new(RequestRes::vacant())).map_err(full)?,
            resp: table.push(ResponseRes::vacant()).map_err(full)?,
        })
    }
}

/// Swaps `value` with what the instance's slot holds: called once before
/// a call to lend the value and once after it to take the value back. The
/// guest only ever borrows slots, so the entry is there whatever the call
/// did (trapped included).
pub(super) fn swap_slot<T: 'static>(table: &mut ResourceTable, slot: &Resource<T>, value: &mut T) {
    let held = table
        .get_mut(slot)
        .expect("slots live as long as the instance"); // ok: see above
    std::mem::swap(held, value);
}

fn shutting_down() -> PluginError {
    PluginError::Load("the plugin entry is shutting down".into())
}

/// A warm, initialised instance.
pub struct Warm {
    pub(super) store: Store<StoreData>,
    pub(super) bindings: Plugin,
    pub(super) slots: Slots,
    /// The code it was started from: an instance of code the plugin has
    /// since replaced (baseline code, once optimised) is not reused.
    code: Arc<Code>,
    uses: u32,
    /// Held while the instance serves a call; idle instances hold none.
    permit: Option<OwnedSemaphorePermit>,
}

impl Warm {
    /// Arms the CPU deadline for the next call into the guest.
    pub(super) fn arm(&mut self, ticks: u64, request_id: &Arc<str>) {
        self.store.set_epoch_deadline(ticks);
        let data = self.store.data_mut();
        data.request_id = request_id.clone();
        data.io_wait = std::time::Duration::ZERO;
        self.uses += 1;
    }
}

/// What an entry's calls came to, for the admin API.
#[derive(Debug, Default)]
pub struct EntryStats {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    /// Instances replaced because their memory neared the cap.
    retired: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`EntryStats`] at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsSnapshot {
    pub calls: u64,
    /// Calls the plugin answered with an error (or that could not start).
    pub errors: u64,
    /// Calls stopped by a trap: a crash, the CPU deadline or the memory cap.
    pub traps: u64,
    /// Instances replaced between calls because their linear memory passed
    /// 3/4 of the entry's cap.
    pub retired_for_memory: u64,
    pub last_error: Option<String>,
}

impl EntryStats {
    pub fn record<T>(&self, result: &Result<T, PluginError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            let counter = match e {
                PluginError::Trap { .. } => &self.traps,
                _ => &self.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            retired_for_memory: self.retired.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The instances of one plugin entry on one route.
pub struct EntryPool {
    pub tag: Arc<EntryTag>,
    pub plugin: Arc<LoadedPlugin>,
    pub on_error: OnError,
    pub hooks: Hooks,
    /// The header edits its plugin declared at `init`, made by the chain
    /// at the entry's place.
    pub edits: Declared,
    pub stats: EntryStats,
    metrics: PluginMetrics,
    config_json: String,
    limits: Limits,
    /// The deadline in epoch ticks.
    pub(super) ticks: u64,
    services: Arc<Services>,
    fetch: Arc<FetchPolicy>,
    /// Boxed, so a checkout and a check-in move a pointer, not the
    /// instance (measured: 3,400 instructions per request fewer through
    /// a four-plugin chain).
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Warm>>>,
    max_idle: usize,
    /// One permit per instance allowed to serve at once.
    busy: Arc<Semaphore>,
}

impl EntryPool {
    /// Creates the pool and its first instance, whose `init` checks the
    /// entry's config: an error here refuses the configuration.
    pub async fn new(
        plugin: Arc<LoadedPlugin>,
        entry: &PluginEntry,
        route: Arc<str>,
        services: Arc<Services>,
        max_idle: usize,
    ) -> Result<Arc<EntryPool>, PluginError> {
        let tag = Arc::new(EntryTag {
            route,
            plugin: plugin.name.clone(),
        });
        let ticks = services.ticker.deadline(entry.limits.timeout);
        let metrics = services.metrics.plugin(&plugin.name);
        let mut pool = EntryPool {
            tag,
            plugin,
            on_error: entry.on_error,
            hooks: Hooks::empty(),
            edits: Declared::default(),
            stats: EntryStats::default(),
            metrics,
            config_json: entry.config_json.clone(),
            limits: entry.limits,
            ticks,
            services,
            fetch: Arc::new(FetchPolicy {
                allow: entry.allow_hosts.clone(),
                timeout: entry.limits.fetch_timeout,
            }),
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.clamp(1, entry.limits.instances),
            busy: Arc::new(Semaphore::new(entry.limits.instances)),
        };
        // Every instance's `init` runs with the same config: the first's
        // hooks and declared edits are the entry's.
        let (warm, hooks, edits) = pool.instantiate().await?;
        pool.hooks = hooks;
        pool.edits = edits;
        pool.checkin(warm);
        let pool = Arc::new(pool);
        pool.plugin.serves(&pool);
        Ok(pool)
    }

    /// The ticker that ends this entry's calls at their deadline.
    pub(super) fn ticker(&self) -> &super::ticker::Ticker {
        &self.services.ticker
    }

    async fn instantiate(&self) -> Result<(Box<Warm>, Hooks, Declared), PluginError> {
        // The component's start function and `init` run under a deadline.
        let _ticking = self.ticker().hold();
        let data = StoreData::new(
            self.tag.clone(),
            self.services.clone(),
            self.fetch.clone(),
            self.limits.memory,
        );
        let code = self.plugin.code();
        let mut store = Store::new(code.pre.engine(), data);
        store.limiter(|d| &mut d.limiter);
        // At the deadline, time the call spent waiting on host I/O is given
        // back; only the plugin's own running time can exhaust it.
        store.epoch_deadline_callback(|mut cx| {
            let waited = std::mem::take(&mut cx.data_mut().io_wait);
            let ticks = epochs(waited);
            if ticks == 0 {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(ticks))
        });
        // Start-up (the component's start function and `init`) may parse a
        // large config or warm a cache: allow it a second at least.
        let init_ticks = self.ticks.max(epochs(INIT_DEADLINE));
        store.set_epoch_deadline(init_ticks);
        let bindings = match code.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(PluginError::from_trap(&e, &store, "instantiate")),
        };
        let slots = Slots::new(&mut store.data_mut().table)?;
        let mut warm = Box::new(Warm {
            store,
            bindings,
            slots,
            code,
            uses: 0,
            permit: None,
        });
        warm.arm(init_ticks, &Arc::from(""));
        warm.uses = 0;
        warm.store.data_mut().declared = Some(Declared::default());
        let result = warm
            .bindings
            .call_init(&mut warm.store, &self.config_json)
            .await;
        let declared = warm.store.data_mut().declared.take().unwrap_or_default();
        match result {
            Ok(Ok(hooks)) => Ok((warm, hooks, declared)),
            Ok(Err(message)) => Err(PluginError::Init(message)),
            Err(e) => Err(PluginError::from_trap(&e, &warm.store, "init")),
        }
    }

    /// A warm instance: an idle one, or a new one. Waits while the entry's
    /// `instances` limit are all serving.
    pub async fn checkout(&self) -> Result<Box<Warm>, PluginError> {
        // A free permit is taken without building a waiter; only a full
        // entry waits (in turn: a released permit goes to waiters first).
        let permit = match self.busy.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => self
                .busy
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| shutting_down())?,
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
        };
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut warm = match idle {
            Some(w) => w,
            None => self.instantiate().await?.0,
        };
        warm.permit = Some(permit);
        Ok(warm)
    }

    /// Drops the idle instances of code the plugin has since replaced, so
    /// an entry without traffic does not keep them. Called after the new
    /// code is stored; `checkin` looks at the code under the same lock, so
    /// no instance of the old code is left idle.
    pub(super) fn drop_replaced(&self) {
        let replaced: Vec<Box<Warm>> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let (current, replaced) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|w| self.plugin.is_current(&w.code));
            *idle = current;
            replaced
        };
        drop(replaced);
    }

    /// Returns an instance that served a call successfully.
    pub fn checkin(&self, mut warm: Box<Warm>) {
        warm.permit = None;
        if warm.uses >= MAX_USES {
            return;
        }
        let memory = warm.store.data().limiter.total;
        if memory as f64 > self.limits.memory as f64 * RETIRE_AT_MEMORY {
            tracing::debug!(
                route = &*self.tag.route,
                plugin = &*self.tag.plugin,
                memory,
                "instance retired: its linear memory passed 3/4 of the cap"
            );
            self.stats.retired.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock `drop_replaced` takes after a code swap.
        if idle.len() < self.max_idle && self.plugin.is_current(&warm.code) {
            idle.push(warm);
        }
    }

    /// Counts one call of a phase: its time, and its failure if any.
    pub fn record<T>(
        &self,
        response_phase: bool,
        took: std::time::Duration,
        result: &Result<T, PluginError>,
    ) {
        self.stats.record(result);
        let histogram = if response_phase {
            &self.metrics.on_response
        } else {
            &self.metrics.on_request
        };
        histogram.observe(took.as_secs_f64());
        if let Err(PluginError::Trap { kind, .. }) = result {
            self.metrics.trap(kind.as_str());
        }
    }

    /// The most linear memory an idle instance holds, in bytes.
    pub fn linear_memory(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter()
            .map(|w| w.store.data().limiter.total)
            .max()
            .unwrap_or(0)
    }

    /// Instances waiting for work.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
