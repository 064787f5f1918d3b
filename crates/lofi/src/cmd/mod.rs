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

/// The long help of every `--preset`: the presets with one line each.
pub fn preset_help() -> String {
    let mut text = String::from(
        "Starting settings where neither --config nor (for extract, train-head and detect) the \
         producing run's model card gives them; explicit flags override all of these.\n",
    );
    for p in lofi_engine::Preset::ALL {
        text.push_str(&format!("  {}: {}\n", p.name(), p.about()));
    }
    text
}
