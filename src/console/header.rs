//! The header, laid out by priority: what needs a person's attention first
//! (unexpected failures, `PAUSED`, a server that is down, faults in effect),
//! then the totals, then where the run is. What does not fit the width is
//! left out from the end of each line, never from its start.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, ServerState};
use super::format;

pub const HEIGHT: u16 = 5;

/// Spans that are shown together or not at all.
type Group<'a> = Vec<Span<'a>>;

/// Fills a line of `width` cells with `groups` in order, separated by
/// ` · `; a group that does not fit is skipped and later, shorter ones
/// still get their chance. The first group is always shown.
fn pack<'a>(groups: Vec<Group<'a>>, width: usize, sep: Span<'a>) -> Line<'a> {
    let mut spans: Vec<Span> = Vec::new();
    let mut used = 0;
    for (index, group) in groups.into_iter().enumerate() {
        let group_width: usize = group.iter().map(Span::width).sum();
        let sep_width = if spans.is_empty() { 0 } else { sep.width() };
        if index > 0 && used + sep_width + group_width > width {
            continue;
        }
        if !spans.is_empty() {
            spans.push(sep.clone());
        }
        used += sep_width + group_width;
        spans.extend(group);
    }
    Line::from(spans)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let sep = || Span::styled(" · ", theme.dim());
    let totals = &app.counts.totals;
    let unexpected = totals.unexpected_failures;

    // Line 1: what needs attention, then what the run talks to.
    let mut alerts: Vec<Group> = Vec::new();
    if unexpected > 0 {
        let long = format!(
            " ✗✗ {unexpected} UNEXPECTED FAILURE{} — tab, enter: diff ",
            if unexpected == 1 { "" } else { "S" }
        );
        let text = if long.chars().count() + 30 <= width {
            long
        } else {
            format!(" ✗✗ {unexpected} UNEXPECTED ")
        };
        alerts.push(vec![Span::styled(text, theme.banner())]);
    } else {
        alerts.push(vec![Span::styled("snapstorm", theme.title())]);
    }
    let (connecting, total) = app.connecting();
    if connecting > 0 {
        alerts.push(vec![Span::styled(
            format!("connecting {}/{total}", total - connecting),
            theme.running(),
        )]);
    }
    if app.paused_all {
        alerts.push(vec![Span::styled(" PAUSED ", theme.paused())]);
    }
    match app.server_state() {
        ServerState::Up => {}
        ServerState::Down(left) => alerts.push(vec![Span::styled(
            format!(" server DOWN, back in {} ", format::seconds(left)),
            theme.banner(),
        )]),
        ServerState::Restarting => {
            alerts.push(vec![Span::styled(" server restarting ", theme.paused())])
        }
    }
    for fault in app.faults_in_effect() {
        let left = fault.until.saturating_duration_since(app.now);
        alerts.push(vec![Span::styled(
            format!("⚡ {} {} left", fault.kind, format::seconds(left)),
            theme.error(),
        )]);
    }
    if unexpected > 0 {
        alerts.push(vec![Span::styled("snapstorm", theme.title())]);
    }
    let repo_size = app
        .repo_bytes
        .map(format::bytes)
        .unwrap_or_else(|| "…".into());
    alerts.push(vec![Span::raw(match &app.behind_proxy {
        Some(server) => format!("{} server {} → proxy → {server}", app.backend, app.address),
        None => format!("{} server {}", app.backend, app.address),
    })]);
    alerts.push(vec![Span::raw(format!("repository {repo_size}"))]);
    let first = pack(alerts, width, sep());

    // Line 2: the engine's totals, the ones that go wrong first.
    let failures = totals.verification_failures;
    let failure_style = if unexpected > 0 {
        theme.failure()
    } else if failures > 0 {
        theme.error()
    } else {
        theme.ok()
    };
    let removed = app.hidden_removed();
    let mut clients = vec![Span::styled(
        format!("clients {}", app.running_clients),
        theme.title(),
    )];
    if removed > 0 {
        clients.push(Span::styled(format!(" ({removed} removed)"), theme.dim()));
    }
    let mut gc = vec![Span::raw(format!("gc {}", app.counts.gc_runs))];
    if app.gc_running > 0 {
        gc.push(Span::styled(" (running)", theme.running()));
    }
    let mut second: Vec<Group> = vec![
        clients,
        vec![Span::styled(
            format!("failures {failures} ({unexpected} unexpected)"),
            failure_style,
        )],
        vec![Span::styled(
            format!("errors {}", totals.errors),
            if totals.errors > 0 {
                theme.error()
            } else {
                theme.ok()
            },
        )],
    ];
    if app.counts.faults_injected > 0 {
        second.push(vec![Span::styled(
            format!("faults {}", app.counts.faults_injected),
            theme.error(),
        )]);
    }
    second.extend([
        vec![Span::raw(format!(
            "snapshots {} created, {} live",
            totals.snapshots_created, totals.snapshots_live
        ))],
        vec![Span::raw(format!("verified {}", totals.restores_verified))],
        gc,
    ]);
    let second = pack(second, width, sep());

    // Line 3: where and what.
    let mut where_what: Vec<Group> = Vec::new();
    if app.inherited_snapshots > 0 {
        let (to_verify, verified) = app.inherited;
        where_what.push(vec![Span::styled(
            format!(
                "inherited {} · verified {verified}/{to_verify}",
                app.inherited_snapshots
            ),
            if verified < to_verify {
                theme.running()
            } else {
                theme.ok()
            },
        )]);
    }
    where_what.extend(vec![
        vec![Span::raw(format!(
            "up {}",
            format::clock(app.now.duration_since(app.started))
        ))],
        vec![Span::raw(format!("seed {}", app.seed))],
        vec![Span::raw(format!("run {}", app.run_counter))],
        vec![Span::raw(format!("scenario {}", app.scenario))],
        vec![Span::raw(format!("state {}", app.state_dir.display()))],
    ]);
    let third = pack(where_what, width, sep());
    let border = if unexpected > 0 {
        theme.failure()
    } else {
        theme.border()
    };
    let block = Block::default().borders(Borders::ALL).border_style(border);
    frame.render_widget(
        Paragraph::new(vec![first, second, third]).block(block),
        area,
    );
}
