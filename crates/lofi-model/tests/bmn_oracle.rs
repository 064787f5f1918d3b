//! lofi's BMN against the reference's behaviour: fixtures written by
//! `test-tools/bmn/make_fixtures.py` from `test-tools/bmn/oracle.py`, an oracle of the widely
//! used PyTorch BMN (JJBOY/BMN-Boundary-Matching-Network: sampling mask, network, targets, loss,
//! proposals and Soft-NMS) that was itself confirmed against that code by
//! `test-tools/bmn/confirm_reference.py` (`confirm_reference.out`).
//!
//! Checked: the sampling mask at L = 10 (1e-6); at L = 25 (two videos), 50 and 100 the start / end
//! probabilities and both maps (1e-4), the boundary and IoU targets (1e-5), the four loss values
//! (1e-4) and the gradients of the total loss for the input and six parameters (1e-3).
//! Tolerances are relative to the largest magnitude of the expected tensor. (The proposals and
//! BMN's Soft-NMS: lofi-head's `tests/bmn_proposals.rs`.) Mutation checks: a mask of another extension ratio or
//! points per bin, and a loss with another positive threshold (so other balancing ratios) or
//! regression weight, fail these comparisons.

mod common;
use common::Fixture;

use burn::tensor::{Device, Tensor};
use lofi_model::loss::GtadLossConfig;
use lofi_model::{BmnArch, GtadLoss, HeadArch, HeadKind, HeadTargets, Segment};

/// `max |got - want| / max |want|`.
fn rel_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
        / scale
}

fn check_vec(got: &[f32], want: &[f32], tol: f32, what: &str) {
    let e = rel_error(got, want);
    assert!(e <= tol, "{what}: relative error {e} > {tol}");
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32 data")
}

fn scalar(t: Tensor<1>) -> f32 {
    host(t)[0]
}

/// The reference's structure at the fixture's small widths.
fn arch() -> BmnArch {
    BmnArch {
        hidden_1d: 8,
        hidden_2d: 8,
        hidden_3d: 16,
        groups: 4,
        num_samples: 32,
        samples_per_bin: 3,
        boundary_ratio: 0.5,
    }
}

fn segments(fx: &Fixture, key: &str) -> Vec<Segment> {
    fx.raw(key)
        .0
        .chunks(2)
        .map(|p| Segment::new(f64::from(p[0]), f64::from(p[1])))
        .collect()
}

#[test]
fn the_sampling_mask_is_the_references() {
    let fx = Fixture::open("bmn_oracle");
    let (want, shape) = fx.raw("mask.L10");
    assert_eq!(shape, vec![32, 10, 100]);
    let got = lofi_model::bmn::sample_mask(10, 32, 3, 0.5).weights;
    check_vec(&got, &want, 1e-6, "mask at L = 10");
    // Mutations: another extension ratio or another number of points per bin is caught.
    for (ratio, per_bin) in [(0.4, 3), (0.5, 2)] {
        let other = lofi_model::bmn::sample_mask(10, 32, per_bin, ratio).weights;
        eprintln!(
            "mask ratio {ratio}, {per_bin} points per bin: off by {:.2e}",
            rel_error(&other, &want)
        );
        assert!(
            rel_error(&other, &want) > 1e-3,
            "a mask with ratio {ratio}, {per_bin} points per bin passed"
        );
    }
}

