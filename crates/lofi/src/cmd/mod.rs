//! One module per subcommand: its clap arguments and the glue from them to the library crates.

pub mod demo;
pub mod detect;
pub mod device;
pub mod eval;
pub mod extract;
pub mod pretrain;
pub mod probe;
pub mod report;
pub mod synth;
pub mod train;
pub mod train_head;
