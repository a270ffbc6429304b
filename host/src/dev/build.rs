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
}

/// The contract, for toolchains that generate bindings at build time.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// The Python SDK module.
pub const PYTHON_SDK: &str = include_str!("../../../sdk/python/gatehouse.py");

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
    if !c_sources(dir)?.is_empty() {
        return Ok(Lang::C);
    }
    bail!(
        "{}: no Cargo.toml, app.py or .c files: not a plugin project gatehouse can build (see `gatehouse plugin new`)",
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
    if let Some(zig) = std::env::var_os("ZIG").filter(|z| !z.is_empty()) {
        return Ok(Command::new(zig));
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
    let status = cc.status().with_context(|| format!("cannot run {cc:?}"))?;
    if !status.success() {
        bail!("the C compiler failed ({status})");
    }
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
    let tool = std::env::var_os("COMPONENTIZE_PY")
        .filter(|z| !z.is_empty())
        .unwrap_or_else(|| "componentize-py".into());
    let out = dir.join("build").join(format!("{name}.wasm"));
    let mut cmd = Command::new(&tool);
    // Quiet: stdout carries only the path written.
    cmd.args(["-q", "-d"])
        .arg(sdk.join("wit"))
        .args(["-w", "plugin", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(sdk.join("python"))
        .arg("-o")
        .arg(&out)
        .current_dir(dir);
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "Python plugins are built with componentize-py, and none was found: `pip install componentize-py==0.25.1` (or set COMPONENTIZE_PY to its path)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run {cmd:?}")),
    };
    if !status.success() {
        bail!("componentize-py failed ({status})");
    }
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
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed ({status}); is the target installed? `rustup target add wasm32-wasip2`"
        );
    }
    let built = Path::new(target_dir)
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let bytes =
        std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    Ok((name, bytes))
}
