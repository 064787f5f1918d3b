//! Where GPU builds keep cubecl's compiled kernels and autotune results between runs.
//!
//! Why: burn's GPU backends compile every kernel at its first launch (CUDA: CUDA C++ through
//! NVRTC; Vulkan: SPIR-V, then the driver's pipeline compilation) and autotune the matmuls and
//! convolutions for each new shape. On an H200 the first Vulkan training step took 136 s, all of
//! it compilation. cubecl can persist both on disk (its `persistence` feature, which lofi's GPU
//! features turn on), but by default it does not keep compiled kernels, and keeps autotune results
//! under the `target/` folder of whatever Cargo workspace the process happens to run in. lofi
//! instead keeps both in one folder per user, so only the first run on a machine pays:
//!
//! 1. `LOFI_KERNEL_CACHE=off` (or `0`, `false`, `none`): nothing is persisted.
//! 2. `LOFI_KERNEL_CACHE=DIR`: that folder.
//! 3. Otherwise `$XDG_CACHE_HOME/lofi/kernels`, else `$HOME/.cache/lofi/kernels`, else
//!    `<temp dir>/lofi-kernels`.
//!
//! Without the variable, a `cubecl.toml` (or `CubeCL.toml`, or a `[cubecl]` section of
//! `burn.toml`) in the working folder or one of its parents, cubecl's own configuration file,
//! takes precedence over 3: when one exists lofi leaves the settings to it
//! ([`KernelCache::ConfigFile`]). cubecl's `CUBECL_*` environment variables (such as
//! `CUBECL_AUTOTUNE_LEVEL`) apply in every case.
//!
//! cubecl keys compiled kernels by the executable's build id, the device (CUDA: its compute
//! capability; Vulkan: vendor and device id) and the kernel, so a rebuilt lofi or another GPU never
//! loads stale kernels (it compiles and adds its own); deleting the folder is always safe.
//! [`resolve`] is the policy and is tested on every build; [`configure`] applies it and exists in
//! GPU builds only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable that moves or disables the cache.
pub const ENV: &str = "LOFI_KERNEL_CACHE";

/// The file names cubecl reads its configuration from, as (file, TOML section or "" for the
/// whole file).
const CONFIG_FILES: [(&str, &str); 4] = [
    ("cubecl.toml", ""),
    ("CubeCL.toml", ""),
    ("burn.toml", "cubecl"),
    ("Burn.toml", "cubecl"),
];

/// Where compiled kernels and autotune results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCache {
    /// Both persisted in this folder (cubecl's database file lives inside it).
    Dir(PathBuf),
    /// Nothing persisted (`LOFI_KERNEL_CACHE=off`).
    Off,
    /// cubecl's own configuration file decides (found at this path).
    ConfigFile(PathBuf),
    /// cubecl's configuration was already fixed in this process before lofi could set it.
    AlreadySet,
}

impl std::fmt::Display for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(
                f,
                "{} (compiled kernels and autotune results; {ENV}=off disables)",
                d.display()
            ),
            Self::Off => write!(f, "off ({ENV})"),
            Self::ConfigFile(p) => write!(f, "as configured in {}", p.display()),
            Self::AlreadySet => write!(f, "as cubecl was already configured in this process"),
        }
    }
}

/// The cache setting for this environment (`var` reads environment variables) and working
/// folder `cwd`, without changing anything.
pub fn resolve(var: impl Fn(&str) -> Option<OsString>, cwd: Option<&Path>) -> KernelCache {
    let nonempty = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(v) = nonempty(ENV) {
        let lower = v.to_string_lossy().to_ascii_lowercase();
        if matches!(lower.as_str(), "off" | "0" | "false" | "none" | "no") {
            return KernelCache::Off;
        }
        return KernelCache::Dir(PathBuf::from(v));
    }
    if let Some(file) = cwd.and_then(find_config_file) {
        return KernelCache::ConfigFile(file);
    }
    if let Some(xdg) = nonempty("XDG_CACHE_HOME") {
        return KernelCache::Dir(PathBuf::from(xdg).join("lofi").join("kernels"));
    }
    if let Some(home) = nonempty("HOME") {
        return KernelCache::Dir(
            PathBuf::from(home)
                .join(".cache")
                .join("lofi")
                .join("kernels"),
        );
    }
    KernelCache::Dir(std::env::temp_dir().join("lofi-kernels"))
}

