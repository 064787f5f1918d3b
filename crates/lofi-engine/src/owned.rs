//! Ownership: which files of a folder lofi wrote, so that it deletes or replaces only those.
//!
//! Exists because a user's files share folders with lofi's: a dataset folder that a feature
//! extraction writes into, a project folder used as `--out`, a run folder where someone keeps
//! notes. Deciding by file name or extension ("every `*.json` here is ours") deleted a user's
//! ground truth; deciding by what lofi *recorded* cannot. Every folder a stage writes holds
//! `.lofi-owned.jsonl`, an append-only record: one line naming the folder's kind (a training run,
//! a feature folder...) and one line per file lofi wrote there, with the SHA-256 and size of the
//! bytes written. A file is lofi's when its latest line matches what is on disk now: a file of a
//! lofi name whose bytes lofi did not write (a user's `config.toml`, or lofi's file edited by
//! hand) is foreign, and stays.
//!
//! Why append-only lines: a feature folder holds up to tens of thousands of files written by
//! several shard processes at once. Appending one short line per file (one `write` on a file
//! opened for appending, which the kernel positions atomically) needs no rewrite of a list, no
//! lock beyond the folder's, and survives a kill at any instant (a torn last line is ignored, and
//! the file it would have named is then foreign: kept, never deleted).
//!
//! The rules every stage follows through [`prepare`] and [`Owner`]:
//! - a folder of another kind is refused, with or without `--overwrite`;
//! - data inputs (the ground truth, videos, a feature folder) inside the output folder are
//!   refused before any work, except files lofi itself recorded there (the config a resume reads);
//! - a foreign file where the stage will write is refused before any work, with the list;
//! - `--overwrite` removes only what the record owns; foreign files stay and are listed;
//! - every write checks, just before it replaces a file, that the file is lofi's.
//!
//! Folders of a lofi older than the record (a `fingerprint.json` and no record) are adopted on
//! their first resume or overwrite: the files the stage writes under their own names are taken as
//! lofi's, everything else stays foreign.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{EngineError, EngineResult};
use crate::fingerprint::{sha256_bytes, sha256_file, Fingerprint, FINGERPRINT_FILE};
use lofi_files::lock::LOCK_FILE;

use lofi_files::record::Line;
pub use lofi_files::record::{FolderKind, RECORD_FILE};

/// What the record says of one path (its latest line).
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// Every version recorded: a line is appended before the file is renamed into place, so
    /// after a kill in between the old bytes and the new are both lofi's.
    File {
        versions: Vec<(String, u64)>,
        single: bool,
    },
    Log,
    Dir,
}

/// A folder's record, read once.
#[derive(Debug, Clone, Default)]
pub struct Record {
    dir: PathBuf,
    kind: Option<FolderKind>,
    entries: BTreeMap<String, Entry>,
    present: bool,
    /// The stage that recorded the kind created the folder.
    created: bool,
}

impl Record {
    /// Reads the record of `dir`; a folder without one gives an empty record.
    pub fn read(dir: &Path) -> EngineResult<Self> {
        let mut record = Self {
            dir: dir.to_path_buf(),
            ..Self::default()
        };
        if let Some(lines) = lofi_files::record::read(dir)? {
            record.present = true;
            for line in lines {
                record.apply(line);
            }
        }
        Ok(record)
    }

    fn apply(&mut self, line: Line) {
        match line {
            Line::Folder { kind, created, .. } => {
                self.kind.get_or_insert(kind);
                self.created |= created;
            }
            Line::File {
                file,
                sha256,
                bytes,
                single,
            } => match self.entries.get_mut(&file) {
                Some(Entry::File {
                    versions,
                    single: s,
                }) => {
                    versions.push((sha256, bytes));
                    *s = single;
                }
                _ => {
                    self.entries.insert(
                        file,
                        Entry::File {
                            versions: vec![(sha256, bytes)],
                            single,
                        },
                    );
                }
            },
            Line::Log { log } => {
                self.entries.insert(log, Entry::Log);
            }
            Line::Dir { dir } => {
                self.entries.insert(dir, Entry::Dir);
            }
        }
    }

    /// Whether the folder has a record at all.
    pub fn exists(&self) -> bool {
        self.present
    }

    /// The folder's kind, if a stage recorded one.
    pub fn kind(&self) -> Option<FolderKind> {
        self.kind
    }

    /// Whether `rel` (relative to the folder, `/`-separated) is lofi's: recorded, and what is on
    /// disk is what was recorded. A missing file is nobody's.
    pub fn owns(&self, rel: &str) -> EngineResult<bool> {
        let path = self.dir.join(rel);
        match self.entries.get(rel) {
            None => Ok(false),
            Some(Entry::Dir) => Ok(path.is_dir()),
            Some(Entry::Log) => Ok(path.is_file() && crate::metrics::read(&path).is_ok()),
            Some(Entry::File { versions, .. }) => Ok(lofi_files::record::holds(&path, versions)?),
        }
    }

    /// Every path the record names, files before the folders that hold them.
    fn recorded(&self) -> Vec<(&String, &Entry)> {
        let mut all: Vec<_> = self.entries.iter().collect();
        // Deepest first, so a folder comes after everything inside it.
        all.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        all
    }
}

/// Appends to a folder's record as the stage writes; cheap to clone (one record per folder).
#[derive(Debug, Clone)]
pub struct Owner {
    dir: PathBuf,
    record: Arc<Mutex<Record>>,
}

