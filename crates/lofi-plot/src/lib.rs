//! Self-contained SVG charts.
//!
//! lofi writes plots (precision-recall, recall against proposals, loss curves, detection
//! timelines, the error analysis's bar charts) that a person opens in a browser or embeds in an HTML report, on machines without
//! Python or a plotting stack. An SVG written by hand is small, has no dependencies and renders
//! everywhere, so this crate is a few hundred lines of string building rather than a plotting
//! library.

mod bar;
mod line;
mod timeline;

pub use bar::{side_by_side, Bar, BarChart, BarGroup};
use line::{format_tick, ticks};
pub use line::{LineChart, Series};
pub use timeline::{Lane, Span, Timeline};

/// Colour-blind-friendly palette (Okabe-Ito, then darker tones), used in order.
pub const COLOURS: [&str; 10] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#7F7F7F", "#8C564B",
];

/// Escapes text for SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
