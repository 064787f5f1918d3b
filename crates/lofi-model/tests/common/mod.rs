//! The PyTorch-layout fixtures of the model tests (`tests/fixtures/*.safetensors`), shared by the
//! reference and the G-TAD oracle tests. (Each test binary uses a part of it, hence the allow.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;

/// The path of fixture `name`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"))
}

/// A fixture file read into memory.
pub struct Fixture {
    bytes: Vec<u8>,
    path: PathBuf,
}

impl Fixture {
    /// Reads fixture `name`.
    pub fn open(name: &str) -> Self {
        let path = fixture(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { bytes, path }
    }

    /// Tensor `key` as values and shape.
    pub fn raw(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let t = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: {key}: {e}", self.path.display()));
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (data, t.shape().to_vec())
    }

    /// Tensor `key` on `device`.
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (v, shape) = self.raw(key);
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// Loads the fixture's weights into `module` (PyTorch names); every parameter must be there.
    pub fn load<M: Module>(&self, mut module: M) -> M {
        let mut store = SafetensorsStore::from_file(&self.path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true);
        let result = module.load_from(&mut store).expect("readable fixture");
        assert!(
            result.missing.is_empty() && result.errors.is_empty(),
            "{}: missing {:?}, errors {:?}",
            self.path.display(),
            result.missing,
            result.errors
        );
        module
    }
}
