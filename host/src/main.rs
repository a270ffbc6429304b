//! The `gatehouse` command.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse::access_log::{self, AccessLog};
use gatehouse::dev::run::{RunSpec, Verdict, text_or_file};
use gatehouse::live::Live;
use gatehouse::{Config, Gateway, Runtime, server};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc (see `gatehouse::alloc` for why, and how it is called).
#[global_allocator]
static ALLOCATOR: gatehouse::alloc::Mimalloc = gatehouse::alloc::Mimalloc;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An API gateway extended by sandboxed WebAssembly plugins"
)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with a config.
    Run {
        #[arg(long, short, default_value = "gatehouse.toml")]
        config: PathBuf,
        /// One line per request: `off`, `stdout`, or a file to append to
        /// (in the --log-format).
        #[arg(long, default_value = "off")]
        access_log: String,
        /// Do not reload when the config file or a plugin file changes
        /// (SIGHUP and the admin API still reload).
        #[arg(long)]
        no_watch: bool,
    },
    /// Validate a config: parse it, load and initialise every plugin, and
    /// list every error found (exit status 1 if any).
    Check {
        #[arg(long, short, default_value = "gatehouse.toml")]
        config: PathBuf,
    },
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(Box<PluginCommand>),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run one plugin on one request, without a server, and print what it
    /// decided: the request as it would go upstream (then the response
    /// after its on-response), or the reply it answered with. Exit status:
    /// 0 when it let the request through, 3 when it answered, 1 when it
    /// failed (init refused the config, an error, a trap).
    Run(Box<RunArgs>),
    /// Create a plugin project that builds as it is, with the SDK for its
    /// language inside: `gatehouse plugin new --lang c my-guard`.
    New {
        /// The plugin's name (NAME.wasm; `plugin = "NAME"` in configs).
        name: String,
        #[arg(long, value_enum)]
        lang: gatehouse::dev::build::Lang,
        /// Where to create the NAME folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin project to a component: C (compiled with zig against
    /// the C SDK built into this binary) or Rust (cargo, wasm32-wasip2).
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The component to write (default: DIR/NAME.wasm); written whole,
        /// so a gateway watching the folder never sees half of it.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The plugin component.
    wasm: PathBuf,
    /// The entry's config as JSON, or @FILE.
    #[arg(long, default_value = "{}")]
    config: String,
    /// The request line: "METHOD /path?query".
    #[arg(long, default_value = "GET /")]
    request: String,
    /// A request header, "name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request body, or @FILE.
    #[arg(long)]
    body: Option<String>,
    /// The client's address as the plugin sees it.
    #[arg(long, default_value = "127.0.0.1:50000")]
    client: std::net::SocketAddr,
    /// A fact an earlier plugin would have set, KEY=VALUE (repeatable),
    /// e.g. consumer=alice.
    #[arg(long)]
    context: Vec<String>,
    /// The stand-in upstream's status when the request is let through.
    #[arg(long, default_value_t = 200)]
    upstream_status: u16,
    /// A stand-in upstream response header, "name: value" (repeatable).
    #[arg(long)]
    upstream_header: Vec<String>,
    /// The stand-in upstream's response body, or @FILE.
    #[arg(long)]
    upstream_body: Option<String>,
    /// Send the same request this many times (host state such as
    /// counters carries over); the last one is shown in full.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Linear memory cap per instance, e.g. "32MiB".
    #[arg(long, default_value = "32MiB")]
    memory: bytesize::ByteSize,
    /// CPU deadline per call, e.g. "50ms".
    #[arg(long, default_value = "50ms")]
    timeout: humantime::Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check` answers on stdout; its log says only what went wrong.
    let level = match cli.command {
        Command::Check { .. } => "warn",
        _ => "info",
    };
    init_logs(cli.log_format, level);
    if let Command::Plugin(command) = cli.command {
        return plugin_command(*command);
    }
    let (path, check, access_log, watch) = match &cli.command {
        Command::Run {
            config,
            access_log,
            no_watch,
        } => (config.as_path(), false, access_log.as_str(), !no_watch),
        Command::Check { config } => (config.as_path(), true, "off", false),
        Command::Plugin(_) => unreachable!("handled above"),
    };
    let access_log = match access_log {
        "off" => None,
        target => {
            let format = match cli.log_format {
                LogFormat::Text => access_log::Format::Text,
                LogFormat::Json => access_log::Format::Json,
            };
            match access_log::AccessLog::open(target, format) {
                Ok(log) => Some(log),
                Err(e) => {
                    eprintln!("error: cannot open the access log {target}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut rt = if config.server.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if config.server.workers > 1 {
        rt.worker_threads(config.server.workers);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if check {
            run_check(path, &config).await
        } else {
            run(path, &config, access_log, watch).await
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn plugin_command(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::New { name, lang, dir } => {
            match gatehouse::dev::new::scaffold(lang, &name, &dir) {
                Ok(made) => {
                    println!("created {}", made.display());
                    println!("build:   gatehouse plugin build {}", made.display());
                    println!(
                        "try it:  gatehouse plugin run {}/{name}.wasm --config '{{\"header\":\"x-api-version\"}}' -H 'x-api-version: 1'",
                        made.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        PluginCommand::Build { dir, out } => {
            match gatehouse::dev::build::build(&dir, out.as_deref()) {
                Ok(file) => {
                    println!("{}", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        PluginCommand::Run(args) => {
            let RunArgs {
                wasm,
                config,
                request,
                headers,
                body,
                client,
                context,
                upstream_status,
                upstream_header,
                upstream_body,
                repeat,
                memory,
                timeout,
            } = *args;
            let spec = (|| -> anyhow::Result<RunSpec> {
                let config =
                    String::from_utf8(text_or_file(&config)?).context("--config is not UTF-8")?;
                Ok(RunSpec {
                    wasm,
                    config_json: config,
                    request,
                    headers,
                    body: body.as_deref().map(text_or_file).transpose()?,
                    client,
                    context,
                    upstream_status,
                    upstream_headers: upstream_header,
                    upstream_body: upstream_body.as_deref().map(text_or_file).transpose()?,
                    repeat,
                    limits: gatehouse::config::Limits {
                        memory: memory.as_u64(),
                        timeout: timeout.into(),
                        ..Default::default()
                    },
                })
            })();
            let spec = match spec {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let verdict = current_thread().and_then(|rt| {
                rt.block_on(async {
                    let mut runtime = Runtime::new().context("starting the plugin runtime")?;
                    if let Some(dir) = gatehouse::config::default_compile_cache() {
                        // Without the cache the plugin is only compiled again.
                        let _ = runtime.use_disk_cache(&dir);
                    }
                    gatehouse::dev::run::run(&runtime, &spec, &mut std::io::stdout()).await
                })
            });
            match verdict {
                Ok(Verdict::Continue) => ExitCode::SUCCESS,
                Ok(Verdict::Respond(_)) => ExitCode::from(3),
                Ok(Verdict::Failed) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// The plugin runtime, with the compile cache the config asks for (a cache
/// that cannot be used is reported and left off, never fatal). A serving
/// gateway is tiered: it starts on baseline code for plugins in no cache;
/// `check` compiles them fully, which also fills the cache for `run`.
fn runtime(config: &Config, tiered: bool) -> anyhow::Result<Runtime> {
    let runtime = if tiered {
        Runtime::tiered()
    } else {
        Runtime::new()
    };
    let mut runtime = runtime.context("starting the plugin runtime")?;
    if let Some(dir) = &config.server.compile_cache
        && let Err(e) = runtime.use_disk_cache(dir)
    {
        tracing::warn!(
            dir = %dir.display(),
            "the compile cache is off: {e}"
        );
    }
    Ok(runtime)
}

async fn run_check(path: &Path, config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = runtime(config, false)?;
    match Gateway::build(config, &runtime).await {
        Ok(gw) => {
            let entries: usize = gw.chains().map(|(_, c)| c.entries.len()).sum();
            println!(
                "{}: ok ({} routes, {entries} plugin entries)",
                path.display(),
                config.routes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run(
    path: &Path,
    config: &Config,
    access_log: Option<AccessLog>,
    watch: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = Arc::new(runtime(config, true)?);
    // Both cores go to the baseline compiles until the gateway serves; the
    // optimiser starts on what they queued then.
    runtime.hold_optimiser(true);
    let gateway = match Gateway::build(config, &runtime).await {
        Ok(g) => match access_log {
            Some(log) => g.with_access_log(log),
            None => g,
        },
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let live = Arc::new(Live::new(gateway, path.to_path_buf(), runtime.clone()));
    // The signals are the gateway's before it says it is ready: a SIGHUP or
    // SIGTERM sent the moment it is must not meet the default action, which
    // ends the process.
    reload_on_sighup(live.clone());
    let shutdown = shutdown_signal();
    let running = server::start(live.clone())
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    if let Some(admin) = running.admin_addr {
        tracing::info!(admin = %admin, "admin API listening");
    }
    tracing::info!(listen = %running.addr, routes = config.routes.len(), "gatehouse ready");
    runtime.hold_optimiser(false);
    if watch && let Err(e) = live.watch() {
        tracing::warn!(
            "cannot watch the config and plugin files ({e}); reload with SIGHUP or the admin API"
        );
    }
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP reloads the config file (the outcome is logged).
fn reload_on_sighup(live: Arc<Live>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload through the admin API");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // The outcome, either way, is logged by the reload itself.
                let _ = live.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = live;
}

/// Listens for SIGTERM and Ctrl-C from now on; the future ends at the
/// first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        async move {
            tokio::select! {
                _ = next(&mut term) => {},
                _ = next(&mut interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to stderr at `GATEHOUSE_LOG`'s levels, else at `level` and above.
fn init_logs(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GATEHOUSE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
