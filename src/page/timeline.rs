//! The timeline: a lane per client, a bar per action from its start to its
//! end coloured by outcome, the faults as bands across every lane (a
//! one-shot fault as a line), GCs marked above. Drawn as SVG markup rather
//! than a chart, because each bar carries a `<title>`: hovering shows the
//! action without any script.
//!
//! A lane with more actions than pixels merges the actions that start in
//! the same few pixels into one bar of their worst outcome (its title
//! counts them by outcome); every failure is still drawn on its own, on top.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use maud::{Markup, html};

use super::axis::{Axis, LEFT, PLOT_WIDTH, clock, duration};
use super::story::{Shade, Story};
use crate::engine::record::ActionRecord;
use crate::engine::{Action, ClientId};

/// Actions starting within this many pixels of each other in a lane merge
/// into one bar when they are too many to draw apart (64 lanes of a
/// 30-minute soak stay about 2 MB of bars).
const MERGE_PX: f64 = 6.0;
/// Room above the lanes for GC marks and fault names; below, for the ticks.
const TOP: u32 = 34;
const BOTTOM: u32 = 24;

pub fn section(story: &Story) -> Markup {
    let clients = story.clients();
    let axis = Axis::new(story.total_ms());
    let lane = lane_height(clients.len());
    let lanes_height = lane * clients.len().max(1) as u32;
    let height = TOP + lanes_height + BOTTOM;
    let width = LEFT + PLOT_WIDTH + 10;
    let row: BTreeMap<ClientId, u32> = clients
        .iter()
        .enumerate()
        .map(|(n, c)| (*c, TOP + n as u32 * lane))
        .collect();
    let mut by_client: BTreeMap<ClientId, Vec<(u64, &ActionRecord)>> = BTreeMap::new();
    for (at, action) in story.actions() {
        by_client
            .entry(action.client)
            .or_default()
            .push((at, action));
    }
    html! {
        section #timeline {
            h2 { "Timeline" }
            p.note {
                "A lane per client, a bar per action from its start to its end; fault bands across all lanes, GCs marked ▼ above. Hover for details."
                @if story.runs.len() > 1 { " Runs follow each other, their boundaries marked." }
            }
            (legend())
            // The axis's length and each fault's time, for whoever checks the picture.
            svg.timeline width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" data-total-ms=(axis.total_ms()) {
                @for (client, y) in &row {
                    rect x=(LEFT) y=(y) width=(PLOT_WIDTH) height=(lane) fill=(if ((y - TOP) / lane).is_multiple_of(2) { "#fafafa" } else { "#f0f0f0" }) {}
                    text.lane x=(LEFT - 6) y=(f64::from(*y) + f64::from(lane) * 0.75) text-anchor="end" font-size=(label_size(lane)) { (client) }
                }
                @for (client, actions) in &by_client {
                    (lane_bars(actions, &axis, row[client] + 1, lane.saturating_sub(2).max(1)))
                }
                (fault_marks(story, &axis, lanes_height))
                (gc_marks(story, &axis, lanes_height))
                (run_boundaries(story, &axis, lanes_height))
                @for (ms, label) in axis.ticks() {
                    line x1=(axis.x(ms)) x2=(axis.x(ms)) y1=(TOP + lanes_height) y2=(TOP + lanes_height + 4) stroke="#555" {}
                    text x=(axis.x(ms)) y=(TOP + lanes_height + 16) text-anchor="middle" font-size="11" { (label) }
                }
            }
        }
    }
}

/// Lanes shrink as clients grow, so 64 clients still fit a screen.
fn lane_height(clients: usize) -> u32 {
    (640 / clients.max(1) as u32).clamp(9, 26)
}

fn label_size(lane: u32) -> u32 {
    (lane * 3 / 4).clamp(8, 12)
}

pub fn legend() -> Markup {
    html! {
        p.legend {
            @for shade in Shade::ALL {
                span.key { span.swatch style=(format!("background:{}", shade.colour())) {} (shade.name()) }
            }
            span.key { span.swatch.fault {} "fault" }
        }
    }
}

fn lane_bars(actions: &[(u64, &ActionRecord)], axis: &Axis, y: u32, height: u32) -> Markup {
    let crowded = actions.len() as f64 > f64::from(PLOT_WIDTH) / MERGE_PX;
    let mut groups: Vec<Vec<(u64, &ActionRecord)>> = Vec::new();
    for &(at, action) in actions {
        let bucket = |ms: u64| (axis.x(ms) / MERGE_PX) as u64;
        match groups.last_mut() {
            Some(group) if crowded && bucket(group[0].0) == bucket(at) => group.push((at, action)),
            _ => groups.push(vec![(at, action)]),
        }
    }
    html! {
        @for group in &groups {
            @if let [(at, action)] = group.as_slice() {
                (bar(*at, action.duration_ms, Shade::of(action), &action_title(*at, action), axis, y, height))
            } @else {
                (merged_bar(group, axis, y, height))
            }
        }
        @for (at, action) in actions.iter().filter(|(_, a)| crowded && Shade::of(a).is_failure()) {
            (bar(*at, action.duration_ms, Shade::of(action), &action_title(*at, action), axis, y, height))
        }
    }
}

