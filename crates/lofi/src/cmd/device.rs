//! `lofi device`: open the device(s) chosen with `--device`, run a small check computation on it and
//! print what it is and what its allocator holds, so a user finds a missing driver or a backend
//! that is not compiled in before a long run rather than at its first step. On a GPU it also says
//! where compiled kernels and autotune results are kept between runs.

use anyhow::Result;
use clap::Args;

use crate::device::{self, DeviceChoice};

/// Arguments of `lofi device` (the device itself is the global `--device` flag).
#[derive(Debug, Args)]
pub struct DeviceArgs {}

/// Runs `lofi device`.
pub fn run(_args: DeviceArgs) -> Result<()> {
    println!("compiled backends: {}", DeviceChoice::compiled().join(", "));
    if let Some(info) = lofi_model::torch::libtorch_info() {
        println!("{info}");
    }
    let devices = device::devices()?;
    if let Some(cache) = device::kernel_cache() {
        println!("kernel cache: {cache}");
    }
    for d in devices {
        let sum = device::check(&d)?;
        println!("device: {d:?}");
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        if let Some(id) = d.identity() {
            println!("identity: {id:?}");
        }
        println!("check: 64x64 matmul sum = {sum} (ok)");
        match d.memory_pool_usage() {
            Some(u) => println!(
                "memory: {} bytes in use, {} bytes reserved",
                u.bytes_in_use, u.bytes_reserved
            ),
            None => println!("memory: not reported by this backend"),
        }
    }
    Ok(())
}
