//! The engine's own guarantees, on a toy stage (a linear regression, no video): a run stopped
//! after some steps and resumed writes the same records and ends with the same weights as an
//! uninterrupted one; validation and epoch records land where they should; a second fresh run
//! into the same folder is refused.
//!
//! One rayon thread is not needed here: the toy's tensors are too small for burn's CPU backend
//! to split, so every reduction runs in one order.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use lofi_engine::metrics::{self, MetricsRecord};
use lofi_engine::readback::scalar;
use lofi_engine::{
    fit, EngineError, FitEnd, RunControl, RunDir, Stage, StepAt, StepMetrics, ValidationMetrics,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToyConfig {
    epochs: usize,
    lr: f64,
}

/// y = 3x - 1 on 8 points, in batches of 2, shuffled per epoch by lofi-rng.
struct Toy {
    config: ToyConfig,
    device: Device,
}

impl Toy {
    fn loss(&self, model: &Linear, xs: &[f32]) -> Tensor<1> {
        let n = xs.len();
        let x = Tensor::<2>::from_data(TensorData::new(xs.to_vec(), [n, 1]), &self.device);
        let y = x.clone().mul_scalar(3.0).sub_scalar(1.0);
        (model.forward(x) - y).powf_scalar(2.0).mean()
    }
}

impl Stage for Toy {
    type Model = Linear;
    type Batch = Vec<f32>;
    type Batches = std::vec::IntoIter<Result<Vec<f32>, EngineError>>;
    type Error = EngineError;

    fn name(&self) -> &'static str {
        "toy"
    }

    fn epochs(&self) -> usize {
        self.config.epochs
    }

    fn lr(&self, epoch: usize) -> f64 {
        self.config.lr * 0.5f64.powi(epoch as i32)
    }

    fn batches(&mut self, epoch: usize) -> Result<Self::Batches, EngineError> {
        let order = lofi_rng::SplitMix64::new(lofi_rng::derive(7, epoch as u64)).permutation(8);
        let xs: Vec<f32> = order.iter().map(|&i| i as f32 / 4.0 - 1.0).collect();
        let batches: Vec<_> = xs.chunks(2).map(|c| Ok(c.to_vec())).collect();
        Ok(batches.into_iter())
    }

    fn step(
        &mut self,
        model: Linear,
        optim: &mut ModuleOptimizer,
        at: StepAt,
        batch: Vec<f32>,
    ) -> Result<(Linear, Option<StepMetrics>), EngineError> {
        let loss = self.loss(&model, &batch);
        let value = scalar(loss.clone(), "the loss")?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(at.lr, model, grads);
        Ok((
            model,
            Some(StepMetrics {
                loss: value,
                videos: batch.len(),
                ..StepMetrics::default()
            }),
        ))
    }

    fn validate(
        &mut self,
        model: &Linear,
        epoch: usize,
    ) -> Result<Option<ValidationMetrics>, EngineError> {
        if epoch % 2 == 1 {
            return Ok(None);
        }
        let xs: Vec<f32> = (0..8).map(|i| i as f32 / 4.0 - 1.0).collect();
        let loss = scalar(self.loss(&model.valid(), &xs), "the validation loss")?;
        Ok(Some(ValidationMetrics {
            loss: Some(loss),
            ..ValidationMetrics::default()
        }))
    }
}

/// Runs the toy into `out`; returns how it ended and the final weight and bias.
fn run(out: &std::path::Path, control: &RunControl) -> Result<(bool, Vec<f32>), EngineError> {
    let config = ToyConfig { epochs: 3, lr: 0.1 };
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = LinearConfig::new(1, 1).init(&device);
    let optim = SgdConfig::new().init();
    let plan = lofi_engine::OutputPlan::new(lofi_engine::FolderKind::Training, &[], &[]);
    let dir = RunDir::open(
        out,
        &config,
        lofi_engine::Fingerprint::new(),
        control,
        &plan,
    )?;
    let mut stage = Toy {
        config,
        device: device.clone(),
    };
    match fit(&mut stage, model, optim, &dir, control, None, &device)? {
        FitEnd::Finished(model) => {
            let mut values = model
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| EngineError::Readback {
                    what: "the weight",
                    message: format!("{e:?}"),
                })?;
            if let Some(b) = &model.bias {
                values.extend(b.val().into_data().try_to_vec::<f32>().map_err(|e| {
                    EngineError::Readback {
                        what: "the bias",
                        message: format!("{e:?}"),
                    }
                })?);
            }
            Ok((true, values))
        }
        FitEnd::Stopped(_) => Ok((false, Vec::new())),
    }
}

/// The records without the fields that measure time.
fn comparable(out: &std::path::Path) -> Result<Vec<MetricsRecord>, EngineError> {
    let mut records = metrics::read(&out.join("metrics.jsonl"))?;
    for r in &mut records {
        match r {
            MetricsRecord::Step(s) => {
                s.step_s = 0.0;
                s.elapsed_s = 0.0;
            }
            MetricsRecord::EpochEnd(e) => e.elapsed_s = 0.0,
            MetricsRecord::Validation(_) => {}
        }
    }
    Ok(records)
}

#[test]
fn a_stopped_and_resumed_run_equals_an_uninterrupted_one() -> Result<(), EngineError> {
    let tmp = tempfile::tempdir().map_err(|e| EngineError::io("tmp", e))?;
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));

    let (finished, weights) = run(&whole, &RunControl::default())?;
    assert!(finished);
    let records = comparable(&whole)?;
    let count = |f: &dyn Fn(&MetricsRecord) -> bool| records.iter().filter(|r| f(r)).count();
    assert_eq!(
        count(&|r| matches!(r, MetricsRecord::Step(_))),
        12,
        "3 epochs x 4 batches"
    );
    assert_eq!(count(&|r| matches!(r, MetricsRecord::EpochEnd(_))), 3);
    assert_eq!(
        count(&|r| matches!(r, MetricsRecord::Validation(_))),
        2,
        "epochs 0 and 2"
    );
    let epochs = metrics::epoch_summaries(&records);
    assert!(epochs[2].mean_loss < epochs[0].mean_loss, "{epochs:?}");

    // Stopped in the middle of epoch 1 (after 6 steps), then resumed.
    let stop = RunControl {
        stop_after_batches: Some(6),
        ..RunControl::default()
    };
    let (finished, _) = run(&cut, &stop)?;
    assert!(!finished);
    assert_eq!(
        comparable(&cut)?.len(),
        4 + 1 + 1 + 2,
        "epoch 0 and two steps of epoch 1"
    );
    let resume = RunControl {
        resume: true,
        ..RunControl::default()
    };
    let (finished, resumed) = run(&cut, &resume)?;
    assert!(finished);
    assert_eq!(comparable(&cut)?, records, "resumed records differ");
    assert_eq!(resumed, weights, "resumed weights differ");

    // A finished run is not overwritten by a fresh one.
    let e = run(&whole, &RunControl::default()).expect_err("a run is there");
    assert!(e.to_string().contains("already holds a run"), "{e}");
    Ok(())
}
