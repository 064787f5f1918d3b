//! Importing pre-trained ResNet / TSM weights from PyTorch files (`.pth`, `.pt`) and
//! `.safetensors`, with the key layouts users actually have:
//! - torchvision ResNet (`conv1.weight`, `layer1.0.downsample.0.weight`, `fc.weight`, ...), the
//!   ImageNet "ICP" starting point;
//! - the TSM authors' release (`module.base_model.layer1.0.conv1.net.weight`,
//!   `module.new_fc.weight`, inside `state_dict`);
//! - mmaction2 recognizers (`backbone.conv1.conv.weight`, `backbone.conv1.bn.weight`,
//!   `backbone.layer1.0.conv1.conv.weight`, `backbone.layer1.0.downsample.conv.weight`,
//!   `cls_head.fc_cls.weight`, inside `state_dict`).
//!
//! Exists because LoFi starts from Kinetics checkpoints that live in PyTorch files: one remapping
//! table turns any of the three layouts into our torchvision-style names, burn-store's PyTorch
//! adapter renames BatchNorm `weight`/`bias` to `gamma`/`beta` and transposes `fc`, and any key
//! that still does not match is reported by name ([`ModelError::KeyMismatch`]).
//!
//! R(2+1)D trunks load from torchvision's `r2plus1d_18` layout (and the same names under a
//! `module.` or `backbone.` prefix, as in TSP's releases) through [`import_r2plus1d`].

use std::path::Path;

use burn::store::{
    ApplyResult, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use burn::module::Module;

use crate::checkpoint::check_apply;
use crate::error::ModelError;
use crate::r2plus1d::R2Plus1dEncoder;
use crate::resnet::TsmEncoder;

/// How strict an import is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// Accept a file that lacks some model parameters (they keep their initial values); unmatched
    /// file keys are still reported unless `ignore_unused` is set.
    pub allow_missing: bool,
    /// Accept keys in the file that the model does not use (e.g. another head).
    pub ignore_unused: bool,
    /// Top-level key of the state dict inside a `.pth` (`state_dict`, `model`); `None` tries the
    /// file as is, then `state_dict`, then `model`.
    pub top_level_key: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// Parameters loaded from the file.
    pub applied: usize,
    /// Model parameters the file did not provide (only with `allow_missing`).
    pub missing: Vec<String>,
    /// File keys that were not used (classifier of another task, `num_batches_tracked`, ...).
    pub unused: Vec<String>,
}

/// The key remapping shared by all supported layouts: prefixes and wrappers are stripped and
/// module names mapped to ours. Patterns are applied in order.
pub fn resnet_key_patterns() -> Vec<(&'static str, &'static str)> {
    vec![
        // Wrappers and prefixes: DataParallel, TSN/TSM, mmaction2 recognizers.
        (r"^module\.", ""),
        (r"^base_model\.", ""),
        (r"^backbone\.", ""),
        // TSM's TemporalShift wraps the conv as `.net`.
        (r"\.net\.", "."),
        // mmaction2 ConvModule: conv1.conv / conv1.bn in the stem and in the blocks.
        (r"^conv1\.conv\.", "conv1."),
        (r"^conv1\.bn\.", "bn1."),
        (r"^(layer\d+\.\d+)\.conv(\d)\.conv\.", "$1.conv$2."),
        (r"^(layer\d+\.\d+)\.conv(\d)\.bn\.", "$1.bn$2."),
        // torchvision Sequential shortcut.
        (r"\.downsample\.0\.", ".downsample.conv."),
        (r"\.downsample\.1\.", ".downsample.bn."),
        // Classifiers.
        (r"^new_fc\.", "fc."),
        (r"^cls_head\.fc_cls\.", "fc."),
    ]
}

/// The key remapping for torchvision-layout R(2+1)D checkpoints (numbered `Sequential` entries
/// to our named fields).
pub fn r2plus1d_key_patterns() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"^module\.", ""),
        (r"^backbone\.", ""),
        (r"^stem\.0\.", "stem.spatial."),
        (r"^stem\.1\.", "stem.mid_bn."),
        (r"^stem\.3\.", "stem.temporal."),
        (r"^stem\.4\.", "stem.bn."),
        (r"\.conv(\d)\.0\.0\.", ".conv$1.spatial."),
        (r"\.conv(\d)\.0\.1\.", ".conv$1.mid_bn."),
        (r"\.conv(\d)\.0\.3\.", ".conv$1.temporal."),
        (r"\.conv(\d)\.1\.", ".bn$1."),
        (r"\.downsample\.0\.", ".downsample.conv."),
        (r"\.downsample\.1\.", ".downsample.bn."),
    ]
}

