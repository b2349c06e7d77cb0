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