impl Owner {
    /// The owner of `dir`'s record as it is on disk now. Prefer [`prepare`], which also checks
    /// the folder before any work; this is for writers of single files into a folder.
    pub fn open(dir: &Path) -> EngineResult<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            record: Arc::new(Mutex::new(Record::read(dir)?)),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn with_record<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-append; the record is still
        // the lines on disk plus what was applied.
        let mut guard = match self.record.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    /// Whether `rel` is lofi's now (see [`Record::owns`]).
    pub fn owns(&self, rel: &str) -> EngineResult<bool> {
        let record = self.with_record(|r| r.clone());
        record.owns(rel)
    }

    /// Refuses to replace `rel` when a file or folder is there that lofi did not record.
    pub fn check_replace(&self, rel: &str) -> EngineResult<()> {
        let path = self.dir.join(rel);
        if std::fs::symlink_metadata(&path).is_ok() && !self.owns(rel)? {
            return Err(EngineError::Foreign {
                dir: self.dir.clone(),
                files: vec![rel.to_string()],
                doing: "write its own file of that name".into(),
            });
        }
        Ok(())
    }

    fn append(&self, line: Line) -> EngineResult<()> {
        lofi_files::record::append(&self.dir, &line)?;
        self.with_record(|r| {
            r.present = true;
            r.apply(line);
        });
        Ok(())
    }

    /// Records the folder's kind (once; later calls are no-ops) and whether this stage created
    /// the folder.
    pub fn set_kind(&self, kind: FolderKind, created: bool) -> EngineResult<()> {
        if self.with_record(|r| r.kind.is_some()) {
            return Ok(());
        }
        self.append(Line::folder(kind, created))
    }

