//! Atomic file output, shared by every crate that writes results: a file appears whole or not
//! at all, so a killed run never leaves a truncated JSON, feature file or checkpoint index
//! behind for a later stage (or a resumed run) to trip over.
//!
//! Bytes go to `.<name>.<pid>.partial` in the destination's folder, are synced, and the file is
//! renamed over the destination (atomic on one file system). The process id keeps writers in
//! different processes apart (the shards of one extraction write the same settings file); the
//! temporary file is removed when anything fails.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name used while writing `path` from this process.
fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = partial_name(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_cleans_up_after_failure() {
        let dir = std::env::temp_dir().join(format!("lofi-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.json");
        write_atomic(&path, b"first").expect("written");
        write_atomic(&path, b"second").expect("replaced");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        // A destination that is a folder: the rename fails and no temporary file is left.
        let folder = dir.join("sub");
        std::fs::create_dir_all(folder.join("x")).expect("folder");
        assert!(write_atomic(&folder, b"x").is_err());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
