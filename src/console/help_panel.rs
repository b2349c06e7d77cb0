//! The help overlay: every key of the key map, then what the marks and
//! the header mean.

use ratatui::text::{Line, Span};

use super::app::App;
use super::keymap::KEYMAP;
use super::layout::OverlayContent;

pub fn content(app: &App) -> OverlayContent<'_> {
    let theme = &app.theme;
    let mut lines = vec![Line::from(Span::styled("keys", theme.title()))];
    for row in KEYMAP {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>10}", row.keys), theme.title()),
            Span::raw(format!("  {}", row.does())),
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
