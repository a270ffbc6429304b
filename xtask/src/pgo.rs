//! `cargo xtask pgo`: the gateway built with profile-guided optimisation,
//! into `target/pgo/gatehouse`.
//!
//! An instrumented build of the gateway serves a training workload: the
//! quickstart's config (its rate limit raised, a route without plugins
//! added) behind demo-services' echo upstream, its successes and its error
//! answers, a cold start (tiered compilation), a start from the compile
//! cache and a `check`.
//! LLVM merges the profile it records, and a second build lays out and
//! inlines the code by it. The workload is the quickstart's, not a
//! benchmark's: `bench/` measures behind nginx, with its own configs.
//!
//! Two release builds in target directories of their own, so it takes about
//! twice as long as `cargo build --release` and leaves that build alone.

use crate::{
    Children, QUICKSTART_FINANCE, QUICKSTART_USER, Result, cargo, root, run, rustc, sysroot,
};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn pgo() -> Result {
    let host = rustc_host()?;
    let profdata = llvm_profdata(&host)?;
    let plugins = crate::build_plugins()?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "demo-services",
        "-p",
        "fixed-rate",
    ]))?;
    let dir = root().join("target/pgo");
    let profiles = dir.join("profiles");
    let _ = std::fs::remove_dir_all(&profiles);
    let instrumented = build(
        &host,
        "generate",
        &format!("-Cprofile-generate={}", profiles.display()),
    )?;
    train(&instrumented, &plugins, &dir.join("train"))?;
    let merged = dir.join("merged.profdata");
    run(Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .arg(&profiles))?;
    let optimised = build(&host, "use", &format!("-Cprofile-use={}", merged.display()))?;
    let out = dir.join("gatehouse");
    copy(&optimised, &out)?;
    println!("xtask: the profile-guided build is {}", out.display());
    Ok(())
}

fn rustc_host() -> Result<String> {
    rustc(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV names no host".into())
}

/// The toolchain's own llvm-profdata (its profile format must match the
/// LLVM that rustc uses), installed with rustup's llvm-tools if missing.
fn llvm_profdata(host: &str) -> Result<PathBuf> {
    let tool = Path::new(&sysroot()?)
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-profdata");
    if !tool.is_file() {
        eprintln!("xtask: installing rustup's llvm-tools component (llvm-profdata)");
        run(Command::new("rustup").args(["component", "add", "llvm-tools"]))?;
    }
    if tool.is_file() {
        Ok(tool)
    } else {
        Err(format!(
            "{} is missing after installing llvm-tools",
            tool.display()
        ))
    }
}

/// A release build of the gateway with `flags`, in `target/pgo/STAGE`.
/// `--target` keeps the flags off build scripts and proc macros.
fn build(host: &str, stage: &str, flags: &str) -> Result<PathBuf> {
    let target_dir = root().join("target/pgo").join(stage);
    run(cargo()
        .args([
            "build",
            "--release",
            "-p",
            "gatehouse",
            "--bin",
            "gatehouse",
        ])
        .args(["--target", host])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", flags))?;
    Ok(target_dir.join(host).join("release/gatehouse"))
}

fn copy(from: &Path, to: &Path) -> Result {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// `N` distinct free ports on 127.0.0.1: each listener stays open until
/// all are chosen, so none is handed out twice.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l
            .local_addr()
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
    }
    Ok(ports)
}

/// One kind of request in the workload: path, headers, how many, and the
/// statuses its answers may have.
struct Load {
    path: &'static str,
    headers: Vec<String>,
    requests: u64,
    statuses: &'static [u16],
}

fn workload() -> Vec<Load> {
    let bearer = |token: &str| format!("authorization: Bearer {token}");
    let load = |path, headers: &[&str], requests, statuses| Load {
        path,
        headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        requests,
        statuses,
    };
    let key = "x-api-key: k-demo-123";
    let origin = "origin: https://app.example.com";
    let user = bearer(QUICKSTART_USER);
    let finance = bearer(QUICKSTART_FINANCE);
    vec![
        load("/plain/items/9?page=2", &[], 40_000, &[200]),
        load(
            "/plain/items",
            &["x-request-id: abc", origin],
            20_000,
            &[200],
        ),
        load("/api/v1/users/42", &[&user], 40_000, &[200]),
        load(
            "/api/v1/users/7",
            &[&finance, "user-agent: pgo"],
            20_000,
            &[200],
        ),
        load("/api/v1/users/42", &[], 5_000, &[401]),
        load(
            "/api/v1/users/42",
            &["authorization: Bearer x.y.z"],
            5_000,
            &[401],
        ),
        load("/api/orders/7", &[key], 30_000, &[200]),
        load("/api/orders/8", &[key, origin], 20_000, &[200]),
        load("/api/orders/7", &[], 5_000, &[401]),
        load(
            "/api/orders/7",
            &["accept-version: 2", "x-tenant: acme"],
            20_000,
            &[200],
        ),
        load(
            "/api/orders/7",
            &["accept-version: 2", "x-tenant: initech"],
            5_000,
            &[403],
        ),
        load("/api/payments", &[&finance], 5_000, &[404, 405]),
        load("/nowhere", &[], 5_000, &[404]),
        // Last on its route: the breaker opens and answers 503 from then on.
        load(
            "/api/v1/users/1",
            &[&finance, "x-echo-status: 500"],
            5_000,
            &[500, 503],
        ),
    ]
}

/// `text` with its one `from` replaced by `to`; an error when `from` is not
/// there, so the training never runs on a config it did not mean.
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => Err(format!(
            "the quickstart's config has {n} of `{from}`, where the training expects one"
        )),
    }
}