    /// Writes `bytes` to `rel` atomically and records them; refuses a foreign file there.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> EngineResult<PathBuf> {
        self.write_file(rel, bytes, false)
    }

    fn write_file(&self, rel: &str, bytes: &[u8], single: bool) -> EngineResult<PathBuf> {
        self.check_replace(rel)?;
        let path = self.dir.join(rel);
        // Recorded before the file is in place (see [`Entry::File`]).
        self.append(Line::File {
            file: rel.to_string(),
            sha256: sha256_bytes(bytes),
            bytes: bytes.len() as u64,
            single,
        })?;
        lofi_eval::write_atomic(&path, bytes).map_err(|e| EngineError::io(&path, e))?;
        Ok(path)
    }

    /// Writes `rel` through `write`, which must leave the complete file at the temporary path it
    /// is given (weights written by burn); then records it and renames it into place. Refuses a
    /// foreign file there.
    pub fn write_with<E>(
        &self,
        rel: &str,
        write: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E>
    where
        E: From<EngineError>,
    {
        self.check_replace(rel)?;
        let path = self.dir.join(rel);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        let result = write(&tmp).and_then(|()| {
            let bytes = std::fs::metadata(&tmp)
                .map_err(|e| EngineError::io(&tmp, e))?
                .len();
            self.adopt_hashed(rel, sha256_file(&tmp)?, bytes)?;
            std::fs::rename(&tmp, &path).map_err(|e| E::from(EngineError::io(&path, e)))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// Writes `value` as pretty JSON (with a final newline) to `rel` (see [`Owner::write`]).
    pub fn write_json<T: Serialize>(&self, rel: &str, value: &T) -> EngineResult<PathBuf> {
        let path = self.dir.join(rel);
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| EngineError::data(&path, format!("cannot serialise: {e}")))?;
        self.write(rel, (text + "\n").as_bytes())
    }

    /// Records `rel`, which this process has just written through another writer (weights,
    /// cards), with the hash of its bytes.
    pub fn adopt(&self, rel: &str) -> EngineResult<()> {
        let path = self.dir.join(rel);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| EngineError::io(&path, e))?
            .len();
        let sha256 = sha256_file(&path)?;
        self.adopt_hashed(rel, sha256, bytes)
    }

    /// Records `rel` with a hash the writer computed from the bytes it wrote.
    pub fn adopt_hashed(&self, rel: &str, sha256: String, bytes: u64) -> EngineResult<()> {
        self.append(Line::File {
            file: rel.to_string(),
            sha256,
            bytes,
            single: false,
        })
    }

    /// Records `rel` as lofi's metrics log (appended to by [`crate::metrics::MetricsLog`]).
    pub fn log(&self, rel: &str) -> EngineResult<()> {
        if self.with_record(|r| r.entries.get(rel) == Some(&Entry::Log)) {
            return Ok(());
        }
        self.append(Line::Log {
            log: rel.to_string(),
        })
    }

    /// Creates subfolder `rel` and the folders above it inside this one (each recorded) unless
    /// they exist; an existing folder that lofi did not create is foreign (refused).
    pub fn mkdir(&self, rel: &str) -> EngineResult<PathBuf> {
        let mut prefix = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let path = self.dir.join(&prefix);
            if path.is_dir() {
                if self.owns(&prefix)? {
                    continue;
                }
                return Err(EngineError::Foreign {
                    dir: self.dir.clone(),
                    files: vec![format!("{prefix}/")],
                    doing: "create its own folder of that name".into(),
                });
            }
            // Recorded first: a kill in between leaves a recorded name and no folder.
            self.append(Line::Dir {
                dir: prefix.clone(),
            })?;
            std::fs::create_dir(&path).map_err(|e| EngineError::io(&path, e))?;
        }
        Ok(self.dir.join(rel))
    }

    /// Records subfolder `rel` as lofi's without creating it (a folder lofi made elsewhere and is
    /// about to rename into place).
    pub fn record_dir(&self, rel: &str) -> EngineResult<()> {
        self.append(Line::Dir {
            dir: rel.to_string(),
        })
    }

    /// Moves what a writer left complete in subfolder `partial` (made with [`Owner::mkdir`]) to
    /// `target` (`""`: this folder), recording every file and folder under its final name
    /// before anything is renamed: a kill leaves either the hidden folder, which is lofi's, or
    /// recorded files. Nothing of lofi's may be at the target names (the caller cleared them);
    /// a foreign file there is refused by the rename, never replaced.
    pub fn publish(&self, partial: &str, target: &str) -> EngineResult<()> {
        let from = self.dir.join(partial);
        let prefix = if target.is_empty() {
            String::new()
        } else {
            format!("{target}/")
        };
        if !target.is_empty() {
            self.record_dir(target)?;
        }
        for sub in folders_below(&from)? {
            self.record_dir(&format!("{prefix}{sub}"))?;
        }
        for file in files_below(&from)? {
            let path = from.join(&file);
            let bytes = std::fs::metadata(&path)
                .map_err(|e| EngineError::io(&path, e))?
                .len();
            self.adopt_hashed(&format!("{prefix}{file}"), sha256_file(&path)?, bytes)?;
        }
        let moves: Vec<(PathBuf, PathBuf)> = if target.is_empty() {
            let mut moves = Vec::new();
            for entry in std::fs::read_dir(&from).map_err(|e| EngineError::io(&from, e))? {
                let entry = entry.map_err(|e| EngineError::io(&from, e))?;
                moves.push((entry.path(), self.dir.join(entry.file_name())));
            }
            moves
        } else {
            vec![(from.clone(), self.dir.join(target))]
        };
        for (a, b) in moves {
            if std::fs::symlink_metadata(&b).is_ok() {
                let rel = b
                    .strip_prefix(&self.dir)
                    .map_or_else(|_| b.display().to_string(), |r| r.display().to_string());
                return Err(EngineError::Foreign {
                    dir: self.dir.clone(),
                    files: vec![rel],
                    doing: "move its finished output into place".into(),
                });
            }
            std::fs::rename(&a, &b).map_err(|e| EngineError::io(&b, e))?;
        }
        if target.is_empty() {
            std::fs::remove_dir(&from).map_err(|e| EngineError::io(&from, e))?;
        }
        Ok(())
    }

    /// Removes subfolder `rel` whole when lofi created it (recorded): what a killed writer left
    /// in a hidden working folder. Refuses a folder lofi did not create.
    pub fn remove_partial(&self, rel: &str) -> EngineResult<()> {
        let path = self.dir.join(rel);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        if !self.owns(rel)? {
            return Err(EngineError::Foreign {
                dir: self.dir.clone(),
                files: vec![format!("{rel}/")],
                doing: "use its own working folder of that name".into(),
            });
        }
        tracing::info!(
            "{}: removing what a stopped lofi left unfinished",
            path.display()
        );
        std::fs::remove_dir_all(&path).map_err(|e| EngineError::io(&path, e))
    }

    /// Adopts, for a folder of a lofi older than the record, the files and folders at the top
    /// whose names match `names` (a `*` matches any run of characters), everything below such a
    /// folder included.
    pub fn adopt_all(&self, names: &[&str]) -> EngineResult<()> {
        let listing = std::fs::read_dir(&self.dir).map_err(|e| EngineError::io(&self.dir, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| EngineError::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !names.iter().any(|p| glob_match(p, &name)) {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|e| EngineError::io(entry.path(), e))?;
            if kind.is_file() {
                self.adopt(&name)?;
            } else if kind.is_dir() {
                self.record_dir(&name)?;
                for sub in folders_below(&entry.path())? {
                    self.record_dir(&format!("{name}/{sub}"))?;
                }
                for file in files_below(&entry.path())? {
                    self.adopt(&format!("{name}/{file}"))?;
                }
            }
        }
        Ok(())
    }

    /// Removes everything the stage's record owns (files, then the folders lofi created once
    /// they are empty; single outputs of other commands stay, and stay recorded) and starts the
    /// record again; foreign files stay, returned for the caller to list.
    pub fn clear(&self) -> EngineResult<Vec<String>> {
        let record = self.with_record(|r| r.clone());
        let mut singles = Vec::new();
        for (rel, entry) in record.recorded() {
            let path = self.dir.join(rel);
            match entry {
                Entry::File {
                    versions,
                    single: true,
                } => {
                    if record.owns(rel)? {
                        singles.extend(versions.iter().map(|(sha256, bytes)| Line::File {
                            file: rel.clone(),
                            sha256: sha256.clone(),
                            bytes: *bytes,
                            single: true,
                        }));
                    }
                }
                Entry::Dir => {
                    // Only an empty folder goes: whatever is left in it is not lofi's.
                    if path.is_dir() && is_empty_dir(&path)? {
                        std::fs::remove_dir(&path).map_err(|e| EngineError::io(&path, e))?;
                    }
                }
                _ => {
                    if record.owns(rel)? {
                        std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
                    }
                }
            }
        }
        let kind = record.kind;
        let path = self.dir.join(RECORD_FILE);
        let header = match kind {
            Some(kind) => Line::folder(kind, record.created).to_text(&path)?,
            None => String::new(),
        };
        let mut text = header;
        for line in singles {
            text.push_str(&line.to_text(&path)?);
        }
        lofi_eval::write_atomic(&path, text.as_bytes()).map_err(|e| EngineError::io(&path, e))?;
        let fresh = Record::read(&self.dir)?;
        self.with_record(|r| *r = fresh);
        let mut left = Vec::new();
        walk(&self.dir, "", &mut left)?;
        Ok(left)
    }
}

/// Removes what lofi wrote in `dir` and every folder below it (files each folder's record owns;
/// then folders left with nothing but lofi's bookkeeping, where a record made them lofi's), for
/// `lofi demo --fresh`. `dir` itself stays. Returns what is left that lofi did not write.
pub fn remove_tree(dir: &Path) -> EngineResult<Vec<String>> {
    clear_folder(dir, &std::collections::BTreeSet::new(), None)?;
    let mut left = Vec::new();
    walk(dir, "", &mut left)?;
    Ok(left)
}

/// See [`remove_tree`]: `listed` are the folders below `dir` that records above it created
/// (relative to `dir`); `removable` whether `dir` itself may go once empty (`None` for the top
/// folder, which stays). Returns whether it went.
fn clear_folder(
    dir: &Path,
    listed: &std::collections::BTreeSet<String>,
    removable: Option<bool>,
) -> EngineResult<bool> {
    let record = Record::read(dir)?;
    let mut below: std::collections::BTreeSet<String> = listed.clone();
    for (rel, entry) in &record.entries {
        if *entry == Entry::Dir {
            below.insert(rel.clone());
        }
    }
    for (rel, entry) in &record.entries {
        if *entry != Entry::Dir && record.owns(rel)? {
            let path = dir.join(rel);
            std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
        }
    }
    let listing = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        if !entry
            .file_type()
            .map_err(|e| EngineError::io(entry.path(), e))?
            .is_dir()
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let prefix = format!("{name}/");
        let inner: std::collections::BTreeSet<String> = below
            .iter()
            .filter_map(|p| p.strip_prefix(&prefix).map(str::to_string))
            .collect();
        clear_folder(&entry.path(), &inner, Some(below.contains(&name)))?;
    }
    let mut rest = Vec::new();
    walk(dir, "", &mut rest)?;
    if !rest.is_empty() {
        return Ok(false);
    }
    // Nothing but lofi's bookkeeping is left.
    remove_bookkeeping(dir)?;
    match removable {
        Some(true) => {
            std::fs::remove_dir(dir).map_err(|e| EngineError::io(dir, e))?;
            Ok(true)
        }
        Some(false) if record.created => {
            std::fs::remove_dir(dir).map_err(|e| EngineError::io(dir, e))?;
            Ok(true)
        }
        // A folder below the top that lofi wrote a record into, but that no record says lofi
        // created: it stays, empty.
        _ => Ok(false),
    }
}

