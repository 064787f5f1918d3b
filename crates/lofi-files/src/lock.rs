//! Advisory locks on the folders a stage writes.
//!
//! Exists because two processes writing one run or feature folder end with a mix of both (one
//! run's weights, the other's printed numbers) and both exit 0. Every stage that writes a folder
//! holds a lock on it for as long as it writes: a second process is refused at once with a message
//! naming the holder (process id, host, start time, command).
//!
//! The lock is the operating system's advisory file lock (`flock` on Unix, through std's
//! `File::try_lock`) on a file `.lofi-lock` inside the folder: the kernel releases it when the
//! holding process ends, however it ends, so a lock can never outlive its process. The file also
//! holds a line describing the holder, cleared when the holder finishes normally; a description
//! found when the lock is free therefore belongs to a process that died while holding it (killed,
//! out of memory, a crashed node). That stale lock is reported (which process, when it started)
//! and taken over: the folder's own resume rules decide what of its work is kept.
//!
//! Sharded extraction runs several processes in one folder on purpose: each takes the folder's
//! lock *shared* and its own shard's lock exclusively ([`FolderLock::shard`]), so shards coexist,
//! two runs of the same shard do not, and an unsharded run excludes every shard.
//!
//! Advisory locks are only as good as the file system's support: local file systems and NFSv4
//! honour them; some network file systems ignore them silently.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{FilesError, FilesResult};

/// Name of the lock file of a folder.
pub const LOCK_FILE: &str = ".lofi-lock";

/// A held lock; released when dropped (and by the kernel if the process dies).
#[derive(Debug)]
pub struct FolderLock {
    /// Exclusive lock whose file describes the holder.
    file: File,
    path: PathBuf,
    /// The folder-wide shared lock a shard holds beside its own exclusive one.
    _shared: Option<File>,
}