/// The quickstart's config on free ports, with the plugins of
/// `cargo xtask plugins`, its rate limit raised so that successes dominate,
/// and a route without plugins.
struct Training {
    config: String,
    gateway_port: u16,
    /// The demo services it proxies to: NAME and ADDR.
    services: Vec<(&'static str, String)>,
}

fn training_config(plugins: &Path) -> Result<Training> {
    let path = root().join("examples/quickstart/gatehouse.toml");
    let mut config = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let [gateway, users_a, users_b, orders, payments] = free_ports()?;
    let services = [
        ("user-service", "9001", users_a),
        ("user-service-2", "9002", users_b),
        ("order-service", "9003", orders),
        ("payment-service", "9004", payments),
    ];
    let local = |port: u16| format!("127.0.0.1:{port}");
    // Quoted, as the config's values are (its comments name the ports too).
    let quoted = |addr: &str| format!("\"{addr}\"");
    config = replace_once(&config, &quoted("127.0.0.1:8080"), &quoted(&local(gateway)))?;
    for (_, quickstart_port, port) in services {
        config = replace_once(
            &config,
            &quoted(&format!("127.0.0.1:{quickstart_port}")),
            &quoted(&local(port)),
        )?;
    }
    config = replace_once(
        &config,
        "plugins_dir = \"plugins\"",
        &format!("plugins_dir = {:?}", plugins.display().to_string()),
    )?;
    config = replace_once(
        &config,
        "limit = 5, window = \"1m\"",
        "limit = 100000000, window = \"1m\"",
    )?;
    config.push_str("\n[[routes]]\nname = \"plain\"\npath = \"/plain/*\"\nupstream = \"orders\"\n");
    let services = services
        .into_iter()
        .map(|(name, _, port)| (name, local(port)))
        .collect();
    Ok(Training {
        config,
        gateway_port: gateway,
        services,
    })
}

fn train(gateway: &Path, plugins: &Path, dir: &Path) -> Result {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let Training {
        config,
        gateway_port,
        services,
    } = training_config(plugins)?;
    let config_path = dir.join("gatehouse.toml");
    std::fs::write(&config_path, config)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;

    let release = root().join("target/release");
    let mut children = Children(Vec::new());
    crate::start_demo_services(&mut children, &release, &services)?;
    let gateway_addr = format!("127.0.0.1:{gateway_port}");

    // A cold start (tiered: baseline code first, Cranelift's in the
    // background), the whole workload, then a start from the cache it filled.
    let cache = dir.join("cache");
    for loads in [workload(), workload().into_iter().take(1).collect()] {
        let mut serve = Command::new(gateway);
        serve
            .args(["run", "--no-watch", "--config"])
            .arg(&config_path)
            .env("XDG_CACHE_HOME", &cache)
            .env("GATEHOUSE_LOG", "error");
        children.0.push(
            serve
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", gateway.display()))?,
        );
        crate::wait_for_port(
            &gateway_addr,
            "the instrumented gateway",
            Duration::from_secs(120),
        )?;
        for load in &loads {
            send(&release.join("fixed-rate"), &gateway_addr, load)?;
        }
        // SIGTERM: the gateway drains and exits, which writes its profile.
        let gw = children.0.last_mut().expect("the gateway was started");
        run(Command::new("kill").args(["-TERM", &gw.id().to_string()]))?;
        let status = gw.wait().map_err(|e| e.to_string())?;
        children.0.pop();
        if !status.success() {
            return Err(format!("the instrumented gateway exited with {status}"));
        }
    }
    // `check` compiles every plugin with Cranelift, with an empty cache.
    run(Command::new(gateway)
        .args(["check", "--config"])
        .arg(&config_path)
        .env("XDG_CACHE_HOME", dir.join("check-cache"))
        .stdout(Stdio::null()))
}

/// Sends `load` with the repository's load tool and checks every answer's
/// status: a workload answered with errors it does not expect would train
/// the wrong paths.
fn send(tool: &Path, addr: &str, load: &Load) -> Result {
    let mut cmd = Command::new(tool);
    cmd.args(["-c", "16", "-n", &load.requests.to_string()]);
    for h in &load.headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("http://{addr}{}", load.path));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    let report = String::from_utf8_lossy(&out.stdout);
    // The report is one JSON object with `"statuses":{"200":N,…}`.
    let statuses = report
        .split_once("\"statuses\":{")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(s, _)| s)
        .unwrap_or_default();
    let seen: Vec<u16> = statuses
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .filter_map(|(k, _)| k.trim_matches('"').parse().ok())
        .collect();
    if !out.status.success() || seen.is_empty() || !seen.iter().all(|s| load.statuses.contains(s)) {
        return Err(format!(
            "training request {} {:?}: expected statuses {:?}, got {report}{}",
            load.path,
            load.headers,
            load.statuses,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    println!(
        "xtask: trained {} × {} ({statuses})",
        load.requests, load.path
    );
    Ok(())
}