/// Runs the head of `arch` (weights from the fixture) at every L; returns the worst relative
/// error over maps, start and end, the worst over the four loss values under `loss`, and the
/// worst over the gradients (without asserting, for the mutation checks).
fn compare(arch: &BmnArch, loss: &GtadLoss) -> (f32, f32, f32) {
    let fx = Fixture::open("bmn_oracle");
    let device = Device::flex().autodiff();
    let lofi_model::Head::Bmn(head) = HeadArch::Bmn(arch.clone())
        .init(8, &device)
        .expect("valid head")
    else {
        panic!("a BMN")
    };
    let head = fx.load(head);
    let (mut out_err, mut loss_err, mut grad_err) = (0f32, 0f32, 0f32);
    for (l, videos) in [(25usize, 2usize), (50, 1), (100, 1)] {
        let key = |k: &str| format!("L{l}.{k}");
        let x = fx.tensor::<3>(&key("x"), &device).require_grad();
        let out = head.forward(x.clone()).expect("valid input");
        let targets: Vec<HeadTargets> = (0..videos)
            .map(|v| {
                lofi_model::bmn::targets(&segments(&fx, &key(&format!("segments.{v}"))), l, 3.0)
                    .expect("valid segments")
            })
            .collect();
        let parts = loss.compute(&out, &targets, l as u64).expect("targets");
        let grads = parts.total.backward();
        let got = [
            scalar(parts.total.clone()),
            scalar(parts.boundary),
            scalar(parts.regression),
            scalar(parts.classification),
        ];
        let want = fx.raw(&key("loss")).0;
        for i in 0..4 {
            loss_err = loss_err.max(rel_error(&got[i..=i], &want[i..=i]));
        }
        out_err = out_err
            .max(rel_error(&host(out.start), &fx.raw(&key("start")).0))
            .max(rel_error(&host(out.end), &fx.raw(&key("end")).0))
            .max(rel_error(&host(out.maps), &fx.raw(&key("maps")).0));
        let flat = |t: Vec<f32>| t;
        let mut g = |name: &str, got: Vec<f32>| {
            grad_err = grad_err.max(rel_error(&got, &fx.raw(&key(&format!("grad.{name}"))).0));
        };
        g("x", flat(host(x.grad(&grads).expect("grad"))));
        g(
            "base1.weight",
            host(head.base1.weight.val().grad(&grads).expect("grad")),
        );
        let bias = |b: &Option<burn::module::Param<Tensor<1>>>| {
            host(b.as_ref().expect("bias").val().grad(&grads).expect("grad"))
        };
        g("start2.bias", bias(&head.start2.bias));
        g(
            "proposal.weight",
            host(head.proposal.weight.val().grad(&grads).expect("grad")),
        );
        g(
            "bins.weight",
            host(head.bins.weight.val().grad(&grads).expect("grad")),
        );
        g(
            "map2.weight",
            host(head.map2.weight.val().grad(&grads).expect("grad")),
        );
        g("map4.bias", bias(&head.map4.bias));
    }
    (out_err, loss_err, grad_err)
}

#[test]
fn bmn_head_targets_and_loss_match_the_reference_oracle_at_l_25_50_100() {
    let fx = Fixture::open("bmn_oracle");
    for (l, videos) in [(25usize, 2usize), (50, 1), (100, 1)] {
        let key = |k: &str| format!("L{l}.{k}");
        let targets: Vec<HeadTargets> = (0..videos)
            .map(|v| {
                HeadArch::tiny(HeadKind::Bmn)
                    .targets(&segments(&fx, &key(&format!("segments.{v}"))), l, 3.0)
                    .expect("valid segments")
            })
            .collect();
        let cat = |f: &dyn Fn(&HeadTargets) -> &Vec<f32>| -> Vec<f32> {
            targets.iter().flat_map(|t| f(t).iter().copied()).collect()
        };
        for (name, got) in [
            ("start", cat(&|t| &t.start)),
            ("end", cat(&|t| &t.end)),
            ("iou", cat(&|t| &t.iou)),
        ] {
            check_vec(
                &got,
                &fx.raw(&key(&format!("target.{name}"))).0,
                1e-5,
                &format!("L = {l}: {name} targets"),
            );
        }
    }
    let (out, loss, grad) = compare(&arch(), &GtadLoss::default());
    eprintln!(
        "BMN vs its oracle (relative): outputs {out:.2e}, loss {loss:.2e}, gradients {grad:.2e}"
    );
    assert!(out <= 1e-4, "maps / start / end: relative error {out}");
    assert!(loss <= 1e-4, "loss: relative error {loss}");
    assert!(grad <= 1e-3, "gradients: relative error {grad}");
}

#[test]
fn a_changed_mask_or_loss_ratio_fails_the_comparison() {
    // Another extension ratio of the BM layer's mask.
    let (out, _, _) = compare(
        &BmnArch {
            boundary_ratio: 0.25,
            ..arch()
        },
        &GtadLoss::default(),
    );
    eprintln!("mask of ratio 0.25: outputs off by {out:.2e}");
    assert!(out > 1e-4, "a mask of ratio 0.25 passed ({out})");
    // Other positives for the TEM (so other balancing ratios), or another regression weight.
    for config in [
        GtadLossConfig {
            boundary_positive: 0.7,
            ..GtadLossConfig::default()
        },
        GtadLossConfig {
            regression_weight: 5.0,
            ..GtadLossConfig::default()
        },
    ] {
        let (_, loss, _) = compare(&arch(), &GtadLoss::new(config.clone()));
        eprintln!("{config:?}: loss off by {loss:.2e}");
        assert!(loss > 1e-4, "{config:?} passed ({loss})");
    }
}
