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

use std::path::Path;

use burn::store::{
    ApplyResult, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::checkpoint::check_apply;
use crate::error::ModelError;
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

fn remapper() -> Result<KeyRemapper, ModelError> {
    KeyRemapper::from_patterns(resnet_key_patterns())
        .map_err(|e| ModelError::Config(format!("bad key pattern: {e}")))
}

fn is_ignorable(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

/// Loads ResNet / TSM weights into `encoder` from a `.pth`, `.pt` or `.safetensors` file in any of
/// the supported layouts. Fails with [`ModelError::KeyMismatch`] naming every unmatched and missing
/// key unless `options` relax it.
pub fn import_resnet(
    mut encoder: TsmEncoder,
    path: &Path,
    options: &ImportOptions,
) -> Result<(TsmEncoder, ImportReport), ModelError> {
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
                .remap(remapper()?)
                .skip_enum_variants(true)
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
                    .remap(remapper()?)
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
