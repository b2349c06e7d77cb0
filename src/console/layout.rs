//! The whole screen: which region goes where, and what is drawn over it.
//! Drawing is a pure function of the [`App`]; it never changes state. The
//! same geometry answers where a click landed and how far an overlay scrolls.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, ClientState, Overlay};
use super::{
    clients, failures, fault_menu, format, header, help_panel, log_pane, status_bar, throughput,
};
use crate::engine::ClientId;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// From this width on, the failures panel sits beside the clients; below it, under them.
const SIDE_BY_SIDE: u16 = 160;
/// From this width on, the narrow layout has room for actions per second beside the failures.
const SPARK_BESIDE: u16 = 120;

/// Where each region of the screen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    pub header: Rect,
    pub clients: Rect,
    pub failures: Rect,
    /// Actions per second; left out when the screen is short.
    pub throughput: Option<Rect>,
    pub log: Rect,
    /// Notices and the go-to prompt, on their own line when there is one.
    pub notice: Option<Rect>,
    pub status: Rect,
}

impl Regions {
    pub fn of(area: Rect, app: &App) -> Regions {
        let log_height = (area.height / 5).clamp(6, 12);
        let notice_height = u16::from(app.current_notice().is_some() || app.goto.is_some());
        let [header, body, log, notice, status] = Layout::vertical([
            Constraint::Length(header::HEIGHT),
            Constraint::Min(8),
            Constraint::Length(log_height),
            Constraint::Length(notice_height),
            Constraint::Length(1),
        ])
        .areas(area);
        let (clients, failures, throughput) = if area.width < SIDE_BY_SIDE {
            // Narrow: failures below the clients, full width, so a row keeps
            // client, action and kind.
            let rows = if app.failures.is_empty() {
                3
            } else {
                (app.failures.len() as u16 + 2).clamp(3, (body.height / 3).max(3))
            };
            let [clients, bottom] =
                Layout::vertical([Constraint::Min(4), Constraint::Length(rows)]).areas(body);
            if area.width >= SPARK_BESIDE {
                let [failures, spark] =
                    Layout::horizontal([Constraint::Min(60), Constraint::Length(36)]).areas(bottom);
                (clients, failures, Some(spark))
            } else {
                (clients, bottom, None)
            }
        } else {
            let side_width = (area.width * 8 / 25).clamp(46, 66);
            let [clients, side] =
                Layout::horizontal([Constraint::Min(40), Constraint::Length(side_width)])
                    .areas(body);
            if side.height >= 16 {
                let [list, spark] =
                    Layout::vertical([Constraint::Min(4), Constraint::Length(throughput::HEIGHT)])
                        .areas(side);
                (clients, list, Some(spark))
            } else {
                (clients, side, None)
            }
        };
        Regions {
            header,
            clients,
            failures,
            throughput,
            log,
            notice: (notice_height > 0).then_some(notice),
            status,
        }
    }
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, area, app);
        return;
    }
    let regions = Regions::of(area, app);
    header::draw(frame, regions.header, app);
    clients::draw(frame, regions.clients, app);
    failures::draw(frame, regions.failures, app);
    if let Some(spark) = regions.throughput {
        throughput::draw(frame, spark, app);
    }
    log_pane::draw(frame, regions.log, app);
    if let Some(notice) = regions.notice {
        status_bar::draw_notice(frame, notice, app);
    }
    status_bar::draw(frame, regions.status, app);

    if let Some(content) = overlay_content(app) {
        draw_overlay(frame, area, app, content);
    }
    if app.stopping.is_some() {
        draw_stopping(frame, area, app);
    }
}

/// What an overlay shows: its lines scroll inside a bordered box.
pub struct OverlayContent<'a> {
    pub title: String,
    pub border: Style,
    pub lines: Vec<Line<'a>>,
    /// Share of the screen it takes, in percent (more on small screens).
    pub percent: (u16, u16),
}

/// The open overlay's content, if one is open.
pub fn overlay_content(app: &App) -> Option<OverlayContent<'_>> {
    match &app.overlay {
        Overlay::None => None,
        Overlay::Help => Some(help_panel::content(app)),
        Overlay::Failure(index) => failures::detail_content(app, *index),
        Overlay::Client(id) => client_detail_content(app, *id),
        Overlay::FaultMenu => Some(fault_menu::content(app)),
    }
}

