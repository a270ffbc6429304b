//! The gateway's private cache of compiled plugins on disk, so a restart
//! does not run the compiler again: one artifact per plugin file, named by
//! the SHA-256 of the `.wasm` bytes and a hash of the engine's settings (a
//! new wasmtime or other settings never load an old artifact).
//!
//! Loading an artifact runs its machine code unchecked, so the cache only
//! ever holds what this gateway compiled and wrote itself: the directory
//! must belong to the gateway's user and be writable by nobody else, files
//! are written whole under a temporary name and renamed into place, and a
//! file that does not load is deleted and compiled again. Precompiled files
//! from anywhere else (the plugins folder included) are never loaded.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Artifacts kept; the least recently used go first.
const MAX_FILES: usize = 128;

const EXT: &str = "cwasm";

pub struct DiskCache {
    dir: PathBuf,
    /// The engine settings' hash, part of every file name.
    engine: String,
}

impl DiskCache {
    /// Creates the directory if needed (readable by the gateway's user
    /// only) and refuses one that another user could write to.
    pub fn open(dir: &Path, engine: &Engine) -> io::Result<DiskCache> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        check_private(dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            engine: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, digest: &[u8; 32]) -> PathBuf {
        let name = format!("{}-{}.{EXT}", super::hex(digest), self.engine);
        self.dir.join(name)
    }

    /// The component compiled earlier from the file with this digest.
    pub fn load(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let path = self.path(digest);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file is one this gateway serialized itself into a
        // directory only its user can write (checked at `open`), written
        // whole and renamed into place; wasmtime checks the header, the
        // engine settings and the version before using it.
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => {
                // Marks it recently used, for pruning.
                if let Ok(f) = fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    "a cached compiled plugin does not load ({e}); compiling it again"
                );
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a compiled component; failures are logged, never fatal.
    pub fn store(&self, digest: &[u8; 32], component: &Component) {
        let path = self.path(digest);
        let result = component
            .serialize()
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|bytes| write_whole(&path, &bytes));
        match result {
            Ok(()) => self.prune(),
            Err(e) => tracing::warn!(
                dir = %self.dir.display(),
                "cannot save a compiled plugin to the cache: {e}"
            ),
        }
    }

    /// Keeps the newest [`MAX_FILES`] artifacts.
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == EXT))
            .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        if files.len() <= MAX_FILES {
            return;
        }
        files.sort();
        for (_, p) in &files[..files.len() - MAX_FILES] {
            let _ = fs::remove_file(p);
        }
    }
}

/// Writes under a temporary name, then renames: a reader sees the whole
/// file or none.
fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = fs::File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The directory must be the gateway user's own and not group- or
/// world-writable: whoever can write there chooses the code it runs.
#[cfg(unix)]
fn check_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(dir)?;
    // The owner of a file we create is our own user.
    let probe = dir.join(format!(".probe{}", std::process::id()));
    let me = fs::File::create(&probe)
        .and_then(|f| f.metadata())
        .map(|m| m.uid());
    let _ = fs::remove_file(&probe);
    let me = me?;
    if meta.uid() != me {
        return Err(io::Error::other(format!(
            "{} belongs to another user (uid {}); the compile cache must be the gateway's own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is writable by other users (mode {:o}); make it private (chmod 700)",
            dir.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> io::Result<()> {
    Ok(())
}
