//! Seeded, reproducible weight initialisation when several runs share one process.
//!
//! # Why
//! burn's random state is one per process (the flex backend keeps a single seeded generator),
//! and burn creates parameters lazily, at their first use. A run that seeds and then builds its
//! model therefore draws its initial weights at some later moment, from a generator any other run
//! in the process may have re-seeded or drawn from in between: two trainings in one process (the
//! test harness's threads, or a library user's) could start from different weights than either
//! alone. This showed up as a data-parallel test that failed once in three runs when the test
//! binary's other trainings overlapped it.
//!
//! [`seeded`] runs an initialisation holding a process-wide lock, with the generator seeded
//! first, and [`initialized`] forces every lazy parameter into existence while the lock is held,
//! so a run's weights depend on its seed alone.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor};

/// Held while a run seeds burn's generator and draws its initial weights.
static INIT: Mutex<()> = Mutex::new(());

/// Runs `init` with burn's random state seeded to `seed`, with no other [`seeded`] call of the
/// process in between. Draw everything random that must follow from `seed` inside `init`
/// (build modules with [`initialized`]).
pub fn seeded<T>(device: &Device, seed: u64, init: impl FnOnce() -> T) -> T {
    let _alone = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    init()
}

/// `module` with every parameter created now rather than at its first use (burn's lazy
/// initialisation), so the draws happen inside the surrounding [`seeded`] call.
pub fn initialized<M: Module>(module: M) -> M {
    module.visit(&mut Touch);
    module
}

/// Reads every parameter once, which creates the lazy ones.
struct Touch;

impl ModuleVisitor for Touch {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        let _ = param.val();
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        let _ = param.val();
    }
}
