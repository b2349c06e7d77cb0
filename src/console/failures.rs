//! The failures panel (every verification failure, newest first: client,
//! action and kind stay readable at any width) and the overlay with one
//! failure's full details.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, Focus};
use super::format;
use super::layout::OverlayContent;
use crate::engine::store::Failure;

/// Lines each failure takes in a panel of `area`: one when a row holds
/// client, action, kind and snapshot, else two.
fn item_height(area: Rect) -> u16 {
    if area.width.saturating_sub(2) >= 64 {
        1
    } else {
        2
    }
}

/// Which failures the panel shows: the first shown (in newest-first order)
/// and how many fit. Unfocused it shows the newest; focused it keeps the
/// selected one in view.
fn window(area: Rect, app: &App) -> (usize, usize) {
    let inner = area.height.saturating_sub(2);
    let fit = (inner / item_height(area)).max(1) as usize;
    let len = app.failures.len();
    if app.focus != Focus::Failures || len == 0 {
        return (0, fit);
    }
    let selected = len - 1 - app.failure_selected.min(len - 1);
    (selected.saturating_sub(fit - 1), fit)
}

fn item<'a>(app: &App, failure: &Failure, width: usize, selected: bool) -> Vec<Line<'a>> {
    let theme = &app.theme;
    let mark = match &failure.explained_by {
        Some(_) => Span::styled("⚑ ", theme.error()),
        None => Span::styled("✗✗", theme.failure()),
    };
    let pointer = if selected { "▶" } else { " " };
    let snapshot = failure
        .snapshot
        .as_deref()
        .map(crate::engine::damage::short_id)
        .unwrap_or("-");
    let why = match &failure.explained_by {
        Some(fault) => format!("expected: {fault}"),
        None => "UNEXPECTED".to_owned(),
    };
    let (first, second) = if width >= 56 {
        (
            format!(
                " {} {} {} {snapshot}",
                failure.client,
                failure.action,
                failure.kind.name()
            ),
            format!("  {why} · {}", failure.summary),
        )
    } else {
        (
            format!(" {} {}", failure.client, failure.kind.name()),
            format!("  {} {snapshot} · {why}", failure.action),
        )
    };
    let style = if selected {
        theme.selected()
    } else {
        ratatui::style::Style::default()
    };
    let second_style = if failure.explained_by.is_some() {
        theme.dim()
    } else {
        theme.failure()
    };
    if width >= 64 {
        // One row: client, action, kind, snapshot, then why and the summary as far as they go.
        let used = 3 + Span::raw(first.as_str()).width();
        return vec![Line::from(vec![
            Span::styled(pointer, theme.selected()),
            mark,
            Span::styled(first, style),
            Span::styled(
                format::fit(&format!(" ·{}", &second[1..]), width.saturating_sub(used)),
                second_style,
            ),
        ])];
    }
    vec![
        Line::from(vec![
            Span::styled(pointer, theme.selected()),
            mark,
            Span::styled(format::fit(&first, width.saturating_sub(3)), style),
        ]),
        Line::from(Span::styled(format::fit(&second, width), second_style)),
    ]
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let focused = app.focus == Focus::Failures;
    let title = format!(
        " failures {} · unexpected {} ",
        app.counts.totals.verification_failures, app.counts.totals.unexpected_failures
    );
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme.selected()
        } else if app.failures.is_empty() {
            theme.border()
        } else {
            theme.failure()
        })
        .title(Span::styled(
            title,
            if app.failures.is_empty() {
                theme.title()
            } else {
                theme.failure()
            },
        ));
    if app.failures.is_empty() {
        frame.render_widget(
            Paragraph::new("none — every restore matched")
                .style(theme.dim())
                .block(block),
            area,
        );
        return;
    }
    let (first, fit) = window(area, app);
    let width = area.width.saturating_sub(2) as usize;
    let len = app.failures.len();
    let mut lines = Vec::new();
    for (shown, failure) in app.failures.iter().rev().enumerate().skip(first).take(fit) {
        let index = len - 1 - shown;
        let selected = focused && index == app.failure_selected;
        lines.extend(item(app, failure, width, selected));
    }
    let older = len.saturating_sub(first + fit);
    let newer = first;
    if older > 0 || newer > 0 {
        let mut text = String::from(" newest first");
        if newer > 0 {
            text.push_str(&format!(" · {newer} newer ↑"));
        }
        if older > 0 {
            text.push_str(&format!(" · {older} older ↓"));
        }
        text.push_str(" (tab) ");
        block = block.title_bottom(Line::from(Span::styled(text, theme.dim())).right_aligned());
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The failure (index into `App::failures`) at `at`, a point inside `area`.
pub fn hit(area: Rect, app: &App, at: Position) -> Option<usize> {
    let inner = Block::default().borders(Borders::ALL).inner(area);
    if !inner.contains(at) || app.failures.is_empty() {
        return None;
    }
    let (first, fit) = window(area, app);
    let shown = ((at.y - inner.y) / item_height(area)) as usize;
    if shown >= fit {
        return None;
    }
    let position = first + shown;
    (position < app.failures.len()).then(|| app.failures.len() - 1 - position)
}

/// One failure in full: who, which snapshot, and the whole diff.
pub fn detail_content(app: &App, index: usize) -> Option<OverlayContent<'_>> {
    let failure = app.failures.get(index)?;
    let theme = &app.theme;
    let verdict = match &failure.explained_by {
        Some(fault) => Line::from(Span::styled(
            format!("expected: {fault} explains it"),
            theme.error(),
        )),
        None => Line::from(Span::styled(
            "UNEXPECTED: no injected fault explains it",
            theme.failure(),
        )),
    };
    let mut lines = vec![
        Line::from(Span::styled(failure.summary.clone(), theme.failure())),
        verdict,
        Line::from(format!(
            "{} · {} · {} · snapshot {} · run {} · {}",
            failure.client,
            failure.action,
            failure.kind.name(),
            failure.snapshot.as_deref().unwrap_or("-"),
            failure.run,
            failure.time
        )),
        Line::from(""),
    ];
    lines.extend(failure.details.lines().map(|l| Line::from(l.to_owned())));
    // Numbered newest first, as the panel lists them.
    let number = app.failures.len() - index;
    Some(OverlayContent {
        title: format!(
            " failure {number} of {} (newest first) — n older, N newer, esc closes ",
            app.failures.len()
        ),
        border: theme.failure(),
        lines,
        percent: (90, 80),
    })
}
