//! BatchNorm running statistics must survive a checkpoint round trip of a module trained on an
//! autodiff device: `--resume` and the exported encoder depend on it.

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use lofi_model::{checkpoint, ResNetConfig};

fn vals(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

#[test]
fn running_statistics_survive_save_and_load() {
    let device = burn::tensor::Device::flex().autodiff();
    device.seed(1);
    let cfg = ResNetConfig::tiny(18, 4);
    let enc = cfg.init(&device).expect("valid");
    for _ in 0..3 {
        let x = Tensor::<6>::random(
            [1, 4, 1, 3, 32, 32],
            Distribution::Normal(1.0, 2.0),
            &device,
        );
        let _ = enc.forward(x).expect("ok");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("e.bpk");
    checkpoint::save(&enc, &path).expect("saved");
    let loaded = checkpoint::load(cfg.init(&device).expect("valid"), &path).expect("loaded");
    let plain = burn::tensor::Device::flex();
    let x = Tensor::<6>::random([1, 4, 1, 3, 32, 32], Distribution::Default, &plain);
    let a = vals(enc.valid().forward(x.clone()).expect("ok"));
    let b = vals(loaded.valid().forward(x).expect("ok"));
    assert_eq!(a, b);
}
