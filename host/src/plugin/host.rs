//! What a plugin instance's store holds, and the host side of the contract's
//! imports (`types` resources, `host`, `state`).

use super::bindings::gatehouse::plugin::{host, outbound, state, types};
use super::bindings::{FetchError, FetchRequest, FetchResponse};
use super::bindings::{Level, WindowCount};
use super::edits::Declared;
use super::exchange::{self, LentContext, LentRequest, Message, ResponseRes};
use super::outbound::FetchPolicy;
use super::state::SharedState;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Names a plugin entry in logs.
#[derive(Debug)]
pub struct EntryTag {
    pub route: Arc<str>,
    pub plugin: Arc<str>,
}

/// What the host shares across gateways: the state and outbound HTTP it
/// offers every instance, the metrics everything is counted in (so counters
/// and state outlive a rebuilt gateway), and the ticker behind every CPU
/// deadline.
pub struct Services {
    pub state: SharedState,
    pub outbound: super::outbound::Outbound,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub ticker: Arc<super::ticker::Ticker>,
}

impl Services {
    pub fn new(ticker: Arc<super::ticker::Ticker>) -> Services {
        Services {
            state: SharedState::default(),
            outbound: Default::default(),
            metrics: Default::default(),
            ticker,
        }
    }
}

/// Per-instance store data.
pub struct StoreData {
    pub table: ResourceTable,
    wasi: WasiCtx,
    pub limiter: MemoryLimiter,
    pub tag: Arc<EntryTag>,
    /// The request being served, for log lines ("" during `init`).
    pub request_id: Arc<str>,
    services: Arc<Services>,
    fetch: Arc<FetchPolicy>,
    /// Time the current call spent waiting on host I/O (outbound requests):
    /// given back to its CPU deadline, which is for the plugin's own work.
    pub io_wait: Duration,
    /// The header edits `init` declares (`edits`); `None` outside `init`.
    pub declared: Option<Declared>,
}

impl StoreData {
    pub fn new(
        tag: Arc<EntryTag>,
        services: Arc<Services>,
        fetch: Arc<FetchPolicy>,
        memory: u64,
    ) -> StoreData {
        // WASI grants nothing: no preopened dirs, env, args, stdio or network.
        // It is linked only because every toolchain's standard library imports it.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreData {
            table: ResourceTable::new(),
            wasi,
            limiter: MemoryLimiter {
                max: memory as usize,
                denied: None,
                total: 0,
            },
            tag,
            request_id: Arc::from(""),
            services,
            fetch,
            io_wait: Duration::ZERO,
            declared: None,
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps an instance's linear memory, remembering a refusal so a trap that
/// follows can be reported as the memory limit rather than a plain crash.
pub struct MemoryLimiter {
    pub max: usize,
    /// The size a refused growth asked for, in bytes.
    pub denied: Option<usize>,
    /// The instance's linear memory, all its memories together, in bytes.
    pub total: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        let ok = desired <= self.max;
        if ok {
            self.total += desired.saturating_sub(current);
        } else {
            self.denied = Some(desired);
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= 100_000)
    }
}

type R<T> = Result<T>;

impl StoreData {
    /// Reads a request or response; a stale handle traps the guest.
    fn read<T: Message, U>(&self, r: &Resource<T>, f: impl FnOnce(&T) -> U) -> R<U> {
        Ok(f(self.table.get(r)?))
    }

