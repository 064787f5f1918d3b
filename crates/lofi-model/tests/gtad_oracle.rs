//! lofi's G-TAD against the official code's behaviour: fixtures written by
//! `test-tools/gtad/make_fixtures.py` from `test-tools/gtad/oracle.py`, an oracle of the official
//! ActivityNet G-TAD (Align1D kernel, anchors, network, targets, loss) that was itself confirmed
//! against the official sources by `test-tools/gtad/confirm_official.py`.
//!
//! Checked at L = 25 (two videos), 50 and 100: start/end probabilities and both maps (1e-4),
//! boundary and IoU targets (1e-5), the four loss values (1e-4), and the gradients of the total
//! loss for the input and six parameters (1e-3); plus SGAlign alone (1e-4, gradients 1e-3).
//! Tolerances are relative to the largest magnitude of the expected tensor.

mod common;
use common::Fixture;

use burn::tensor::{Device, Tensor};
use lofi_model::gtad::SgAlign;
use lofi_model::{GtadArch, GtadLoss, GtadTargets, Segment, TargetConfig};

/// Asserts `max |got - want| <= tol * max |want|`.
fn check_vec(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max abs error {worst} > {tol} x {scale}"
    );
}

fn check<const D: usize>(got: Tensor<D>, want: (Vec<f32>, Vec<usize>), tol: f32, what: &str) {
    assert_eq!(got.dims().to_vec(), want.1, "{what}: shape");
    let got: Vec<f32> = got.into_data().try_to_vec().expect("f32 data");
    check_vec(&got, &want.0, tol, what);
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_data().try_to_vec::<f32>().expect("f32")[0]
}

/// The official G-TAD's structure at the fixture's small widths.
fn arch() -> GtadArch {
    GtadArch {
        hidden: 8,
        stem_groups: 4,
        k: 3,
        groups: 32,
        width_per_group: 4,
        num_samples: 32,
        context_samples: 4,
        extend_ratio: 0.5,
        map_hidden: 16,
        map_channels: 8,
        map_kernel: 1,
        max_duration: None,
    }
}

#[test]
fn gtad_head_targets_and_loss_match_the_official_oracle_at_l_25_50_100() {
    let fx = Fixture::open("gtad_oracle");
    let device = Device::flex().autodiff();
    let head = fx.load(arch().gtad(8).init(&device).expect("valid config"));
    for (l, videos) in [(25usize, 2usize), (50, 1), (100, 1)] {
        let key = |k: &str| format!("L{l}.{k}");
        let x = fx.tensor::<3>(&key("x"), &device).require_grad();
        let out = head.forward(x.clone()).expect("valid input");

        let targets: Vec<GtadTargets> = (0..videos)
            .map(|v| {
                let (s, _) = fx.raw(&key(&format!("segments.{v}")));
                let segs: Vec<Segment> = s
                    .chunks(2)
                    .map(|p| Segment::new(f64::from(p[0]), f64::from(p[1])))
                    .collect();
                GtadTargets::new(&segs, l, &TargetConfig::default()).expect("valid segments")
            })
            .collect();
        let cat = |f: &dyn Fn(&GtadTargets) -> &Vec<f32>| -> Vec<f32> {
            targets.iter().flat_map(|t| f(t).iter().copied()).collect()
        };
        check_vec(
            &cat(&|t| &t.start),
            &fx.raw(&key("target.start")).0,
            1e-5,
            &format!("L = {l}: start targets"),
        );
        check_vec(
            &cat(&|t| &t.end),
            &fx.raw(&key("target.end")).0,
            1e-5,
            &format!("L = {l}: end targets"),
        );
        check_vec(
            &cat(&|t| &t.iou),
            &fx.raw(&key("target.iou")).0,
            1e-5,
            &format!("L = {l}: IoU targets"),
        );

        // The oracle draws the band sampling from lofi's generator with seed L.
        let parts = GtadLoss::default()
            .compute(&out, &targets, l as u64)
            .expect("matching targets");
        let grads = parts.total.backward();
        let got = [
            scalar(parts.total.clone()),
            scalar(parts.boundary),
            scalar(parts.regression),
            scalar(parts.classification),
        ];
        let want = fx.raw(&key("loss")).0;
        for (i, name) in ["total", "boundary", "regression", "classification"]
            .iter()
            .enumerate()
        {
            check_vec(
                &got[i..=i],
                &want[i..=i],
                1e-4,
                &format!("L = {l}: {name} loss"),
            );
        }

        check(
            out.start,
            fx.raw(&key("start")),
            1e-4,
            &format!("L = {l}: start"),
        );
        check(out.end, fx.raw(&key("end")), 1e-4, &format!("L = {l}: end"));
        check(
            out.maps,
            fx.raw(&key("maps")),
            1e-4,
            &format!("L = {l}: maps"),
        );

        let g = |name: &str, t: Tensor<1>| {
            check(
                t,
                {
                    let (v, _) = fx.raw(&key(&format!("grad.{name}")));
                    let n = v.len();
                    (v, vec![n])
                },
                1e-3,
                &format!("L = {l}: d/d{name}"),
            )
        };
        let flat = |t: Tensor<3>| {
            let n = t.shape().num_elements();
            t.reshape([n])
        };
        let flat4 = |t: Tensor<4>| {
            let n = t.shape().num_elements();
            t.reshape([n])
        };
        g("x", flat(x.grad(&grads).expect("grad")));
        g(
            "stem.weight",
            flat(head.stem.weight.val().grad(&grads).expect("grad")),
        );
        g(
            "backbone2.sconv1.weight",
            flat4(
                head.backbone2
                    .sconv1
                    .weight
                    .val()
                    .grad(&grads)
                    .expect("grad"),
            ),
        );
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>| {
            b.as_ref().expect("bias").val().grad(&grads).expect("grad")
        };
        g("start_out.bias", bias(&head.start_out.bias));
        g(
            "end_out.weight",
            flat(head.end_out.weight.val().grad(&grads).expect("grad")),
        );
        g("loc1.bias", bias(&head.loc1.bias));
        g(
            "loc5.weight",
            flat4(head.loc5.weight.val().grad(&grads).expect("grad")),
        );
        if l == 25 {
            g(
                "loc1.weight",
                flat4(head.loc1.weight.val().grad(&grads).expect("grad")),
            );
        }
    }
}

#[test]
fn sgalign_matches_the_official_align1d() {
    let fx = Fixture::open("gtad_oracle");
    let device = Device::flex().autodiff();
    let align = SgAlign {
        num_samples: 32,
        context_samples: 4,
        extend_ratio: 0.5,
        max_duration: None,
    };
    let x = fx.tensor::<3>("sgalign.x", &device).require_grad();
    let ctx = fx.tensor::<3>("sgalign.ctx", &device).require_grad();
    let y = align.forward(x.clone(), ctx.clone());
    let probe = fx.tensor::<4>("sgalign.probe", &device);
    let grads = (y.clone() * probe).sum().backward();
    check(y, fx.raw("sgalign.y"), 1e-4, "SGAlign output");
    check(
        x.grad(&grads).expect("grad"),
        fx.raw("sgalign.grad.x"),
        1e-3,
        "SGAlign d/dx",
    );
    check(
        ctx.grad(&grads).expect("grad"),
        fx.raw("sgalign.grad.ctx"),
        1e-3,
        "SGAlign d/dctx",
    );
}
