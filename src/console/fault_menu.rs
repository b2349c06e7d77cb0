//! The fault menu (key `f`): every fault, by number.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};

use super::app::App;
use super::layout::overlay;
use crate::faults::FaultKind;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let target = app
        .selected
        .map(|id| id.to_string())
        .unwrap_or_else(|| "a random client".into());
    let mut lines = vec![
        Line::from(Span::styled("inject a fault now", theme.title())),
        Line::from(Span::styled(
            format!(
                "client faults hit the selected client ({target}); timed ones last their default"
            ),
            theme.dim(),
        )),
        Line::from(""),
    ];
    for (index, kind) in FaultKind::ALL.iter().enumerate() {
        let duration = kind
            .default_duration()
            .map(|d| format!(" ({}s)", d.as_secs()))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(format!(" {} ", index + 1), theme.key()),
            Span::styled(format!(" {:<15}", kind.name()), theme.title()),
            Span::raw(format!("{}{duration}", kind.describe())),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "failures a fault explains are marked expected (⚑); anything else is unexpected (✗✗)",
        theme.dim(),
    )));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.error())
        .title(" faults — 1-9 injects, esc closes ");
    overlay(frame, area, (70, 60), block, lines);
}
