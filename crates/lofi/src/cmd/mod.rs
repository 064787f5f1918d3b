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
        "Starting settings for what neither --config nor the producing run gives (the encoder's \
         card for extract, the features' index for train-head, the head run for detect); \
         explicit flags override all of these.\n",
    );
    for p in lofi_engine::Preset::ALL {
        text.push_str(&format!("  {}: {}\n", p.name(), p.about()));
    }
    text
}
