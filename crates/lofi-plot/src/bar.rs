//! Bar charts: bars in named groups, each bar a stack of segments, for the error analysis
//! figures (false-positive profile, gains per error type, rates and scores per bucket).

use crate::{escape, ticks, COLOURS};
use std::fmt::Write as _;

/// One bar: a label under it and the heights of its stacked segments, bottom first.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Text under the bar.
    pub label: String,
    /// Segment heights, stacked from the bottom; a non-finite height draws nothing (an empty
    /// bucket), and its value label reads "-".
    pub segments: Vec<f64>,
}

impl Bar {
    /// A bar of one segment.
    pub fn single(label: impl Into<String>, value: f64) -> Self {
        Bar {
            label: label.into(),
            segments: vec![value],
        }
    }
}

/// Bars that belong together, with a name above them; groups are set apart by dotted lines.
#[derive(Clone, Debug, PartialEq)]
pub struct BarGroup {
    /// Text above the group (may be empty).
    pub name: String,
    /// Its bars, left to right.
    pub bars: Vec<Bar>,
}

/// A bar chart with a vertical axis, a title and, for stacked bars, a legend.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    /// Title above the plot.
    pub title: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The groups, left to right.
    pub groups: Vec<BarGroup>,
    /// Names of the stacked segments (the legend); with names, segment `i` has colour `i`,
    /// without, every bar of group `g` has colour `g`.
    pub segment_names: Vec<String>,
    /// Fixed vertical range; `None` fits the data from 0.
    pub y_range: Option<(f64, f64)>,
    /// Writes each bar's total above it.
    pub show_values: bool,
    /// A dashed horizontal line across the plot and its label.
    pub reference: Option<(String, f64)>,
    /// Colours to use instead of the palette.
    pub colours: Vec<String>,
}

const LEFT: f64 = 70.0;
const TOP: f64 = 58.0;
const BOTTOM: f64 = 52.0;
const BAR: f64 = 30.0;
const GAP: f64 = 8.0;
const GROUP_GAP: f64 = 26.0;

const HEIGHT: f64 = BarChart::HEIGHT;

impl BarChart {
    /// The height of every bar chart, in pixels.
    pub const HEIGHT: f64 = 400.0;

    /// An empty chart.
    pub fn new(title: impl Into<String>, y_label: impl Into<String>) -> Self {
        BarChart {
            title: title.into(),
            y_label: y_label.into(),
            groups: Vec::new(),
            segment_names: Vec::new(),
            y_range: None,
            show_values: false,
            reference: None,
            colours: Vec::new(),
        }
    }

    fn colour(&self, index: usize) -> &str {
        if self.colours.is_empty() {
            COLOURS[index % COLOURS.len()]
        } else {
            &self.colours[index % self.colours.len()]
        }
    }

    fn range(&self) -> (f64, f64) {
        if let Some(range) = self.y_range {
            return range;
        }
        let mut high = self
            .groups
            .iter()
            .flat_map(|g| &g.bars)
            .map(|b| b.segments.iter().filter(|v| v.is_finite()).sum::<f64>())
            .fold(0.0f64, f64::max);
        if let Some((_, value)) = &self.reference {
            high = high.max(*value);
        }
        if high > 0.0 {
            (0.0, high * 1.15)
        } else {
            (0.0, 1.0)
        }
    }

    /// The chart's width in pixels (it grows with the number of bars).
    pub fn width(&self) -> f64 {
        let bars: usize = self.groups.iter().map(|g| g.bars.len()).sum();
        let legend = if self.segment_names.is_empty() {
            30.0
        } else {
            170.0
        };
        LEFT + bars as f64 * (BAR + GAP)
            + self.groups.len().saturating_sub(1) as f64 * GROUP_GAP
            + GAP
            + legend
    }

