//! [`lofi_model::seed`]: weights follow the seed whatever the process's random generator does
//! between a model's construction and its first use. Its own test binary, so no other test of
//! the crate draws from burn's process-wide generator meanwhile.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use lofi_model::seed::{initialized, seeded};
use lofi_model::GtadConfig;

fn weights<M: Module>(m: M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v: Vec<f32> = param.val().into_data().try_to_vec().unwrap_or_default();
            self.0.extend(v);
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// A model built under `seeded` with `initialized` has the same weights however the generator
/// is used before the model's first use; one that is only seeded does not (burn initialises
/// lazily, the reason for the module).
#[test]
fn weights_follow_the_seed_even_when_the_generator_is_used_before_first_use() {
    let device = Device::flex();
    let build = || initialized(GtadConfig::tiny(8).init(&device).expect("head"));
    let alone = weights(seeded(&device, 11, build));
    let disturbed = seeded(&device, 11, build);
    // Another run re-seeds and draws before this model's weights are read.
    seeded(&device, 99, || {
        let _ = Tensor::<1>::random([1000], burn::tensor::Distribution::Default, &device);
    });
    assert_eq!(weights(disturbed), alone);
    let lazy = seeded(&device, 11, || {
        GtadConfig::tiny(8).init(&device).expect("head")
    });
    seeded(&device, 99, || ());
    assert_ne!(weights(lazy), alone);
}
