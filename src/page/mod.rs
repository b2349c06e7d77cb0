//! The run's page (`snapstorm report`, and `report.html` beside
//! `report.json` after every run): one self-contained HTML file drawn from
//! a state dir's trace, so any past run can be looked at rather than read.
//! Inline SVG and CSS only: no script, no font, nothing from the network;
//! hovering shows details through SVG `<title>`s.
//!
//! One file per section of the page, in the order the page shows them. The
//! page displays what the engine recorded (the trace, `state.json`'s
//! failures, `report.json`'s verdict) and never judges a run again.

mod axis;
mod chart;
mod failures;
mod latency;
mod layout;
mod rate;
mod snapshots;
pub mod story;
mod timeline;
mod verdict;
mod windows;

use std::path::{Path, PathBuf};

use crate::engine::store::write_durably;
use crate::engine::trace::TraceReadError;

pub use story::{Shade, Story};

/// Why no page could be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(
        "{}: not a state dir (it has no trace.jsonl); give the --state-dir of a run",
        .0.display()
    )]
    NotAStateDir(PathBuf),
    #[error("{0}; the trace is damaged: the page cannot be drawn from it")]
    Trace(#[from] TraceReadError),
    #[error("{}: cannot read it: {message}; the state dir's metadata is damaged", path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("cannot write the page {}: {source}; give -o a writable place", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The page's file name in a state dir, beside `report.json`.
pub const PAGE_FILE: &str = "report.html";

/// Draws the page of the state dir's story.
pub fn draw(story: &Story) -> String {
    layout::page(story).into_string()
}

/// Reads `state_dir` and writes its page to `output` whole (a temp file
/// renamed: never half-written); returns the page's size in bytes.
pub fn write_page(state_dir: &Path, output: &Path) -> Result<usize, PageError> {
    let story = Story::read(state_dir)?;
    let html = draw(&story);
    write_durably(output, html.as_bytes()).map_err(|source| PageError::Write {
        path: output.to_path_buf(),
        source,
    })?;
    Ok(html.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(run: u32, client: u32, at_ms: u64, outcome: &str) -> String {
        format!(
            r#"{{"time":"2026-01-01T00:00:00Z","run":{run},"client":{client},"seq":0,"at_ms":{at_ms},"action":"snapshot-root","outcome":"{outcome}","duration_ms":300,"details":{{}},"live":1,"deleted":0}}"#
        )
    }

    #[test]
    fn every_run_of_a_resumed_state_dir_is_drawn_with_its_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let start = |run: u32| {
            format!(
                r#"{{"time":"2026-01-01T00:00:00Z","run":{run},"start":true,"seed":7,"scenario":"s","scenario_toml":"","clients":2,"duration_ms":2000}}"#
            )
        };
        let trace = [
            start(1),
            action(1, 1, 100, "ok"),
            action(1, 2, 900, "error"),
            start(2),
            action(2, 1, 50, "ok"),
        ]
        .join("\n");
        std::fs::write(dir.path().join("trace.jsonl"), trace + "\n").unwrap();
        let story = Story::read(dir.path()).unwrap();
        assert_eq!(story.runs.len(), 2);
        assert!(story.runs[1].offset_ms >= story.runs[0].span_ms);
        let html = draw(&story);
        assert!(html.contains(">run 2</text>"), "no boundary");
        assert!(html.contains("Run 1 — exit 0") && html.contains("Run 2 — exit 0"));
        assert!(
            html.contains("no report.json"),
            "the missing report is said"
        );
        assert!(html.contains("state.json cannot be read"));
    }
}