/// The box an overlay takes on `area`: its share, but never so small that
/// an 80×24 screen shows only a few lines of it.
fn overlay_area(area: Rect, percent: (u16, u16)) -> Rect {
    let width = (area.width * percent.0 / 100)
        .max(area.width.saturating_sub(4).min(76))
        .min(area.width);
    let height = (area.height * percent.1 / 100)
        .max(area.height.saturating_sub(4).min(20))
        .min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// Inside the open overlay's border: where its lines go.
pub fn overlay_inner(app: &App) -> Rect {
    let percent = overlay_content(app).map_or((80, 80), |c| c.percent);
    Block::default()
        .borders(Borders::ALL)
        .inner(overlay_area(app.screen, percent))
}

/// How far the open overlay can scroll: its wrapped lines less those shown.
pub fn overlay_max_scroll(app: &App) -> u16 {
    let Some(content) = overlay_content(app) else {
        return 0;
    };
    let inner = Block::default()
        .borders(Borders::ALL)
        .inner(overlay_area(app.screen, content.percent));
    let total = Paragraph::new(content.lines)
        .wrap(Wrap { trim: false })
        .line_count(inner.width);
    (total.saturating_sub(inner.height as usize)).min(u16::MAX as usize) as u16
}

fn draw_overlay(frame: &mut Frame, area: Rect, app: &App, content: OverlayContent) {
    let rect = overlay_area(area, content.percent);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(content.border)
        .title(Span::styled(content.title, content.border));
    let inner = block.inner(rect);
    let paragraph = Paragraph::new(content.lines).wrap(Wrap { trim: false });
    let total = paragraph.line_count(inner.width);
    let max = total.saturating_sub(inner.height as usize) as u16;
    let scroll = app.overlay_scroll.min(max);
    let block = if total > inner.height as usize {
        let first = scroll as usize + 1;
        let last = (scroll as usize + inner.height as usize).min(total);
        let more = if last < total { "↓ more" } else { "end" };
        block.title_bottom(
            Line::from(format!(
                " lines {first}–{last} of {total} · {more} · ↑↓ PgUp PgDn Home End "
            ))
            .right_aligned(),
        )
    } else {
        block
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(paragraph.block(block).scroll((scroll, 0)), rect);
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

/// Columns of the client grid as drawn now (1 for the table).
pub fn client_columns(app: &App) -> u16 {
    let regions = Regions::of(app.screen, app);
    clients::columns(regions.clients, app)
}

/// Whether clients are drawn as the compact table now.
pub fn client_table_shown(app: &App) -> bool {
    let regions = Regions::of(app.screen, app);
    clients::table_shown(regions.clients, app)
}

/// What a click at (column, row) lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Client(ClientId),
    /// Index into `App::failures`.
    Failure(usize),
}

pub fn hit(app: &App, column: u16, row: u16) -> Option<Hit> {
    let regions = Regions::of(app.screen, app);
    let at = ratatui::layout::Position::new(column, row);
    if regions.clients.contains(at) {
        return clients::hit(regions.clients, app, at).map(Hit::Client);
    }
    if regions.failures.contains(at) {
        return failures::hit(regions.failures, app, at).map(Hit::Failure);
    }
    None
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

/// A client's whole stream (as far as it is kept), newest first, and its counts.
fn client_detail_content(app: &App, id: ClientId) -> Option<OverlayContent<'_>> {
    let view = app.clients.get(&id)?;
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
    if let Some((action, started)) = &view.running {
        lines.push(Line::from(Span::styled(
            format!(
                "⟳  {action} running for {}",
                format::millis(app.now.saturating_duration_since(*started).as_millis() as u64)
            ),
            theme.running(),
        )));
    }
    let kept = view.stream.len() as u64;
    let finished = counts.actions.max(kept);
    lines.push(Line::from(Span::styled(
        if finished > kept {
            format!("the last {kept} of {finished} actions, newest first:")
        } else {
            format!("all {kept} actions, newest first:")
        },
        theme.dim(),
    )));
    for entry in view.stream.iter().rev() {
        let mut spans = vec![
            Span::raw(format::pad(
                format::outcome_mark(entry.outcome, entry.expected),
                3,
            )),
            Span::raw(format!(
                "{:<27} {:>8}",
                entry.action.name(),
                format::millis(entry.duration_ms)
            )),
        ];
        if let Some(note) = &entry.note {
            spans.push(Span::raw(format!(
                "  {}",
                note.lines().next().unwrap_or("")
            )));
        }
        lines.push(Line::from(spans));
    }
    let border = if view.state == ClientState::Broken || counts.unexpected_failures > 0 {
        theme.failure()
    } else {
        theme.selected()
    };
    Some(OverlayContent {
        title: " client details — esc closes ".into(),
        border,
        lines,
        percent: (80, 80),
    })
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
