// Over 500 lines: the panes and the table draw the same client views; apart, each would need the other's cells.
//! The clients: one pane per client in a grid, or a compact table with one
//! row per client when panes would not fit (or `t` asks for it). Removed
//! clients collapse into the footer line until `r` shows them. Both views
//! keep the selected client in view.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, ClientState, ClientView, Focus};
use super::format;
use crate::engine::ClientId;
use crate::engine::stats::Outcome;

const MIN_PANE_WIDTH: u16 = 38;
/// A pane shorter than this shows too little: the table is chosen instead.
const MIN_PANE_HEIGHT: u16 = 6;
/// Pane height when the grid scrolls.
const PANE_HEIGHT: u16 = 9;

/// How the grid is laid out for `count` clients in `area`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub columns: u16,
    pub visible_rows: u16,
    pub first_row: u16,
    pub total_rows: u16,
}

impl Grid {
    pub fn compute(area: Rect, count: usize, selected_index: usize) -> Grid {
        let columns = (area.width / MIN_PANE_WIDTH)
            .max(1)
            .min(count.max(1) as u16);
        let total_rows = (count as u16).div_ceil(columns).max(1);
        let visible_rows = if total_rows * MIN_PANE_HEIGHT <= area.height {
            total_rows
        } else {
            (area.height / PANE_HEIGHT).clamp(1, total_rows)
        };
        let selected_row = (selected_index as u16) / columns;
        let first_row = selected_row
            .saturating_sub(visible_rows - 1)
            .min(total_rows.saturating_sub(visible_rows));
        Grid {
            columns,
            visible_rows,
            first_row,
            total_rows,
        }
    }

    /// Every client fits, in panes tall enough to read.
    fn fits(area: Rect, count: usize) -> bool {
        let grid = Grid::compute(area, count, 0);
        grid.visible_rows == grid.total_rows
    }
}

/// Whether the table is drawn in `area`: asked for with `t`, else when panes would not fit.
pub fn table_shown(area: Rect, app: &App) -> bool {
    app.table
        .unwrap_or_else(|| !Grid::fits(area, app.visible_clients().len()))
}

/// Columns of the grid (1 for the table): how far up and down move.
pub fn columns(area: Rect, app: &App) -> u16 {
    let (views, selected) = visible(app);
    if table_shown(area, app) {
        return 1;
    }
    let (content, _) = split(area, app, views.len());
    Grid::compute(content, views.len(), selected).columns
}

fn visible(app: &App) -> (Vec<&ClientView>, usize) {
    let views: Vec<&ClientView> = app
        .visible_clients()
        .into_iter()
        .filter_map(|id| app.clients.get(&id))
        .collect();
    let selected = app
        .selected
        .and_then(|id| views.iter().position(|v| v.id == id))
        .unwrap_or(0);
    (views, selected)
}

