//! The plugin runtime: one wasmtime engine, components compiled once and
//! linked once, warm instance pools per route entry, CPU deadlines by epoch
//! interruption and memory caps per instance.

mod bindings;
mod chain;
mod compile;
mod disk_cache;
mod edits;
mod exchange;
mod host;
mod outbound;
mod pool;
mod state;
mod ticker;

pub use bindings::{Hooks, Outcome, Reply};
pub use chain::{Chain, ChainFailure, RequestStep};
pub use exchange::{ContextRes, LentContext, LentRequest, RequestRes, ResponseRes, parse_header};
pub use host::Services;
pub use outbound::MAX_FETCH_BODY;
pub use pool::{EntryPool, EntryStats, StatsSnapshot};
pub use state::SharedState;

use arc_swap::ArcSwap;
use bindings::{Plugin, PluginPre};
use compile::{Compiler, Tier};
use host::StoreData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Strategy,
};

/// One epoch: the unit of plugin CPU deadlines. The ticker wakes every
/// tenth of the shortest timeout (1-10 ms): a call is stopped no sooner
/// than its timeout and within about two wake-ups after it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The largest `.wasm` file the gateway loads.
pub const MAX_PLUGIN_FILE: u64 = 64 * 1024 * 1024;

/// The contract version this host serves.
pub const CONTRACT: &str = "gatehouse:plugin@0.1.5";

/// Why a plugin could not be loaded or failed a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Load(String),
    #[error("init failed: {0}")]
    Init(String),
    /// The plugin returned an error.
    #[error("{context} returned an error: {message}")]
    Failed {
        context: &'static str,
        message: String,
    },
    #[error("{context}: {message}")]
    Trap {
        kind: TrapKind,
        context: &'static str,
        message: String,
    },
}

/// What stopped a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The call ran past its CPU deadline.
    Deadline,
    /// The instance asked for more memory than its cap.
    Memory,
    /// The guest trapped (a panic, an abort, an out-of-bounds access ...).
    Crash,
    Other,
}

impl TrapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::Deadline => "deadline",
            TrapKind::Memory => "memory",
            TrapKind::Crash => "trap",
            TrapKind::Other => "error",
        }
    }
}

impl PluginError {
    fn from_trap(
        e: &wasmtime::Error,
        store: &Store<StoreData>,
        context: &'static str,
    ) -> PluginError {
        let trap = e.downcast_ref::<wasmtime::Trap>().copied();
        let kind = if trap == Some(wasmtime::Trap::Interrupt) {
            TrapKind::Deadline
        } else if store.data().limiter.denied.is_some() {
            TrapKind::Memory
        } else if trap.is_some() {
            TrapKind::Crash
        } else {
            TrapKind::Other
        };
        let message = match kind {
            TrapKind::Deadline => "ran past its CPU deadline".to_owned(),
            TrapKind::Memory => {
                let limiter = &store.data().limiter;
                let asked = bytesize::ByteSize(limiter.denied.unwrap_or(0) as u64);
                let max = bytesize::ByteSize(limiter.max as u64);
                if context == "instantiate" {
                    format!(
                        "needs {asked} of linear memory to start, over the entry's limit of {max}: raise `limits.memory` for it"
                    )
                } else {
                    format!("hit its memory limit of {max} (asked for {asked})")
                }
            }
            _ => first_line(e),
        };
        PluginError::Trap {
            kind,
            context,
            message,
        }
    }
}

fn first_line(e: &wasmtime::Error) -> String {
    // The top of a trap's chain is "error while executing at wasm
    // backtrace: …"; the cause ("wasm `unreachable` instruction executed"
    // for a panic) is what says what happened.
    let text = match e.downcast_ref::<wasmtime::Trap>() {
        Some(_) => e.root_cause().to_string(),
        None => format!("{e:#}"),
    };
    text.lines().next().unwrap_or("").to_owned()
}

