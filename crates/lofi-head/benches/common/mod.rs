//! What the extraction benchmarks share: their positional arguments and the encoder they time.

use lofi_head::EncoderSpec;
use lofi_model::{Encoder, EncoderArch, EncoderKind};

/// Positional argument `i` (flags such as cargo's `--bench` skipped), or `default`.
pub fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The published TSM-ResNet-18 (width 64) with random weights, in inference mode on the CPU,
/// and its spec. Throughput and memory do not depend on the weights.
pub fn tsm_r18() -> Result<(EncoderSpec, Encoder), lofi_head::HeadError> {
    let spec = EncoderSpec {
        model: EncoderArch::new(EncoderKind::Tsm, 18),
        num_classes: None,
        checkpoint: None,
        seed: 0,
    };
    let encoder = lofi_head::extract::load_encoder(&spec, &lofi_head::cpu_device())?;
    Ok((spec, encoder))
}