impl FolderLock {
    /// Takes the exclusive lock of `dir` (created if needed) for `what` (a stage's name, for
    /// messages), or fails naming the process that holds it.
    pub fn exclusive(dir: &Path, what: &str) -> FilesResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| FilesError::io(dir, e))?;
        Self::hold(&dir.join(LOCK_FILE), dir, what, None)
    }

    /// Takes shard `index` of `count`'s lock of `dir`: the folder's lock shared (other shards may
    /// hold it too; an unsharded run may not) and the shard's own lock exclusively.
    pub fn shard(dir: &Path, what: &str, index: usize, count: usize) -> FilesResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| FilesError::io(dir, e))?;
        let folder_path = dir.join(LOCK_FILE);
        let folder = open(&folder_path)?;
        match folder.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(busy(dir, what, &describe_holder(&folder_path)));
            }
            Err(TryLockError::Error(e)) => return Err(FilesError::io(&folder_path, e)),
        }
        let own = dir.join(format!("{LOCK_FILE}.shard-{index}-of-{count}"));
        Self::hold(&own, dir, what, Some(folder))
    }

    /// Waits for, then takes, the folder's short claiming lock: processes that share a folder
    /// (shards) check and record their claim one at a time, so each sees what the others
    /// recorded. Held only while claiming; released when dropped.
    pub fn claiming(dir: &Path) -> FilesResult<ClaimLock> {
        let path = dir.join(format!("{LOCK_FILE}.claim"));
        let file = open(&path)?;
        file.lock().map_err(|e| FilesError::io(&path, e))?;
        Ok(ClaimLock { file })
    }

    /// A reader's hold on `dir` (a feature folder that `train-head` or `detect` reads): refused
    /// while a lofi process writes it, the whole folder (an extraction, `--verify` merging its
    /// indexes) or one of its shards, naming that process; with `wait`, waits for it instead.
    /// Holding the folder's lock shared keeps an unsharded writer out for as long as the reader
    /// runs. A folder no lofi process ever wrote (no lock file) needs no lock: `None`.
    pub fn read(dir: &Path, what: &str, wait: bool) -> FilesResult<Option<ReadLock>> {
        let path = dir.join(LOCK_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let mut announced = false;
        loop {
            match try_read(dir, &path)? {
                Ok(lock) => return Ok(Some(lock)),
                Err(holder) if wait => {
                    if !announced {
                        tracing::info!(
                            "{what}: waiting for the lofi process writing {} ({holder})",
                            dir.display()
                        );
                        announced = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Err(holder) => {
                    return Err(FilesError::Busy(format!(
                        "{} is being written by another lofi process ({holder}); {what} does not \
                         read a folder that is still being written: let that process finish, \
                         or pass --wait to wait for it",
                        dir.display()
                    )))
                }
            }
        }
    }

    /// The lofi process writing `dir` now (the folder, or one of its shards), as its lock line
    /// names it; `None` when none is. Takes nothing: for a reader that checks once and then
    /// relies on the hashes it reads against (the Python package's `FeatureFolder`).
    pub fn writer_of(dir: &Path) -> FilesResult<Option<String>> {
        let path = dir.join(LOCK_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        Ok(try_read(dir, &path)?.err())
    }

    fn hold(path: &Path, dir: &Path, what: &str, shared: Option<File>) -> FilesResult<Self> {
        let mut file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(busy(dir, what, &describe_holder(path)));
            }
            Err(TryLockError::Error(e)) => return Err(FilesError::io(path, e)),
        }
        let mut previous = String::new();
        file.read_to_string(&mut previous)
            .map_err(|e| FilesError::io(path, e))?;
        let previous = previous.trim();
        if !previous.is_empty() {
            tracing::warn!(
                "{}: a stale lock of {} ({previous}) that ended without finishing; taking over, \
                 the folder's resume rules decide what of its work is kept",
                dir.display(),
                if holder_alive(previous) {
                    "a process that no longer holds it"
                } else {
                    "a process that is not running any more"
                }
            );
        }
        let me = holder_line();
        file.set_len(0).map_err(|e| FilesError::io(path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| FilesError::io(path, e))?;
        file.write_all(me.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| FilesError::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            _shared: shared,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A reader's shared hold on a folder ([`FolderLock::read`]); released when dropped.
#[derive(Debug)]
pub struct ReadLock {
    _file: File,
}

/// The reader's lock of `dir` (lock file `path`), or the holder of a writer's lock.
fn try_read(dir: &Path, path: &Path) -> FilesResult<Result<ReadLock, String>> {
    let file = File::open(path).map_err(|e| FilesError::io(path, e))?;
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Err(describe_holder(path))),
        Err(TryLockError::Error(e)) => return Err(FilesError::io(path, e)),
    }
    // Shards hold the folder's lock shared, as a reader does: each shard's own lock tells.
    let shard_prefix = format!("{LOCK_FILE}.shard-");
    for entry in std::fs::read_dir(dir).map_err(|e| FilesError::io(dir, e))? {
        let entry = entry.map_err(|e| FilesError::io(dir, e))?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(&shard_prefix)
        {
            continue;
        }
        let shard_path = entry.path();
        let shard = File::open(&shard_path).map_err(|e| FilesError::io(&shard_path, e))?;
        match shard.try_lock() {
            Ok(()) => {
                let _ = shard.unlock();
            }
            Err(TryLockError::WouldBlock) => return Ok(Err(describe_holder(&shard_path))),
            Err(TryLockError::Error(e)) => return Err(FilesError::io(&shard_path, e)),
        }
    }
    Ok(Ok(ReadLock { _file: file }))
}

/// The claiming lock of [`FolderLock::claiming`].
#[derive(Debug)]
pub struct ClaimLock {
    file: File,
}

impl Drop for ClaimLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // A normal end clears the holder line, so only a process that died leaves one behind.
        // Failure to clear is harmless: the next holder reports a stale lock.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Opens (or creates) a lock file. In a folder its group may write (a shared project folder), the
/// lock file is made group-writable too, so that the next member of the group can take it; a lock
/// file this user may not open is an error naming who wrote it last.
fn open(path: &Path) -> FilesResult<File> {
    let existed = path.exists();
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let holder = match std::fs::read_to_string(path) {
                Ok(t) if !t.trim().is_empty() => format!("its last holder: {}", t.trim()),
                Ok(_) => "no holder now".to_string(),
                Err(_) => "its holder line is not readable either".to_string(),
            };
            // Still a permission error (a read-only folder is one, which `--verify` accepts),
            // with what a person needs to know.
            return Err(FilesError::io(
                path,
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "this user may not open the lock file ({e}; {holder}); if another \
                         user's lofi made it, ask them to make it group-writable (chmod g+w), \
                         or choose another folder"
                    ),
                ),
            ));
        }
        Err(e) => return Err(FilesError::io(path, e)),
    };
    #[cfg(unix)]
    if !existed {
        use std::os::unix::fs::PermissionsExt;
        let group_writable = path
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
            .is_some_and(|m| m.permissions().mode() & 0o020 != 0);
        if group_writable {
            if let Ok(meta) = file.metadata() {
                let mut perms = meta.permissions();
                perms.set_mode(perms.mode() | 0o060);
                let _ = std::fs::set_permissions(path, perms);
            }
        }
    }
    Ok(file)
}

