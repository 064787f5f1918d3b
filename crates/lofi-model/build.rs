//! With `--features tch` only: records which libtorch the build links (its version, from the
//! headers, and whether it is the CUDA variant) for `lofi device`, and gives this crate's tests,
//! benches and examples a RUNPATH into that libtorch, so they start without LD_LIBRARY_PATH.
//! Without the feature it does nothing (the default build never needs libtorch).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(root) = std::env::var_os("LIBTORCH") else {
        // torch-sys reports the missing LIBTORCH itself; .cargo/config.toml normally sets it.
        return;
    };
    let root = Path::new(&root);
    let header = root.join("include/torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = std::fs::read_to_string(&header).unwrap_or_default();
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("#define {name} ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let version = format!(
        "{}.{}.{}",
        part("TORCH_VERSION_MAJOR"),
        part("TORCH_VERSION_MINOR"),
        part("TORCH_VERSION_PATCH")
    );
    let lib = root.join("lib");
    let cuda = lib.join("libtorch_cuda.so").exists();
    println!("cargo:rustc-env=LOFI_LIBTORCH_BUILT={version}");
    println!("cargo:rustc-env=LOFI_LIBTORCH_CUDA={}", u8::from(cuda));
    println!("cargo:rustc-env=LOFI_LIBTORCH_LIB={}", lib.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