/// A plugin compiled and linked, ready to instantiate.
pub struct LoadedPlugin {
    pub name: Arc<str>,
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The file's size in bytes.
    pub size: u64,
    pub loaded_at: std::time::SystemTime,
    /// The contract the plugin was built against (`gatehouse:plugin@0.1.3`):
    /// the newest version among its imports, which may be older than
    /// [`CONTRACT`], the one this host serves.
    pub contract: String,
    /// The machine code instances start from: swapped once when a plugin
    /// served with baseline code gets its optimised code.
    code: ArcSwap<Code>,
    /// The address of `code`'s current value, compared on every check-in
    /// without taking a guard on `code` (50 instructions a check-in). An
    /// instance holds its code alive, so an address it holds is never
    /// reused while it is compared.
    current: AtomicPtr<Code>,
    /// The entry pools running it, told when its code is replaced.
    pools: std::sync::Mutex<Vec<std::sync::Weak<EntryPool>>>,
}

/// Machine code linked to the contract, ready to instantiate.
pub(crate) struct Code {
    pub(crate) pre: PluginPre<StoreData>,
    pub(crate) compiled: Compiled,
}

impl LoadedPlugin {
    /// Where the machine code new instances run came from.
    pub fn compiled(&self) -> Compiled {
        self.code.load().compiled
    }

    /// The code new instances start from.
    pub(crate) fn code(&self) -> Arc<Code> {
        self.code.load_full()
    }

    /// Whether `code` is still what new instances start from.
    pub(crate) fn is_current(&self, code: &Arc<Code>) -> bool {
        std::ptr::eq(self.current.load(Ordering::Acquire), Arc::as_ptr(code))
    }

    /// Records a pool running this plugin.
    fn serves(&self, pool: &Arc<EntryPool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// Swaps in optimised code: idle instances of the old code are dropped
    /// now, busy ones when their call ends.
    fn upgrade(&self, tier: &Tier, component: &Component) {
        match tier
            .linker
            .instantiate_pre(component)
            .and_then(PluginPre::new)
        {
            Ok(pre) => {
                let code = Arc::new(Code {
                    pre,
                    compiled: Compiled::Compiler,
                });
                self.current
                    .store(Arc::as_ptr(&code).cast_mut(), Ordering::Release);
                self.code.store(code);
                let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for pool in pools.iter().filter_map(std::sync::Weak::upgrade) {
                    pool.drop_replaced();
                }
                tracing::info!(
                    plugin = &*self.name,
                    "plugin optimised: new instances run the optimising compiler's code"
                );
            }
            Err(e) => tracing::warn!(
                plugin = &*self.name,
                "the plugin stays on baseline code: {}",
                first_line(&e)
            ),
        }
    }
}

/// Where a loaded plugin's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Compiled now by the optimising compiler.
    Compiler,
    /// Compiled now by the baseline compiler; the optimising one is at work
    /// in the background.
    Baseline,
    /// The same file was loaded before by this process.
    Memory,
    /// The gateway's compile cache on disk.
    Disk,
}

impl Compiled {
    pub fn as_str(self) -> &'static str {
        match self {
            Compiled::Compiler => "compiler",
            Compiled::Baseline => "baseline",
            Compiled::Memory => "memory-cache",
            Compiled::Disk => "disk-cache",
        }
    }
}

/// The engines and everything shared by all plugins.
pub struct Runtime {
    compiler: Arc<Compiler>,
    /// Shared state and outbound HTTP, offered to every instance, and the
    /// deadlines' ticker.
    pub services: Arc<Services>,
}

