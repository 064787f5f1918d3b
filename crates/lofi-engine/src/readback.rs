//! Reading one number back from a device tensor, as an error when it cannot be read.
//!
//! Exists because a loss that silently becomes NaN or 0 when the read fails would look like a
//! diverged or perfect run; every stage reads its scalars through these two functions.

use burn::tensor::{Int, Tensor};

use crate::error::{EngineError, EngineResult};

/// The first value of a float tensor, as `f64`.
pub fn scalar(t: Tensor<1>, what: &'static str) -> EngineResult<f64> {
    let values = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| EngineError::Readback {
            what,
            message: format!("{e:?}"),
        })?;
    values
        .first()
        .copied()
        .map(f64::from)
        .ok_or(EngineError::Readback {
            what,
            message: "the tensor is empty".into(),
        })
}

/// The first value of an integer tensor.
pub fn scalar_int(t: Tensor<1, Int>, what: &'static str) -> EngineResult<i64> {
    let values = t
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| EngineError::Readback {
            what,
            message: format!("{e:?}"),
        })?;
    values.first().copied().ok_or(EngineError::Readback {
        what,
        message: "the tensor is empty".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn reads_values_and_refuses_empty_tensors() -> EngineResult<()> {
        let device = Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(vec![2.5f32, 1.0], [2]), &device);
        assert_eq!(scalar(t, "loss")?, 2.5);
        let i = Tensor::<1, Int>::from_data(TensorData::new(vec![7i64], [1]), &device);
        assert_eq!(scalar_int(i, "count")?, 7);
        let empty = Tensor::<1>::from_data(TensorData::new(Vec::<f32>::new(), [0]), &device);
        let e = scalar(empty, "loss").expect_err("empty");
        assert!(e.to_string().contains("cannot read loss"), "{e}");
        Ok(())
    }
}
