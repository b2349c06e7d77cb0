//! The page around the sections: its head, its style (inline: the page
//! opens offline), a table of contents, then the sections in the order a
//! person asks their questions: did it pass, what happened when, how fast,
//! what became of the snapshots, what failed.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::story::Story;
use super::{failures, latency, rate, snapshots, timeline, verdict};

/// The page's width in pixels: the widest picture and the body's margins.
pub const PAGE_WIDTH: u32 = super::axis::CHART_WIDTH + 2 * 24;

const STYLE: &str = r#"
body { font-family: sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 2px; margin-top: 28px; }
h3 { font-size: 15px; margin: 8px 0 4px; }
h4 { font-size: 13px; margin: 4px 0; }
nav a { margin-right: 14px; }
.note { color: #555; font-size: 13px; }
.gap { color: #8a5a00; background: #fff6e0; padding: 4px 8px; font-size: 13px; }
.run { border-left: 6px solid #4caf50; padding: 4px 12px; margin: 10px 0; background: #f7fbf7; }
.run.fail { border-left-color: #d62828; background: #fdf4f4; }
.meaning { font-size: 15px; font-weight: bold; }
table.faults { border-collapse: collapse; font-size: 13px; }
table.faults th, table.faults td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
table.faults td.target { max-width: 420px; overflow-wrap: anywhere; }
tr.undetected td:nth-child(4) { color: #8a5a00; }
.legend { font-size: 12px; }
.key { margin-right: 14px; white-space: nowrap; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
.swatch.fault { background: rgba(30,136,229,0.25); border: 1px solid #1e88e5; }
svg { display: block; }
rect.band { fill: #1e88e5; fill-opacity: 0.22; stroke: #1e88e5; stroke-opacity: 0.6; }
line.oneshot { stroke: #1e88e5; stroke-width: 2; }
text.faultname { fill: #1565c0; }
.grid { display: grid; grid-template-columns: repeat(2, 1fr); gap: 8px; }
.failure { border-left: 6px solid #8e5cc2; padding: 2px 12px; margin: 10px 0; background: #faf7fd; }
.failure.unexpected { border-left-color: #d62828; background: #fdf4f4; }
strong.unexpected { color: #d62828; }
pre { background: #f4f4f4; padding: 8px; overflow-x: auto; font-size: 12px; max-height: 320px; }
code { background: #f0f0f0; padding: 0 3px; }
"#;

pub fn page(story: &Story) -> Markup {
    let dir = story.state_dir.display().to_string();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                // The pictures are drawn for this width; a screenshot takes it.
                meta name="viewport" content=(format!("width={PAGE_WIDTH}"));
                title { "snapstorm · " (dir) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "snapstorm run: " (dir) }
                p.note {
                    (story.runs.len()) " run(s), " (story.clients().len()) " client(s), drawn from the state dir's trace.jsonl"
                    @if story.failures.is_some() { ", state.json" }
                    @if story.report.is_some() { " and report.json" }
                    "."
                }
                nav {
                    a href="#verdict" { "verdict" }
                    a href="#timeline" { "timeline" }
                    a href="#latency" { "latency" }
                    a href="#rate" { "rate" }
                    a href="#snapshots" { "snapshots" }
                    a href="#failures" { "failures" }
                }
                (verdict::section(story))
                (timeline::section(story))
                (latency::section(story))
                (rate::section(story))
                (snapshots::section(story))
                (failures::section(story))
            }
        }
    }
}
