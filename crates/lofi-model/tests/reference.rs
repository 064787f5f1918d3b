//! Checks our modules against PyTorch reference fixtures (made by
//! `test-tools/model/make_fixtures.py`, committed under `tests/fixtures`): forward outputs to 1e-4
//! and gradients of `sum(output * probe)` for a few parameters and the input to 1e-3, for one TSM
//! block and one GCNeXt block. SGAlign and the whole G-TAD head are checked against the official
//! G-TAD's behaviour in `gtad_oracle.rs`.

mod common;
use common::{fixture, Fixture};

use burn::tensor::{Device, Tensor};
use lofi_model::gtad::GcnextBlock;
use lofi_model::resnet::{BasicBlock, Block};

fn check<const D: usize>(got: Tensor<D>, want: (Vec<f32>, Vec<usize>), tol: f32, what: &str) {
    assert_eq!(got.dims().to_vec(), want.1, "{what}: shape");
    let got: Vec<f32> = got.into_data().try_to_vec().expect("f32 data");
    let scale = want.0.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want.0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max abs error {worst} > {tol} x {scale}"
    );
}

fn probe_loss<const D: usize>(y: Tensor<D>, fx: &Fixture, key: &str) -> Tensor<1> {
    let p = fx.tensor::<D>(&format!("io.probe.{key}"), &y.device());
    (y * p).sum()
}

#[test]
fn tsm_block_matches_pytorch() {
    let fx = Fixture::open("tsm_block");
    let device = Device::flex().autodiff();
    let blk = fx.load(BasicBlock::new(16, 32, 2, &device));
    let x = fx.tensor::<4>("io.x", &device).require_grad();
    let block = Block::Basic(blk);
    let y = block.forward(x.clone(), Some((4, 8)));
    let grads = probe_loss(y.clone(), &fx, "y").backward();
    check(y, fx.raw("io.out.y"), 1e-4, "tsm block output");
    check(
        x.grad(&grads).expect("grad"),
        fx.raw("grad.x"),
        1e-3,
        "d/dx",
    );
    let Block::Basic(b) = &block else {
        unreachable!("built as a basic block")
    };
    let g = |t: Tensor<4>| t.grad(&grads).expect("grad");
    check(
        g(b.conv1.weight.val()),
        fx.raw("grad.conv1.weight"),
        1e-3,
        "d/dconv1",
    );
    check(
        b.bn1.gamma.val().grad(&grads).expect("grad"),
        fx.raw("grad.bn1.weight"),
        1e-3,
        "d/dbn1.gamma",
    );
    let ds = b.downsample.as_ref().expect("shortcut");
    check(
        g(ds.conv.weight.val()),
        fx.raw("grad.downsample.conv.weight"),
        1e-3,
        "d/ddownsample",
    );
}

#[test]
fn gcnext_block_matches_pytorch() {
    let fx = Fixture::open("gcnext_block");
    let device = Device::flex().autodiff();
    let blk = fx.load(GcnextBlock::new(32, 3, 8, 4, &device));
    let x = fx.tensor::<3>("io.x", &device).require_grad();
    let y = blk.forward(x.clone());
    let grads = probe_loss(y.clone(), &fx, "y").backward();
    check(y, fx.raw("io.out.y"), 1e-4, "gcnext output");
    check(
        x.grad(&grads).expect("grad"),
        fx.raw("grad.x"),
        1e-3,
        "d/dx",
    );
    check(
        blk.tconv2.weight.val().grad(&grads).expect("grad"),
        fx.raw("grad.tconv2.weight"),
        1e-3,
        "d/dtconv2",
    );
    check(
        blk.sconv1.weight.val().grad(&grads).expect("grad"),
        fx.raw("grad.sconv1.weight"),
        1e-3,
        "d/dsconv1",
    );
    let bias = blk.sconv3.bias.as_ref().expect("bias").val();
    check(
        bias.grad(&grads).expect("grad"),
        fx.raw("grad.sconv3.bias"),
        1e-3,
        "d/dsconv3.bias",
    );
}

#[test]
fn tsm_release_pth_imports_and_matches_pytorch_in_eval_mode() {
    use lofi_model::import::{import_resnet, ImportOptions};
    use lofi_model::ResNetConfig;
    let io = Fixture::open("tsm_r18_w4_io");
    let device = Device::flex();
    let enc = ResNetConfig::tiny(18, 4)
        .with_num_classes(Some(5))
        .with_frozen_bn(true)
        .init(&device)
        .expect("valid config");
    let (enc, report) = import_resnet(
        enc,
        &fixture("tsm_r18_w4").with_extension("pth"),
        &ImportOptions::default(),
    )
    .expect("TSM release layout imports");
    assert!(report.missing.is_empty(), "{report:?}");
    let video = io.tensor::<6>("io.video", &device);
    let feats = enc.forward(video.clone()).expect("valid input");
    check(feats, io.raw("io.out.features"), 1e-4, "snippet features");
    let [b, l, f, c, h, w] = video.dims();
    let logits = enc
        .classify(video.reshape([b, l * f, c, h, w]))
        .expect("classifier");
    check(logits, io.raw("io.out.logits"), 1e-4, "clip logits");
}

#[test]
fn torchvision_r2plus1d_pth_imports_and_matches_pytorch_in_eval_mode() {
    use lofi_model::import::{import_r2plus1d, ImportOptions};
    use lofi_model::R2Plus1dConfig;
    let io = Fixture::open("r2plus1d18_w4_io");
    let device = Device::flex();
    let cfg = R2Plus1dConfig {
        frozen_bn: true,
        ..R2Plus1dConfig::tiny(18, 4)
    };
    let enc = cfg.init(&device).expect("valid config");
    let (enc, report) = import_r2plus1d(
        enc,
        &fixture("r2plus1d18_w4").with_extension("pth"),
        &ImportOptions::default(),
    )
    .expect("torchvision layout imports");
    assert!(report.missing.is_empty(), "{report:?}");
    let feats = enc
        .forward(io.tensor::<6>("io.video", &device))
        .expect("valid input");
    check(
        feats,
        io.raw("io.out.features"),
        1e-4,
        "R(2+1)D snippet features",
    );
}
