//! The headless runner's output: progress on stderr while a run goes (a
//! progress bar on a terminal, a line every few seconds otherwise) and a
//! summary at the end.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::engine::report::Report;
use crate::engine::stats::{Counts, Outcome};
use crate::run::{Command, CountsFeed, Event, RunInfo};

/// How often a non-terminal gets a progress line.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The progress line: the engine's counts, as the console shows them.
fn progress_line(counts: &Counts, running_clients: usize, elapsed: Duration) -> String {
    let t = &counts.totals;
    format!(
        "[{:>4}s] clients {} · actions {} · snapshots {} · verified {} · gc {} · errors {} · failures {} ({} unexpected)",
        elapsed.as_secs(),
        running_clients,
        t.actions,
        t.snapshots_created,
        t.restores_verified,
        counts.gc_runs,
        t.errors,
        t.verification_failures,
        t.unexpected_failures
    )
}

/// How following a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// The run reported its end.
    Finished,
    /// A second Ctrl-C: leave at once, waiting for nothing.
    Aborted,
}

/// Shows progress until the run reports `Finished`; a first Ctrl-C asks
/// the run to stop gracefully, a second aborts.
pub async fn follow(
    info: &RunInfo,
    mut events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
    counts: &CountsFeed,
) -> Followed {
    let started = Instant::now();
    // One signal stream for the whole run: a fresh `ctrl_c()` future per loop
    // turn would miss a signal that arrives between two turns.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("install the SIGINT handler");
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    eprintln!(
        "snapstorm: run {} · seed {} · scenario {} · server {} · state {}",
        info.run_counter,
        info.seed,
        info.scenario,
        info.server.address,
        info.state_dir.display()
    );
    if info.inherited_snapshots > 0 {
        eprintln!(
            "snapstorm: resuming with {} snapshot(s) from earlier runs",
            info.inherited_snapshots
        );
    }
    for failure in &info.startup_failures {
        eprintln!(
            "snapstorm: FAILURE {} snapshot {}: {}",
            failure.client,
            failure.snapshot.as_deref().unwrap_or("-"),
            failure.summary
        );
    }
    let mut last_line = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut interrupted = false;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                match &event {
                    Event::ActionFinished(record) if record.outcome == Outcome::Failure => {
                        let verdict = record
                            .explained_by
                            .as_deref()
                            .map(|f| format!("(expected: {f}) "))
                            .unwrap_or_else(|| "(UNEXPECTED) ".into());
                        let text = format!(
                            "snapstorm: FAILURE {verdict}{} {} snapshot {}: {}",
                            record.client,
                            record.action,
                            record.snapshot.as_deref().unwrap_or("-"),
                            record.message.as_deref().unwrap_or("")
                        );
                        print_line(bar.as_ref(), &text);
                    }
                    Event::ClientError(client, error) => print_line(bar.as_ref(), &format!("snapstorm: {client}: {error}")),
                    Event::Stopping { in_flight, .. } => {
                        print_line(bar.as_ref(), &format!("snapstorm: stopping; waiting for {in_flight} action(s) in flight"));
                    }
                    Event::FaultInjected(injected) => {
                        print_line(bar.as_ref(), &format!("snapstorm: fault {} → {}", injected.label, injected.target));
                    }
                    Event::FaultFailed { kind, error } => {
                        print_line(bar.as_ref(), &format!("snapstorm: fault {kind} not injected: {error}"));
                    }
                    Event::Failures(failures) => {
                        for f in failures {
                            let verdict = f.explained_by.as_deref().map(|x| format!("(expected: {x}) ")).unwrap_or_else(|| "(UNEXPECTED) ".into());
                            print_line(bar.as_ref(), &format!(
                                "snapstorm: FAILURE {verdict}{} {} snapshot {}: {}",
                                f.client, f.action, f.snapshot.as_deref().unwrap_or("-"), f.summary
                            ));
                        }
                    }
                    Event::Finished(_) => break,
                    _ => {}
                }
            }
            _ = ticker.tick() => {}
            _ = interrupts.recv() => {
                if interrupted {
                    print_line(bar.as_ref(), "snapstorm: aborted");
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    return Followed::Aborted;
                }
                interrupted = true;
                print_line(bar.as_ref(), "snapstorm: interrupted; finishing the actions in flight (Ctrl-C again to abort)");
                let _ = commands.send(Command::Shutdown);
            }
        }
        let line = progress_line(&counts.now(), counts.running_clients(), started.elapsed());
        match &bar {
            Some(bar) => bar.set_message(line),
            None if last_line.elapsed() >= LINE_EVERY => {
                eprintln!("{line}");
                last_line = Instant::now();
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!(
        "{}",
        progress_line(&counts.now(), counts.running_clients(), started.elapsed())
    );
    Followed::Finished
}

fn print_line(bar: Option<&ProgressBar>, text: &str) {
    match bar {
        Some(bar) => bar.println(text),
        None => eprintln!("{text}"),
    }
}

/// A readable summary of a report.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} · seed {} · scenario {} · {:.1}s · gc {}",
        report.run_counter,
        report.seed,
        report.scenario,
        report.duration_ms as f64 / 1000.0,
        report.gc_runs
    );
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>6} {:>5} {:>7} {:>8} {:>8} {:>6} {:>6}",
        "client", "actions", "snaps", "live", "deleted", "verified", "failures", "errors", "no-ops"
    );
    let row = |name: &str, c: &crate::engine::stats::ClientCounts| {
        format!(
            "{:<10} {:>7} {:>6} {:>5} {:>7} {:>8} {:>8} {:>6} {:>6}",
            name,
            c.actions,
            c.snapshots_created,
            c.snapshots_live,
            c.snapshots_deleted,
            c.restores_verified,
            c.verification_failures,
            c.errors,
            c.no_ops
        )
    };
    for client in &report.clients {
        let _ = writeln!(out, "{}", row(&client.id.to_string(), &client.counts));
    }
    let _ = writeln!(out, "{}", row("total", &report.totals));
    let _ = writeln!(
        out,
        "\n{:<28} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "action", "count", "errors", "no-ops", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (name, a) in &report.actions {
        let _ = writeln!(
            out,
            "{:<28} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7}",
            name, a.count, a.errors, a.no_ops, a.p50_ms, a.p95_ms, a.p99_ms, a.max_ms
        );
    }
    if report.inherited_snapshots > 0 {
        let _ = writeln!(
            out,
            "\ninherited snapshots {} · verified this run {}",
            report.inherited_snapshots, report.inherited_verified
        );
    }
    if !report.faults.is_empty() {
        let _ = writeln!(out, "\nfaults injected:");
        for fault in &report.faults {
            if !fault.injected {
                let _ = writeln!(
                    out,
                    "  {} NOT INJECTED: {}",
                    fault.label,
                    fault.reason.as_deref().unwrap_or("no reason given")
                );
                continue;
            }
            let detection = match fault.detection_ms {
                Some(ms) => format!(
                    "detected after {:.1}s · {} incident(s)",
                    ms as f64 / 1000.0,
                    fault.incidents
                ),
                None => "not detected".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {} at {:.1}s → {} · {detection}",
                fault.kind,
                fault.at_ms as f64 / 1000.0,
                fault.target
            );
        }
    }
    if report.failures.is_empty() {
        let _ = writeln!(out, "\nno verification failures");
    } else {
        let unexpected = report.unexpected_failures();
        let _ = writeln!(
            out,
            "\n{} VERIFICATION FAILURE(S), {unexpected} unexpected:",
            report.failures.len()
        );
        for f in &report.failures {
            let verdict = match &f.explained_by {
                Some(fault) => format!("expected ({fault})"),
                None => "UNEXPECTED".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {verdict} {} {} snapshot {}: {}",
                f.client,
                f.action,
                f.snapshot.as_deref().unwrap_or("-"),
                f.summary
            );
        }
    }
    out
}
