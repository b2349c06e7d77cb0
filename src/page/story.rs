//! A state dir's story as the page tells it: every run of its trace laid
//! end to end on one time axis, the failures its metadata keeps (for their
//! diffs, which the trace leaves out), and the engine's report of the run
//! report.json describes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::engine::input::{MAX_STATE_BYTES, read_bounded};
use crate::engine::record::ActionRecord;
use crate::engine::report::Report;
use crate::engine::store::{Failure, State, StateLayout};
use crate::engine::trace::{FaultLine, RunStartLine, TraceLine, read_trace};
use crate::engine::{ClientId, Outcome};

use super::PageError;

/// Space left between two runs on the time axis, so the boundary shows.
pub(super) const RUN_GAP_MS: u64 = 500;

/// Everything the page shows, read from one state dir.
#[derive(Debug, Clone)]
pub struct Story {
    pub state_dir: PathBuf,
    pub runs: Vec<RunStory>,
    /// Failures of every run, with their diffs (from `state.json`);
    /// `None` when it cannot be read: the trace's failed actions stand in.
    pub failures: Option<Vec<Failure>>,
    /// The engine's report of one run (`report.json`): its verdict is shown
    /// as the engine drew it, never drawn again.
    pub report: Option<Report>,
    /// What the state dir could not give, said on the page.
    pub gaps: Vec<String>,
}

/// One run of the state dir.
#[derive(Debug, Clone)]
pub struct RunStory {
    pub number: u32,
    /// Its first trace line; `None` when the trace has none for it.
    pub start: Option<RunStartLine>,
    pub actions: Vec<ActionRecord>,
    /// Faults that took effect.
    pub faults: Vec<FaultLine>,
    /// Where it begins on the page's time axis, in milliseconds.
    pub offset_ms: u64,
    /// How long it lasted, from its trace: the last action's or fault's end.
    pub span_ms: u64,
}

impl RunStory {
    fn new(number: u32) -> Self {
        RunStory {
            number,
            start: None,
            actions: Vec::new(),
            faults: Vec::new(),
            offset_ms: 0,
            span_ms: 0,
        }
    }

    fn measure(&mut self) {
        let actions = self.actions.iter().map(|a| a.at_ms + a.duration_ms);
        let faults = self
            .faults
            .iter()
            .map(|f| f.at_ms + f.duration_ms.unwrap_or(0));
        let planned = self.start.as_ref().and_then(|s| s.duration_ms);
        self.span_ms = actions
            .chain(faults)
            .chain(planned)
            .max()
            .unwrap_or(0)
            .max(1);
    }
}

/// How an action ended, as the page colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Shade {
    Ok,
    NoOp,
    /// An error an injected fault explains.
    ExplainedError,
    Error,
    /// A failure an injected fault explains.
    ExplainedFailure,
    UnexpectedFailure,
}

impl Shade {
    pub const ALL: [Shade; 6] = [
        Shade::Ok,
        Shade::NoOp,
        Shade::ExplainedError,
        Shade::Error,
        Shade::ExplainedFailure,
        Shade::UnexpectedFailure,
    ];

    pub fn of(action: &ActionRecord) -> Shade {
        match (action.outcome, action.explained_by.is_some()) {
            (Outcome::Ok, _) => Shade::Ok,
            (Outcome::NoOp, _) => Shade::NoOp,
            (Outcome::Error, true) => Shade::ExplainedError,
            (Outcome::Error, false) => Shade::Error,
            (Outcome::Failure, true) => Shade::ExplainedFailure,
            (Outcome::Failure, false) => Shade::UnexpectedFailure,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shade::Ok => "ok",
            Shade::NoOp => "no-op",
            Shade::ExplainedError => "error a fault explains",
            Shade::Error => "error",
            Shade::ExplainedFailure => "failure a fault explains",
            Shade::UnexpectedFailure => "unexpected failure",
        }
    }

    /// Its colour, as CSS and the charts take it.
    pub fn colour(self) -> &'static str {
        match self {
            Shade::Ok => "#4caf50",
            Shade::NoOp => "#b0b0b0",
            Shade::ExplainedError => "#f2c14e",
            Shade::Error => "#f28c28",
            Shade::ExplainedFailure => "#8e5cc2",
            Shade::UnexpectedFailure => "#d62828",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Shade::ExplainedFailure | Shade::UnexpectedFailure)
    }
}

