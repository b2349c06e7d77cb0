//! Charts drawn with plotters into inline SVG: what the latency and rate
//! sections share (the canvas, colours, fault bands).

use maud::{Markup, PreEscaped, html};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::story::Story;

/// What plotters' SVG backend answers when a drawing fails.
pub type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A chart `draw` paints on a `width`×`height` canvas, as markup to inline.
/// A chart that cannot be drawn says so in its place; the page still stands.
pub fn inline(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> Markup {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(Into::into)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Into::into))
    };
    match drawn {
        // Inline SVG needs no namespace; dropping it keeps the page free of any address.
        Ok(()) => html! { (PreEscaped(svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))) },
        Err(error) => html! { p.gap { "this chart could not be drawn: " (error.to_string()) } },
    }
}

/// `#rrggbb` as plotters takes it.
pub fn rgb(hex: &str) -> RGBColor {
    let channel =
        |at: usize| u8::from_str_radix(hex.get(at..at + 2).unwrap_or("00"), 16).unwrap_or(0);
    RGBColor(channel(1), channel(3), channel(5))
}

/// The colour of the faults' bands and lines.
pub const FAULT: RGBColor = RGBColor(30, 136, 229);

/// Each action kind's colour in the charts.
pub fn kind_colour(index: usize) -> RGBColor {
    const PALETTE: [&str; 10] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    rgb(PALETTE[index % PALETTE.len()])
}

/// The faults that took effect, as (start, end) seconds on the axis; a
/// one-shot fault's end is its start.
pub fn fault_spans(story: &Story) -> Vec<(f64, f64)> {
    story
        .faults()
        .map(|(at, fault)| {
            let start = at as f64 / 1000.0;
            (
                start,
                start + fault.duration_ms.unwrap_or(0) as f64 / 1000.0,
            )
        })
        .collect()
}

/// Shades the faults' spans on `chart` from `low` to `high` (a band, or a
/// line for a one-shot fault).
pub fn shade_faults<CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, CT>,
    spans: &[(f64, f64)],
    low: f64,
    high: f64,
) -> DrawResult {
    for &(start, end) in spans {
        if end > start {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(start, low), (end, high)],
                FAULT.mix(0.15).filled(),
            )))?;
        } else {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(start, low), (start, high)],
                FAULT.stroke_width(1),
            )))?;
        }
    }
    Ok(())
}

/// Draws the series' labels in a box at `position`, over the points
/// beneath it (half see-through, so they still show).
pub fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A line series' mark in the legend: a short stroke of its colour.
pub fn line_mark(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], colour.stroke_width(2))
}