/// The area for panes or rows, and a footer line below it when some
/// clients are out of view (scrolled, or removed and collapsed).
fn split(area: Rect, app: &App, count: usize) -> (Rect, Option<Rect>) {
    let all_fit = if table_shown(area, app) {
        count as u16 + 3 <= area.height
    } else {
        Grid::fits(area, count)
    };
    if all_fit && app.hidden_removed() == 0 {
        return (area, None);
    }
    let content = Rect {
        height: area.height.saturating_sub(1),
        ..area
    };
    let footer = Rect {
        y: area.y + content.height,
        height: 1,
        ..area
    };
    (content, Some(footer))
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let (views, selected_index) = visible(app);
    let (content, footer) = split(area, app, views.len());
    let mut out_of_view = String::new();
    if views.is_empty() {
        let text = if app.pending_adds > 0 {
            format!("connecting {} client(s)…", app.pending_adds)
        } else {
            "no clients — press a to add one".to_owned()
        };
        frame.render_widget(
            Paragraph::new(text)
                .style(app.theme.dim())
                .block(Block::default().borders(Borders::ALL).title(" clients ")),
            content,
        );
    } else if table_shown(area, app) {
        let (first, shown) = draw_table(frame, content, app, &views, selected_index);
        if shown < views.len() {
            out_of_view = format!(
                "clients {}–{} of {} (↑↓)",
                first + 1,
                first + shown,
                views.len()
            );
        }
    } else {
        let grid = Grid::compute(content, views.len(), selected_index);
        draw_grid(frame, content, app, &views, selected_index, grid);
        if grid.visible_rows < grid.total_rows {
            out_of_view = format!(
                "rows {}–{} of {} (↑↓) · t: table",
                grid.first_row + 1,
                grid.first_row + grid.visible_rows,
                grid.total_rows
            );
        }
    }
    if let Some(footer) = footer {
        let removed = app.hidden_removed();
        let mut spans = Vec::new();
        if !out_of_view.is_empty() {
            spans.push(Span::styled(format!(" {out_of_view} "), app.theme.key()));
        }
        if removed > 0 {
            spans.push(Span::styled(
                format!(" {removed} removed client(s) collapsed — r shows them "),
                app.theme.dim(),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), footer);
    }
}

fn pane_rect(area: Rect, grid: Grid, index: usize) -> Option<Rect> {
    let row = index as u16 / grid.columns;
    if row < grid.first_row || row >= grid.first_row + grid.visible_rows {
        return None;
    }
    // Edges spread the remainder over the panes, so the grid fills its area.
    let column = index as u16 % grid.columns;
    let row = row - grid.first_row;
    let left = area.width * column / grid.columns;
    let right = area.width * (column + 1) / grid.columns;
    let top = area.height * row / grid.visible_rows;
    let bottom = area.height * (row + 1) / grid.visible_rows;
    Some(Rect {
        x: area.x + left,
        y: area.y + top,
        width: right - left,
        height: bottom - top,
    })
}

fn draw_grid(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    views: &[&ClientView],
    selected_index: usize,
    grid: Grid,
) {
    for (index, view) in views.iter().enumerate() {
        if let Some(pane) = pane_rect(area, grid, index) {
            draw_pane(frame, pane, app, view, index == selected_index);
        }
    }
}

/// The client at `at`, a point inside `area`.
pub fn hit(area: Rect, app: &App, at: Position) -> Option<ClientId> {
    let (views, selected_index) = visible(app);
    let (content, _) = split(area, app, views.len());
    if !content.contains(at) || views.is_empty() {
        return None;
    }
    if table_shown(area, app) {
        let (first, shown) = table_window(content, views.len(), selected_index);
        // Border and header row come first.
        let row = at.y.checked_sub(content.y + 2)? as usize;
        return (row < shown).then(|| views[first + row].id);
    }
    let grid = Grid::compute(content, views.len(), selected_index);
    (0..views.len())
        .find(|&i| pane_rect(content, grid, i).is_some_and(|r| r.contains(at)))
        .map(|i| views[i].id)
}

fn state_of(app: &App, view: &ClientView) -> (&'static str, Style) {
    let theme = &app.theme;
    let paused_by_all = app.paused_all && view.state == ClientState::Running;
    let label = if paused_by_all {
        "paused (all)"
    } else {
        view.state.label()
    };
    let style = match view.state {
        ClientState::Connecting => theme.running(),
        ClientState::Running if paused_by_all => theme.paused(),
        ClientState::Running => theme.ok(),
        ClientState::Paused => theme.paused(),
        ClientState::Removing | ClientState::Removed => theme.dim(),
        ClientState::Broken => theme.failure(),
    };
    (label, style)
}

fn entry_style(app: &App, outcome: Outcome, expected: bool) -> Style {
    let theme = &app.theme;
    match (outcome, expected) {
        (Outcome::Ok, _) => theme.ok(),
        (Outcome::NoOp, _) => theme.dim(),
        (Outcome::Error, _) | (Outcome::Failure, true) => theme.error(),
        (Outcome::Failure, false) => theme.failure(),
    }
}

/// What the client does now: its running action, for how long and how far
/// it has got, or why it does nothing.
fn now_spans<'a>(app: &App, view: &ClientView) -> Span<'a> {
    let theme = &app.theme;
    match (&view.running, view.state) {
        (Some((action, started)), _) => {
            let elapsed = app.now.saturating_duration_since(*started).as_millis() as u64;
            let progress = app
                .counts
                .in_progress
                .get(&view.id)
                .map(format::progress)
                .filter(|p| !p.is_empty())
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            Span::styled(
                format!("⟳ {action} {}{progress}", format::millis(elapsed)),
                theme.running(),
            )
        }
        (None, ClientState::Broken) => {
            Span::styled(view.message.clone().unwrap_or_default(), theme.failure())
        }
        (None, ClientState::Connecting) => match &view.message {
            Some(message) => Span::styled(message.clone(), theme.error()),
            None => Span::styled("connecting…", theme.running()),
        },
        (None, _) => Span::styled("idle", theme.dim()),
    }
}

fn draw_pane(frame: &mut Frame, area: Rect, app: &App, view: &ClientView, selected: bool) {
    let theme = &app.theme;
    let counts = app.client_counts(view.id);
    let expected_failures = counts.expected_failures();
    let (state_label, state_style) = state_of(app, view);
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
    let title = match app.client_kind(view.id) {
        Some(kind) => {
            let mut title = title;
            title
                .spans
                .push(Span::styled(format!("{kind} "), theme.dim()));
            title
        }
        None => title,
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(title);
    let inner_height = area.height.saturating_sub(2) as usize;
    let inner_width = area.width.saturating_sub(2) as usize;

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
    lines.push(Line::from(now_spans(app, view)));
    let room = inner_height.saturating_sub(lines.len());
    for entry in view.stream.iter().rev().take(room) {
        let style = entry_style(app, entry.outcome, entry.expected);
        let timing = match entry.outcome {
            Outcome::NoOp => "no-op".to_owned(),
            _ => format::millis(entry.duration_ms),
        };
        let mut spans = vec![
            Span::styled(
                format::pad(format::outcome_mark(entry.outcome, entry.expected), 3),
                style,
            ),
            Span::raw(format!("{:<24}", entry.action.name())),
            Span::styled(format!("{timing:>7}"), style),
        ];
        // What the action made (or why it failed), as far as the pane is wide.
        let used = 3 + 24 + 7;
        let extra = entry
            .note
            .as_deref()
            .and_then(|note| note.lines().next())
            .or(entry.made.as_deref());
        // One space before it: a snapshot id (8) then fits a third of 140 columns.
        if let Some(extra) = extra
            && inner_width >= used + 1 + 8
        {
            spans.push(Span::styled(
                format!(" {}", format::fit(extra, inner_width - used - 1)),
                theme.dim(),
            ));
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The first row shown and how many fit, keeping the selected one in view.
fn table_window(area: Rect, count: usize, selected_index: usize) -> (usize, usize) {
    // Borders and the header row.
    let fit = area.height.saturating_sub(3).max(1) as usize;
    let first = selected_index
        .saturating_sub(fit - 1)
        .min(count.saturating_sub(fit));
    (first, fit.min(count - first))
}

const TABLE_HEADER: &str = "  client     state         live  del   ok  fail  err  now, or last";

fn draw_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    views: &[&ClientView],
    selected_index: usize,
) -> (usize, usize) {
    let theme = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let (first, shown) = table_window(area, views.len(), selected_index);
    let narrow = width < 100;
    let state_width = if narrow { 10 } else { 12 };
    // The kind column appears when the engine names kinds (and there is room).
    let kinds = !narrow && views.iter().any(|v| app.client_kind(v.id).is_some());
    let header = if narrow {
        TABLE_HEADER.replacen("state         ", "state       ", 1)
    } else if kinds {
        TABLE_HEADER.replacen("client     ", "client     kind    ", 1)
    } else {
        TABLE_HEADER.to_owned()
    };
    let mut lines = vec![Line::from(Span::styled(
        format::fit(&header, width),
        theme.dim(),
    ))];
    for (index, view) in views.iter().enumerate().skip(first).take(shown) {
        let selected = index == selected_index;
        let counts = app.client_counts(view.id);
        let (state_label, state_style) = state_of(app, view);
        // Narrow: the header says PAUSED; the column only needs the state itself.
        let table_state = match view.state {
            _ if !narrow => state_label,
            ClientState::Running if app.paused_all => "paused",
            state => state.label(),
        };
        let expected = counts.expected_failures();
        let name_style = if selected && app.focus == Focus::Clients {
            theme.selected()
        } else if counts.unexpected_failures > 0 {
            theme.failure()
        } else {
            theme.title()
        };
        let fail = if expected > 0 {
            format!("{}+{expected}⚑", counts.unexpected_failures)
        } else {
            counts.unexpected_failures.to_string()
        };
        let mut spans = vec![
            Span::styled(
                format!(
                    "{}{:<10}",
                    if selected { "▶ " } else { "  " },
                    view.id.to_string()
                ),
                name_style,
            ),
            Span::styled(
                if kinds {
                    format!(" {:<7}", app.client_kind(view.id).unwrap_or("-"))
                } else {
                    String::new()
                },
                theme.dim(),
            ),
            Span::styled(
                format!(" {:<width$}", table_state, width = state_width),
                state_style,
            ),
            Span::raw(format!(
                "{:>5}{:>5}{:>5}",
                counts.snapshots_live, counts.snapshots_deleted, counts.restores_verified
            )),
            Span::styled(
                format!("{:>6}", fail),
                if counts.unexpected_failures > 0 {
                    theme.failure()
                } else {
                    theme.dim()
                },
            ),
            Span::styled(
                format!("{:>5}  ", counts.errors),
                if counts.errors > 0 {
                    theme.error()
                } else {
                    theme.dim()
                },
            ),
        ];
        let used: usize = spans.iter().map(Span::width).sum();
        let room = width.saturating_sub(used);
        // Idle: what it did last, and what that made.
        let now = match (view.running.is_none(), view.state, view.stream.back()) {
            (true, ClientState::Running | ClientState::Paused, Some(last)) => Span::styled(
                format!(
                    "{}{} {}{}",
                    format::pad(format::outcome_mark(last.outcome, last.expected), 3),
                    last.action,
                    format::millis(last.duration_ms),
                    last.made
                        .as_deref()
                        .map(|m| format!(" · {m}"))
                        .unwrap_or_default()
                ),
                entry_style(app, last.outcome, last.expected),
            ),
            _ => now_spans(app, view),
        };
        spans.push(Span::styled(format::fit(&now.content, room), now.style));
        lines.push(Line::from(spans));
    }
    let title = Line::from(vec![
        Span::styled(format!(" clients {} ", views.len()), theme.title()),
        Span::styled("· t: panes ", theme.dim()),
    ]);
    let border = if app.focus == Focus::Clients {
        theme.selected()
    } else {
        theme.border()
    };
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(border)
                .title(title),
        ),
        area,
    );
    (first, shown)
}
