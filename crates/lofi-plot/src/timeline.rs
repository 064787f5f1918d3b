//! Timelines: labelled intervals in lanes over one time axis, e.g. a video's ground-truth actions
//! above the detections of several models.

use crate::{escape, COLOURS};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One interval of a lane.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// Start time.
    pub start: f64,
    /// End time.
    pub end: f64,
    /// Class label: spans with the same label share a colour across lanes.
    pub label: String,
    /// Opacity in [0, 1], e.g. a detection's score.
    pub opacity: f64,
}

/// A named row of spans.
#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    /// Text at the left of the lane.
    pub name: String,
    /// Its intervals; overlapping spans are stacked in sub-rows.
    pub spans: Vec<Span>,
}

/// A timeline chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// Title above the chart.
    pub title: String,
    /// Length of the time axis (e.g. the video's duration in seconds).
    pub duration: f64,
    /// The lanes, top to bottom.
    pub lanes: Vec<Lane>,
}

const WIDTH: f64 = 720.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const ROW: f64 = 12.0;
const GAP: f64 = 8.0;
const TOP: f64 = 34.0;

impl Timeline {
    /// Assigns each span of a lane to the first sub-row where it overlaps nothing.
    fn stack(spans: &[Span]) -> Vec<usize> {
        let mut ends: Vec<f64> = Vec::new();
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by(|&a, &b| spans[a].start.total_cmp(&spans[b].start));
        let mut rows = vec![0; spans.len()];
        for i in order {
            let row = ends
                .iter()
                .position(|&end| end <= spans[i].start)
                .unwrap_or(ends.len());
            if row == ends.len() {
                ends.push(spans[i].end);
            } else {
                ends[row] = spans[i].end;
            }
            rows[i] = row;
        }
        rows
    }

    /// The chart as a complete SVG document.
    pub fn to_svg(&self) -> String {
        let duration = if self.duration.is_finite() && self.duration > 0.0 {
            self.duration
        } else {
            1.0
        };
        let plot_w = WIDTH - LEFT - RIGHT;
        let sx = |t: f64| LEFT + (t.clamp(0.0, duration) / duration) * plot_w;
        let mut colours: BTreeMap<&str, &str> = BTreeMap::new();
        for span in self.lanes.iter().flat_map(|l| &l.spans) {
            let next = COLOURS[colours.len() % COLOURS.len()];
            colours.entry(span.label.as_str()).or_insert(next);
        }
        let stacks: Vec<Vec<usize>> = self.lanes.iter().map(|l| Self::stack(&l.spans)).collect();
        let heights: Vec<f64> = stacks
            .iter()
            .map(|rows| (rows.iter().max().map_or(1, |m| m + 1)) as f64 * ROW)
            .collect();
        let legend_rows = colours.len().div_ceil(4) as f64;
        let height = TOP + heights.iter().map(|h| h + GAP).sum::<f64>() + 30.0 + legend_rows * 16.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="20" font-size="13">{}</text>"#,
            escape(&self.title)
        );
        let mut y = TOP;
        for ((lane, rows), lane_height) in self.lanes.iter().zip(&stacks).zip(&heights) {
            let _ = write!(
                svg,
                r##"<rect x="{LEFT}" y="{y:.1}" width="{plot_w}" height="{lane_height:.1}" fill="#f4f4f4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                y + lane_height / 2.0 + 4.0,
                escape(&lane.name)
            );
            for (span, row) in lane.spans.iter().zip(rows) {
                let (x0, x1) = (sx(span.start), sx(span.end));
                let _ = write!(
                    svg,
                    r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="{:.2}"><title>{} [{:.1}, {:.1}]</title></rect>"#,
                    y + *row as f64 * ROW + 1.0,
                    (x1 - x0).max(1.0),
                    ROW - 2.0,
                    colours
                        .get(span.label.as_str())
                        .copied()
                        .unwrap_or(COLOURS[0]),
                    span.opacity.clamp(0.08, 1.0),
                    escape(&span.label),
                    span.start,
                    span.end
                );
            }
            y += lane_height + GAP;
        }
        // Time axis.
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="black"/>"#,
            LEFT + plot_w
        );
        for k in 0..=4 {
            let t = duration * k as f64 / 4.0;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0} s</text>"#,
                sx(t),
                y + 14.0,
                t
            );
        }
        for (i, (label, colour)) in colours.iter().enumerate() {
            let lx = LEFT + (i % 4) as f64 * 150.0;
            let ly = y + 30.0 + (i / 4) as f64 * 16.0;
            let _ = write!(
                svg,
                r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="10" fill="{colour}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 9.0,
                lx + 16.0,
                escape(label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: f64, end: f64, label: &str) -> Span {
        Span {
            start,
            end,
            label: label.into(),
            opacity: 0.5,
        }
    }

    #[test]
    fn overlapping_spans_stack_in_sub_rows() {
        let spans = [
            span(0.0, 5.0, "a"),
            span(2.0, 6.0, "b"),
            span(5.0, 8.0, "a"),
        ];
        assert_eq!(Timeline::stack(&spans), [0, 1, 0]);
    }

    #[test]
    fn one_rect_per_span_plus_lane_backgrounds_and_legend() {
        let chart = Timeline {
            title: "video <1>".into(),
            duration: 10.0,
            lanes: vec![
                Lane {
                    name: "ground truth".into(),
                    spans: vec![span(1.0, 3.0, "Jump")],
                },
                Lane {
                    name: "s".into(),
                    spans: vec![span(1.5, 3.5, "Jump"), span(6.0, 20.0, "Run")],
                },
            ],
        };
        let svg = chart.to_svg();
        assert_eq!(svg.matches("<title>").count(), 3);
        // 1 page background + 2 lane backgrounds + 3 spans + 2 legend swatches.
        assert_eq!(svg.matches("<rect").count(), 8);
        assert!(svg.contains("video &lt;1&gt;"));
        // The span past the end is clipped to the axis.
        assert!(!svg.contains("NaN"));
    }
}