fn remapper(patterns: Vec<(&'static str, &'static str)>) -> Result<KeyRemapper, ModelError> {
    KeyRemapper::from_patterns(patterns)
        .map_err(|e| ModelError::Config(format!("bad key pattern: {e}")))
}

fn is_ignorable(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

/// Loads ResNet / TSM weights into `encoder` from a `.pth`, `.pt` or `.safetensors` file in any of
/// the supported layouts. Fails with [`ModelError::KeyMismatch`] naming every unmatched and missing
/// key unless `options` relax it.
pub fn import_resnet(
    encoder: TsmEncoder,
    path: &Path,
    options: &ImportOptions,
) -> Result<(TsmEncoder, ImportReport), ModelError> {
    import_weights(encoder, path, options, resnet_key_patterns())
}

/// Loads torchvision-layout R(2+1)D weights (`.pth`, `.pt`, `.safetensors`) into `encoder`.
pub fn import_r2plus1d(
    encoder: R2Plus1dEncoder,
    path: &Path,
    options: &ImportOptions,
) -> Result<(R2Plus1dEncoder, ImportReport), ModelError> {
    import_weights(encoder, path, options, r2plus1d_key_patterns())
}

/// Loads PyTorch-convention weights into any module after remapping keys with `patterns`.
pub fn import_weights<M: Module>(
    mut encoder: M,
    path: &Path,
    options: &ImportOptions,
    patterns: Vec<(&'static str, &'static str)>,
) -> Result<(M, ImportReport), ModelError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !path.is_file() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: "no such file".into(),
        });
    }
    let err = |message: String| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let result: ApplyResult = match ext.as_str() {
        "safetensors" => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .remap(remapper(patterns.clone())?)
                .skip_enum_variants(true)
                .map_indices_contiguous(false)
                .allow_partial(true);
            encoder
                .load_from(&mut store)
                .map_err(|e| err(format!("cannot read safetensors: {e}")))?
        }
        "pth" | "pt" | "bin" => {
            let keys: Vec<Option<String>> = match &options.top_level_key {
                Some(k) => vec![Some(k.clone())],
                None => vec![None, Some("state_dict".into()), Some("model".into())],
            };
            let mut last_err = String::new();
            let mut found = None;
            for key in keys {
                let mut store = PytorchStore::from_file(path)
                    .remap(remapper(patterns.clone())?)
                    .map_indices_contiguous(false)
                    .allow_partial(true);
                if let Some(k) = &key {
                    store = store.with_top_level_key(k);
                }
                match encoder.load_from(&mut store) {
                    Ok(r) if !r.applied.is_empty() => {
                        found = Some(r);
                        break;
                    }
                    Ok(r) => {
                        last_err = format!(
                            "no tensor matched (top-level key {key:?}; {} keys unused)",
                            r.unused.len()
                        );
                        found.get_or_insert(r);
                    }
                    Err(e) => last_err = format!("top-level key {key:?}: {e}"),
                }
            }
            match found {
                Some(r) => r,
                None => return Err(err(format!("cannot read PyTorch file: {last_err}"))),
            }
        }
        other => {
            return Err(err(format!(
                "unsupported weight file extension {other:?} (use .pth, .pt or .safetensors)"
            )))
        }
    };
    let ignore_unused = options.ignore_unused;
    let strict = ApplyResult {
        missing: if options.allow_missing {
            Vec::new()
        } else {
            result.missing.clone()
        },
        ..result.clone()
    };
    check_apply(path, &strict, &|k| ignore_unused || is_ignorable(k))?;
    Ok((
        encoder,
        ImportReport {
            applied: result.applied.len(),
            missing: result.missing.iter().map(|(k, _)| k.clone()).collect(),
            unused: result.unused.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::ResNetConfig;
    use burn::store::BurnToPyTorchAdapter;
    use burn::tensor::{Device, Distribution, Tensor};

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
    }

    /// Writes `enc` as a PyTorch-style safetensors file with keys rewritten by `patterns`
    /// (our names -> the foreign layout).
    fn export(enc: &TsmEncoder, path: &Path, patterns: Vec<(&str, &str)>) {
        let mut store = SafetensorsStore::from_file(path)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .remap(KeyRemapper::from_patterns(patterns).expect("valid patterns"));
        enc.save_into(&mut store).expect("written");
    }

    #[test]
    fn imports_torchvision_tsm_and_mmaction_layouts() {
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = ResNetConfig::tiny(18, 4).with_num_classes(Some(3));
        let src = cfg.init(&device).expect("valid");
        let x = Tensor::<6>::random([1, 2, 1, 3, 32, 32], Distribution::Default, &device);
        let want = to_vec(src.forward(x.clone()).expect("ok"));
        let layouts: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (
                "torchvision",
                vec![
                    (r"\.downsample\.conv\.", ".downsample.0."),
                    (r"\.downsample\.bn\.", ".downsample.1."),
                ],
            ),
            (
                "tsm",
                vec![
                    (r"^(layer\d\.\d+)\.conv1\.", "$1.conv1.net."),
                    (r"\.downsample\.conv\.", ".downsample.0."),
                    (r"\.downsample\.bn\.", ".downsample.1."),
                    (r"^fc\.", "new_fc."),
                    (r"^", "module.base_model."),
                    (r"^module\.base_model\.new_fc", "module.new_fc"),
                ],
            ),
            (
                "mmaction2",
                vec![
                    (r"^conv1\.", "conv1.conv."),
                    (r"^bn1\.", "conv1.bn."),
                    (r"^(layer\d\.\d+)\.conv(\d)\.", "$1.conv$2.conv."),
                    (r"^(layer\d\.\d+)\.bn(\d)\.", "$1.conv$2.bn."),
                    (r"^fc\.", "cls_head.fc_cls."),
                    (r"^(conv1|layer)", "backbone.$1"),
                ],
            ),
        ];
        for (name, patterns) in layouts {
            let path = dir.path().join(format!("{name}.safetensors"));
            export(&src, &path, patterns);
            let fresh = cfg.init(&device).expect("valid");
            let (enc, report) = import_resnet(fresh, &path, &ImportOptions::default()).expect(name);
            assert!(
                report.applied > 0 && report.missing.is_empty(),
                "{name}: {report:?}"
            );
            let got = to_vec(enc.forward(x.clone()).expect("ok"));
            assert_eq!(got, want, "{name}: outputs differ after import");
        }
    }

    #[test]
    fn imports_torchvision_r2plus1d_layout() {
        use crate::r2plus1d::R2Plus1dConfig;
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = R2Plus1dConfig::tiny(18, 4);
        let src = cfg.init(&device).expect("valid");
        let path = dir.path().join("r21d.safetensors");
        let mut store = SafetensorsStore::from_file(&path)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .remap(
                KeyRemapper::from_patterns(vec![
                    (r"^stem\.spatial\.", "stem.0."),
                    (r"^stem\.mid_bn\.", "stem.1."),
                    (r"^stem\.temporal\.", "stem.3."),
                    (r"^stem\.bn\.", "stem.4."),
                    (r"\.conv(\d)\.spatial\.", ".conv$1.0.0."),
                    (r"\.conv(\d)\.mid_bn\.", ".conv$1.0.1."),
                    (r"\.conv(\d)\.temporal\.", ".conv$1.0.3."),
                    (r"\.bn(\d)\.", ".conv$1.1."),
                    (r"\.downsample\.conv\.", ".downsample.0."),
                    (r"\.downsample\.bn\.", ".downsample.1."),
                ])
                .expect("valid patterns"),
            );
        src.save_into(&mut store).expect("written");
        let (enc, report) = import_r2plus1d(
            cfg.init(&device).expect("valid"),
            &path,
            &ImportOptions::default(),
        )
        .expect("torchvision layout imports");
        assert!(report.missing.is_empty());
        let x = Tensor::<6>::random([1, 2, 4, 3, 32, 32], Distribution::Default, &device);
        assert_eq!(
            to_vec(src.forward(x.clone()).expect("ok")),
            to_vec(enc.forward(x).expect("ok"))
        );
    }

    #[test]
    fn mismatches_are_listed_by_name() {
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("temp dir");
        let src = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let path = dir.path().join("odd.safetensors");
        export(
            &src,
            &path,
            vec![(r"^layer4\.1\.conv2\.", "layer4.1.weird_conv.")],
        );
        let fresh = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let err = import_resnet(fresh, &path, &ImportOptions::default()).expect_err("mismatch");
        let msg = err.to_string();
        assert!(msg.contains("layer4.1.weird_conv.weight"), "{msg}");
        assert!(msg.contains("layer4.1.conv2.weight"), "{msg}");
        // Relaxed: missing accepted, unused ignored.
        let fresh = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let opts = ImportOptions {
            allow_missing: true,
            ignore_unused: true,
            top_level_key: None,
        };
        let (_, report) = import_resnet(fresh, &path, &opts).expect("relaxed");
        assert_eq!(report.missing.len(), 1);
        // Unsupported extension and absent file.
        let fresh = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        assert!(import_resnet(fresh, &dir.path().join("x.onnx"), &opts).is_err());
    }
}
