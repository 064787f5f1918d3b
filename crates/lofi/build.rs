//! With `--features tch` only: a RUNPATH into the libtorch the build links (`LIBTORCH/lib`), so a
//! locally built `lofi` (and its tests) starts without LD_LIBRARY_PATH. A binary carried to
//! another machine (the GPU check) finds that machine's libtorch through LD_LIBRARY_PATH, which
//! the dynamic loader searches before RUNPATH; `scripts/lofi-torch` sets it and names what is
//! missing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(root) = std::env::var_os("LIBTORCH") {
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
            let lib = std::path::Path::new(&root).join("lib");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        }
    }
}