    /// The chart as a complete SVG document.
    pub fn to_svg(&self) -> String {
        let width = self.width();
        let (y0, y1) = self.range();
        let plot_h = HEIGHT - TOP - BOTTOM;
        let plot_right = width
            - if self.segment_names.is_empty() {
                30.0
            } else {
                170.0
            };
        let sy = |y: f64| TOP + plot_h - (y.clamp(y0, y1) - y0) / (y1 - y0) * plot_h;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            (LEFT + plot_right) / 2.0,
            escape(&self.title)
        );
        for tick in ticks(y0, y1) {
            let y = sy(tick);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{plot_right:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                y + 4.0,
                crate::format_tick(tick)
            );
        }
        let _ = write!(
            svg,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        let mut x = LEFT + GAP;
        for (g, group) in self.groups.iter().enumerate() {
            if g > 0 {
                let line = x - GAP / 2.0 - GROUP_GAP / 2.0;
                let _ = write!(
                    svg,
                    r##"<line x1="{line:.1}" y1="{TOP}" x2="{line:.1}" y2="{:.1}" stroke="#999999" stroke-dasharray="2 3"/>"##,
                    TOP + plot_h
                );
            }
            let group_width = group.bars.len() as f64 * (BAR + GAP) - GAP;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{}</text>"#,
                x + group_width / 2.0,
                TOP - 8.0,
                escape(&group.name)
            );
            for bar in &group.bars {
                let mut base = 0.0;
                for (s, &value) in bar.segments.iter().enumerate() {
                    if !value.is_finite() {
                        continue;
                    }
                    let colour = if self.segment_names.is_empty() {
                        self.colour(g)
                    } else {
                        self.colour(s)
                    };
                    let (top, bottom) = (sy(base + value), sy(base));
                    let _ = write!(
                        svg,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{BAR}" height="{:.1}" fill="{colour}"><title>{}: {}</title></rect>"#,
                        top.min(bottom),
                        (bottom - top).abs(),
                        escape(&bar.label),
                        format_value(value)
                    );
                    base += value;
                }
                if self.show_values {
                    let total: f64 = bar.segments.iter().filter(|v| v.is_finite()).sum();
                    let known = bar.segments.iter().any(|v| v.is_finite());
                    let text = if known {
                        format_value(total)
                    } else {
                        "-".to_string()
                    };
                    let _ = write!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{text}</text>"#,
                        x + BAR / 2.0,
                        sy(total) - 4.0
                    );
                }
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    x + BAR / 2.0,
                    TOP + plot_h + 16.0,
                    escape(&bar.label)
                );
                x += BAR + GAP;
            }
            x += GROUP_GAP;
        }
        if let Some((label, value)) = &self.reference {
            let y = sy(*value);
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{plot_right:.1}" y2="{y:.1}" stroke="black" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"#,
                plot_right - 4.0,
                y - 5.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="black" points="{LEFT},{TOP} {LEFT},{:.1} {plot_right:.1},{:.1}"/>"#,
            TOP + plot_h,
            TOP + plot_h
        );
        // Legend, top segment first as the stacks read.
        for (i, name) in self.segment_names.iter().enumerate().rev() {
            let row = (self.segment_names.len() - 1 - i) as f64;
            let ly = TOP + 4.0 + 20.0 * row;
            let lx = plot_right + 14.0;
            let _ = write!(
                svg,
                r#"<rect x="{lx:.1}" y="{ly:.1}" width="14" height="14" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                self.colour(i),
                lx + 20.0,
                ly + 11.0,
                escape(name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Several SVG charts side by side in one document (each as written by a `to_svg`).
pub fn side_by_side(charts: &[(f64, f64, String)]) -> String {
    let width: f64 = charts.iter().map(|c| c.0).sum();
    let height = charts.iter().map(|c| c.1).fold(0.0, f64::max);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    );
    let mut x = 0.0;
    for (w, _, chart) in charts {
        let _ = write!(
            svg,
            r#"<g transform="translate({x} 0)">{}</g>"#,
            chart.trim_end()
        );
        x += w;
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_value(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_bars_draw_one_rect_per_finite_segment_and_a_legend() {
        let mut chart = BarChart::new("Profile <1>", "%");
        chart.segment_names = vec!["a".into(), "b".into()];
        chart.y_range = Some((0.0, 100.0));
        chart.groups.push(BarGroup {
            name: String::new(),
            bars: vec![
                Bar {
                    label: "1G".into(),
                    segments: vec![60.0, 40.0],
                },
                Bar {
                    label: "2G".into(),
                    segments: vec![f64::NAN, f64::NAN],
                },
            ],
        });
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Background, two segments, two legend keys.
        assert_eq!(svg.matches("<rect").count(), 5);
        assert!(svg.contains("Profile &lt;1&gt;"));
        assert!(!svg.contains("NaN"));
        // The 60 % segment spans 60 % of the plot height from the bottom.
        let plot_h = HEIGHT - TOP - BOTTOM;
        assert!(svg.contains(&format!("height=\"{:.1}\"", 0.6 * plot_h)));
    }

    #[test]
    fn groups_values_and_reference_line() {
        let mut chart = BarChart::new("t", "y");
        chart.show_values = true;
        chart.reference = Some(("base 12.3".into(), 12.3));
        for name in ["coverage", "length"] {
            chart.groups.push(BarGroup {
                name: name.into(),
                bars: vec![Bar::single("XS", 10.0), Bar::single("S", f64::NAN)],
            });
        }
        let svg = chart.to_svg();
        assert_eq!(svg.matches("stroke-dasharray=\"2 3\"").count(), 1);
        assert_eq!(svg.matches(">10.0<").count(), 2);
        assert_eq!(svg.matches(">-<").count(), 2);
        assert!(svg.contains("base 12.3"));
        let joined = side_by_side(&[(chart.width(), HEIGHT, svg.clone()), (100.0, 50.0, svg)]);
        assert_eq!(joined.matches("<svg").count(), 3);
    }
}
