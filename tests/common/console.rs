//! Fixtures of the console shared by its tests and its bench: a run's
//! facts, a finished action, and a screen drawn and read back as text.
#![allow(dead_code)]

use std::path::PathBuf;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::text::Span;
use snapstorm::console::app::App;
use snapstorm::console::layout;
use snapstorm::engine::record::ActionRecord;
use snapstorm::engine::traits::{ClientId, ServerInfo};
use snapstorm::engine::{Action, Outcome};
use snapstorm::run::RunInfo;

/// A run's facts, as a run in a temporary state dir would have them.
pub fn info() -> RunInfo {
    RunInfo {
        seed: 7,
        scenario: "randomized-small".into(),
        state_dir: PathBuf::from("/tmp/snapstorm-Xy12ab"),
        server: ServerInfo {
            backend: "embedded".into(),
            address: "http://127.0.0.1:41234/repo/".into(),
            behind_proxy: None,
            repository: PathBuf::from("/tmp/snapstorm-Xy12ab/repository/repo"),
        },
        run_counter: 1,
        inherited_snapshots: 0,
        startup_failures: Vec::new(),
    }
}

/// An action of `client` that finished as `outcome` after `ms`.
pub fn record(
    client: u32,
    seq: u64,
    action: Action,
    outcome: Outcome,
    ms: u64,
    live: usize,
) -> ActionRecord {
    ActionRecord {
        time: "2026-11-25T12:00:00.000Z".into(),
        run: 1,
        client: ClientId(client),
        seq,
        order: seq,
        at_ms: 0,
        drawn_as: None,
        action,
        params: Default::default(),
        outcome,
        duration_ms: ms,
        snapshot: None,
        details: Default::default(),
        message: None,
        error_class: None,
        final_check: false,
        abandoned: false,
        explained_by: None,
        live,
        deleted: 0,
        failures: Vec::new(),
    }
}

/// The whole screen at this size, drawn as the console draws it.
pub fn render(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| layout::draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

/// The screen's text, line by line, trailing blanks trimmed.
pub fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        let mut x = 0;
        while x < area.width {
            // A wide glyph covers the cell after it: that cell is not text.
            let symbol = buffer[(x, y)].symbol();
            line.push_str(symbol);
            x += Span::raw(symbol).width().max(1) as u16;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
