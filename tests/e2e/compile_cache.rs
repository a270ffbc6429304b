//! The compile cache on disk, through the real binary: a first start
//! serves on baseline code and caches the optimised code compiled in the
//! background, a restart loads it instead of compiling again, a damaged
//! artifact is compiled again, and a directory other users could write to
//! is not used.

use gatehouse_tests::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;

/// A gateway process with one add-header route and the admin API.
struct Proc {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    /// What it logged before it was ready.
    log: Vec<serde_json::Value>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, cache: &Path, up: &Echo) -> Proc {
    let path = dir.join("gatehouse.toml");
    let toml = format!(
        "{SERVER}\nadmin_listen = \"127.0.0.1:0\"\ncompile_cache = \"{}\"\n\
         [upstreams.up]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"all\"\npath = \"/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"add-header\"\nconfig = {{ name = \"x-cached\", value = \"yes\" }}\n",
        cache.display(),
        up.addr
    )
    .replace("{plugins}", &plugins_dir().display().to_string());
    std::fs::write(&path, toml).unwrap();
    let s = spawn_gatehouse(&path, &["--no-watch"]);
    Proc {
        child: s.child,
        addr: s.addr,
        admin: s.admin.expect("the admin API address is logged"),
        log: s.log,
    }
}

impl Proc {
    /// Where add-header's machine code came from, as the admin API says.
    async fn compiled_by(&self) -> String {
        let seen = TestClient::default()
            .get(&format!("http://{}/admin/plugins", self.admin))
            .await;
        seen.json()["plugins"][0]["compiled_by"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits until add-header runs optimised code, compiled in the
    /// background after a start on baseline code.
    async fn optimised(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let by = self.compiled_by().await;
            if by == "compiler" {
                return;
            }
            assert_eq!(by, "baseline", "before the optimised code");
            assert!(std::time::Instant::now() < deadline, "never optimised");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Where the plugin's code came from when it was loaded, as logged.
    fn loaded_by(&self) -> String {
        self.log
            .iter()
            .find(|v| v["fields"]["message"] == "plugin loaded")
            .and_then(|v| v["fields"]["compiled_by"].as_str())
            .expect("the load is logged before ready")
            .to_owned()
    }

    /// The plugin runs: the upstream sees its header.
    async fn assert_serves(&self) {
        let seen = TestClient::default()
            .get(&format!("http://{}/x", self.addr))
            .await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.upstream_header("x-cached").as_deref(), Some("yes"));
    }
}

fn artifacts(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_restart_loads_plugins_from_the_compile_cache() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    let first = start(dir.path(), &cache, &up);
    assert_eq!(first.loaded_by(), "baseline");
    first.assert_serves().await;
    first.optimised().await;
    first.assert_serves().await;
    drop(first);
    let files = artifacts(&cache);
    assert_eq!(files.len(), 1, "one artifact for one plugin: {files:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700, "the cache folder is private");
        assert_eq!(mode(&files[0]), 0o600, "artifacts are private");
    }

    let second = start(dir.path(), &cache, &up);
    assert_eq!(second.loaded_by(), "disk-cache");
    assert_eq!(second.compiled_by().await, "disk-cache");
    second.assert_serves().await;
}

#[tokio::test]
async fn a_damaged_artifact_is_compiled_again_and_replaced() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let first = start(dir.path(), &cache, &up);
    first.optimised().await;
    drop(first);
    let file = artifacts(&cache).pop().expect("an artifact");
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 3]).unwrap();

    let again = start(dir.path(), &cache, &up);
    assert_eq!(again.loaded_by(), "baseline");
    again.assert_serves().await;
    assert!(
        again.log.iter().any(|v| v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not load"))),
        "the damaged file is reported: {:?}",
        again.log
    );
    again.optimised().await;
    drop(again);
    assert_eq!(std::fs::read(&file).unwrap(), whole, "rewritten whole");
}

#[cfg(unix)]
#[tokio::test]
async fn a_cache_folder_other_users_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();

    let gw = start(dir.path(), &cache, &up);
    gw.assert_serves().await;
    gw.optimised().await;
    let warning = gw
        .log
        .iter()
        .filter_map(|v| v["fields"]["message"].as_str())
        .find(|m| m.contains("compile cache is off"))
        .expect("the refusal is logged");
    assert!(warning.contains("writable by other users"), "{warning}");
    drop(gw);
    assert!(artifacts(&cache).is_empty(), "nothing written there");
}
