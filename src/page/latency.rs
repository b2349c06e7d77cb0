//! Latency: a point per action over time, per action kind, on a log scale,
//! with the faults shaded; then p50/p95/p99/max per action kind in windows.
//!
//! Points that would land in the same two pixels as another of the same
//! kind and outcome are drawn once: the picture is the same. When that
//! still leaves more than [`POINT_BUDGET`] points (a long soak), the cells
//! grow until it does not, so the page stays a few megabytes. Failures are
//! never thinned: each is drawn, as a cross.

use std::collections::{BTreeMap, HashSet};

use maud::{Markup, html};
use plotters::prelude::*;

use super::axis::{CHART_WIDTH, PLOT_WIDTH};
use super::chart::{self, DrawResult, fault_spans, inline, kind_colour, shade_faults};
use super::story::{Shade, Story};
use super::windows::Windows;
use crate::engine::{Action, Outcome};

const HEIGHT: u32 = 380;
/// Durations under a millisecond are drawn at this floor of the log scale.
const FLOOR_MS: f64 = 1.0;
/// Thinning cells: about two pixels each way at first.
const CELLS_X: f64 = PLOT_WIDTH as f64 / 2.0;
const CELLS_Y: f64 = 160.0;
/// The most points drawn besides failures (about 100 bytes of SVG each).
const POINT_BUDGET: usize = 20_000;
/// How much coarser the cells get, in turn, until the points fit the budget.
const COARSER: [f64; 6] = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// One action's point: seconds on the axis, milliseconds it took.
#[derive(Debug, Clone, Copy)]
struct Point {
    at_s: f64,
    ms: f64,
    failure: Option<Shade>,
}

/// The kinds of action the run had, each with its timed actions (no-ops
/// take no time worth a point).
fn timed(story: &Story) -> BTreeMap<Action, Vec<(u64, u64, Shade)>> {
    let mut kinds: BTreeMap<Action, Vec<(u64, u64, Shade)>> = BTreeMap::new();
    for (at, action) in story.actions() {
        if action.outcome != Outcome::NoOp {
            kinds.entry(action.action).or_default().push((
                at,
                action.duration_ms,
                Shade::of(action),
            ));
        }
    }
    kinds
}

pub fn section(story: &Story) -> Markup {
    let kinds = timed(story);
    let total_s = story.total_ms() as f64 / 1000.0;
    let max_ms = kinds
        .values()
        .flatten()
        .map(|(_, ms, _)| *ms as f64)
        .fold(10.0, f64::max)
        * 1.5;
    let mut series: Vec<(Action, Vec<Point>)> = Vec::new();
    for coarser in COARSER {
        series = kinds
            .iter()
            .map(|(kind, actions)| (*kind, thinned(actions, total_s, max_ms, coarser)))
            .collect();
        let healthy = series
            .iter()
            .flat_map(|(_, points)| points)
            .filter(|p| p.failure.is_none())
            .count();
        if healthy <= POINT_BUDGET {
            break;
        }
    }
    let all: usize = kinds.values().map(Vec::len).sum();
    let drawn: usize = series.iter().map(|(_, points)| points.len()).sum();
    let spans = fault_spans(story);
    html! {
        section #latency {
            h2 { "Latency" }
            p.note {
                "Each action's duration over time, per kind, log scale; faults shaded; failures as ✕. "
                "No-ops are left out; durations under 1 ms are drawn at 1 ms. "
                @if drawn < all {
                    (all) " actions drawn as " (drawn) " points: points falling on the same few pixels are drawn once (failures never are)."
                }
            }
            @if series.is_empty() {
                p.gap { "no action took time" }
            } @else {
                (inline(CHART_WIDTH, HEIGHT, |root| points_chart(root, &series, &spans, total_s, max_ms)))
            }
            h3 { "Quantiles per window" }
            (quantiles(story, &kinds, &spans))
        }
    }
}

/// One point per occupied cell per outcome, cells `coarser` times the
/// smallest; every failure.
fn thinned(actions: &[(u64, u64, Shade)], total_s: f64, max_ms: f64, coarser: f64) -> Vec<Point> {
    let mut seen = HashSet::new();
    let log_max = max_ms.ln();
    actions
        .iter()
        .filter_map(|&(at, ms, shade)| {
            let at_s = at as f64 / 1000.0;
            let ms = (ms as f64).max(FLOOR_MS);
            let failure = shade.is_failure().then_some(shade);
            let cell = (
                (at_s / total_s * CELLS_X / coarser) as u32,
                (ms.ln() / log_max * CELLS_Y / coarser) as u32,
                shade,
            );
            (failure.is_some() || seen.insert(cell)).then_some(Point { at_s, ms, failure })
        })
        .collect()
}

