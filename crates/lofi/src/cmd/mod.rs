//! One module per subcommand: its clap arguments and the glue from them to the library crates.

pub mod device;
pub mod eval;
pub mod probe;
pub mod synth;
