//! Fingerprints: what produced a folder, recorded in it, so that a rerun never mixes outputs of
//! two different jobs.
//!
//! Exists because the worst failure a research tool can have is silently wrong outputs: a rerun of
//! extraction with another encoder or frame size that keeps the old feature files while the
//! folder's config claims the new settings ends up in a paper. Every folder a stage writes holds
//! `fingerprint.json`: named parts, each a JSON value (the settings as they are; input files as
//! `sha256:<hex>` of their bytes, so a model is identified by its weights, not by its path). A
//! rerun computes its own fingerprint first and [`Fingerprint::claim`]s the folder: equal, it
//! continues (resume); different, it refuses with the list of what differs, or with `--overwrite`
//! the caller removes what the old job wrote ([`crate::owned`]) and starts again.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EngineError, EngineResult};

/// File name of a folder's fingerprint.
pub const FINGERPRINT_FILE: &str = "fingerprint.json";

/// What produced a folder: named parts (settings, input files' hashes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// The parts by name.
    pub parts: BTreeMap<String, Value>,
}

/// How a folder was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The folder had no fingerprint; this one is now recorded.
    Fresh,
    /// The folder was made by the same fingerprint: continue its work.
    Same,
    /// The folder was made by another fingerprint and `overwrite` was asked: the caller must
    /// remove the old job's outputs ([`crate::owned`]) and then record this one.
    Overwrite,
}

impl Fingerprint {
    /// An empty fingerprint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds part `name`: `value` as JSON (settings structs, numbers, text).
    pub fn with<T: Serialize>(mut self, name: &str, value: &T) -> EngineResult<Self> {
        let v = serde_json::to_value(value).map_err(|e| {
            EngineError::RunDir(format!("cannot record {name} in a fingerprint: {e}"))
        })?;
        self.parts.insert(name.to_string(), v);
        Ok(self)
    }

    /// Adds part `name`: the SHA-256 of the file at `path` (its bytes; the path is not part of
    /// it, so a copied or moved file keeps its identity).
    pub fn with_file(self, name: &str, path: &Path) -> EngineResult<Self> {
        let hash = sha256_file(path)?;
        self.with(name, &hash)
    }

    /// What differs between `recorded` (the folder's) and `self` (this run's), one line per
    /// differing leaf: `key.sub: <recorded> (recorded) vs <this run> (this run)`.
    pub fn differences(&self, recorded: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let a = Value::Object(recorded.parts.clone().into_iter().collect());
        let b = Value::Object(self.parts.clone().into_iter().collect());
        diff("", &a, &b, &mut out);
        out
    }