fn busy(dir: &Path, what: &str, holder: &str) -> FilesError {
    FilesError::Busy(format!(
        "{} is in use by another lofi process ({holder}); {what} waits for no one: let that \
         process finish or stop it, or choose another --out",
        dir.display()
    ))
}

/// The holder line of a lock file, read without locking (what the holder wrote).
fn describe_holder(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "no holder line: shards of a sharded run hold it shared".to_string(),
    }
}

/// `pid <N> on <host>, started <unix seconds>: <command line>`.
fn holder_line() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let command: Vec<String> = std::env::args().collect();
    format!(
        "pid {} on {host}, started {started} (unix time): {}",
        std::process::id(),
        command.join(" ")
    )
}

/// Whether the process of a holder line still runs (on this host; `false` when unknown).
fn holder_alive(line: &str) -> bool {
    line.strip_prefix("pid ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named_until_the_first_lets_go() -> FilesResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| FilesError::io("tmp", e))?;
        let dir = tmp.path().join("run");
        let first = FolderLock::exclusive(&dir, "training")?;
        // A second open of the file is its own lock holder, as another process would be.
        let e = FolderLock::exclusive(&dir, "training").expect_err("held");
        let text = e.to_string();
        assert!(
            text.contains("in use by another lofi process")
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).ok(),
            Some(String::new())
        );
        let _again = FolderLock::exclusive(&dir, "training")?;
        Ok(())
    }

    #[test]
    fn shards_coexist_but_exclude_their_twin_and_the_unsharded_run() -> FilesResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| FilesError::io("tmp", e))?;
        let dir = tmp.path();
        let a = FolderLock::shard(dir, "extraction", 0, 2)?;
        let _b = FolderLock::shard(dir, "extraction", 1, 2)?;
        assert!(FolderLock::shard(dir, "extraction", 0, 2).is_err());
        assert!(FolderLock::exclusive(dir, "extraction").is_err());
        drop(a);
        let _a = FolderLock::shard(dir, "extraction", 0, 2)?;
        Ok(())
    }

    #[test]
    fn a_dead_holder_line_is_a_stale_lock_that_is_taken_over() -> FilesResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| FilesError::io("tmp", e))?;
        let dir = tmp.path();
        // What a killed process leaves: its line, and no lock (the kernel released it).
        std::fs::write(
            dir.join(LOCK_FILE),
            "pid 4294967 on h, started 1 (unix time): lofi",
        )
        .map_err(|e| FilesError::io("w", e))?;
        assert!(!holder_alive("pid 4294967 on h"));
        assert!(holder_alive(&holder_line()));
        let lock = FolderLock::exclusive(dir, "training")?;
        let line = std::fs::read_to_string(lock.path()).map_err(|e| FilesError::io("r", e))?;
        assert!(
            line.starts_with(&format!("pid {} ", std::process::id())),
            "{line}"
        );
        Ok(())
    }

    #[test]
    fn a_reader_is_refused_while_the_folder_or_a_shard_is_written() -> FilesResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| FilesError::io("tmp", e))?;
        let dir = tmp.path();
        // Never written by lofi: nothing to wait for.
        assert!(FolderLock::read(dir, "detect", false)?.is_none());
        let writer = FolderLock::exclusive(dir, "extraction")?;
        let e = FolderLock::read(dir, "detect", false).expect_err("written");
        let pid = format!("pid {}", std::process::id());
        assert!(
            e.to_string().contains("still being written") && e.to_string().contains(&pid),
            "{e}"
        );
        drop(writer);
        let shard = FolderLock::shard(dir, "extraction", 1, 2)?;
        let e = FolderLock::read(dir, "train-head", false).expect_err("a shard");
        assert!(
            e.to_string().contains(&pid) && e.to_string().contains("--wait"),
            "{e}"
        );
        assert!(FolderLock::writer_of(dir)?.is_some_and(|w| w.contains(&pid)));
        drop(shard);
        assert_eq!(FolderLock::writer_of(dir)?, None);
        let reader = FolderLock::read(dir, "detect", false)?.expect("a lock file exists");
        // While it reads, no unsharded writer starts.
        assert!(FolderLock::exclusive(dir, "extraction").is_err());
        drop(reader);
        drop(FolderLock::exclusive(dir, "extraction")?);
        Ok(())
    }
}