    /// Changes a message's headers, unless it is read-only now.
    fn write<T: Message>(
        &mut self,
        r: &Resource<T>,
        f: impl FnOnce(&mut http::HeaderMap) -> Result<(), String>,
    ) -> R<Result<(), String>> {
        Ok(self.table.get_mut(r)?.headers_mut().and_then(f))
    }
}

/// The header and body calls, alike for requests and responses.
macro_rules! message_calls {
    ($ty:ty) => {
        fn header(&mut self, r: Resource<$ty>, name: String) -> R<Option<String>> {
            self.read(&r, |m| exchange::header_first(m.headers(), &name))
        }
        fn header_all(&mut self, r: Resource<$ty>, name: String) -> R<Vec<String>> {
            self.read(&r, |m| exchange::header_all(m.headers(), &name))
        }
        fn headers(&mut self, r: Resource<$ty>) -> R<Vec<(String, String)>> {
            self.read(&r, |m| exchange::header_list(m.headers()))
        }
        fn set_header(
            &mut self,
            r: Resource<$ty>,
            name: String,
            value: String,
        ) -> R<Result<(), String>> {
            self.write(&r, |h| exchange::header_set(h, &name, value))
        }
        fn set_headers(
            &mut self,
            r: Resource<$ty>,
            headers: Vec<(String, String)>,
        ) -> R<Result<(), String>> {
            self.write(&r, |h| exchange::headers_set(h, headers))
        }
        fn append_header(
            &mut self,
            r: Resource<$ty>,
            name: String,
            value: String,
        ) -> R<Result<(), String>> {
            self.write(&r, |h| exchange::header_append(h, &name, value))
        }
        fn remove_header(&mut self, r: Resource<$ty>, name: String) -> R<Result<(), String>> {
            self.write(&r, |h| exchange::header_remove(h, &name))
        }
        fn body(&mut self, r: Resource<$ty>) -> R<Option<Vec<u8>>> {
            self.read(&r, |m| m.visible_body().map(|b| b.to_vec()))
        }
        fn set_body(&mut self, r: Resource<$ty>, body: Vec<u8>) -> R<Result<(), String>> {
            Ok(self.table.get_mut(&r)?.set_body(body))
        }
    };
}

impl types::Host for StoreData {}

impl types::HostContext for StoreData {
    fn route(&mut self, c: Resource<LentContext>) -> R<String> {
        Ok(self.table.get(&c)?.route.to_string())
    }
    fn upstream(&mut self, c: Resource<LentContext>) -> R<String> {
        Ok(self.table.get(&c)?.upstream.to_string())
    }
    fn request_id(&mut self, c: Resource<LentContext>) -> R<String> {
        Ok(self.table.get(&c)?.request_id.to_string())
    }
    fn client_addr(&mut self, c: Resource<LentContext>) -> R<String> {
        Ok(self.table.get(&c)?.client_addr())
    }
    fn get(&mut self, c: Resource<LentContext>, key: String) -> R<Option<String>> {
        Ok(self.table.get(&c)?.get(&key))
    }
    fn set(&mut self, c: Resource<LentContext>, key: String, value: String) -> R<()> {
        self.table.get_mut(&c)?.bag.insert(key, value);
        Ok(())
    }
    fn set_response_header(
        &mut self,
        c: Resource<LentContext>,
        name: String,
        value: String,
    ) -> R<Result<(), String>> {
        let ctx = self.table.get_mut(&c)?;
        Ok(exchange::parse_header(&name, value).map(|h| ctx.response_headers.push(h)))
    }
    fn set_response_headers(
        &mut self,
        c: Resource<LentContext>,
        headers: Vec<(String, String)>,
    ) -> R<Result<(), String>> {
        let ctx = self.table.get_mut(&c)?;
        Ok(exchange::parse_headers(headers).map(|h| ctx.response_headers.extend(h)))
    }
    fn drop(&mut self, _c: Resource<LentContext>) -> R<()> {
        // The host owns these and takes them back after each call.
        Ok(())
    }
}

impl types::HostRequest for StoreData {
    fn method(&mut self, r: Resource<LentRequest>) -> R<String> {
        Ok(self.table.get(&r)?.parts.method.to_string())
    }
    fn set_method(&mut self, r: Resource<LentRequest>, method: String) -> R<Result<(), String>> {
        let req = self.table.get_mut(&r)?;
        Ok(req.check_writable().and_then(|()| {
            let m = http::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("invalid method \"{method}\""))?;
            req.parts.method = m;
            Ok(())
        }))
    }
    fn path(&mut self, r: Resource<LentRequest>) -> R<String> {
        Ok(self.table.get(&r)?.path().to_owned())
    }
    fn set_path(&mut self, r: Resource<LentRequest>, path: String) -> R<Result<(), String>> {
        let req = self.table.get_mut(&r)?;
        let query = req.parts.uri.query().map(str::to_owned);
        Ok(req
            .check_writable()
            .and_then(|()| req.set_path_and_query(&path, query.as_deref())))
    }
    fn query(&mut self, r: Resource<LentRequest>) -> R<Option<String>> {
        Ok(self.table.get(&r)?.parts.uri.query().map(str::to_owned))
    }
    fn set_query(
        &mut self,
        r: Resource<LentRequest>,
        query: Option<String>,
    ) -> R<Result<(), String>> {
        let req = self.table.get_mut(&r)?;
        let path = req.path().to_owned();
        Ok(req
            .check_writable()
            .and_then(|()| req.set_path_and_query(&path, query.as_deref())))
    }
    message_calls!(LentRequest);

