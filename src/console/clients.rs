//! One pane per client, in a grid that fits the area and scrolls to keep
//! the selected client in view.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, ClientState, ClientView, Focus};
use super::format;
use crate::engine::stats::Outcome;

const MIN_PANE_WIDTH: u16 = 38;
const PANE_HEIGHT: u16 = 9;

/// How the grid is laid out for `count` clients in `area`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub columns: u16,
    pub visible_rows: u16,
    pub first_row: u16,
}

impl Grid {
    pub fn compute(area: Rect, count: usize, selected_index: usize) -> Grid {
        let columns = (area.width / MIN_PANE_WIDTH)
            .max(1)
            .min(count.max(1) as u16);
        let total_rows = (count as u16).div_ceil(columns).max(1);
        let visible_rows = (area.height / PANE_HEIGHT).clamp(1, total_rows);
        let selected_row = (selected_index as u16) / columns;
        let first_row = selected_row
            .saturating_sub(visible_rows - 1)
            .min(total_rows.saturating_sub(visible_rows));
        Grid {
            columns,
            visible_rows,
            first_row,
        }
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let views: Vec<&ClientView> = app.clients.values().collect();
    let selected_index = app
        .selected
        .and_then(|id| views.iter().position(|v| v.id == id))
        .unwrap_or(0);
    if views.is_empty() {
        let text = Paragraph::new("no clients — press a to add one")
            .style(app.theme.dim())
            .block(Block::default().borders(Borders::ALL).title(" clients "));
        frame.render_widget(text, area);
        return;
    }
    let grid = Grid::compute(area, views.len(), selected_index);
    let pane_width = area.width / grid.columns;
    let pane_height = area.height / grid.visible_rows;
    let mut drawn = 0;
    for (index, view) in views.iter().enumerate() {
        let row = index as u16 / grid.columns;
        if row < grid.first_row || row >= grid.first_row + grid.visible_rows {
            continue;
        }
        drawn += 1;
        let column = index as u16 % grid.columns;
        let pane = Rect {
            x: area.x + column * pane_width,
            y: area.y + (row - grid.first_row) * pane_height,
            width: pane_width,
            height: pane_height,
        };
        draw_pane(frame, pane, app, view, index == selected_index);
    }
    let hidden = views.len() - drawn;
    if hidden > 0 {
        let marker = Rect {
            x: area.x + area.width.saturating_sub(20),
            y: area.y + area.height.saturating_sub(1),
            width: 20.min(area.width),
            height: 1,
        };
        frame.render_widget(
            Paragraph::new(format!(" {hidden} more (↑↓) ")).style(app.theme.key()),
            marker,
        );
    }
}

fn draw_pane(frame: &mut Frame, area: Rect, app: &App, view: &ClientView, selected: bool) {
    let theme = &app.theme;
    let counts = app.client_counts(view.id);
    let expected_failures = counts.verification_failures - counts.unexpected_failures;
    let paused_by_all = app.paused_all && view.state == ClientState::Running;
    let state_label = if paused_by_all {
        "paused (all)"
    } else {
        view.state.label()
    };
    let state_style = match view.state {
        ClientState::Running if paused_by_all => theme.paused(),
        ClientState::Running => theme.ok(),
        ClientState::Paused => theme.paused(),
        ClientState::Removing | ClientState::Removed => theme.dim(),
        ClientState::Broken => theme.failure(),
    };
    let border = if selected && app.focus == Focus::Clients {
        theme.selected()
    } else if counts.unexpected_failures > 0 {
        theme.failure()
    } else {
        theme.border()
    };
    let marker = if selected { "▶ " } else { "" };
    let title = Line::from(vec![
        Span::styled(
            format!(" {marker}{} ", view.id),
            if selected {
                theme.selected()
            } else {
                theme.title()
            },
        ),
        Span::styled(format!("{state_label} "), state_style),
    ]);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(title);
    let inner_height = area.height.saturating_sub(2) as usize;

    let mut lines = Vec::with_capacity(inner_height);
    let failures_style = if counts.unexpected_failures > 0 {
        theme.failure()
    } else {
        theme.dim()
    };
    let mut spans = vec![
        Span::raw(format!(
            "live {} · del {} · ok {} · ",
            counts.snapshots_live, counts.snapshots_deleted, counts.restores_verified
        )),
        Span::styled(
            format!("fail {}", counts.unexpected_failures),
            failures_style,
        ),
    ];
    if expected_failures > 0 {
        spans.push(Span::styled(
            format!(" +{expected_failures}⚑"),
            theme.error(),
        ));
    }
    spans.push(Span::raw(format!(" · err {}", counts.errors)));
    lines.push(Line::from(spans));
    match (&view.running, view.state) {
        (Some((action, started)), _) => lines.push(Line::from(Span::styled(
            format!(
                "⟳ {action} {}",
                format::millis(app.now.saturating_duration_since(*started).as_millis() as u64)
            ),
            theme.running(),
        ))),
        (None, ClientState::Broken) => lines.push(Line::from(Span::styled(
            view.message.clone().unwrap_or_default(),
            theme.failure(),
        ))),
        (None, _) => lines.push(Line::from(Span::styled("idle", theme.dim()))),
    }
    let room = inner_height.saturating_sub(lines.len());
    for entry in view.stream.iter().rev().take(room) {
        let style = match (entry.outcome, entry.expected) {
            (Outcome::Ok, _) => theme.ok(),
            (Outcome::NoOp, _) => theme.dim(),
            (Outcome::Error, _) | (Outcome::Failure, true) => theme.error(),
            (Outcome::Failure, false) => theme.failure(),
        };
        let timing = match entry.outcome {
            Outcome::NoOp => "no-op".to_owned(),
            _ => format::millis(entry.duration_ms),
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{:<2} ",
                    format::outcome_mark(entry.outcome, entry.expected)
                ),
                style,
            ),
            Span::raw(format!("{:<27}", entry.action.name())),
            Span::styled(timing, style),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
