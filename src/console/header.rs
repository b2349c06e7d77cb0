//! The header: where the repository is, how long the run has gone, and the totals.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::App;
use super::format;

pub const HEIGHT: u16 = 5;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let sep = || Span::styled(" · ", theme.dim());
    let repo_size = app
        .repo_bytes
        .map(format::bytes)
        .unwrap_or_else(|| "…".into());
    let server = Line::from(vec![
        Span::styled("snapstorm", theme.title()),
        sep(),
        Span::raw(format!("{} server {}", app.backend, app.address)),
        sep(),
        Span::raw(format!("repository {repo_size}")),
    ]);
    let run = Line::from(vec![
        Span::raw(format!(
            "up {}",
            format::clock(app.now.duration_since(app.started))
        )),
        sep(),
        Span::raw(format!("seed {}", app.seed)),
        sep(),
        Span::raw(format!("run {}", app.run_counter)),
        sep(),
        Span::raw(format!("scenario {}", app.scenario)),
        sep(),
        Span::raw(format!("state {}", app.state_dir.display())),
    ]);
    let totals = &app.counts.totals;
    let failures = totals.verification_failures;
    let unexpected = totals.unexpected_failures;
    let failure_style = if unexpected > 0 {
        theme.failure()
    } else {
        theme.ok()
    };
    let mut line = vec![
        Span::styled(format!("clients {}", app.running_clients), theme.title()),
        sep(),
        Span::raw(format!("gc {}", app.counts.gc_runs)),
    ];
    if app.gc_running > 0 {
        line.push(Span::styled(" (running)", theme.running()));
    }
    line.extend([
        sep(),
        Span::raw(format!(
            "snapshots {} created, {} live",
            totals.snapshots_created, totals.snapshots_live
        )),
        sep(),
        Span::raw(format!("verified {}", totals.restores_verified)),
        sep(),
        Span::styled(
            format!("failures {failures} ({unexpected} unexpected)"),
            failure_style,
        ),
        sep(),
        Span::raw(format!("errors {}", totals.errors)),
    ]);
    if app.counts.faults_injected > 0 {
        line.extend([
            sep(),
            Span::styled(
                format!("faults {}", app.counts.faults_injected),
                theme.error(),
            ),
        ]);
    }
    if app.paused_all {
        line.extend([Span::raw("  "), Span::styled(" PAUSED ", theme.paused())]);
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border());
    frame.render_widget(
        Paragraph::new(vec![server, run, Line::from(line)]).block(block),
        area,
    );
}
