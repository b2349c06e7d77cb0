//! The help overlay: every key, in one place (the README lists the same).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};

use super::app::App;
use super::layout::overlay;

/// Every key and what it does.
pub const KEYS: [(&str, &str); 17] = [
    (
        "a",
        "add a client (authorized on the server, connected, running)",
    ),
    (
        "x",
        "remove the selected client (finishes its action, then revoked)",
    ),
    ("g", "garbage-collect the repository now"),
    (
        "space",
        "pause / resume all clients (actions in flight finish)",
    ),
    ("p", "pause / resume the selected client"),
    ("s", "snapshot now (selected client)"),
    ("v", "restore and verify now (selected client)"),
    (
        "c",
        "check the whole repository, reading all data (verify-repo)",
    ),
    ("f", "fault menu: inject a fault now"),
    ("↑ ↓ ← → j k", "select a client, or a failure"),
    ("tab", "switch between clients and failures"),
    (
        "enter",
        "details: the client's stream, or a failure's full diff",
    ),
    ("l", "log level: error, warn, info, debug, trace"),
    ("?", "this help"),
    ("esc", "close an overlay"),
    ("q", "quit: finish actions in flight, save, stop the server"),
    ("ctrl-c", "quit, as q"),
];

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let mut lines = vec![
        Line::from(Span::styled("keys", theme.title())),
        Line::from(""),
    ];
    for (key, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("{key:>12}"), theme.title()),
            Span::raw(format!("  {what}")),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "✓ ok  – no-op  ✗ error  ✗✗ failure  ⚡ ⚑ error / failure a fault explains  ⟳ running",
        theme.dim(),
    )));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.selected())
        .title(" help — esc closes ");
    overlay(frame, area, (70, 70), block, lines);
}
