//! Watched files: a replaced plugin is checked off the request path and
//! swapped in with no failed request; bad files are refused and the
//! previous version keeps serving; a removed file keeps its loaded version;
//! an edited config file reloads by itself.

use gatehouse_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Swap {
    gw: TestGateway,
    _up: Echo,
    plugins: tempfile::TempDir,
}

impl Swap {
    /// A watched gateway whose route runs `swap.wasm` (a copy of `first`)
    /// with an empty config, from a plugins folder of its own.
    async fn start(first: &str) -> Swap {
        let plugins = tempfile::tempdir().unwrap();
        std::fs::copy(built(first), plugins.path().join("swap.wasm")).unwrap();
        let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nplugins_dir = \"{}\"\n\
             [upstreams.up]\ntargets = [\"{}\"]\n\
             [[routes]]\nname = \"swapped\"\npath = \"/*\"\nupstream = \"up\"\n\
             [[routes.plugins]]\nplugin = \"swap\"\nconfig = {{}}\n",
            plugins.path().display(),
            up.addr
        );
        let gw = TestGateway::start(&toml).await;
        gw.watch();
        Swap {
            gw,
            _up: up,
            plugins,
        }
    }

    fn file(&self) -> PathBuf {
        self.plugins.path().join("swap.wasm")
    }

    /// Replaces swap.wasm the way a deploy should: write aside, rename over.
    fn replace_with(&self, plugin: &str) {
        let tmp = self.plugins.path().join("swap.wasm.tmp");
        std::fs::copy(built(plugin), &tmp).unwrap();
        std::fs::rename(&tmp, self.file()).unwrap();
    }

    /// Whether the route currently runs cors (which answers with CORS headers).
    async fn runs_cors(&self) -> bool {
        let seen = TestClient::default()
            .get_with(&self.gw.url("/x"), &[("origin", "https://app.example")])
            .await;
        assert_eq!(seen.status, 200);
        seen.header("access-control-allow-origin").is_some()
    }

    async fn plugins_report(&self) -> Value {
        let url = format!("http://{}/admin/plugins", self.gw.admin.unwrap());
        TestClient::default().get(&url).await.json()
    }

    /// Waits for a reload after `before` (an `at_ms` of the last one) and
    /// returns its report.
    async fn next_reload(&self, before: u64) -> Value {
        for _ in 0..300 {
            let report = self.plugins_report().await["last_reload"].clone();
            if report["at_ms"].as_u64().is_some_and(|at| at > before) {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no reload happened");
    }

    async fn last_reload_at(&self) -> u64 {
        self.plugins_report().await["last_reload"]["at_ms"]
            .as_u64()
            .unwrap_or(0)
    }
}

fn built(plugin: &str) -> PathBuf {
    plugins_dir().join(format!("{plugin}.wasm"))
}

fn sha256_of(path: &Path) -> String {
    use std::fmt::Write;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(path).unwrap());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[tokio::test]
async fn a_replaced_plugin_is_swapped_in_under_load_with_no_failed_request() {
    let swap = Swap::start("cors").await;
    assert!(swap.runs_cors().await);

    let load = Load::start(&swap.gw.url("/x"), 6);
    let before = swap.last_reload_at().await;
    swap.replace_with("transform");
    let report = swap.next_reload(before).await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(!swap.runs_cors().await, "the new version serves");
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0);
    assert!(ok > 50, "the load ran: {ok}");
    let plugins = swap.plugins_report().await;
    assert_eq!(
        plugins["plugins"][0]["sha256"],
        sha256_of(&built("transform"))
    );
}