    fn drop(&mut self, _r: Resource<LentRequest>) -> R<()> {
        Ok(())
    }
}

impl types::HostResponse for StoreData {
    fn status(&mut self, r: Resource<ResponseRes>) -> R<u16> {
        Ok(self.table.get(&r)?.parts.status.as_u16())
    }
    fn set_status(&mut self, r: Resource<ResponseRes>, status: u16) -> R<Result<(), String>> {
        let resp = self.table.get_mut(&r)?;
        Ok(match http::StatusCode::from_u16(status) {
            Ok(s) if status >= 200 => {
                resp.parts.status = s;
                Ok(())
            }
            _ => Err(format!("invalid status {status}: expected 200 to 999")),
        })
    }
    message_calls!(ResponseRes);

    fn drop(&mut self, _r: Resource<ResponseRes>) -> R<()> {
        Ok(())
    }
}

impl host::Host for StoreData {
    fn log(&mut self, level: Level, message: String) {
        let (route, plugin, id) = (&*self.tag.route, &*self.tag.plugin, &*self.request_id);
        match level {
            Level::Trace => {
                tracing::trace!(target: "gatehouse::plugin", route, plugin, request_id = id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "gatehouse::plugin", route, plugin, request_id = id, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "gatehouse::plugin", route, plugin, request_id = id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "gatehouse::plugin", route, plugin, request_id = id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "gatehouse::plugin", route, plugin, request_id = id, "{message}")
            }
        }
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn counter_add(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        delta: u64,
    ) -> Result<(), String> {
        self.services.metrics.plugin_counter(&name, labels, delta)
    }

    fn gauge_set(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: i64,
    ) -> Result<(), String> {
        self.services.metrics.plugin_gauge(&name, labels, value)
    }

    fn monotonic_ns(&mut self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64
    }
}

impl state::Host for StoreData {
    async fn incr(&mut self, key: String, delta: i64, window_ms: u64) -> WindowCount {
        let c = self
            .services
            .state
            .incr(&self.tag.plugin, &key, delta, window_ms);
        WindowCount {
            current: c.current,
            previous: c.previous,
            reset_ms: c.reset_ms,
        }
    }
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.state.get(&self.tag.plugin, &key)
    }
    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        self.services.state.set(
            &self.tag.plugin,
            &key,
            value,
            ttl_ms.map(Duration::from_millis),
        );
    }
    async fn set_if_absent(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> bool {
        self.services.state.set_if_absent(
            &self.tag.plugin,
            &key,
            value,
            ttl_ms.map(Duration::from_millis),
        )
    }
    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> bool {
        let ttl = ttl_ms.map(Duration::from_millis);
        self.services.state.compare_and_swap(
            &self.tag.plugin,
            &key,
            expected.as_deref(),
            value,
            ttl,
        )
    }
    async fn delete(&mut self, key: String) {
        self.services.state.delete(&self.tag.plugin, &key);
    }
}

impl outbound::Host for StoreData {
    async fn fetch(&mut self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        let started = std::time::Instant::now();
        let result = self.services.outbound.fetch(&self.fetch, request).await;
        self.io_wait += started.elapsed();
        if let Err(e) = &result {
            tracing::debug!(target: "gatehouse::plugin", route = &*self.tag.route, plugin = &*self.tag.plugin, request_id = &*self.request_id, "outbound request failed: {e:?}");
        }
        result
    }
}
