//! The figures of DETAD's error analysis, drawn from a [`DetectionAnalysis`]: the false-positive
//! profile with the gain of removing each error type, the false-negative rate per bucket, and
//! average-mAP_N per bucket against the average-mAP_N of all predictions. `lofi eval detection
//! --analysis --plot DIR` writes them as files and `lofi report` embeds them.

use lofi_eval::{CharacteristicBuckets, DetectionAnalysis, ErrorType};
use lofi_plot::{side_by_side, Bar, BarChart, BarGroup};

/// DETAD's colours for the six error types, in [`ErrorType::ALL`] order.
const ERROR_COLOURS: [&str; 6] = [
    "#33a02c", "#b2df8a", "#1f78b4", "#fb9a99", "#e31a1c", "#a6cee3",
];

/// The three figures as SVG documents, with the file names `--plot` gives them.
pub fn analysis_figures(analysis: &DetectionAnalysis) -> [(&'static str, String); 3] {
    [
        (
            "false_positive_analysis.svg",
            false_positive_figure(analysis),
        ),
        (
            "false_negative_analysis.svg",
            false_negative_figure(analysis),
        ),
        ("sensitivity_analysis.svg", sensitivity_figure(analysis)),
    ]
}

fn false_positive_figure(analysis: &DetectionAnalysis) -> String {
    let mut profile = BarChart::new(
        "False-positive profile",
        "error breakdown (%) per slice of G predictions",
    );
    profile.segment_names = ErrorType::ALL
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    profile.colours = ERROR_COLOURS.iter().map(|c| c.to_string()).collect();
    profile.y_range = Some((0.0, 100.0));
    profile.groups.push(BarGroup {
        name: format!("top {}G predictions of each class", analysis.profile.len()),
        bars: analysis
            .profile
            .iter()
            .enumerate()
            .map(|(g, slice)| Bar {
                label: format!("{}G", g + 1),
                segments: slice.fractions.iter().map(|f| f * 100.0).collect(),
            })
            .collect(),
    });
    let mut gain = BarChart::new(
        "Removing error impact",
        "average-mAP_N improvement (points)",
    );
    gain.show_values = true;
    gain.colours = ERROR_COLOURS[1..].iter().map(|c| c.to_string()).collect();
    gain.groups = ErrorType::ALL[1..]
        .iter()
        .zip(&analysis.average_map_n_gain)
        .map(|(error, value)| BarGroup {
            name: String::new(),
            bars: vec![Bar::single(short_name(*error), value * 100.0)],
        })
        .collect();
    let (a, b) = (profile.to_svg(), gain.to_svg());
    side_by_side(&[
        (profile.width(), BarChart::HEIGHT, a),
        (gain.width(), BarChart::HEIGHT, b),
    ])
}

fn short_name(error: ErrorType) -> &'static str {
    match error {
        ErrorType::TruePositive => "TP",
        ErrorType::DoubleDetection => "double",
        ErrorType::WrongLabel => "label",
        ErrorType::Localization => "loc.",
        ErrorType::Confusion => "conf.",
        ErrorType::Background => "bg.",
    }
}

fn bucket_groups(groups: &[CharacteristicBuckets]) -> Vec<BarGroup> {
    groups
        .iter()
        .map(|group| BarGroup {
            name: group.characteristic.name().to_string(),
            bars: group
                .buckets
                .iter()
                .map(|b| Bar::single(b.label, b.value.map_or(f64::NAN, |v| v * 100.0)))
                .collect(),
        })
        .collect()
}

fn false_negative_figure(analysis: &DetectionAnalysis) -> String {
    let mut chart = BarChart::new("False negatives by characteristic", "false negative (%)");
    chart.y_range = Some((0.0, 110.0));
    chart.show_values = true;
    chart.groups = bucket_groups(&analysis.false_negative);
    chart.to_svg()
}

fn sensitivity_figure(analysis: &DetectionAnalysis) -> String {
    let mut chart = BarChart::new("Sensitivity to characteristics", "average-mAP_N (%)");
    chart.y_range = Some((0.0, 100.0));
    chart.show_values = true;
    let base = analysis.sensitivity_average_map_n * 100.0;
    chart.reference = Some((format!("all predictions {base:.2}"), base));
    chart.groups = bucket_groups(&analysis.sensitivity);
    chart.to_svg()
}
