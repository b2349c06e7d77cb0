//! The help overlay: every key, in one place. [`KEYS`] is the one key map
//! the help shows and README's table follows (a test compares them).

use ratatui::text::{Line, Span};

use super::app::App;
use super::layout::OverlayContent;

/// Every key and what it does.
pub const KEYS: [(&str, &str); 26] = [
    (
        "a",
        "add a client (authorized on the server, connected, running; at most 64)",
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
    (
        "f",
        "fault menu: inject a fault now (client faults hit the selected client)",
    ),
    (
        "↑ ↓ ← →",
        "select a client in the grid (up and down in the table and failures)",
    ),
    ("j k", "next / previous client or failure"),
    ("tab", "switch between clients and failures"),
    (
        "enter",
        "details: the client's whole stream, or a failure's full diff",
    ),
    (
        "n N",
        "in a failure's diff: the next (older) / previous failure",
    ),
    (
        "PgUp PgDn",
        "scroll an overlay by a page; with none open, page the log (esc follows it again)",
    ),
    ("Home End", "to the start / end of an overlay"),
    ("t", "clients as a compact table, or as panes"),
    ("r", "show / collapse removed clients"),
    (
        "R",
        "shrink the selected failure: its state is kept, the command shown",
    ),
    ("/ 0-9", "go to a client by number (enter selects)"),
    ("l", "log level: error, warn, info, debug, trace"),
    (
        "mouse",
        "click selects a client or failure; the wheel scrolls (shift-drag selects text)",
    ),
    ("?", "this help"),
    ("esc", "close an overlay"),
    ("q", "quit: finish actions in flight, save, stop the server"),
    ("ctrl-c", "quit, as q"),
];

pub fn content(app: &App) -> OverlayContent<'_> {
    let theme = &app.theme;
    let mut lines = vec![Line::from(Span::styled("keys", theme.title()))];
    for (key, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("{key:>10}"), theme.title()),
            Span::raw(format!("  {what}")),
        ]));
    }
    lines.extend([
        Line::from(""),
        Line::from(Span::styled("marks", theme.title())),
        Line::from("✓ ok  – no-op  ✗ error  ✗✗ failure  ⚡ error a fault explains  ⚑ failure a fault explains  ⟳ running"),
        Line::from(""),
        Line::from(Span::styled("header", theme.title())),
        Line::from("first what needs you: a red banner for unexpected failures (with a bell on the first; --no-bell), PAUSED, the server DOWN or restarting during a server-restart, and each timed fault with the time it has left"),
        Line::from("server A → proxy → B: clients connect to A, snapstorm's fault proxy (network faults act there), which passes their requests on to the repository server at B (the log names B)"),
        Line::from("clients N counts clients taking actions; removed ones collapse into one line (r shows them)"),
    ]);
    OverlayContent {
        title: " help — esc closes ".into(),
        border: theme.selected(),
        lines,
        percent: (70, 70),
    }
}