/// Removes a folder's record and lock files.
fn remove_bookkeeping(dir: &Path) -> EngineResult<()> {
    let listing = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == RECORD_FILE || name.starts_with(LOCK_FILE) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
        }
    }
    Ok(())
}

/// `name` matches `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
    }
}

/// Every file below `dir`, relative and `/`-separated, lofi's bookkeeping left out.
pub fn files_below(dir: &Path) -> EngineResult<Vec<String>> {
    let mut all = Vec::new();
    walk(dir, "", &mut all)?;
    Ok(all.into_iter().filter(|p| !p.ends_with('/')).collect())
}

/// Every folder below `dir`, relative and `/`-separated, parents before children.
pub fn folders_below(dir: &Path) -> EngineResult<Vec<String>> {
    fn visit(dir: &Path, prefix: &str, out: &mut Vec<String>) -> EngineResult<()> {
        let listing = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| EngineError::io(dir, e))?;
            if entry
                .file_type()
                .map_err(|e| EngineError::io(entry.path(), e))?
                .is_dir()
            {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        for name in names {
            let rel = format!("{prefix}{name}");
            out.push(rel.clone());
            visit(&dir.join(&name), &format!("{rel}/"), out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(dir, "", &mut out)?;
    Ok(out)
}

fn is_empty_dir(path: &Path) -> EngineResult<bool> {
    Ok(std::fs::read_dir(path)
        .map_err(|e| EngineError::io(path, e))?
        .next()
        .is_none())
}

/// Every file below `dir` (relative, `/`-separated; folders with a `/` suffix when empty), lofi's
/// own bookkeeping (record, locks) left out.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> EngineResult<()> {
    let listing = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut names: Vec<(String, bool)> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry
            .file_type()
            .map_err(|e| EngineError::io(entry.path(), e))?
            .is_dir();
        names.push((name, is_dir));
    }
    names.sort();
    for (name, is_dir) in names {
        if name == RECORD_FILE || name.starts_with(LOCK_FILE) {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if is_dir {
            let before = out.len();
            walk(&dir.join(&name), &format!("{rel}/"), out)?;
            if out.len() == before {
                out.push(format!("{rel}/"));
            }
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// The folder and name of a single output file (`detections.json` in the current folder has
/// the folder `.`).
fn split_single(path: &Path) -> EngineResult<(PathBuf, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| EngineError::data(path, "not a file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Refuses, before any work, a single output file (detections, an evaluation, plots) where a
/// file lofi did not write is: lofi replaces only its own. Single files are recorded in their
/// folder's record without giving the folder a kind.
pub fn check_single(path: &Path) -> EngineResult<()> {
    let (dir, name) = split_single(path)?;
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    Owner::open(&dir)?.check_replace(&name)
}

/// Writes a single output file atomically through its folder's record (see [`check_single`]).
pub fn write_single(path: &Path, bytes: &[u8]) -> EngineResult<()> {
    let (dir, name) = split_single(path)?;
    Owner::open(&dir)?
        .write_file(&name, bytes, true)
        .map(|_| ())
}

/// Writes `value` as JSON (pretty or compact, with a final newline) to a single output file
/// (see [`write_single`]).
pub fn write_single_json<T: Serialize>(path: &Path, value: &T, pretty: bool) -> EngineResult<()> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| EngineError::data(path, format!("cannot serialise: {e}")))?;
    write_single(path, (text + "\n").as_bytes())
}

/// What a stage will write into its output folder, checked by [`prepare`] before any work.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// The folder's kind.
    pub kind: FolderKind,
    /// Files the stage writes, relative to the folder.
    pub files: Vec<String>,
    /// Subfolders the stage fills (every file in them is the stage's).
    pub dirs: Vec<String>,
    /// Data inputs, by what they are ("the ground truth") and path: none may be inside the
    /// folder.
    pub inputs: Vec<(String, PathBuf)>,
}

impl OutputPlan {
    /// A plan of `kind` writing `files` and filling `dirs`.
    pub fn new(kind: FolderKind, files: &[&str], dirs: &[&str]) -> Self {
        Self {
            kind,
            files: files.iter().map(|s| s.to_string()).collect(),
            dirs: dirs.iter().map(|s| s.to_string()).collect(),
            inputs: Vec::new(),
        }
    }

    /// Adds more files.
    pub fn with_files(mut self, files: impl IntoIterator<Item = String>) -> Self {
        self.files.extend(files);
        self
    }

    /// Adds a data input (`what`, for messages; `path` of a file or folder).
    pub fn with_input(mut self, what: &str, path: &Path) -> Self {
        self.inputs.push((what.to_string(), path.to_path_buf()));
        self
    }
}

/// How the stage starts in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Continue what is there (a resume, or a rerun that keeps finished outputs).
    Continue,
    /// Remove what lofi wrote there first (`--overwrite`).
    Overwrite,
}

/// Checks `dir` against `plan` before any work and opens its record (see the module docs):
/// refuses a folder of another kind, data inputs inside it and foreign files where the stage
/// writes; with [`Start::Overwrite`], removes what the record owns (foreign files stay and are
/// logged). The caller holds the folder's lock.
pub fn prepare(dir: &Path, plan: &OutputPlan, start: Start) -> EngineResult<Owner> {
    // The folder exists when the stage's lock was taken; created means it held nothing else.
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let created = {
        let mut contents = Vec::new();
        walk(dir, "", &mut contents)?;
        contents.is_empty() && !dir.join(RECORD_FILE).exists()
    };
    let mut record = Record::read(dir)?;
    check_inputs(dir, plan)?;
    check_kind(dir, plan, &record)?;
    let legacy = !record.exists() && dir.join(FINGERPRINT_FILE).is_file();
    let owner = Owner {
        dir: dir.to_path_buf(),
        record: Arc::new(Mutex::new(record.clone())),
    };
    if legacy {
        adopt_legacy(&owner, plan)?;
        record = owner.with_record(|r| r.clone());
    }
    let dead = dead_partials(dir, plan)?;
    if !dead.is_empty() {
        tracing::info!(
            "{}: removing {} unfinished file(s) of stopped lofi processes: {}",
            dir.display(),
            dead.len(),
            summarize(&dead)
        );
        for rel in &dead {
            let path = dir.join(rel);
            std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
        }
    }
    let foreign = collisions(dir, plan, &record)?;
    if !foreign.is_empty() {
        return Err(EngineError::Foreign {
            dir: dir.to_path_buf(),
            files: foreign,
            doing: format!("write {}", plan.kind.describe()),
        });
    }
    if start == Start::Overwrite {
        let left = owner.clear()?;
        if !left.is_empty() {
            tracing::info!(
                "--overwrite: {} keeps {} file(s) lofi did not write: {}",
                dir.display(),
                left.len(),
                summarize(&left)
            );
        }
    }
    owner.set_kind(plan.kind, created)?;
    Ok(owner)
}

/// The checks of [`prepare`] that read only: no data input inside `dir`, and `dir` not a folder
/// of another kind. A stage that compares fingerprints before [`prepare`] calls it first, so that
/// the message names the real problem.
pub fn check_folder(dir: &Path, plan: &OutputPlan) -> EngineResult<()> {
    check_inputs(dir, plan)?;
    check_kind(dir, plan, &Record::read(dir)?)
}

/// Refuses `dir` when `record` (or, without one, an older lofi's fingerprint) says it is a
/// folder of another kind than `plan`'s.
fn check_kind(dir: &Path, plan: &OutputPlan, record: &Record) -> EngineResult<()> {
    // A folder of a lofi older than the record: its fingerprint says lofi made it.
    if !record.exists() && dir.join(FINGERPRINT_FILE).is_file() {
        return check_legacy_kind(dir, plan.kind);
    }
    match record.kind {
        Some(kind) if kind != plan.kind => Err(EngineError::RunDir(format!(
            "{} is {}; {} does not write into it, with or without --overwrite: choose another \
             --out",
            dir.display(),
            kind.describe(),
            plan.kind.describe()
        ))),
        _ => Ok(()),
    }
}

/// An older lofi's folder has a fingerprint but no kind: an extraction's names its sampling, a
/// run's its config.
fn check_legacy_kind(dir: &Path, kind: FolderKind) -> EngineResult<()> {
    let Some(fingerprint) = Fingerprint::read(dir)? else {
        return Ok(());
    };
    let features = fingerprint.parts.contains_key("sampling");
    let run = fingerprint.parts.contains_key("config");
    let wants_features = kind == FolderKind::Features;
    let wants_run = matches!(
        kind,
        FolderKind::Pretraining | FolderKind::Training | FolderKind::Head
    );
    let (is, fits) = if features {
        (FolderKind::Features.describe(), wants_features)
    } else if run {
        ("a training run of an older lofi", wants_run)
    } else {
        return Ok(());
    };
    if fits {
        return Ok(());
    }
    Err(EngineError::RunDir(format!(
        "{} is {is}; {} does not write into it, with or without --overwrite: choose another --out",
        dir.display(),
        kind.describe()
    )))
}

/// Adopts what an older lofi wrote under the names this stage writes (see the module docs).
fn adopt_legacy(owner: &Owner, plan: &OutputPlan) -> EngineResult<()> {
    let dir = owner.dir.clone();
    tracing::info!(
        "{}: made by an older lofi (no {RECORD_FILE}); taking the files this stage writes under \
         their own names as lofi's, everything else stays as it is",
        dir.display()
    );
    owner.set_kind(plan.kind, false)?;
    let mut names: Vec<String> = plan.files.clone();
    names.push(FINGERPRINT_FILE.to_string());
    for sub in &plan.dirs {
        let path = dir.join(sub);
        if path.is_dir() {
            let mut inside = Vec::new();
            walk(&path, &format!("{sub}/"), &mut inside)?;
            names.extend(inside.into_iter().filter(|p| !p.ends_with('/')));
            owner.append(Line::Dir { dir: sub.clone() })?;
        }
    }
    for name in names {
        let path = dir.join(&name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            if name == crate::run_dir::files::METRICS {
                owner.log(&name)?;
            } else {
                owner.adopt(&name)?;
            }
        }
    }
    Ok(())
}

/// The process id in a temporary name lofi writes (`.<name>.<pid>.partial`, and the `.tmp`
/// burn's writer adds to it), `None` for any other name.
pub fn partial_pid(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".tmp").unwrap_or(name);
    let stem = stem.strip_prefix('.')?.strip_suffix(".partial")?;
    stem.rsplit_once('.')?.1.parse().ok()
}

/// Whether process `pid` is running here.
fn running(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Temporary files of lofi writers that are not running any more (killed mid-write), at the top
/// of `dir` and in the folders `plan` fills: a live writer's (a shard beside this one) stay.
pub fn dead_partials(dir: &Path, plan: &OutputPlan) -> EngineResult<Vec<String>> {
    let mut out = Vec::new();
    let mut folders = vec![String::new()];
    folders.extend(plan.dirs.iter().map(|d| format!("{d}/")));
    for prefix in folders {
        let path = dir.join(&prefix);
        let Ok(listing) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in listing {
            let entry = entry.map_err(|e| EngineError::io(&path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if partial_pid(&name).is_some_and(|pid| pid != std::process::id() && !running(pid))
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                out.push(format!("{prefix}{name}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Foreign files and folders where `plan` writes.
fn collisions(dir: &Path, plan: &OutputPlan, record: &Record) -> EngineResult<Vec<String>> {
    let mut foreign = Vec::new();
    let mut names = plan.files.clone();
    names.push(FINGERPRINT_FILE.to_string());
    for name in &names {
        if std::fs::symlink_metadata(dir.join(name)).is_ok() && !record.owns(name)? {
            foreign.push(name.clone());
        }
    }
    let mut records = BTreeMap::new();
    for sub in &plan.dirs {
        let path = dir.join(sub);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        if !path.is_dir() || !record.owns(sub)? {
            foreign.push(format!("{sub}/"));
            continue;
        }
        let mut inside = Vec::new();
        walk(&path, &format!("{sub}/"), &mut inside)?;
        for rel in inside {
            if !rel.ends_with('/') && !owned_below(dir, record, &rel, &mut records)? {
                foreign.push(rel);
            }
        }
    }
    Ok(foreign)
}

/// Whether `rel` (below `dir`) is lofi's by `dir`'s record or by the record of a folder between
/// (a stage's run folder inside a demo folder keeps its own record).
fn owned_below(
    dir: &Path,
    record: &Record,
    rel: &str,
    records: &mut BTreeMap<String, Record>,
) -> EngineResult<bool> {
    if record.owns(rel)? {
        return Ok(true);
    }
    let mut parts: Vec<&str> = rel.split('/').collect();
    let mut inner = vec![parts.pop().unwrap_or_default().to_string()];
    while !parts.is_empty() {
        let folder = parts.join("/");
        if !records.contains_key(&folder) {
            records.insert(folder.clone(), Record::read(&dir.join(&folder))?);
        }
        if let Some(r) = records.get(&folder) {
            if r.exists() && r.owns(&inner.join("/"))? {
                return Ok(true);
            }
        }
        inner.insert(0, parts.pop().unwrap_or_default().to_string());
    }
    Ok(false)
}

/// Refuses data inputs inside `dir` (settings files are no data inputs: the config a resume
/// reads from its own folder is fine).
fn check_inputs(dir: &Path, plan: &OutputPlan) -> EngineResult<()> {
    refuse_inputs_inside(dir, &plan.inputs)
}

/// Refuses any of `inputs` (what they are, and their paths) inside `dir`, the folder a command
/// writes: [`prepare`] does it for every stage; a command that locks its inputs for reading
/// first calls it before, so the message names the real problem.
pub fn refuse_inputs_inside(dir: &Path, inputs: &[(String, PathBuf)]) -> EngineResult<()> {
    let Ok(root) = dir.canonicalize() else {
        return Ok(());
    };
    for (what, input) in inputs {
        let Ok(path) = input.canonicalize() else {
            continue;
        };
        if !path.starts_with(&root) {
            continue;
        }
        return Err(EngineError::RunDir(format!(
            "{what} {} is inside the output folder {}: lofi never writes where its inputs are; \
             choose another --out",
            input.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// At most ten names, then a count.
pub fn summarize(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        text.push_str(&format!(" and {} more", names.len() - 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> EngineResult<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| EngineError::io("tmp", e))
    }

    fn write(dir: &Path, rel: &str, text: &str) -> EngineResult<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| EngineError::io(&path, e))
    }

    fn plan() -> OutputPlan {
        OutputPlan::new(
            FolderKind::Training,
            &["config.toml", "summary.json"],
            &["checkpoints"],
        )
    }

    #[test]
    fn owned_means_recorded_with_the_same_bytes() -> EngineResult<()> {
        let t = tmp()?;
        let dir = t.path();
        let owner = prepare(dir, &plan(), Start::Continue)?;
        owner.write("config.toml", b"a = 1\n")?;
        assert!(owner.owns("config.toml")?);
        // Another owner reads the same from disk.
        assert!(Record::read(dir)?.owns("config.toml")?);
        assert_eq!(Record::read(dir)?.kind(), Some(FolderKind::Training));
        // Edited by hand: no longer lofi's, and lofi will not replace it.
        write(dir, "config.toml", "a = 2\n")?;
        assert!(!Record::read(dir)?.owns("config.toml")?);
        let e = owner.write("config.toml", b"a = 3\n").expect_err("foreign");
        assert!(e.to_string().contains("config.toml"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("config.toml"))
                .map_err(|e| EngineError::io("r", e))?,
            "a = 2\n"
        );
        Ok(())
    }

    #[test]
    fn a_foreign_file_where_the_stage_writes_refuses_the_folder_before_any_work() -> EngineResult<()>
    {
        let t = tmp()?;
        let dir = t.path();
        write(dir, "notes.txt", "mine")?;
        // No collision: the folder is usable and the note stays.
        drop(prepare(dir, &plan(), Start::Continue)?);
        let t2 = tmp()?;
        let dir2 = t2.path();
        write(dir2, "summary.json", "{}")?;
        write(dir2, "checkpoints/keep.bin", "x")?;
        let e = prepare(dir2, &plan(), Start::Overwrite).expect_err("collides");
        let text = e.to_string();
        assert!(
            text.contains("summary.json") && text.contains("checkpoints/"),
            "{text}"
        );
        assert!(!dir2.join(RECORD_FILE).exists(), "nothing written");
        Ok(())
    }

    #[test]
    fn overwrite_removes_only_what_the_record_owns() -> EngineResult<()> {
        let t = tmp()?;
        let dir = t.path();
        let owner = prepare(dir, &plan(), Start::Continue)?;
        owner.write("config.toml", b"a = 1\n")?;
        owner.mkdir("checkpoints")?;
        owner.write("checkpoints/epoch-0.bpk", b"weights")?;
        owner.write("summary.json", b"{}\n")?;
        owner.log("metrics.jsonl")?;
        write(dir, "metrics.jsonl", "{\"event\":\"nonsense\"}\n")?;
        write(dir, "notes.txt", "mine")?;
        write(dir, "checkpoints/my-copy.bpk", "mine")?;
        drop(owner);
        let owner = prepare(dir, &plan(), Start::Continue);
        // A user's file inside a folder the stage fills collides.
        assert!(owner.is_err());
        std::fs::remove_file(dir.join("checkpoints/my-copy.bpk"))
            .map_err(|e| EngineError::io("rm", e))?;
        let owner = prepare(dir, &plan(), Start::Overwrite)?;
        assert!(!dir.join("config.toml").exists() && !dir.join("summary.json").exists());
        assert!(
            !dir.join("checkpoints").exists(),
            "an empty lofi folder goes"
        );
        // Not a metrics log any more: kept.
        assert!(dir.join("metrics.jsonl").is_file() && dir.join("notes.txt").is_file());
        assert!(!owner.owns("config.toml")?);
        assert_eq!(Record::read(dir)?.kind(), Some(FolderKind::Training));
        Ok(())
    }

    #[test]
    fn kinds_are_not_crossed_and_inputs_inside_are_refused() -> EngineResult<()> {
        let t = tmp()?;
        let dir = t.path();
        drop(prepare(dir, &plan(), Start::Continue)?);
        let features = OutputPlan::new(FolderKind::Features, &["index.json"], &[]);
        let e = prepare(dir, &features, Start::Overwrite).expect_err("other kind");
        assert!(e.to_string().contains("a LoFi training run"), "{e}");
        let t2 = tmp()?;
        let dir2 = t2.path();
        write(dir2, "gt.json", "{}")?;
        let e = prepare(
            dir2,
            &plan().with_input("the ground truth", &dir2.join("gt.json")),
            Start::Continue,
        )
        .expect_err("input inside");
        assert!(e.to_string().contains("the ground truth"), "{e}");
        let e = prepare(
            dir2,
            &plan().with_input("the feature folder", dir2),
            Start::Continue,
        )
        .expect_err("input is the folder");
        assert!(e.to_string().contains("the feature folder"), "{e}");
        // Even one lofi wrote there.
        let owner = prepare(dir2, &plan(), Start::Continue)?;
        owner.write("gt2.json", b"{}")?;
        assert!(prepare(
            dir2,
            &plan().with_input("the ground truth", &dir2.join("gt2.json")),
            Start::Continue,
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn single_files_replace_only_their_own() -> EngineResult<()> {
        let t = tmp()?;
        let path = t.path().join("detections.json");
        check_single(&path)?;
        write_single_json(&path, &vec![1, 2], false)?;
        check_single(&path)?;
        write_single_json(&path, &vec![3], false)?;
        assert_eq!(Record::read(t.path())?.kind(), None);
        let theirs = t.path().join("results.json");
        write(t.path(), "results.json", "{}")?;
        assert!(check_single(&theirs).is_err());
        assert!(write_single(&theirs, b"[]").is_err());
        assert_eq!(
            std::fs::read_to_string(&theirs).map_err(|e| EngineError::io("r", e))?,
            "{}"
        );
        Ok(())
    }

    #[test]
    fn a_tree_loses_what_lofi_wrote_and_keeps_the_rest() -> EngineResult<()> {
        let t = tmp()?;
        let root = t.path();
        let demo = prepare(
            root,
            &OutputPlan::new(FolderKind::Demo, &[], &[]),
            Start::Continue,
        )?;
        demo.write("demo.json", b"{}")?;
        demo.mkdir("seed-0/rows/frozen")?;
        let run = prepare(
            &root.join("seed-0/rows/frozen/train"),
            &plan(),
            Start::Continue,
        )?;
        run.write("config.toml", b"a = 1\n")?;
        write_single(&root.join("seed-0/rows/frozen/row.json"), b"{}")?;
        write(root, "notes.txt", "mine")?;
        write(root, "seed-0/rows/mine/keep.txt", "mine")?;
        std::fs::create_dir(root.join("empty")).map_err(|e| EngineError::io("mk", e))?;
        let left = remove_tree(root)?;
        assert_eq!(
            left,
            ["empty/", "notes.txt", "seed-0/rows/mine/keep.txt"]
                .map(String::from)
                .to_vec()
        );
        assert!(!root.join("seed-0/rows/frozen").exists() && !root.join("demo.json").exists());
        Ok(())
    }

    #[test]
    fn a_killed_writers_temporary_files_go_a_live_ones_stay() -> EngineResult<()> {
        assert_eq!(partial_pid(".config.toml.123.partial"), Some(123));
        assert_eq!(partial_pid(".epoch-0.bpk.77.partial.tmp"), Some(77));
        assert_eq!(partial_pid("config.toml.123.partial"), None);
        assert_eq!(partial_pid(".notes.partial"), None);
        let t = tmp()?;
        let dir = t.path();
        // No process has this id (above the kernel's pid_max of 2^22).
        let dead = ".summary.json.4294967.partial";
        let live = format!(".summary.json.{}.partial", std::process::id());
        write(dir, dead, "x")?;
        write(dir, &live, "x")?;
        write(dir, "checkpoints/.epoch-0.bpk.4294967.partial.tmp", "x")?;
        write(dir, ".mine.partial", "x")?;
        let owner = prepare(dir, &plan(), Start::Continue);
        // The user's own `checkpoints/` folder collides, but the dead files went first.
        assert!(owner.is_err());
        assert!(!dir.join(dead).exists() && dir.join(&live).exists());
        assert!(!dir
            .join("checkpoints/.epoch-0.bpk.4294967.partial.tmp")
            .exists());
        assert!(dir.join(".mine.partial").exists());
        Ok(())
    }

    #[test]
    fn a_torn_last_line_leaves_its_file_foreign() -> EngineResult<()> {
        let t = tmp()?;
        let dir = t.path();
        let owner = prepare(dir, &plan(), Start::Continue)?;
        owner.write("summary.json", b"{}\n")?;
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(RECORD_FILE))
            .map_err(|e| EngineError::io("open", e))?;
        f.write_all(b"{\"file\":{\"file\":\"config.t")
            .map_err(|e| EngineError::io("w", e))?;
        write(dir, "config.toml", "a = 1\n")?;
        let record = Record::read(dir)?;
        assert!(record.owns("summary.json")? && !record.owns("config.toml")?);
        Ok(())
    }

    #[test]
    fn an_older_lofis_folder_is_adopted_by_its_stage_names_only() -> EngineResult<()> {
        let t = tmp()?;
        let dir = t.path();
        Fingerprint::new().with("config", &1)?.record(dir)?;
        write(dir, "config.toml", "a = 1\n")?;
        write(dir, "checkpoints/epoch-0.bpk", "w")?;
        write(dir, "my_gt.json", "{}")?;
        let features = OutputPlan::new(FolderKind::Features, &["index.json"], &[]);
        assert!(prepare(dir, &features, Start::Overwrite).is_err());
        drop(prepare(dir, &plan(), Start::Overwrite)?);
        assert!(!dir.join("config.toml").exists() && !dir.join("checkpoints").exists());
        assert!(!dir.join(FINGERPRINT_FILE).exists());
        assert!(dir.join("my_gt.json").is_file());
        Ok(())
    }
}