fn points_chart(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    series: &[(Action, Vec<Point>)],
    spans: &[(f64, f64)],
    total_s: f64,
    max_ms: f64,
) -> DrawResult {
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..total_s, (FLOOR_MS..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms (log)")
        .light_line_style(WHITE)
        .draw()?;
    shade_faults(&mut chart, spans, FLOOR_MS, max_ms)?;
    for (index, (kind, points)) in series.iter().enumerate() {
        let colour = kind_colour(index);
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.at_s, p.ms), 2, colour.mix(0.7).filled())),
            )?
            .label(kind.name())
            .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
    }
    for (_, points) in series {
        chart.draw_series(points.iter().filter_map(|p| {
            p.failure.map(|shade| {
                Cross::new(
                    (p.at_s, p.ms),
                    6,
                    chart::rgb(shade.colour()).stroke_width(2),
                )
            })
        }))?;
    }
    chart::legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// p50, p95, p99 and max of each window's durations.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quantiles {
    middle_s: f64,
    values: [f64; 4],
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)];

fn per_window(actions: &[(u64, u64, Shade)], windows: &Windows) -> Vec<Quantiles> {
    let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); windows.count];
    for &(at, ms, _) in actions {
        buckets[windows.index(at)].push(ms);
    }
    buckets
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(index, mut durations)| {
            durations.sort_unstable();
            let rank = |q: f64| {
                let at = ((q * durations.len() as f64).ceil() as usize).clamp(1, durations.len());
                (durations[at - 1] as f64).max(FLOOR_MS)
            };
            Quantiles {
                middle_s: windows.middle_s(index),
                values: QUANTILES.map(|(_, q)| rank(q)),
            }
        })
        .collect()
}

fn quantiles(
    story: &Story,
    kinds: &BTreeMap<Action, Vec<(u64, u64, Shade)>>,
    spans: &[(f64, f64)],
) -> Markup {
    let windows = Windows::over(story.total_ms());
    let total_s = story.total_ms() as f64 / 1000.0;
    html! {
        p.note { "Nearest-rank quantiles of the durations of the actions that started in each " (format!("{}", super::axis::clock(windows.width_ms))) " window (no-ops left out)." }
        div.grid {
            @for (kind, actions) in kinds {
                @let rows = per_window(actions, &windows);
                div {
                    h4 { (kind.name()) " · " (actions.len()) " actions" }
                    (inline(PLOT_WIDTH / 2 - 10, 220, |root| quantile_chart(root, &rows, spans, total_s)))
                }
            }
        }
    }
}

fn quantile_chart(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    rows: &[Quantiles],
    spans: &[(f64, f64)],
    total_s: f64,
) -> DrawResult {
    let max_ms = rows.iter().map(|r| r.values[3]).fold(10.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(root)
        .margin(6)
        .x_label_area_size(24)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..total_s, (FLOOR_MS..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .y_desc("ms")
        .draw()?;
    shade_faults(&mut chart, spans, FLOOR_MS, max_ms)?;
    for (index, (name, _)) in QUANTILES.iter().enumerate() {
        let colour = kind_colour(index);
        chart
            .draw_series(
                LineSeries::new(
                    rows.iter().map(|r| (r.middle_s, r.values[index])),
                    colour.stroke_width(2),
                )
                // A window alone still shows.
                .point_size(2),
            )?
            .label(*name)
            .legend(chart::line_mark(colour));
    }
    chart::legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_per_window() {
        let windows = Windows {
            width_ms: 1000,
            count: 2,
        };
        let actions: Vec<(u64, u64, Shade)> = (1..=100)
            .map(|ms| (10, ms, Shade::Ok))
            .chain([(1500, 7, Shade::Ok)])
            .collect();
        let rows = per_window(&actions, &windows);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].values, [50.0, 95.0, 99.0, 100.0]);
        assert_eq!(rows[1].values, [7.0; 4]);
    }

    #[test]
    fn thinning_keeps_every_failure() {
        let actions: Vec<(u64, u64, Shade)> = (0..1000)
            .map(|n| {
                (
                    n,
                    100,
                    if n % 100 == 0 {
                        Shade::UnexpectedFailure
                    } else {
                        Shade::Ok
                    },
                )
            })
            .collect();
        let points = thinned(&actions, 1000.0, 1000.0, 1.0);
        assert_eq!(points.iter().filter(|p| p.failure.is_some()).count(), 10);
        assert!(points.len() < 20, "{}", points.len());
    }
}