    /// Reads the fingerprint of `dir`, if it has one.
    pub fn read(dir: &Path) -> EngineResult<Option<Self>> {
        let path = dir.join(FINGERPRINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EngineError::io(&path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::data(&path, format!("not a lofi fingerprint: {e}")))
    }

    /// Records `self` as `dir`'s fingerprint (atomically), replacing any other.
    pub fn record(&self, dir: &Path) -> EngineResult<()> {
        let path = dir.join(FINGERPRINT_FILE);
        lofi_eval::write_json_atomic(&path, self, true).map_err(Box::new)?;
        Ok(())
    }

    /// Claims `dir` (which must exist) for the job `self` describes; see [`Claim`]. A different
    /// recorded fingerprint is an error listing what differs unless `overwrite`. Several
    /// processes may claim one folder at once (the shards of one extraction): the first record
    /// wins, the others compare with it.
    pub fn claim(&self, dir: &Path, what: &str, overwrite: bool) -> EngineResult<Claim> {
        let path = dir.join(FINGERPRINT_FILE);
        if let Some(recorded) = Self::read(dir)? {
            return self.compare(&recorded, &path, what, overwrite);
        }
        // Create-if-absent with full content: write a private temporary, then hard-link it to
        // the final name, which fails if another process got there first.
        let tmp = dir.join(format!(
            ".{FINGERPRINT_FILE}.{}.partial",
            std::process::id()
        ));
        lofi_eval::write_json_atomic(&tmp, self, true).map_err(Box::new)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Claim::Fresh),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match Self::read(dir)? {
                Some(recorded) => self.compare(&recorded, &path, what, overwrite),
                None => Err(EngineError::io(&path, e)),
            },
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    fn compare(
        &self,
        recorded: &Fingerprint,
        path: &Path,
        what: &str,
        overwrite: bool,
    ) -> EngineResult<Claim> {
        let differences = self.differences(recorded);
        if differences.is_empty() {
            return Ok(Claim::Same);
        }
        if overwrite {
            tracing::warn!(
                "--overwrite: {} was made by another {what} ({}); redoing everything",
                path.parent().unwrap_or(path).display(),
                differences.join("; ")
            );
            return Ok(Claim::Overwrite);
        }
        Err(EngineError::Mismatch {
            path: path.to_path_buf(),
            what: what.to_string(),
            differences,
        })
    }
}

/// `sha256:<hex>` of the bytes of `path` (lofi-model's [`hash`](lofi_model::hash), the one
/// definition).
pub fn sha256_file(path: &Path) -> EngineResult<String> {
    lofi_model::hash::sha256_file(path).map_err(|e| EngineError::io(path, e))
}

pub use lofi_model::hash::sha256_bytes;

fn diff(key: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff(&sub, p, q, out),
                    (Some(p), None) => {
                        out.push(format!("{sub}: {p} (recorded) vs absent (this run)"))
                    }
                    (None, Some(q)) => {
                        out.push(format!("{sub}: absent (recorded) vs {q} (this run)"))
                    }
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(format!("{key}: {a} (recorded) vs {b} (this run)")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> EngineResult<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| EngineError::io("tmp", e))
    }

    #[test]
    fn a_file_is_identified_by_its_bytes_not_its_path() -> EngineResult<()> {
        let t = tmp()?;
        let (a, b) = (t.path().join("a.bpk"), t.path().join("b.bpk"));
        std::fs::write(&a, b"weights").map_err(|e| EngineError::io(&a, e))?;
        std::fs::write(&b, b"weights").map_err(|e| EngineError::io(&b, e))?;
        assert_eq!(sha256_file(&a)?, sha256_file(&b)?);
        assert_eq!(sha256_file(&a)?, sha256_bytes(b"weights"));
        assert!(sha256_bytes(b"")
            .ends_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        std::fs::write(&b, b"weightz").map_err(|e| EngineError::io(&b, e))?;
        assert_ne!(sha256_file(&a)?, sha256_file(&b)?);
        Ok(())
    }

    #[test]
    fn claims_say_what_differs_and_overwrite_is_explicit() -> EngineResult<()> {
        #[derive(Serialize)]
        struct S {
            size: usize,
            snippets: usize,
        }
        let t = tmp()?;
        let dir = t.path();
        let a = Fingerprint::new()
            .with(
                "sampling",
                &S {
                    size: 64,
                    snippets: 8,
                },
            )?
            .with("weights", &"sha256:aa")?;
        assert_eq!(a.claim(dir, "extraction", false)?, Claim::Fresh);
        assert_eq!(a.claim(dir, "extraction", false)?, Claim::Same);
        let b = Fingerprint::new()
            .with(
                "sampling",
                &S {
                    size: 128,
                    snippets: 8,
                },
            )?
            .with("weights", &"sha256:bb")?;
        let e = b.claim(dir, "extraction", false).expect_err("differs");
        let text = e.to_string();
        assert!(
            text.contains("sampling.size: 64 (recorded) vs 128 (this run)")
                && text.contains("weights: \"sha256:aa\"")
                && !text.contains("snippets")
                && text.contains("--overwrite"),
            "{text}"
        );
        // Refused means untouched.
        assert_eq!(Fingerprint::read(dir)?, Some(a.clone()));
        assert_eq!(b.claim(dir, "extraction", true)?, Claim::Overwrite);
        b.record(dir)?;
        assert_eq!(b.claim(dir, "extraction", false)?, Claim::Same);
        Ok(())
    }
}
