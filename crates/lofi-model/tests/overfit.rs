//! The head must be able to learn one synthetic video's segments to near-zero loss: a check that
//! the head, targets, loss and gradients fit together (a broken gradient or mask stalls it).

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use lofi_model::{GtadConfig, GtadLoss, GtadTargets, Segment, TargetConfig};

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()[0]
}

#[test]
fn head_overfits_one_synthetic_video() {
    let device = Device::flex().autodiff();
    device.seed(42);
    let l = 16;
    let c = 8;
    // Features that make the actions visible: channel 0 is 1 inside actions, the rest a fixed
    // pattern, so the graph and boundaries have something to lock onto.
    let segs = [Segment::new(0.125, 0.375), Segment::new(0.5, 0.875)];
    let mut feats = vec![0f32; c * l];
    for t in 0..l {
        let centre = (t as f64 + 0.5) / l as f64;
        let inside = segs.iter().any(|s| s.start <= centre && centre < s.end);
        feats[t] = if inside { 1.0 } else { 0.0 };
        for ch in 1..c {
            feats[ch * l + t] = ((ch * 7 + t * 3) % 5) as f32 / 5.0;
        }
    }
    let x = Tensor::<3>::from_data(TensorData::new(feats, [1, c, l]), &device);
    let targets = GtadTargets::new(&segs, l, &TargetConfig::default()).expect("valid segments");
    let mut head = GtadConfig::tiny(c).init(&device).expect("valid config");
    let loss_fn = GtadLoss::default();
    let mut optim = AdamConfig::new().init();
    let mut first = f32::NAN;
    let mut last = f32::NAN;
    for step in 0..300 {
        let out = head.forward(x.clone()).expect("valid input");
        let parts = loss_fn
            .compute(&out, std::slice::from_ref(&targets), step)
            .expect("matching targets");
        let value = scalar(parts.total.clone());
        if step == 0 {
            first = value;
        }
        last = value;
        if value < 0.02 {
            break;
        }
        let grads = GradientsParams::from_grads(parts.total.backward(), &head);
        head = optim.step(1e-2, head, grads);
    }
    assert!(first > 1.0, "initial loss {first} should be large");
    assert!(
        last < 0.05,
        "loss went from {first} to {last}, expected near zero"
    );
}
