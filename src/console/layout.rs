//! The whole screen: which region goes where, and what is drawn over it.
//! Drawing is a pure function of the [`App`]; it never changes state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, ClientState, Overlay};
use super::{
    clients, failures, fault_menu, format, header, help_panel, log_pane, status_bar, throughput,
};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
const SIDE_WIDTH: u16 = 46;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, area, app);
        return;
    }
    let log_height = if area.height >= 36 { 9 } else { 6 };
    let [top, body, log, status] = Layout::vertical([
        Constraint::Length(header::HEIGHT),
        Constraint::Min(8),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let [grid, side] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(SIDE_WIDTH)]).areas(body);
    let [failure_list, spark] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(throughput::HEIGHT)]).areas(side);

    header::draw(frame, top, app);
    clients::draw(frame, grid, app);
    failures::draw(frame, failure_list, app);
    throughput::draw(frame, spark, app);
    log_pane::draw(frame, log, app);
    status_bar::draw(frame, status, app);

    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help_panel::draw(frame, area, app),
        Overlay::Failure(index) => failures::draw_detail(frame, area, app, *index),
        Overlay::Client(id) => draw_client_detail(frame, area, app, *id),
        Overlay::FaultMenu => fault_menu::draw(frame, area, app),
    }
    if app.stopping.is_some() {
        draw_stopping(frame, area, app);
    }
}

/// Draws `lines` in `block` over the middle of the screen, `percent_x` ×
/// `percent_y` of `area`, clearing what is beneath; long lines wrap.
pub fn overlay(
    frame: &mut Frame,
    area: Rect,
    (percent_x, percent_y): (u16, u16),
    block: Block,
    lines: Vec<Line>,
) {
    let area = centered(area, percent_x, percent_y);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// A rectangle of `percent_x` × `percent_y` of `area`, centred.
pub fn centered(area: Rect, percent_x: u16, percent_y: u16) -> Rect {
    let [_, middle, _] = Layout::vertical([
        Constraint::Percentage((100 - percent_y) / 2),
        Constraint::Percentage(percent_y),
        Constraint::Percentage((100 - percent_y) / 2),
    ])
    .areas(area);
    let [_, centre, _] = Layout::horizontal([
        Constraint::Percentage((100 - percent_x) / 2),
        Constraint::Percentage(percent_x),
        Constraint::Percentage((100 - percent_x) / 2),
    ])
    .areas(middle);
    centre
}

fn draw_too_small(frame: &mut Frame, area: Rect, app: &App) {
    let text = vec![
        Line::from(Span::styled("terminal too small", app.theme.failure())),
        Line::from(format!(
            "{}×{}, need at least {MIN_WIDTH}×{MIN_HEIGHT}: enlarge the window",
            area.width, area.height
        )),
        Line::from(format!(
            "clients {} · failures {} ({} unexpected) · q quits",
            app.running_clients,
            app.counts.totals.verification_failures,
            app.counts.totals.unexpected_failures
        )),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn draw_client_detail(frame: &mut Frame, area: Rect, app: &App, id: crate::engine::ClientId) {
    let Some(view) = app.clients.get(&id) else {
        return;
    };
    let theme = &app.theme;
    let counts = app.client_counts(id);
    let mut lines = vec![
        Line::from(Span::styled(
            format!("{id} · {}", view.state.label()),
            theme.title(),
        )),
        Line::from(format!(
            "actions {} · snapshots created {} · live {} · deleted {} · restores verified {} · failures {} ({} unexpected) · errors {}",
            counts.actions,
            counts.snapshots_created,
            counts.snapshots_live,
            counts.snapshots_deleted,
            counts.restores_verified,
            counts.verification_failures,
            counts.unexpected_failures,
            counts.errors
        )),
    ];
    if let Some(message) = &view.message {
        lines.push(Line::from(Span::styled(message.clone(), theme.error())));
    }
    lines.push(Line::from(""));
    for entry in view.stream.iter().rev() {
        let mut text = format!(
            "{:<2} {:<27} {:>8}",
            format::outcome_mark(entry.outcome, entry.expected),
            entry.action.name(),
            format::millis(entry.duration_ms)
        );
        if let Some(note) = &entry.note {
            text.push_str("  ");
            text.push_str(note.lines().next().unwrap_or(""));
        }
        lines.push(Line::from(text));
    }
    let style = if view.state == ClientState::Broken || counts.unexpected_failures > 0 {
        theme.failure()
    } else {
        theme.selected()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(" client details — esc closes ");
    overlay(frame, area, (80, 80), block, lines);
}

fn draw_stopping(frame: &mut Frame, area: Rect, app: &App) {
    let Some(stopping) = app.stopping else { return };
    let left = stopping
        .deadline
        .saturating_duration_since(app.now)
        .as_secs();
    let text = vec![
        Line::from(Span::styled("stopping", app.theme.title())),
        Line::from(format!(
            "waiting for {} action(s) in flight · {left}s left",
            stopping.in_flight
        )),
        Line::from("then: metadata saved, clients revoked, server stopped"),
    ];
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.paused());
    overlay(frame, area, (50, 20), block, text);
}
