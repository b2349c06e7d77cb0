//! The failures panel (every verification failure, newest last) and the
//! overlay with one failure's full details.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use super::app::{App, Focus};
use super::format;
use super::layout::overlay;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let focused = app.focus == Focus::Failures;
    let title = format!(
        " failures {} · unexpected {} ",
        app.counts.totals.verification_failures, app.counts.totals.unexpected_failures
    );
    let block = Block::default()
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
    let items: Vec<ListItem> = app
        .failures
        .iter()
        .map(|f| {
            let verdict = match &f.explained_by {
                Some(fault) => Span::styled(format!("⚑ expected: {fault} "), theme.error()),
                None => Span::styled("✗✗ UNEXPECTED ", theme.failure()),
            };
            ListItem::new(vec![
                Line::from(vec![
                    verdict,
                    Span::styled(format!("{} ", f.client), theme.title()),
                    Span::raw(format!(
                        "{} {}",
                        f.action,
                        f.snapshot.as_deref().map(format::short_id).unwrap_or("-")
                    )),
                ]),
                Line::from(Span::raw(format!("  {}", f.summary))),
            ])
        })
        .collect();
    let mut state = ListState::default().with_selected(focused.then_some(app.failure_selected));
    let list = List::new(items)
        .block(block)
        .highlight_style(theme.selected())
        .highlight_symbol("▶");
    frame.render_stateful_widget(list, area, &mut state);
}

/// One failure in full: who, which snapshot, and the whole diff.
pub fn draw_detail(frame: &mut Frame, area: Rect, app: &App, index: usize) {
    let Some(failure) = app.failures.get(index) else {
        return;
    };
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
            "{} · {} · snapshot {} · run {} · {}",
            failure.client,
            failure.action,
            failure.snapshot.as_deref().unwrap_or("-"),
            failure.run,
            failure.time
        )),
        Line::from(""),
    ];
    lines.extend(failure.details.lines().map(|l| Line::from(l.to_owned())));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.failure())
        .title(Span::styled(
            format!(
                " failure {} of {} — Esc closes ",
                index + 1,
                app.failures.len()
            ),
            theme.failure(),
        ));
    overlay(frame, area, (90, 80), block, lines);
}
