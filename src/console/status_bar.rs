//! The bottom lines: the keys that work here, as many as fit with `? more`
//! always last, and above them (when there is one) the latest notice or the
//! go-to prompt.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Focus, Overlay};
use super::keymap::{self, Bar};

/// Key hints from the key map, in the order they are dropped from the end
/// when space runs out.
fn hints(app: &App) -> Vec<(&'static str, &'static str)> {
    if app.stopping.is_some() {
        return vec![("", "stopping: waiting for actions in flight")];
    }
    let bar = if app.goto.is_some() {
        Bar::GoTo
    } else {
        match (&app.overlay, app.focus) {
            (Overlay::None, Focus::Clients) => Bar::Clients,
            (Overlay::None, Focus::Failures) => Bar::Failures,
            (Overlay::Failure(_), _) => Bar::FailureDiff,
            (Overlay::FaultMenu, _) => Bar::FaultMenu,
            _ => Bar::OtherOverlay,
        }
    };
    keymap::hints(bar)
}

fn hint_spans<'a>(app: &App, key: &'a str, what: &'a str) -> Vec<Span<'a>> {
    let mut spans = Vec::new();
    if !key.is_empty() {
        spans.push(Span::styled(format!(" {key} "), app.theme.key()));
    }
    spans.push(Span::raw(format!(" {what} ")));
    spans
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let more = if app.overlay == Overlay::Help || app.stopping.is_some() {
        Vec::new()
    } else {
        hint_spans(app, "?", "more")
    };
    let more_width: usize = more.iter().map(Span::width).sum();
    let room = (area.width as usize).saturating_sub(more_width);
    let mut spans = Vec::new();
    let mut used = 0;
    for (key, what) in hints(app) {
        let group = hint_spans(app, key, what);
        let width: usize = group.iter().map(Span::width).sum();
        if used + width > room {
            break;
        }
        used += width;
        spans.extend(group);
    }
    spans.extend(more);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The notice line: the go-to prompt while typing, else the latest notice.
pub fn draw_notice(frame: &mut Frame, area: Rect, app: &App) {
    let line = match (&app.goto, app.current_notice()) {
        (Some(typed), _) => Line::from(vec![
            Span::styled(" go to client: ", app.theme.title()),
            Span::raw(format!("{typed}▏")),
            Span::styled("  (enter selects it, esc cancels)", app.theme.dim()),
        ]),
        (None, Some(notice)) => Line::from(Span::styled(format!(" {notice}"), app.theme.error())),
        (None, None) => Line::default(),
    };
    frame.render_widget(Paragraph::new(line), area);
}