/// The engine settings both tiers share.
fn engine_config(strategy: Strategy) -> Config {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(2000)
        .total_core_instances(4000)
        .total_memories(2000)
        .total_tables(4000)
        .max_memory_size(crate::config::MAX_PLUGIN_MEMORY as usize);
    let mut config = Config::new();
    config
        .strategy(strategy)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
        .max_wasm_stack(512 * 1024);
    // `GATEHOUSE_WASM_PROFILE=perfmap` names plugin code for `perf`.
    if std::env::var_os("GATEHOUSE_WASM_PROFILE").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// An engine for `config`, whose plugin memories come from a pool reserved
/// up front: guard pages instead of bounds checks, and instances started
/// without a system call. The pool reserves address space for every memory
/// it may hand out (terabytes, nearly all never touched); where the address
/// space is limited (`ulimit -v`, systemd's `LimitAS=`) that reservation
/// fails, and the engine instead gives each instance its own memory, sized
/// to what it uses and bounds-checked: slower plugins, the same limits.
fn new_engine(config: &mut Config) -> anyhow::Result<Engine> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let pooled = match Engine::new(config) {
        Ok(engine) => return Ok(engine),
        Err(e) => e,
    };
    config
        .allocation_strategy(InstanceAllocationStrategy::OnDemand)
        .memory_reservation(0)
        .memory_reservation_for_growth(1 << 20)
        .memory_guard_size(0)
        .guard_before_linear_memory(false);
    let engine = match Engine::new(config) {
        Ok(engine) => engine,
        Err(_) => return Err(anyhow::Error::from(pooled).context("reserving plugin memory")),
    };
    WARNED.call_once(|| {
        tracing::warn!(
            reason = %format!("{pooled:#}"),
            "the address space is limited, so plugin memories are allocated per instance \
             with bounds checks (plugins run slower); raise the limit (`ulimit -v`) for the \
             pooled allocator"
        );
    });
    Ok(engine)
}

/// WASI and the plugin contract, for one engine.
fn contract_linker(engine: &Engine) -> anyhow::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

impl Runtime {
    /// A runtime that compiles every plugin with the optimising compiler
    /// before serving it (checks, tools, tests and benchmarks).
    pub fn new() -> anyhow::Result<Runtime> {
        Runtime::with_compiler(Compiler::new(false)?)
    }

    /// A runtime that serves a plugin found in no cache with baseline code
    /// at once and swaps in optimised code when the background compile is
    /// done: the gateway starts in a fraction of the time.
    pub fn tiered() -> anyhow::Result<Runtime> {
        Runtime::with_compiler(Compiler::new(true)?)
    }

    fn with_compiler(compiler: Compiler) -> anyhow::Result<Runtime> {
        let compiler = Arc::new(compiler);
        // One ticker thread drives every deadline; none per request.
        let weak = Arc::downgrade(&compiler);
        let ticker = ticker::Ticker::start(move |n| match weak.upgrade() {
            Some(compiler) => {
                for engine in compiler.engines() {
                    (0..n).for_each(|_| engine.increment_epoch());
                }
                true
            }
            None => false,
        })?;
        Ok(Runtime {
            compiler,
            services: Arc::new(Services::new(ticker)),
        })
    }

    /// Compiles and links `NAME.wasm`, refusing anything that is not a
    /// component of the `gatehouse:plugin` world.
    pub fn load(&self, name: &str, path: &Path) -> Result<Arc<LoadedPlugin>, PluginError> {
        load(&self.compiler, name, path)
    }

    /// As [`Runtime::load`], compiling on tokio's blocking pool: a reload
    /// must not stop the workers serving requests while it compiles (with
    /// `workers = 1` it would stop them all).
    pub async fn load_off_thread(
        &self,
        name: &str,
        path: &Path,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let compiler = self.compiler.clone();
        let (owned_name, owned_path) = (name.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || load(&compiler, &owned_name, &owned_path))
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::Load(format!(
                    "{}: the compile stopped: {e}",
                    path.display()
                )))
            })
    }

    /// Holds background optimisation while `held` (plugins compiled by the
    /// baseline compiler keep running its code), and releases it.
    pub fn hold_optimiser(&self, held: bool) {
        self.compiler.hold(held);
    }

    /// Keeps compiled plugins in `dir` across restarts (created private if
    /// missing; refused if another user could write to it).
    pub fn use_disk_cache(&mut self, dir: &Path) -> std::io::Result<()> {
        let disk = disk_cache::DiskCache::open(dir, &self.compiler.optimising.engine)?;
        self.compiler.use_disk_cache(disk);
        Ok(())
    }
}

