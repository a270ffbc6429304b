//! Builders for end-to-end tests: a gateway from a TOML string on
//! 127.0.0.1:0, echo upstreams, and a client. No fixed ports, no sleeps.

use bytes::Bytes;
use gatehouse::live::Live;
use gatehouse::{Config, Gateway, Runtime, server};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

pub use demo_services::Echo;

/// The `[server]` table test configs start with: an ephemeral port and the
/// built plugins (`{plugins}` is replaced when the config is written).
pub const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"{plugins}\"";

/// One plugin runtime (engine and epoch ticker) for the whole test binary.
static RUNTIME: LazyLock<Arc<Runtime>> =
    LazyLock::new(|| Arc::new(Runtime::new().expect("plugin runtime starts")));

/// The folder of built plugin components (`cargo xtask plugins`).
pub fn plugins_dir() -> PathBuf {
    let dir = std::env::var_os("GATEHOUSE_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    assert!(
        dir.join("testkit.wasm").is_file(),
        "no built plugins in {}: run the tests with `cargo xtask test`",
        dir.display()
    );
    dir
}

/// The `gatehouse` binary built next to this test binary.
pub fn gatehouse_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/debug");
    let bin = dir.join("gatehouse");
    assert!(
        bin.is_file(),
        "no {}: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

/// What a finished `gatehouse` command printed, and its exit status.
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A compile cache shared by the CLI runs of this test binary, so that
/// each plugin is compiled once and nothing is written outside the
/// test's own folders.
static CLI_CACHE: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary folder"));

/// Runs `gatehouse ARGS` to completion (plugin tools, checks).
pub fn gatehouse_cli(args: &[&str]) -> CliRun {
    gatehouse_cli_with(args, &[])
}

/// [`gatehouse_cli`] with more environment.
pub fn gatehouse_cli_with(args: &[&str], env: &[(&str, &std::path::Path)]) -> CliRun {
    let out = std::process::Command::new(gatehouse_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("XDG_CACHE_HOME", CLI_CACHE.path())
        .output()
        .expect("the gatehouse binary runs");
    CliRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An example plugin project (`examples/DIR`, or a test fixture) built by
/// `gatehouse plugin build` into a plugins folder of its own, as `NAME.wasm`.
pub struct BuiltExample {
    pub plugins: tempfile::TempDir,
    pub wasm: PathBuf,
}

impl BuiltExample {
    /// `examples/DIR`, built as plugin `name`.
    pub fn build(dir: &str, name: &str) -> BuiltExample {
        let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
        BuiltExample::build_from(&examples.join(dir), name)
    }

    /// `tests/fixtures/DIR`, built as plugin `name`.
    pub fn fixture(dir: &str, name: &str) -> BuiltExample {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        BuiltExample::build_from(&fixtures.join(dir), name)
    }

    fn build_from(example: &std::path::Path, name: &str) -> BuiltExample {
        let plugins = tempfile::tempdir().expect("a temporary folder");
        let wasm = plugins.path().join(format!("{name}.wasm"));
        let out = gatehouse_cli(&[
            "plugin",
            "build",
            example.to_str().expect("UTF-8 path"),
            "-o",
            wasm.to_str().expect("UTF-8 path"),
        ]);
        assert_eq!(
            out.code,
            Some(0),
            "plugin build: {}{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(out.stdout.trim(), wasm.to_str().unwrap());
        BuiltExample { plugins, wasm }
    }

    /// A config with one route, `name` (all paths) to an echo upstream,
    /// whose chain is the example with `config` (a TOML inline table).
    pub async fn gateway(&self, server: &str, config: &str) -> Result<(TestGateway, Echo), String> {
        let up = Echo::bind("up", "127.0.0.1:0").await.expect("bind echo");
        let plugin = self.wasm.file_stem().unwrap().to_string_lossy();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"{}\"\n{server}\n\
             [upstreams.up]\ntargets = [\"{}\"]\n\
             [[routes]]\nname = \"{plugin}\"\npath = \"/*\"\nupstream = \"up\"\n\
             [[routes.plugins]]\nplugin = \"{plugin}\"\nconfig = {config}\n",
            self.plugins.path().display(),
            up.addr
        );
        TestGateway::try_start(&toml).await.map(|gw| (gw, up))
    }
}

/// Checks an SDK's list calls through a fixture built from
/// `tests/fixtures/LANG-set-headers`: pairs and a table (whose numbers
/// become strings) are set, and a bad pair refuses its whole list with the
/// host's message.
pub async fn assert_list_calls(built: &BuiltExample) {
    let config = r#"{ request = [["x-user-id", "42"], ["x-twice", "1"], ["x-twice", "2"]], context = { "ratelimit-limit" = 60, "ratelimit-remaining" = "59" }, response = [["x-good-response", "1"], ["bad name", "2"]] }"#;
    let (gw, _up) = built.gateway("", config).await.expect("the config loads");
    let seen = TestClient::default()
        .get_with(&gw.url("/items/1"), &[("x-user-id", "guest")])
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-user-id").as_deref(), Some("42"));
    assert_eq!(seen.upstream_header("x-twice").as_deref(), Some("2"));
    assert_eq!(seen.upstream_header("x-request-refused"), None);
    assert_eq!(seen.header("ratelimit-limit"), Some("60"));
    assert_eq!(seen.header("ratelimit-remaining"), Some("59"));
    assert_eq!(seen.header("x-context-refused"), None);
    assert_eq!(seen.header("x-good-response"), None);
    assert_eq!(
        seen.header("x-response-refused"),
        Some("invalid header name \"bad name\"")
    );
}

/// Checks an SDK's declared edits through a fixture built from
/// `tests/fixtures/LANG-set-headers`: the gateway makes them in each phase
/// just before the plugin's own hook (whose value then wins), and a bad one
/// refuses the config with the host's message.
pub async fn assert_declared_edits(built: &BuiltExample) {
    let sent = [("x-drop", "1")];
    // Without edits, the client's header reaches the upstream and the
    // upstream's `x-powered-by` reaches the client.
    let (gw, _up) = built.gateway("", "{}").await.expect("the config loads");
    let seen = TestClient::default()
        .get_with(&gw.url("/items/1"), &sent)
        .await;
    assert_eq!(seen.upstream_header("x-drop").as_deref(), Some("1"));
    assert_eq!(seen.header("x-powered-by"), Some("demo-services"));

    let config = r#"{ request = [["x-user-id", "42"]], edits = { set_request = [["x-declared", "yes"], ["x-user-id", "declared"]], remove_request = ["x-drop"], set_response = [["x-declared-response", "yes"]], remove_response = ["x-powered-by"] } }"#;
    let (gw, _up) = built.gateway("", config).await.expect("the config loads");
    let seen = TestClient::default()
        .get_with(&gw.url("/items/1"), &sent)
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-declared").as_deref(), Some("yes"));
    assert_eq!(seen.upstream_header("x-user-id").as_deref(), Some("42"));
    assert_eq!(seen.upstream_header("x-drop"), None);
    assert_eq!(seen.header("x-declared-response"), Some("yes"));
    assert_eq!(seen.header("x-powered-by"), None);

    let bad = r#"{ edits = { set_response = [["bad name", "1"]] } }"#;
    let err = built.gateway("", bad).await.err().expect("refused");
    assert!(err.contains("invalid header name \"bad name\""), "{err}");
}

/// The gatehouse binary, started and ready.
pub struct Spawned {
    pub child: std::process::Child,
    /// The proxy listener it reported.
    pub addr: SocketAddr,
    /// The admin listener, when the config sets one.
    pub admin: Option<SocketAddr>,
    /// Its log lines (JSON) up to "gatehouse ready".
    pub log: Vec<serde_json::Value>,
}

/// Runs `gatehouse --log-format json run ARGS --config CONFIG` and waits
/// for it to be ready; the rest of its log is drained so it never blocks.
pub fn spawn_gatehouse(config: &std::path::Path, args: &[&str]) -> Spawned {
    spawn_gatehouse_via(&[], config, args)
}

/// [`spawn_gatehouse`] started by a wrapper: `wrapper` is a program and
/// its arguments, given the gatehouse command line after them.
pub fn spawn_gatehouse_via(wrapper: &[&str], config: &std::path::Path, args: &[&str]) -> Spawned {
    use std::io::{BufRead, BufReader};
    let bin = gatehouse_bin();
    let (program, before) = match wrapper {
        [program, before @ ..] => (std::ffi::OsStr::new(*program), before),
        [] => (bin.as_os_str(), &[][..]),
    };
    let mut child = std::process::Command::new(program)
        .args(before)
        .args((!wrapper.is_empty()).then_some(&bin))
        .args(["--log-format", "json", "run"])
        .args(args)
        .arg("--config")
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let (mut log, mut admin) = (Vec::new(), None);
    let addr = loop {
        let line = lines
            .next()
            .expect("the gateway logs until ready")
            .expect("a log line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let fields = &v["fields"];
        if let Some(a) = fields["admin"].as_str() {
            admin = a.parse().ok();
        }
        let ready = fields["message"] == "gatehouse ready";
        let listen = fields["listen"].as_str().and_then(|a| a.parse().ok());
        log.push(v);
        if ready {
            break listen.expect("the ready line names the listener");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Spawned {
        child,
        addr,
        admin,
        log,
    }
}

/// Writes `toml` (with `{plugins}` replaced by the plugins folder) as a
/// config file in a temporary folder and parses it.
pub fn config(
    toml: &str,
) -> (
    tempfile::TempDir,
    Result<Config, gatehouse::config::ConfigErrors>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gatehouse.toml");
    let text = toml.replace("{plugins}", &plugins_dir().display().to_string());
    std::fs::write(&path, &text).expect("write config");
    let parsed = Config::load(&path);
    (dir, parsed)
}

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// The admin API, when the config sets `admin_listen`.
    pub admin: Option<SocketAddr>,
    running: Option<server::Running>,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts a gateway from config text; panics with the errors if refused.
    pub async fn start(toml: &str) -> TestGateway {
        match TestGateway::try_start(toml).await {
            Ok(g) => g,
            Err(e) => panic!("gateway refused its config:\n{e}"),
        }
    }

    /// Starts a gateway, or returns the config errors as text.
    pub async fn try_start(toml: &str) -> Result<TestGateway, String> {
        TestGateway::try_start_with(toml, None, &RUNTIME).await
    }

    /// Starts a gateway on a plugin runtime of its own.
    pub async fn start_on(toml: &str, runtime: &Arc<Runtime>) -> TestGateway {
        match TestGateway::try_start_with(toml, None, runtime).await {
            Ok(g) => g,
            Err(e) => panic!("gateway refused its config:\n{e}"),
        }
    }

    /// Starts a gateway writing its access log to `log`.
    pub async fn start_logged(toml: &str, log: gatehouse::access_log::AccessLog) -> TestGateway {
        match TestGateway::try_start_with(toml, Some(log), &RUNTIME).await {
            Ok(g) => g,
            Err(e) => panic!("gateway refused its config:\n{e}"),
        }
    }

    async fn try_start_with(
        toml: &str,
        log: Option<gatehouse::access_log::AccessLog>,
        runtime: &Arc<Runtime>,
    ) -> Result<TestGateway, String> {
        let (dir, parsed) = config(toml);
        let config = parsed.map_err(|e| e.to_string())?;
        let mut gateway = Gateway::build(&config, runtime)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(log) = log {
            gateway = gateway.with_access_log(log);
        }
        let path = dir.path().join("gatehouse.toml");
        let live = Arc::new(Live::new(gateway, path, runtime.clone()));
        let running = server::start(live).await.map_err(|e| e.to_string())?;
        Ok(TestGateway {
            addr: running.addr,
            admin: running.admin_addr,
            running: Some(running),
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Reloads by itself when the config file or a plugin file changes.
    pub fn watch(&self) {
        let running = self.running.as_ref().expect("running");
        running
            .live
            .watch()
            .expect("watch the config and plugins folders");
    }

    /// The folder holding the config file (a private plugins folder can go
    /// here too).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Rewrites the config file (`{plugins}` replaced as at start), for a reload.
    pub fn rewrite(&self, toml: &str) {
        let text = toml.replace("{plugins}", &plugins_dir().display().to_string());
        std::fs::write(self._dir.path().join("gatehouse.toml"), text).expect("write config");
    }

    /// Reloads the config file, as SIGHUP or `POST /admin/reload` would.
    pub async fn reload(&self) -> Result<usize, String> {
        let running = self.running.as_ref().expect("running");
        running.live.reload().await.map_err(|e| e.to_string())
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A test config: the test `[server]` with `server` lines added (say
/// `admin_listen`), the echo `up` as upstream `up`, and `routes`.
pub fn echo_config(up: &Echo, server: &str, routes: &str) -> String {
    format!(
        "{SERVER}\n{server}\n[upstreams.up]\ntargets = [\"{}\"]\n{routes}",
        up.addr
    )
}

/// Starts an echo upstream and a gateway whose config is the test
/// `[server]`, that upstream as `up`, and `routes` (routes and their chains).
pub async fn gateway_to_echo(routes: &str) -> (TestGateway, Echo) {
    let up = Echo::bind("up", "127.0.0.1:0").await.expect("bind echo");
    (TestGateway::start(&echo_config(&up, "", routes)).await, up)
}

/// Starts `n` echo upstreams on 127.0.0.1:0.
pub async fn echoes(name: &str, n: usize) -> Vec<Echo> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(
            Echo::bind(&format!("{name}-{i}"), "127.0.0.1:0")
                .await
                .expect("bind echo"),
        );
    }
    v
}

/// `"127.0.0.1:1", "127.0.0.1:2"` for a config's `targets`.
pub fn targets(echoes: &[Echo]) -> String {
    echoes
        .iter()
        .map(|e| format!("\"{}\"", e.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a client saw.
#[derive(Debug)]
pub struct Seen {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The headers the echo upstream received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_owned)
    }
}

/// An HTTP/1.1 client with a keep-alive pool.
#[derive(Clone)]
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for TestClient {
    fn default() -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl TestClient {
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Seen {
        let mut req = Request::builder().method(method).uri(url);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("valid request");
        let resp = self.client.request(req).await.expect("gateway answers");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("whole body").to_bytes();
        Seen {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Seen {
        self.send(Method::GET, url, &[], "").await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Seen {
        self.send(Method::GET, url, headers, "").await
    }
}

/// Starts a gateway with one route `route` whose only plugin is `plugin`,
/// `entry` being the rest of its entry (`config = { … }`, or a
/// `[routes.plugins.config]` table), expecting the config to be refused.
/// Returns the errors, checked to name the route and the plugin's `init`.
pub async fn refusal(route: &str, plugin: &str, entry: &str) -> String {
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nname = \"{route}\"\npath = \"/*\"\nupstream = \"up\"\n[[routes.plugins]]\nplugin = \"{plugin}\"\n{entry}\n"
    );
    let err = match TestGateway::try_start(&toml).await {
        Err(e) => e,
        Ok(_) => panic!("accepted: {entry}"),
    };
    let named = format!("route \"{route}\", plugin \"{plugin}\": init failed: ");
    assert!(err.contains(&named), "{err}");
    err
}

/// The gateway error body shape, checked.
pub fn assert_error_body(seen: &Seen, status: u16) {
    assert_eq!(
        seen.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&seen.body)
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let j = seen.json();
    assert_eq!(j["status"], status);
    assert!(
        j["error"].as_str().is_some_and(|s| !s.is_empty()),
        "error message in {j}"
    );
    let id = seen.header("x-request-id").expect("x-request-id on errors");
    assert_eq!(j["request_id"], id);
}

/// A service answering every request with one JSON document that the test
/// can change (a key server, say), counting requests, until dropped; its
/// open connections close with it, as when a real server goes down.
pub struct JsonService {
    pub addr: SocketAddr,
    body: Arc<std::sync::Mutex<String>>,
    status: Arc<std::sync::atomic::AtomicU16>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JsonService {
    pub async fn start(body: &str) -> JsonService {
        JsonService::start_on("127.0.0.1:0".parse().expect("address"), body).await
    }

    /// On a chosen address (one a gateway already points at, say).
    pub async fn start_on(addr: SocketAddr, body: &str) -> JsonService {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let body = Arc::new(std::sync::Mutex::new(body.to_owned()));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (b, h, st) = (body.clone(), hits.clone(), status.clone());
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (b, h, st) = (b.clone(), h.clone(), st.clone());
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let text = b.lock().expect("body lock").clone();
                    let status = st.load(std::sync::atomic::Ordering::SeqCst);
                    async move {
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                    }
                });
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        JsonService {
            addr,
            body,
            status,
            hits,
            task,
        }
    }

    pub fn set(&self, body: &str) {
        *self.body.lock().expect("body lock") = body.to_owned();
    }

    /// The status every answer carries from now on.
    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for JsonService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A steady load from concurrent clients, counting answers until stopped:
/// what reload and hot-swap tests run while they change things.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<std::sync::atomic::AtomicUsize>,
    failed: Arc<std::sync::atomic::AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` clients sending `GET url` back to back.
    pub fn start(url: &str, clients: usize) -> Load {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let url = url.to_owned();
                tokio::spawn(async move {
                    let c = TestClient::default();
                    while !stop.load(Relaxed) {
                        match c.get(&url).await.status.as_u16() {
                            200 => ok.fetch_add(1, Relaxed),
                            _ => failed.fetch_add(1, Relaxed),
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            clients,
        }
    }

    /// Stops the clients; returns (200 answers, other answers).
    pub async fn stop(self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stop.store(true, Relaxed);
        for c in self.clients {
            c.await.expect("load client");
        }
        (self.ok.load(Relaxed), self.failed.load(Relaxed))
    }
}
