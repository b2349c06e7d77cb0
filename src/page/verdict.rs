//! The verdict, first on the page: per run (the newest first) what its exit
//! code means, its unexpected failures, and each fault with whether it was
//! detected, when, and how many incidents it explains.
//!
//! For the run `report.json` describes, every figure is the engine's own.
//! For earlier runs of a resumed state dir there is no report left: the
//! failures come from `state.json` (which keeps each one's cause as the
//! engine judged it) and a fault's detection from the trace's actions that
//! name it — the page says which source each run's figures come from.

use maud::{Markup, html};

use super::axis::{clock, duration};
use super::story::{RunStory, Story};
use crate::engine::Outcome;
use crate::engine::report::{FaultReport, RunExit};

/// What a finished run's exit code says (without `--strict`), as the
/// engine decides it for `snapstorm run` and the console.
pub fn exit_meaning(exit: RunExit, unexpected: u64, halted: Option<&str>) -> String {
    match exit {
        RunExit::Failed => format!(
            "{unexpected} failure(s) no injected fault explains: the repository did not give back what it was given"
        ),
        RunExit::Halted => format!(
            "the run stopped on snapstorm's own side ({}); no verdict on the repository after it",
            halted.unwrap_or("its trace could not be written")
        ),
        RunExit::Clean => "no failure that no injected fault explains".to_owned(),
    }
}

/// A fault as the verdict lists it.
struct FaultRow {
    label: String,
    target: String,
    duration_ms: Option<u64>,
    /// Why it never took effect, if it did not.
    not_injected: Option<String>,
    detection_ms: Option<u64>,
    detected: bool,
    incidents: u64,
    damaged: Option<u64>,
}

impl From<&FaultReport> for FaultRow {
    fn from(f: &FaultReport) -> Self {
        FaultRow {
            label: f.label.clone(),
            target: f.target.clone(),
            duration_ms: f.duration_ms,
            not_injected: (!f.injected).then(|| f.reason.clone().unwrap_or_default()),
            detection_ms: f.detection_ms,
            detected: f.detected,
            incidents: f.incidents,
            damaged: f.damaged,
        }
    }
}

/// A run's faults from its trace: detected when an action names it as the
/// cause of its error or failure.
fn faults_from_trace(run: &RunStory) -> Vec<FaultRow> {
    run.faults
        .iter()
        .map(|fault| {
            let naming: Vec<_> = run
                .actions
                .iter()
                .filter(|a| a.explained_by.as_deref() == Some(fault.fault.as_str()))
                .collect();
            FaultRow {
                label: fault.fault.clone(),
                target: fault.target.clone(),
                duration_ms: fault.duration_ms,
                not_injected: None,
                detection_ms: naming
                    .iter()
                    .map(|a| (a.at_ms + a.duration_ms).saturating_sub(fault.at_ms))
                    .min(),
                detected: !naming.is_empty(),
                incidents: naming.len() as u64,
                damaged: None,
            }
        })
        .collect()
}

pub fn section(story: &Story) -> Markup {
    html! {
        section #verdict {
            h2 { "Verdict" }
            @for gap in &story.gaps { p.gap { (gap) } }
            @if story.runs.is_empty() { p.gap { "the trace holds no run yet" } }
            @for run in story.runs.iter().rev() { (run_verdict(story, run)) }
        }
    }
}

fn run_verdict(story: &Story, run: &RunStory) -> Markup {
    let report = story.report_of(run.number);
    let recorded: Option<Vec<_>> = story
        .failures
        .as_ref()
        .map(|all| all.iter().filter(|f| f.run == run.number).collect());
    let failed_actions = run
        .actions
        .iter()
        .filter(|a| a.outcome == Outcome::Failure)
        .collect::<Vec<_>>();
    let (unexpected, failures) = match (report, &recorded) {
        (Some(report), _) => (report.unexpected_failures(), report.failures.len()),
        (None, Some(recorded)) => (
            recorded.iter().filter(|f| f.explained_by.is_none()).count() as u64,
            recorded.len(),
        ),
        (None, None) => (
            failed_actions
                .iter()
                .filter(|a| a.explained_by.is_none())
                .count() as u64,
            failed_actions.len(),
        ),
    };
    let halted = report.and_then(|r| r.halted.as_deref());
    let exit = match report {
        Some(report) => report.exit(false),
        None => RunExit::of(unexpected, failures, false, false),
    };
    let code = exit.code();
    let meaning = exit_meaning(exit, unexpected, halted);
    let faults: Vec<FaultRow> = match report {
        Some(report) => report.faults.iter().map(FaultRow::from).collect(),
        None => faults_from_trace(run),
    };
    let source = match (report, &recorded) {
        (Some(_), _) => "the engine's report (report.json)",
        (None, Some(_)) if story.report.is_some() => {
            "state.json's failures and the trace (report.json describes another run)"
        }
        (None, Some(_)) => "state.json's failures and the trace (there is no report.json)",
        (None, None) => "the trace alone",
    };
    html! {
        div.run.(if code == 0 { "pass" } else { "fail" }) {
            h3 {
                "Run " (run.number) " — exit " (code)
                @if let Some(start) = &run.start {
                    " · seed " (start.seed) " · " (start.scenario) " · " (start.clients) " client(s)"
                }
                " · " (clock(run.span_ms))
            }
            p.meaning { "exit " (code) ": " (meaning) ". " (failures) " failure(s) in all, " (unexpected) " unexpected." }
            p.note {
                "From " (source) ". With --strict any failure gives exit 1."
                @if report.is_none() {
                    " Whether this run stopped early on snapstorm's own side (exit 3) only report.json records."
                }
            }
            @if let Some(report) = report {
                p.counts {
                    (report.totals.actions) " actions · " (report.totals.snapshots_created) " snapshots made · "
                    (report.totals.restores_verified) " restores verified · " (report.totals.errors) " errors ("
                    (report.totals.expected_errors) " explained by faults) · " (report.totals.no_ops) " no-ops · " (report.gc_runs) " GC(s)"
                }
            } @else {
                p.counts { (run.actions.len()) " actions in the trace" }
            }
            @if faults.is_empty() {
                p { "No fault injected." }
            } @else {
                table.faults {
                    tr { th { "fault" } th { "target" } th { "lasted" } th { "detected" } th { "after" } th { "incidents" } th { "damaged" } }
                    @for fault in &faults {
                        tr.(if fault.detected { "detected" } else { "undetected" }) {
                            td { (fault.label) }
                            td.target { (fault.target) }
                            td { (fault.duration_ms.map(duration).unwrap_or_else(|| "one shot".into())) }
                            td {
                                @if let Some(reason) = &fault.not_injected { "never injected: " (reason) }
                                @else if fault.detected { "yes" } @else { "no" }
                            }
                            td { (fault.detection_ms.map(duration).unwrap_or_default()) }
                            td { (fault.incidents) }
                            td { (fault.damaged.map(|d| d.to_string()).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}