impl Story {
    /// Reads `state_dir`: its trace is needed; `state.json` and
    /// `report.json` add what the trace leaves out, and their absence is
    /// said on the page.
    pub fn read(state_dir: &Path) -> Result<Story, PageError> {
        let layout = StateLayout::new(state_dir);
        let trace = layout.trace();
        if !trace.is_file() {
            return Err(PageError::NotAStateDir(state_dir.to_path_buf()));
        }
        let lines = read_trace(&trace)?;
        let mut gaps = Vec::new();
        let failures = match read_bounded(&layout.state_file(), MAX_STATE_BYTES) {
            Ok(bytes) => Some(
                serde_json::from_slice::<State>(&bytes)
                    .map_err(|e| PageError::Unreadable {
                        path: layout.state_file(),
                        message: e.to_string(),
                    })?
                    .failures,
            ),
            Err(error) => {
                gaps.push(format!(
                    "state.json cannot be read ({error}): failures are shown from the trace, without their diffs"
                ));
                None
            }
        };
        let report_path = state_dir.join("report.json");
        let report = match std::fs::read(&report_path) {
            Ok(bytes) => Some(serde_json::from_slice::<Report>(&bytes).map_err(|e| {
                PageError::Unreadable {
                    path: report_path.clone(),
                    message: e.to_string(),
                }
            })?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                gaps.push(
                    "no report.json (the run did not end, or is still going): faults' detection is shown from the trace"
                        .into(),
                );
                None
            }
            Err(error) => {
                return Err(PageError::Unreadable {
                    path: report_path,
                    message: error.to_string(),
                });
            }
        };
        Ok(Story::from_lines(
            state_dir.to_path_buf(),
            lines,
            failures,
            report,
            gaps,
        ))
    }

    /// The story of trace `lines`: runs in order, each placed after the one before.
    pub fn from_lines(
        state_dir: PathBuf,
        lines: Vec<TraceLine>,
        failures: Option<Vec<Failure>>,
        report: Option<Report>,
        gaps: Vec<String>,
    ) -> Story {
        let mut runs: Vec<RunStory> = Vec::new();
        let run_of = |number: u32, runs: &mut Vec<RunStory>| -> usize {
            match runs.iter().position(|r| r.number == number) {
                Some(at) => at,
                None => {
                    runs.push(RunStory::new(number));
                    runs.len() - 1
                }
            }
        };
        for line in lines {
            match line {
                TraceLine::Start(start) => {
                    let at = run_of(start.run, &mut runs);
                    runs[at].start = Some(*start);
                }
                TraceLine::Action(action) => {
                    let at = run_of(action.run, &mut runs);
                    runs[at].actions.push(*action);
                }
                TraceLine::Fault(fault) => {
                    let at = run_of(fault.run, &mut runs);
                    runs[at].faults.push(*fault);
                }
                // For a replay: the page draws actions and faults.
                TraceLine::Gc(_) | TraceLine::Prune(_) => {}
            }
        }
        runs.sort_by_key(|r| r.number);
        let mut offset = 0;
        for run in &mut runs {
            run.actions.sort_by_key(|a| (a.at_ms, a.order));
            run.measure();
            run.offset_ms = offset;
            offset += run.span_ms + RUN_GAP_MS;
        }
        Story {
            state_dir,
            runs,
            failures,
            report,
            gaps,
        }
    }

    /// The length of the page's time axis.
    pub fn total_ms(&self) -> u64 {
        self.runs
            .last()
            .map_or(1, |r| r.offset_ms + r.span_ms)
            .max(1)
    }

    /// Every client any run had.
    pub fn clients(&self) -> Vec<ClientId> {
        let mut clients: BTreeSet<ClientId> = BTreeSet::new();
        for run in &self.runs {
            clients.extend(run.actions.iter().map(|a| a.client));
            if let Some(start) = &run.start {
                clients.extend((1..=start.clients).map(ClientId));
            }
        }
        clients.into_iter().collect()
    }

    /// The engine's report, if it is `run`'s.
    pub fn report_of(&self, run: u32) -> Option<&Report> {
        self.report.as_ref().filter(|r| r.run_counter == run)
    }

    /// Every action with its place on the time axis, run by run.
    pub fn actions(&self) -> impl Iterator<Item = (u64, &ActionRecord)> {
        self.runs.iter().flat_map(|run| {
            run.actions
                .iter()
                .map(move |a| (run.offset_ms + a.at_ms, a))
        })
    }

    /// Every fault that took effect, with its place on the time axis.
    pub fn faults(&self) -> impl Iterator<Item = (u64, &FaultLine)> {
        self.runs
            .iter()
            .flat_map(|run| run.faults.iter().map(move |f| (run.offset_ms + f.at_ms, f)))
    }
}