fn bar(
    at: u64,
    length: u64,
    shade: Shade,
    title: &str,
    axis: &Axis,
    y: u32,
    height: u32,
) -> Markup {
    let x = axis.x(at);
    let width = (axis.x(at + length) - x).max(1.0);
    html! {
        rect x=(format!("{x:.1}")) y=(y) width=(format!("{width:.1}")) height=(height) fill=(shade.colour()) {
            title { (title) }
        }
    }
}

fn merged_bar(group: &[(u64, &ActionRecord)], axis: &Axis, y: u32, height: u32) -> Markup {
    let start = group.iter().map(|(at, _)| *at).min().unwrap_or(0);
    let end = group
        .iter()
        .map(|(at, a)| at + a.duration_ms)
        .max()
        .unwrap_or(start);
    let mut counts: BTreeMap<Shade, usize> = BTreeMap::new();
    for (_, action) in group {
        *counts.entry(Shade::of(action)).or_default() += 1;
    }
    let worst = counts.keys().next_back().copied().unwrap_or(Shade::Ok);
    let mut title = format!("{} {}–{}:", group[0].1.client, clock(start), clock(end));
    for (shade, count) in counts.iter().rev() {
        let _ = write!(title, " {count} {}", shade.name());
    }
    bar(start, end - start, worst, &title, axis, y, height)
}

/// What hovering over an action's bar shows.
pub fn action_title(at: u64, action: &ActionRecord) -> String {
    let mut title = format!(
        "{} #{} {}{} · run {} at {} · {}\n{}",
        action.client,
        action.seq,
        action.action.name(),
        if action.final_check {
            " (final check)"
        } else {
            ""
        },
        action.run,
        clock(at),
        duration(action.duration_ms),
        Shade::of(action).name(),
    );
    if let Some(fault) = &action.explained_by {
        let _ = write!(title, " (explained by {fault})");
    }
    if action.abandoned {
        title.push_str(" (the run ended without it)");
    }
    if let Some(snapshot) = action
        .snapshot
        .as_ref()
        .or(action.params.snapshot_id.as_ref())
    {
        let _ = write!(title, "\nsnapshot {snapshot}");
    }
    if let Some(path) = &action.params.sub_path {
        let _ = write!(title, "\npath {path}");
    }
    if !action.details.is_empty() {
        let options = serde_json::to_string(&action.details).unwrap_or_default();
        let _ = write!(title, "\noptions {options}");
    }
    if let Some(message) = &action.message {
        let _ = write!(title, "\n{message}");
    }
    title
}

fn fault_marks(story: &Story, axis: &Axis, lanes_height: u32) -> Markup {
    html! {
        @for (at, fault) in story.faults() {
            @let title = format!("{} → {}{}", fault.fault, fault.target, fault.duration_ms.map(|d| format!(" for {}", duration(d))).unwrap_or_default());
            // Over the bars, translucent, and let through to them: hovering
            // a bar still shows the action; the fault's name says the fault.
            @if let Some(length) = fault.duration_ms {
                rect.band data-at-ms=(at) x=(format!("{:.1}", axis.x(at))) y=(TOP) width=(format!("{:.1}", (axis.x(at + length) - axis.x(at)).max(1.0))) height=(lanes_height) pointer-events="none" {}
            } @else {
                line.oneshot data-at-ms=(at) x1=(axis.x(at)) x2=(axis.x(at)) y1=(TOP - 4) y2=(TOP + lanes_height) pointer-events="none" {}
            }
            text.faultname x=(format!("{:.1}", axis.x(at) + 2.0)) y=(TOP - 4) font-size="11" {
                title { (title) }
                (fault.fault)
            }
        }
    }
}

fn gc_marks(story: &Story, axis: &Axis, lanes_height: u32) -> Markup {
    html! {
        @for (at, gc) in story.actions().filter(|(_, a)| a.action == Action::RunGc) {
            @let x = axis.x(at);
            g {
                title { "GC · " (action_title(at, gc)) }
                path d=(format!("M{:.1} {} l-4 -7 h8 z", x, TOP - 16)) fill=(Shade::of(gc).colour()) stroke="#333" stroke-width="0.5" {}
                line x1=(format!("{x:.1}")) x2=(format!("{x:.1}")) y1=(TOP) y2=(TOP + lanes_height) stroke="#333" stroke-width="0.5" stroke-dasharray="2 3" {}
            }
        }
    }
}

fn run_boundaries(story: &Story, axis: &Axis, lanes_height: u32) -> Markup {
    html! {
        @for run in story.runs.iter().skip(1) {
            @let x = axis.x(run.offset_ms.saturating_sub(super::story::RUN_GAP_MS / 2));
            line x1=(format!("{x:.1}")) x2=(format!("{x:.1}")) y1="0" y2=(TOP + lanes_height) stroke="#000" stroke-width="2" {}
            text x=(format!("{:.1}", x + 3.0)) y="10" font-size="11" font-weight="bold" { "run " (run.number) }
        }
    }
}