/// The first cubecl configuration file in `start` or its parents, as cubecl itself searches
/// (a `burn.toml` counts only when it has a `[cubecl]` section).
fn find_config_file(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        CONFIG_FILES.iter().find_map(|(name, section)| {
            let path = dir.join(name);
            if !path.is_file() {
                return None;
            }
            if section.is_empty() {
                return Some(path);
            }
            let text = std::fs::read_to_string(&path).ok()?;
            let header = format!("[{section}");
            text.lines()
                .any(|l| l.trim_start().starts_with(&header))
                .then_some(path)
        })
    })
}

/// Applies [`resolve`]'s answer for this process to cubecl's global configuration. Call it before
/// the first GPU device is opened; later calls (and calls after cubecl has read its configuration)
/// change nothing and return [`KernelCache::AlreadySet`]. The folder is created here so that an
/// unwritable place is a warning on stderr, not a failure: cubecl then compiles as if uncached.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn configure() -> KernelCache {
    use cubecl::config::cache::CacheConfig;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    let cwd = std::env::current_dir().ok();
    let choice = resolve(|k| std::env::var_os(k), cwd.as_deref());
    let mut config = CubeClRuntimeConfig::default();
    match &choice {
        KernelCache::ConfigFile(_) | KernelCache::AlreadySet => return choice,
        KernelCache::Off => {
            config.compilation.cache = false;
            config.autotune.disable_cache = true;
        }
        KernelCache::Dir(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!(
                    "warning: cannot create the kernel cache folder {}: {e} (kernels will be \
                     compiled again on every run; set {ENV} to another folder or to off)",
                    dir.display()
                );
            }
            config.compilation.cache = true;
            config.autotune.disable_cache = false;
            config.environment.path = CacheConfig::Directory(dir.clone());
        }
    }
    // cubecl's own environment variables still win, as they do when cubecl loads a file.
    if CubeClRuntimeConfig::try_set(config.override_from_env()) {
        choice
    } else {
        KernelCache::AlreadySet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_variable_moves_or_disables_the_cache() {
        let home = [("HOME", "/home/u")];
        assert_eq!(
            resolve(env(&[(ENV, "/scratch/k"), home[0]]), None),
            KernelCache::Dir("/scratch/k".into())
        );
        for off in ["off", "OFF", "0", "false", "none"] {
            assert_eq!(resolve(env(&[(ENV, off)]), None), KernelCache::Off);
        }
    }

    #[test]
    fn defaults_to_the_user_cache_folder() {
        assert_eq!(
            resolve(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]), None),
            KernelCache::Dir("/x/lofi/kernels".into())
        );
        assert_eq!(
            resolve(env(&[("HOME", "/home/u"), (ENV, "")]), None),
            KernelCache::Dir("/home/u/.cache/lofi/kernels".into())
        );
        assert_eq!(
            resolve(env(&[]), None),
            KernelCache::Dir(std::env::temp_dir().join("lofi-kernels"))
        );
    }

    #[test]
    fn a_cubecl_config_file_above_the_working_folder_takes_over() {
        let root = tempfile::tempdir().expect("tempdir");
        let deep = root.path().join("a").join("b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        let vars = env(&[("HOME", "/home/u")]);
        // A burn.toml without a [cubecl] section is not cubecl's configuration.
        std::fs::write(root.path().join("burn.toml"), "[other]\nx = 1\n").expect("write");
        assert_eq!(
            resolve(&vars, Some(&deep)),
            KernelCache::Dir("/home/u/.cache/lofi/kernels".into())
        );
        std::fs::write(
            root.path().join("burn.toml"),
            "[cubecl.autotune]\nlevel = 0\n",
        )
        .expect("write");
        assert_eq!(
            resolve(&vars, Some(&deep)),
            KernelCache::ConfigFile(root.path().join("burn.toml"))
        );
        std::fs::write(root.path().join("a").join("cubecl.toml"), "").expect("write");
        assert_eq!(
            resolve(&vars, Some(&deep)),
            KernelCache::ConfigFile(root.path().join("a").join("cubecl.toml"))
        );
        // The variable still wins over a file.
        assert_eq!(resolve(env(&[(ENV, "off")]), Some(&deep)), KernelCache::Off);
        assert!(KernelCache::Dir("/k".into()).to_string().contains(ENV));
    }
}
