//! Scenarios: which actions a client takes (by weight, or a fixed sequence)
//! and with which options. The seed's tests ship as presets in
//! `assets/scenarios/`; a user can pass a TOML file of the same form:
//!
//! ```toml
//! description = "what this scenario exercises"
//! # either a fixed sequence, repeated …
//! sequence = ["write-random-files", "snapshot-root", "restore-random-snapID"]
//! # … or weights (actions left out have weight 0)
//! [weights]
//! snapshot-root = 2
//! [options]
//! max-file-size = "64MiB"
//! # options for one action only, over `[options]`
//! [action-options.write-random-files]
//! repeat-action = 100
//! # faults to inject (see `snapstorm faults`)
//! [[faults]]
//! kind = "server-restart"
//! at = "20s"
//! duration = "5s"
//! ```
//!
//! Instead of a shared `sequence` or `[weights]`, a scenario can give each
//! client its own fixed sequence, run once (what `snapstorm shrink` writes):
//!
//! ```toml
//! description = "two clients, each its own actions"
//! seed = 42              # the seed their inputs are drawn from (unless --seed)
//! schedule = "recorded"  # start in `order`, each `at-ms` apart as recorded (default "free")
//! [[clients]]            # client-1
//! draws-as = 2           # draw inputs as client-2 did (default: its own number)
//! sequence = [
//!   { action = "write-random-files", seq = 0, order = 0, at-ms = 0 },
//!   { action = "snapshot-root", seq = 3, order = 2, at-ms = 1480 },
//! ]
//! [[clients]]            # client-2: plain names draw as positions 0, 1, …
//! sequence = ["run-gc"]
//! [[gcs]]                # a GC outside every client's stream (the console's `g`)
//! at = "1.2s"            # when it started in the recording
//! after = 1              # its place on the recorded schedule
//! ```

mod file;
mod presets;

pub use presets::{DEFAULT_SCENARIO, PRESETS, PresetGroup};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::actions::{Action, Weights};
use super::options::ActionOptions;
use crate::faults::FaultSpec;

/// The largest scenario file read. Real ones are a few hundred bytes; the
/// cap keeps `--scenario /dev/zero` (or a log file given by mistake) from
/// being read without end into memory.
pub use crate::engine::input::MAX_SCENARIO_BYTES;

/// How a client chooses its next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Weighted(Weights),
    /// The same actions in order, over and over.
    Sequence(Vec<Action>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub plan: Plan,
    pub options: ActionOptions,
    /// Options of single actions that differ from `options`.
    pub action_options: BTreeMap<Action, ActionOptions>,
    /// Faults to inject (`[[faults]]`).
    pub faults: Vec<FaultSpec>,
    /// The seed the scenario was recorded with; `--seed` overrides it.
    pub seed: Option<u64>,
    /// How fixed per-client sequences are paced (`schedule`).
    pub schedule: Schedule,
    /// Fixed per-client sequences (`[[clients]]`), run once each; when
    /// given, `plan` is unused and the run ends when every client is done
    /// and every fault and GC started.
    pub clients: Vec<ClientScript>,
    /// GCs of the repository outside every client's stream (`[[gcs]]`):
    /// a recorded run's GCs asked for by hand, run again at their places.
    pub gcs: Vec<PlannedGc>,
    /// `[repository]`: where the repository under test lives; the command
    /// line's `--repository` wins. Kept as written: the front end parses it.
    pub repository: Option<ScenarioRepository>,
}

/// A GC asked for outside every client's stream (the console's `g`), as
/// a replay runs it again: the server's GC, as a `run-gc` action runs it,
/// but in no client's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedGc {
    /// When it started in the recording; on the free schedule, when it starts.
    pub at: std::time::Duration,
    /// Its place on the recorded schedule (see [`FaultSpec::after`]).
    pub after: Option<u64>,
    /// Unused data deleted at once, not after the usual delay.
    pub aggressive: bool,
}

/// A scenario file's `[repository]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScenarioRepository {
    /// As `--repository` writes it (`rest:http://HOST:PORT/PATH`, a directory).
    pub location: String,
    /// As `--repository-credentials`: a file holding `USER:PASSWORD`.
    #[serde(default)]
    pub credentials: Option<std::path::PathBuf>,
    /// As `--cacert`: files of PEM certificates to trust for an https
    /// location.
    #[serde(default)]
    pub cacert: Vec<std::path::PathBuf>,
}

/// How the actions of fixed per-client sequences start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Every client runs its sequence as fast as it goes; faults at their times.
    #[default]
    Free,
    /// Actions and faults start in their recorded `order`: each waits until
    /// everything before it has started, and no longer.
    Order,
    /// In their recorded `order`, and each no sooner after the start before
    /// it than in the recording (`at-ms`): a prune that began 3 s after a
    /// snapshot began does so again, whatever was left out between them.
    /// A step without `at-ms` keeps only its order.
    Recorded,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Free => "free",
            Schedule::Order => "order",
            Schedule::Recorded => "recorded",
        }
    }

    /// Whether steps and faults wait for their place (`order`, `after`).
    pub fn keeps_order(self) -> bool {
        self != Schedule::Free
    }

    /// Whether a place also waits out its recorded gap to the one before.
    pub fn keeps_gaps(self) -> bool {
        self == Schedule::Recorded
    }
}

/// One action of a client's fixed sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScriptStep {
    pub action: Action,
    /// The position in the client's recorded stream whose inputs it draws
    /// (file names, sizes, dedup shares, which snapshot): a step kept alone
    /// draws what it drew in the whole run.
    pub seq: u64,
    /// Its place in the recorded order in which actions and faults start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u64>,
    /// When it started in the recording, in ms on the run's clock (as the
    /// trace's `at_ms`): the recorded schedule keeps the gaps between starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// A restore's or delete's snapshot, by the `seq` of the step in the
    /// same stream that made it: a replay picks that snapshot while it is
    /// live, whichever others a shrunk run has (a random draw among other
    /// snapshots would pick another one), and draws only once it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picks: Option<u64>,
}

/// One client's fixed sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientScript {
    /// Inputs are drawn as this client's were in the recording.
    pub draws_as: u32,
    /// … in this run of the recorded state dir.
    pub run: u32,
    pub steps: Vec<ScriptStep>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "unknown scenario `{0}`: run `snapstorm scenarios` for the presets, or give the path of a TOML file"
    )]
    Unknown(String),
    #[error("cannot read the scenario file: {0}")]
    Read(#[source] crate::engine::input::InputError),
    #[error(
        "{path}: a scenario file is at most {} MiB, and this one is larger; give a scenario TOML file",
        MAX_SCENARIO_BYTES / (1024 * 1024)
    )]
    TooLarge { path: PathBuf },
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Scenario {
    /// The options one action runs with.
    pub fn options_for(&self, action: Action) -> &ActionOptions {
        self.action_options.get(&action).unwrap_or(&self.options)
    }

    /// Whether a client may take `action` of its own accord (weighted above
    /// zero, in the sequence, or in a client's script); a fault may still
    /// queue it.
    pub fn may_take(&self, action: Action) -> bool {
        let planned = match &self.plan {
            Plan::Weighted(weights) => weights.0.get(&action).is_some_and(|w| *w > 0),
            Plan::Sequence(actions) => actions.contains(&action),
        };
        planned
            || self
                .clients
                .iter()
                .any(|script| script.steps.iter().any(|step| step.action == action))
    }
}

#[cfg(test)]
mod tests;
