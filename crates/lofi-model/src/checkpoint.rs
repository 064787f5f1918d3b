//! Saving and loading our own checkpoints (burnpack format, via burn-store).
//!
//! Exists so that every stage (pre-training, LoFi training, head training) writes weights the
//! same way: to a temporary name first and renamed when complete, so an interrupted run never
//! leaves a truncated checkpoint behind, and loading reports exactly which parameters did not
//! match instead of silently keeping random weights.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ApplyError, ApplyResult, BurnpackStore, ModuleSnapshot};

use crate::error::ModelError;

/// Turns a burn-store apply result into our error when anything failed to match.
pub(crate) fn check_apply(
    path: &Path,
    result: &ApplyResult,
    ignore_unused: &dyn Fn(&str) -> bool,
) -> Result<(), ModelError> {
    let unused: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !ignore_unused(k))
        .cloned()
        .collect();
    let missing: Vec<String> = result.missing.iter().map(|(k, _)| k.clone()).collect();
    let errors: Vec<String> = result.errors.iter().map(describe_error).collect();
    if unused.is_empty() && missing.is_empty() && errors.is_empty() {
        Ok(())
    } else {
        Err(ModelError::KeyMismatch {
            path: path.to_path_buf(),
            unused,
            missing,
            errors,
        })
    }
}

/// One tensor that did not fit, short: a model of another size fails on dozens of tensors, and
/// burn's own rendering of each (`Shape { dims: [..] }`) made a message of kilobytes.
fn describe_error(error: &ApplyError) -> String {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!("{path} is {found} in the file, {expected} in the model"),
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => format!("{path} is {found:?} in the file, {expected:?} in the model"),
        other => other.to_string(),
    }
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves all parameters and BatchNorm statistics of `module` to `path` (burnpack), atomically.
pub fn save<M: Module>(module: &M, path: &Path) -> Result<(), ModelError> {
    let err = |message: String| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let tmp = tmp_name(path);
    let mut store = BurnpackStore::from_file(&tmp)
        .auto_extension(false)
        .overwrite(true);
    // Save the inference view of the module: on an autodiff device, saving the training module
    // directly wrote BatchNorm running statistics that did not match the ones the module uses
    // (found by lofi-train's resume test); `valid()` has the same parameters and the current
    // statistics.
    module
        .valid()
        .save_into(&mut store)
        .map_err(|e| err(format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("cannot rename {}: {e}", tmp.display())))
}

/// Loads a checkpoint written by [`save`] into `module` (which fixes the architecture); every
/// parameter must be present with the right shape, and the file may hold nothing else.
pub fn load<M: Module>(mut module: M, path: &Path) -> Result<M, ModelError> {
    if !path.is_file() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: "no such file".into(),
        });
    }
    // Shape and type mismatches come back in the result, to be summarised by `check_apply`,
    // rather than as burn's validation error listing every tensor.
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
    check_apply(path, &result, &|_| false)?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtad::GtadConfig;
    use crate::resnet::ResNetConfig;
    use burn::tensor::{Device, Distribution, Tensor};

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap_or_default()
    }

    #[test]
    fn encoder_and_head_round_trip() {
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("temp dir");
        let enc = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let path = dir.path().join("enc.bpk");
        save(&enc, &path).expect("saved");
        assert!(!tmp_name(&path).exists());
        let fresh = ResNetConfig::tiny(18, 4).init(&device).expect("valid");
        let loaded = load(fresh, &path).expect("loaded");
        let x = Tensor::<6>::random([1, 2, 1, 3, 32, 32], Distribution::Default, &device);
        assert_eq!(
            to_vec(enc.forward(x.clone()).expect("ok")),
            to_vec(loaded.forward(x).expect("ok"))
        );

        let head = GtadConfig::tiny(8).init(&device).expect("valid");
        let hpath = dir.path().join("head.bpk");
        save(&head, &hpath).expect("saved");
        let loaded = load(GtadConfig::tiny(8).init(&device).expect("valid"), &hpath).expect("ok");
        let f = Tensor::<3>::random([1, 8, 10], Distribution::Default, &device);
        assert_eq!(
            to_vec(head.forward(f.clone()).expect("ok").maps),
            to_vec(loaded.forward(f).expect("ok").maps)
        );
    }

    #[test]
    fn wrong_architecture_and_missing_file_are_errors() {
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("enc.bpk");
        save(
            &ResNetConfig::tiny(18, 4).init(&device).expect("valid"),
            &path,
        )
        .expect("saved");
        let wider = ResNetConfig::tiny(18, 8).init(&device).expect("valid");
        let err = load(wider, &path).expect_err("shape mismatch");
        let text = err.to_string();
        // Dozens of tensors differ; the message stays one short line naming the first few.
        assert!(
            text.contains("conv1.weight is [4, 3, 7, 7] in the file, [8, 3, 7, 7] in the model"),
            "{text}"
        );
        assert!(
            text.len() < 600 && !text.contains("Shape {") && !text.contains('\n'),
            "{text}"
        );
        let deeper = ResNetConfig::tiny(34, 4).init(&device).expect("valid");
        let err = load(deeper, &path).expect_err("missing blocks");
        assert!(err.to_string().contains("layer1.2"), "{err}");
        let none = load(
            ResNetConfig::tiny(18, 4).init(&device).expect("valid"),
            &dir.path().join("absent.bpk"),
        );
        assert!(none.is_err());
    }
}
