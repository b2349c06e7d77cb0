//! Rate: actions per second, and MiB per second written, snapshotted and
//! restored-and-verified, per window.
//!
//! The trace records the bytes a write wrote and a snapshot held, but not
//! the bytes a restore read: a verified restore counts the size its
//! snapshot had when taken, where the trace has that snapshot's line.

use std::collections::HashMap;

use maud::{Markup, html};
use plotters::prelude::*;

use super::axis::{CHART_WIDTH, clock};
use super::chart::{self, DrawResult, fault_spans, inline, kind_colour, shade_faults};
use super::story::Story;
use super::windows::Windows;
use crate::engine::{Action, Outcome};

const MIB: f64 = 1024.0 * 1024.0;

/// Per window: what started in it, per second.
#[derive(Debug, Clone, Default)]
struct Rates {
    actions: Vec<f64>,
    errors: Vec<f64>,
    written: Vec<f64>,
    snapshotted: Vec<f64>,
    verified: Vec<f64>,
    /// Verified restores whose snapshot's size the trace does not have.
    unsized_restores: usize,
}

fn bytes(details: &crate::engine::traits::Details) -> f64 {
    details.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0) as f64
}

fn rates(story: &Story, windows: &Windows) -> Rates {
    let zero = vec![0.0; windows.count];
    let mut rates = Rates {
        actions: zero.clone(),
        errors: zero.clone(),
        written: zero.clone(),
        snapshotted: zero.clone(),
        verified: zero,
        unsized_restores: 0,
    };
    let sizes: HashMap<&str, f64> = story
        .actions()
        .filter(|(_, a)| a.action == Action::SnapshotRoot && a.outcome == Outcome::Ok)
        .filter_map(|(_, a)| Some((a.snapshot.as_deref()?, bytes(&a.details))))
        .collect();
    let per_second = 1.0 / windows.width_s();
    for (at, action) in story.actions() {
        let window = windows.index(at);
        rates.actions[window] += per_second;
        if matches!(action.outcome, Outcome::Error | Outcome::Failure) {
            rates.errors[window] += per_second;
        }
        if action.outcome != Outcome::Ok {
            continue;
        }
        match action.action {
            Action::WriteRandomFiles => {
                rates.written[window] += bytes(&action.details) / MIB * per_second
            }
            Action::SnapshotRoot => {
                rates.snapshotted[window] += bytes(&action.details) / MIB * per_second
            }
            Action::RestoreRandomSnapshot | Action::RestoreIntoDataDir => {
                match action.snapshot.as_deref().and_then(|id| sizes.get(id)) {
                    Some(size) => rates.verified[window] += size / MIB * per_second,
                    None => rates.unsized_restores += 1,
                }
            }
            _ => {}
        }
    }
    rates
}

pub fn section(story: &Story) -> Markup {
    let windows = Windows::over(story.total_ms());
    let rates = rates(story, &windows);
    let spans = fault_spans(story);
    let total_s = story.total_ms() as f64 / 1000.0;
    let actions = [
        ("actions/s", &rates.actions),
        ("errors and failures/s", &rates.errors),
    ];
    let mib = [
        ("MiB/s written to data dirs", &rates.written),
        ("MiB/s snapshotted", &rates.snapshotted),
        ("MiB/s restored and verified", &rates.verified),
    ];
    html! {
        section #rate {
            h2 { "Rate" }
            p.note {
                "Per " (clock(windows.width_ms)) " window, by the actions that started in it; faults shaded. "
                "A verified restore counts the size its snapshot had when taken (the trace records no bytes read)."
                @if rates.unsized_restores > 0 {
                    " " (rates.unsized_restores) " verified restore(s) of snapshots the trace has no size for are not counted."
                }
            }
            (inline(CHART_WIDTH, 240, |root| lines(root, &windows, &actions, &spans, total_s)))
            (inline(CHART_WIDTH, 240, |root| lines(root, &windows, &mib, &spans, total_s)))
        }
    }
}

fn lines(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    windows: &Windows,
    series: &[(&str, &Vec<f64>)],
    spans: &[(f64, f64)],
    total_s: f64,
) -> DrawResult {
    let top = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..total_s, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .light_line_style(WHITE)
        .draw()?;
    shade_faults(&mut chart, spans, 0.0, top)?;
    for (index, (name, values)) in series.iter().enumerate() {
        let colour = kind_colour(index);
        chart
            .draw_series(LineSeries::new(
                values
                    .iter()
                    .enumerate()
                    .map(|(window, v)| (windows.middle_s(window), *v)),
                colour.stroke_width(2),
            ))?
            .label(*name)
            .legend(chart::line_mark(colour));
    }
    chart::legend(&mut chart, SeriesLabelPosition::UpperRight)
}
