//! Helpers shared by the unit tests and the benches: deterministic pseudo-random data, closeness
//! assertions and a central finite-difference gradient checker. Compiled for this crate's tests
//! and, through the `test-util` feature (which the benches turn on as a dev-dependency), for them;
//! never in a normal build.

use burn::tensor::{Device, Tensor, TensorData};

/// Deterministic values in [-1, 1) from a 64-bit LCG, so tests need no RNG crate.
pub fn lcg_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `max |a - b|` over the largest magnitude of `b` (at least 1e-6): the difference of two
/// computations of one tensor relative to its scale.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Asserts element-wise `|a - b| <= tol * (1 + |b|)`.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: length {} vs {}",
        a.len(),
        b.len()
    );
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: got {x}, want {y}"
        );
    }
}

/// Compares the autodiff gradient of the scalar `f(x)` at `x0` with central finite differences.
///
/// `f` is called on autodiff tensors (for the analytic gradient) and on plain tensors (for the
/// numerical one), so it must not depend on which.
pub fn fd_check<const D: usize, F>(
    x0: &[f32],
    shape: [usize; D],
    device: &Device,
    f: F,
    eps: f32,
    tol: f32,
) where
    F: Fn(Tensor<D>) -> Tensor<1>,
{
    let ad = device.clone().autodiff();
    let x = Tensor::<D>::from_data(TensorData::new(x0.to_vec(), shape), &ad).require_grad();
    let y = f(x.clone());
    let grads = y.backward();
    let g: Vec<f32> = x
        .grad(&grads)
        .map(|g| g.into_data().try_to_vec().unwrap_or_default())
        .unwrap_or_else(|| vec![0.0; x0.len()]);
    let eval = |v: Vec<f32>| -> f32 {
        let t = Tensor::<D>::from_data(TensorData::new(v, shape), device);
        f(t).into_data().try_to_vec::<f32>().unwrap_or_default()[0]
    };
    for i in 0..x0.len() {
        let mut p = x0.to_vec();
        p[i] += eps;
        let mut m = x0.to_vec();
        m[i] -= eps;
        let num = (eval(p) - eval(m)) / (2.0 * eps);
        assert!(
            (num - g[i]).abs() <= tol * (1.0 + num.abs()),
            "gradient element {i}: autodiff {} vs finite difference {num}",
            g[i]
        );
    }
}
