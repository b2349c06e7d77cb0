//! The fault menu (key `f`): every fault, by number.

use ratatui::text::{Line, Span};

use super::app::App;
use super::keymap::FAULT_KEYS;
use super::layout::OverlayContent;
use crate::faults::FaultKind;

pub fn content(app: &App) -> OverlayContent<'_> {
    let theme = &app.theme;
    // Never a removed client: faults that hit one take the selected running client.
    let target = match app.selected_active() {
        Some(id) => format!("client faults hit the selected client, {id}"),
        None => "client faults need a running client selected: none is".into(),
    };
    let mut lines = vec![
        Line::from(Span::styled("inject a fault now", theme.title())),
        Line::from(Span::styled(
            format!("{target}; timed ones last their default"),
            theme.dim(),
        )),
        Line::from(""),
    ];
    let column = FaultKind::ALL
        .iter()
        .map(|k| k.name().len())
        .max()
        .unwrap_or(0);
    for (key, kind) in FAULT_KEYS.iter().zip(FaultKind::ALL) {
        let duration = kind
            .default_duration()
            .map(|d| format!(" ({}s)", d.as_secs()))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(format!(" {key} "), theme.key()),
            Span::styled(format!(" {:<column$} ", kind.name()), theme.title()),
            Span::raw(format!("{}{duration}", kind.describe())),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "failures a fault explains are marked expected (⚑); anything else is unexpected (✗✗)",
        theme.dim(),
    )));
    OverlayContent {
        title: format!(
            " faults — 1-9, a-{} inject, esc closes ",
            FAULT_KEYS.last().expect("fault keys")
        ),
        border: theme.error(),
        lines,
        percent: (70, 60),
    }
}