#[tokio::test]
async fn bad_files_are_refused_and_a_removed_file_keeps_serving() {
    let swap = Swap::start("cors").await;
    let good = std::fs::read(built("cors")).unwrap();
    for (what, bytes, expected) in [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "invalid component",
        ),
        (
            "not wasm",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "failing init",
            std::fs::read(built("add-header")).unwrap(),
            "init failed",
        ),
    ] {
        let before = swap.last_reload_at().await;
        std::fs::write(swap.file(), &bytes).unwrap();
        let report = swap.next_reload(before).await;
        assert_eq!(report["ok"], false, "{what}: {report}");
        assert!(
            report["errors"].to_string().contains(expected),
            "{what}: {report}"
        );
        assert!(
            swap.runs_cors().await,
            "{what}: the previous version keeps serving"
        );
    }

    // Over the size cap (a sparse file: nothing is written, nothing read).
    let before = swap.last_reload_at().await;
    let huge = std::fs::File::create(swap.file()).unwrap();
    huge.set_len(gatehouse::plugin::MAX_PLUGIN_FILE + 1)
        .unwrap();
    drop(huge);
    let report = swap.next_reload(before).await;
    assert!(
        report["errors"]
            .to_string()
            .contains("over the 64 MiB limit"),
        "{report}"
    );
    assert!(swap.runs_cors().await);

    let before = swap.last_reload_at().await;
    std::fs::remove_file(swap.file()).unwrap();
    let report = swap.next_reload(before).await;
    assert_eq!(
        report["ok"], true,
        "a removed file is not an error: {report}"
    );
    assert!(swap.runs_cors().await, "the loaded version keeps serving");

    let before = swap.last_reload_at().await;
    swap.replace_with("transform");
    assert_eq!(swap.next_reload(before).await["ok"], true);
    assert!(!swap.runs_cors().await);
}

#[tokio::test]
async fn an_edited_config_file_reloads_by_itself() {
    let swap = Swap::start("cors").await;
    let path = swap.gw.dir().join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let before = swap.last_reload_at().await;
    std::fs::write(&path, text.replace("path = \"/*\"", "path = \"/v2/*\"")).unwrap();
    assert_eq!(swap.next_reload(before).await["ok"], true);
    let c = TestClient::default();
    assert_eq!(c.get(&swap.gw.url("/x")).await.status, 404);
    assert_eq!(c.get(&swap.gw.url("/v2/x")).await.status, 200);
}

#[tokio::test]
async fn a_new_plugin_file_becomes_usable_by_name() {
    let swap = Swap::start("cors").await;
    let before = swap.last_reload_at().await;
    std::fs::copy(built("add-header"), swap.plugins.path().join("fresh.wasm")).unwrap();
    // The file alone changes nothing that runs: the reload it causes succeeds.
    assert_eq!(swap.next_reload(before).await["ok"], true);

    let path = swap.gw.dir().join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let before = swap.last_reload_at().await;
    std::fs::write(
        &path,
        format!("{text}[[routes.plugins]]\nplugin = \"fresh\"\nconfig = {{ name = \"x-fresh\", value = \"yes\" }}\n"),
    )
    .unwrap();
    assert_eq!(swap.next_reload(before).await["ok"], true);
    let seen = TestClient::default().get(&swap.gw.url("/x")).await;
    assert_eq!(seen.upstream_header("x-fresh").as_deref(), Some("yes"));
}

#[tokio::test]
async fn a_file_still_being_written_is_read_once_complete() {
    let swap = Swap::start("cors").await;
    let before = swap.last_reload_at().await;
    let number = swap.plugins_report().await["last_reload"]["number"]
        .as_u64()
        .unwrap_or(0);
    let full = std::fs::read(built("transform")).unwrap();
    let (first, rest) = full.split_at(full.len() / 2);
    std::fs::write(swap.file(), first).unwrap();
    // Well inside the quiet time a reload waits for.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(swap.file())
        .unwrap();
    std::io::Write::write_all(&mut file, rest).unwrap();
    drop(file);
    let report = swap.next_reload(before).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["number"],
        number + 1,
        "one reload, of the complete file: {report}"
    );
    assert!(!swap.runs_cors().await);
}