/// Hands memory the compiler freed back to the system. Compiles run on
/// rayon's threads and the caller's, and an allocator keeps what a thread
/// freed until that thread allocates again, which idle compiler threads do
/// not: after a start that compiled the quickstart's plugins, about 35 MiB
/// of freed heap stayed resident under mimalloc (the `gatehouse` binary's
/// allocator) and 45 MiB under glibc's.
fn release_freed_memory() {
    let collect = || {
        // SAFETY: mi_collect only returns free pages of mimalloc's heaps
        // to the OS; it touches no memory still in use.
        unsafe { libmimalloc_sys::mi_collect(true) };
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free pages to the kernel; it
        // takes each arena's lock, so it is safe while other threads
        // allocate.
        unsafe {
            libc::malloc_trim(0);
        }
    };
    collect();
    rayon::broadcast(|_| collect());
}

/// A digest as lower-case hex.
fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles and links `NAME.wasm` with `compiler`.
fn load(
    compiler: &Arc<Compiler>,
    name: &str,
    path: &Path,
) -> Result<Arc<LoadedPlugin>, PluginError> {
    let cannot_read = |e: std::io::Error| {
        PluginError::Load(format!("cannot read plugin file {}: {e}", path.display()))
    };
    // Checked before reading, so an oversized file is never read in.
    let size = std::fs::metadata(path).map_err(cannot_read)?.len();
    if size > MAX_PLUGIN_FILE {
        return Err(PluginError::Load(format!(
            "{} is {size} bytes, over the {} MiB limit for plugin files",
            path.display(),
            MAX_PLUGIN_FILE >> 20
        )));
    }
    let bytes = std::fs::read(path).map_err(cannot_read)?;
    check_header(&bytes).map_err(|m| PluginError::Load(format!("{}: {m}", path.display())))?;
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes).into()
    };
    let (component, compiled) = compiler.compile(digest, &bytes).map_err(|e| {
        PluginError::Load(format!(
            "{}: invalid component: {}",
            path.display(),
            first_line(&e)
        ))
    })?;
    let pre = compiler
        .tier(compiled)
        .linker
        .instantiate_pre(&component)
        .and_then(PluginPre::new)
        .map_err(|e| {
            PluginError::Load(format!(
                "{}: not a plugin of the {CONTRACT} world: {}",
                path.display(),
                first_line(&e)
            ))
        })?;
    let contract = built_against(&component, compiler.tier(compiled).linker.engine());
    let code = Arc::new(Code { pre, compiled });
    let plugin = Arc::new(LoadedPlugin {
        name: Arc::from(name),
        path: path.to_path_buf(),
        sha256: hex(&digest),
        size: bytes.len() as u64,
        loaded_at: std::time::SystemTime::now(),
        contract,
        current: AtomicPtr::new(Arc::as_ptr(&code).cast_mut()),
        code: ArcSwap::new(code),
        pools: Default::default(),
    });
    if compiled == Compiled::Baseline {
        compiler.when_optimised(digest, &plugin);
    }
    Ok(plugin)
}

/// The newest `gatehouse:plugin` version a component imports, as
/// `gatehouse:plugin@X.Y.Z` (every plugin imports the contract's `types`).
fn built_against(component: &Component, engine: &Engine) -> String {
    let ty = component.component_type();
    let newest = (ty.imports(engine))
        .filter_map(|(name, _)| name.strip_prefix("gatehouse:plugin/"))
        .filter_map(|rest| rest.split_once('@'))
        .filter_map(|(_, version)| {
            let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
            let v = (parts.next()??, parts.next()??, parts.next()??);
            Some((v, version))
        })
        .max();
    match newest {
        Some((_, version)) => format!("gatehouse:plugin@{version}"),
        None => CONTRACT.to_owned(),
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.services.ticker.stop();
    }
}

/// Tells a core module or a non-wasm file apart from a component, with a
/// message a plugin author can act on.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file".into());
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(
            "a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                .into(),
        ),
        _ => Err("an unsupported WebAssembly version: expected a component".into()),
    }
}
