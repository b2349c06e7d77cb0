//! The bottom line: the keys that work here, or the latest notice.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Focus, Overlay};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let hints: &[(&str, &str)] = if app.stopping.is_some() {
        &[("", "stopping: waiting for actions in flight")]
    } else {
        match (&app.overlay, app.focus) {
            (Overlay::None, Focus::Clients) => &[
                ("a", "add"),
                ("x", "remove"),
                ("g", "gc"),
                ("space", "pause all"),
                ("p", "pause"),
                ("s", "snap"),
                ("v", "verify"),
                ("c", "check"),
                ("f", "faults"),
                ("tab", "failures"),
                ("?", "help"),
                ("q", "quit"),
            ],
            (Overlay::None, Focus::Failures) => &[
                ("↑↓", "select failure"),
                ("⏎", "full diff"),
                ("tab", "clients"),
                ("?", "help"),
                ("q", "quit"),
            ],
            _ => &[("esc", "close"), ("q", "quit")],
        }
    };
    let mut spans = Vec::new();
    for (key, what) in hints {
        if !key.is_empty() {
            spans.push(Span::styled(format!(" {key} "), theme.key()));
        }
        spans.push(Span::raw(format!(" {what} ")));
    }
    if let Some(notice) = &app.notice {
        spans.push(Span::styled(format!("│ {notice}"), theme.error()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
