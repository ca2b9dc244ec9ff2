//! Charts as inline SVG, drawn on the server by plotters (no script, no fonts to ship): a
//! timeline of counts per bucket. Each chart carries a text alternative, and the page shows
//! the same figures in a table, so nothing is only in the picture.

use maud::{Markup, PreEscaped, html};
use plotters::prelude::*;

const SIZE: (u32, u32) = (760, 240);

/// A filled line of `series` (bucket label, count), titled `title` for screen readers.
pub(crate) fn timeline(title: &str, series: &[(String, i64)]) -> Markup {
    let svg = draw(series).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "drawing a chart failed");
        String::new()
    });
    let total: i64 = series.iter().map(|(_, n)| n).sum();
    let label = format!("{title}: {total} in {} buckets", series.len());
    html! {
        figure.chart role="img" aria-label=(label) data-total=(total) {
            (PreEscaped(svg))
            figcaption.muted { (label) }
        }
    }
}

fn draw(series: &[(String, i64)]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let top = series.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
        let last = series.len().saturating_sub(1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0..last, 0..top + top / 10 + 1)?;
        let labels: Vec<&str> = series.iter().map(|(label, _)| short(label)).collect();
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 238, 242))
            .x_labels(6)
            .x_label_formatter(&|i| labels.get(*i).map(|label| label.replace('T', " ")).unwrap_or_default())
            .y_labels(5)
            .draw()?;
        let blue = RGBColor(11, 87, 164);
        chart.draw_series(AreaSeries::new(series.iter().enumerate().map(|(i, (_, n))| (i, *n)), 0, blue.mix(0.15)))?;
        chart
            .draw_series(LineSeries::new(series.iter().enumerate().map(|(i, (_, n))| (i, *n)), blue.stroke_width(2)))?;
        root.present()?;
    }
    Ok(svg)
}

/// `2026-12-05T14:00:00+00:00` → `12-05 14:00`.
fn short(label: &str) -> &str {
    label.get(5..16).unwrap_or(label)
}
