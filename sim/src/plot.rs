//! SVG line charts of a run: RTT and loss over virtual time, one line per link preset.
//!
//! Drawn with `plotters`' SVG backend without its font features: text is written as SVG
//! `<text>` elements (sans-serif, laid out by the viewer), so no system font is read and the
//! output is byte-for-byte the same on every machine.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

/// Chart size in pixels (width, height).
const SIZE_PX: (u32, u32) = (1000, 760);

/// Line colours, cycled in order of first appearance of each label: Tableau 10, which stays
/// distinguishable for the common kinds of colour blindness.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// One line of a chart: a label (the link preset's name) and its `(time_s, value)` points in
/// time order. Points with a non-finite coordinate are skipped when drawing.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(virtual time in seconds, value)` pairs, in time order.
    pub points: Vec<(f64, f64)>,
}

/// Renders a complete SVG document: `title` above two stacked panels sharing the x axis
/// (virtual time in seconds), RTT in milliseconds on top and loss in percent below, one line
/// per series with a legend in each panel. A label keeps its colour in both panels.
///
/// The time axis runs from zero to the last point; value axes start at zero and extend 10 % past
/// the largest value. Empty input (or series without finite points) renders labelled, empty
/// axes over 0–1.
pub fn render_svg(title: &str, rtt_ms: &[Series], loss_pct: &[Series]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE_PX).into_drawing_area();
        draw(&root, title, rtt_ms, loss_pct)
            .and_then(|()| root.present())
            .expect("the SVG backend writes into a String and the naive font layout cannot fail");
    }
    svg
}

type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    rtt_ms: &[Series],
    loss_pct: &[Series],
) -> DrawResult {
    root.fill(&WHITE)?;
    let body = root.titled(title, ("sans-serif", 26))?;
    let (top, bottom) = body.split_vertically(SIZE_PX.1.saturating_sub(40) / 2);

    let all = || rtt_ms.iter().chain(loss_pct);
    // Time runs from zero (or the earliest point) to the last point exactly.
    let xs = || all().flat_map(|s| finite(&s.points)).map(|(x, _)| x);
    let x_min = xs().fold(0.0, f64::min);
    let x_max = xs().fold(f64::NEG_INFINITY, f64::max);
    let x_range = x_min..if x_max > x_min { x_max } else { x_min + 1.0 };

    // One colour per distinct label, in order of first appearance.
    let mut labels: Vec<&str> = Vec::new();
    for series in all() {
        if !labels.contains(&series.label.as_str()) {
            labels.push(&series.label);
        }
    }
    let colour = |label: &str| {
        let index = labels.iter().position(|l| *l == label).unwrap_or(0);
        PALETTE[index % PALETTE.len()]
    };

    panel(&top, "RTT", "RTT (ms)", x_range.clone(), rtt_ms, &colour)?;
    panel(&bottom, "Loss", "loss (%)", x_range, loss_pct, &colour)
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    y_desc: &str,
    x_range: std::ops::Range<f64>,
    series: &[Series],
    colour: &dyn Fn(&str) -> RGBColor,
) -> DrawResult {
    let y_max = upper(series.iter().flat_map(|s| finite(&s.points)).map(|(_, y)| y), 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (s)")
        .y_desc(y_desc)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    for s in series {
        let colour = colour(&s.label);
        chart
            .draw_series(LineSeries::new(finite(&s.points), colour.stroke_width(2)))?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    Ok(())
}

/// The points of `points` with both coordinates finite.
fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// Top of an axis starting at zero: 10 % above the largest value, or `empty` if there is no
/// positive value.
fn upper(values: impl Iterator<Item = f64>, empty: f64) -> f64 {
    let max = values.fold(0.0, f64::max);
    if max > 0.0 {
        max * 1.1
    } else {
        empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.to_owned(),
            points: points.to_vec(),
        }
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn draws_one_line_per_series_and_every_label() {
        let rtt = [
            series("lan", &[(0.0, 1.0), (1.0, 1.2), (2.0, 0.9)]),
            series("lte <bad> & co", &[(0.0, 60.0), (1.0, 85.5), (2.0, 70.0)]),
        ];
        let loss = [
            series("lan", &[(0.0, 0.0), (2.0, 0.0)]),
            series("lte <bad> & co", &[(0.0, 1.0), (2.0, 3.5)]),
        ];
        let svg = render_svg("Scenario \"x\" RTT & loss", &rtt, &loss);
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, "<svg"), 1);
        // Four data lines plus four legend swatches, drawn 2 px wide (axes and ticks are 1 px).
        assert_eq!(count(&svg, r#"stroke-width="2" points="#), 8, "{svg}");
        for text in [
            "lan",
            "lte &lt;bad&gt; &amp; co",
            "RTT (ms)",
            "loss (%)",
            "virtual time (s)",
            "Scenario",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        assert!(!svg.contains("<bad>"), "labels are escaped");
        // Colours are per label, shared by both panels: 2 lines + 2 swatches each.
        assert_eq!(count(&svg, "#4E79A7"), 4);
        assert_eq!(count(&svg, "#F28E2B"), 4);
    }

    #[test]
    fn empty_input_renders_empty_axes() {
        let svg = render_svg("nothing", &[], &[]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(count(&svg, r#"stroke-width="2" points="#), 0);
        assert!(svg.contains("RTT (ms)") && svg.contains("loss (%)"));
        // Series without (finite) points, and a flat zero series, do not break the ranges.
        let svg = render_svg(
            "degenerate",
            &[
                series("a", &[]),
                series("b", &[(f64::NAN, 1.0), (0.0, f64::INFINITY)]),
            ],
            &[series("a", &[(0.0, 0.0)])],
        );
        assert!(svg.contains("\na\n") && svg.contains("\nb\n"), "{svg}");
    }

    #[test]
    fn output_is_deterministic() {
        let rtt = [series("wifi", &[(0.0, 12.0), (0.5, 30.0)])];
        assert_eq!(render_svg("t", &rtt, &rtt), render_svg("t", &rtt, &rtt));
    }
}
