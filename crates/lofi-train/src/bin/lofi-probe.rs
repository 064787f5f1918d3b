//! `lofi-probe`: runs one memory probe step of the planner in its own process (see
//! `lofi_train::probe`). For programs other than `lofi` (which serves probes itself), such as
//! this crate's tests: `RunOptions::probe_program` names it.

use std::process::ExitCode;

fn main() -> ExitCode {
    lofi_train::probe::serve_if_child().unwrap_or_else(|| {
        eprintln!(
            "lofi-probe runs one memory probe of `lofi train --memory-budget`; it is started by \
             the planner with {} set and a request on stdin, not by hand",
            lofi_train::probe::CHILD_ENV
        );
        ExitCode::FAILURE
    })
}
