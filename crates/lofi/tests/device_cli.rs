//! `lofi device` through the real binary: the CPU device computes, and a device that cannot be
//! used is a clear error. The CUDA case depends on the build: without `--features cuda` it names
//! the feature; with it, on a machine without an NVIDIA driver (CI, the build machines), it must
//! say that the driver is missing, without a panic's backtrace.

mod common;
use common::lofi;

#[test]
fn the_cpu_device_computes() {
    let (ok, out, err) = lofi(&["--device", "cpu", "device"]);
    assert!(ok, "{err}");
    assert!(out.contains("compiled backends: cpu"), "{out}");
    assert!(out.contains("64x64 matmul sum = 262144 (ok)"), "{out}");
}

/// Whether this machine has the NVIDIA driver library, as the dynamic loader sees it.
fn has_cuda_driver() -> bool {
    let listed = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"))
        .unwrap_or(false);
    let on_path = std::env::var_os("LD_LIBRARY_PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("libcuda.so.1").exists()));
    listed || on_path
}

#[test]
fn cuda_without_a_driver_or_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") && has_cuda_driver() {
        eprintln!("skipped: this machine has an NVIDIA driver");
        return;
    }
    let (ok, _, err) = lofi(&["--device", "cuda", "device"]);
    assert!(!ok, "lofi --device cuda device must fail here");
    assert!(err.contains("--device cuda:0"), "{err}");
    if cfg!(feature = "cuda") {
        assert!(err.contains("no NVIDIA CUDA driver found"), "{err}");
        assert!(
            !err.contains("panicked at"),
            "the panic must not reach stderr: {err}"
        );
    } else {
        assert!(err.contains("--features cuda"), "{err}");
    }
}
