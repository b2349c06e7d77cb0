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
//! schedule = "recorded"  # start actions and faults in `order` (default "free")
//! [[clients]]            # client-1
//! draws-as = 2           # draw inputs as client-2 did (default: its own number)
//! sequence = [
//!   { action = "write-random-files", seq = 0, order = 0 },
//!   { action = "snapshot-root", seq = 3, order = 2 },
//! ]
//! [[clients]]            # client-2: plain names draw as positions 0, 1, …
//! sequence = ["run-gc"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::actions::{Action, Weights};
use super::options::ActionOptions;
use crate::faults::{FaultSpec, ScenarioFault};

/// The presets, by name, with their TOML text.
pub const PRESETS: [(&str, &str); 6] = [
    (
        "randomized-small",
        include_str!("../../assets/scenarios/randomized-small.toml"),
    ),
    (
        "many-small-files",
        include_str!("../../assets/scenarios/many-small-files.toml"),
    ),
    (
        "one-large-file",
        include_str!("../../assets/scenarios/one-large-file.toml"),
    ),
    (
        "many-small-files-across-directory-tree",
        include_str!("../../assets/scenarios/many-small-files-across-directory-tree.toml"),
    ),
    (
        "maintenance",
        include_str!("../../assets/scenarios/maintenance.toml"),
    ),
    (
        "delete-random-snapshot",
        include_str!("../../assets/scenarios/delete-random-snapshot.toml"),
    ),
];

pub const DEFAULT_SCENARIO: &str = "randomized-small";

/// The largest scenario file read. Real ones are a few hundred bytes; the
/// cap keeps `--scenario /dev/zero` (or a log file given by mistake) from
/// being read without end into memory.
pub const MAX_SCENARIO_BYTES: u64 = 4 * 1024 * 1024;

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
    /// and every fault started.
    pub clients: Vec<ClientScript>,
}

/// How the actions of fixed per-client sequences start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Every client runs its sequence as fast as it goes; faults at their times.
    #[default]
    Free,
    /// Actions and faults start in their recorded `order`: each waits until
    /// everything before it has started. Makes most races reproducible.
    Recorded,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Free => "free",
            Schedule::Recorded => "recorded",
        }
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

/// A `[[clients]]` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ClientFile {
    #[serde(default)]
    draws_as: Option<u32>,
    #[serde(default)]
    run: Option<u32>,
    sequence: Vec<StepEntry>,
}

/// A step as written: an action's name, or a table with its draw and order.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StepEntry {
    Name(Action),
    Step(ScriptStep),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ScenarioFile {
    description: String,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    clients: Vec<ClientFile>,
    #[serde(default)]
    sequence: Option<Vec<Action>>,
    #[serde(default)]
    weights: Option<Weights>,
    #[serde(default)]
    options: Option<toml::Spanned<toml::Table>>,
    #[serde(default)]
    action_options: BTreeMap<Action, toml::Spanned<toml::Table>>,
    #[serde(default)]
    faults: Vec<toml::Spanned<ScenarioFault>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "unknown scenario `{0}`: run `snapstorm scenarios` for the presets, or give the path of a TOML file"
    )]
    Unknown(String),
    #[error("{path}: cannot read scenario file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// A preset name, or else the path of a scenario file.
    pub fn resolve(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((name, text)) = PRESETS.iter().find(|(name, _)| *name == name_or_path) {
            return Scenario::parse(name, text, name);
        }
        let path = Path::new(name_or_path);
        let looks_like_path = name_or_path.contains('/') || name_or_path.ends_with(".toml");
        if !looks_like_path && !path.exists() {
            return Err(ScenarioError::Unknown(name_or_path.to_owned()));
        }
        let text = read_capped(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name_or_path.to_owned());
        Scenario::parse(&name, &text, &path.display().to_string())
    }

    /// Parses scenario TOML; `origin` names it in errors.
    pub fn parse(name: &str, text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_and_column(text, span.start))
                .unwrap_or((1, 1));
            ScenarioError::Parse {
                origin: origin.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let invalid = |message: String| ScenarioError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let base = match file.options {
            Some(table) => options_from(table.get_ref().clone(), text, table.span(), origin)?,
            None => ActionOptions::default(),
        };
        let mut action_options = BTreeMap::new();
        for (action, table) in file.action_options {
            let mut merged = toml::Table::try_from(&base).expect("options serialize to a table");
            merged.extend(table.get_ref().clone());
            let options = options_from(merged, text, table.span(), origin)?;
            action_options.insert(action, options);
        }
        let mut faults = Vec::new();
        for fault in file.faults {
            let (line, column) = line_and_column(text, fault.span().start);
            let spec = fault
                .get_ref()
                .to_spec()
                .map_err(|message| ScenarioError::Parse {
                    origin: origin.to_owned(),
                    line,
                    column,
                    message,
                })?;
            faults.push(spec);
        }
        if !file.clients.is_empty() && (file.sequence.is_some() || file.weights.is_some()) {
            return Err(invalid(
                "give either `[[clients]]` (a sequence per client) or a shared `sequence`/`[weights]`, not both".into(),
            ));
        }
        let mut clients = Vec::new();
        for (index, client) in file.clients.into_iter().enumerate() {
            let number = index + 1;
            if client.sequence.is_empty() {
                return Err(invalid(format!(
                    "client {number}: `sequence` is empty: list at least one action"
                )));
            }
            if client.draws_as == Some(0) || client.run == Some(0) {
                return Err(invalid(format!(
                    "client {number}: clients and runs are numbered from 1"
                )));
            }
            let steps = client
                .sequence
                .into_iter()
                .enumerate()
                .map(|(position, entry)| match entry {
                    StepEntry::Name(action) => ScriptStep {
                        action,
                        seq: position as u64,
                        order: None,
                    },
                    StepEntry::Step(step) => step,
                })
                .collect();
            clients.push(ClientScript {
                draws_as: client.draws_as.unwrap_or(number as u32),
                run: client.run.unwrap_or(1),
                steps,
            });
        }
        let schedule = file.schedule.unwrap_or_default();
        if schedule == Schedule::Recorded {
            check_recorded_orders(&clients, &faults).map_err(invalid)?;
        }
        let plan = match (file.sequence, file.weights) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give either `sequence` or `[weights]`, not both".into(),
                ));
            }
            (Some(sequence), None) if sequence.is_empty() => {
                return Err(invalid(
                    "`sequence` is empty: list at least one action".into(),
                ));
            }
            (Some(sequence), None) => Plan::Sequence(sequence),
            (None, Some(weights)) if weights.total() == 0 => {
                return Err(invalid(
                    "every weight is 0: give at least one action a weight".into(),
                ));
            }
            (None, Some(weights)) => Plan::Weighted(weights),
            (None, None) => Plan::Weighted(Weights::default()),
        };
        Ok(Scenario {
            name: name.to_owned(),
            description: file.description,
            plan,
            options: base,
            action_options,
            faults,
            seed: file.seed,
            schedule,
            clients,
        })
    }

    /// The scenario as a scenario file that parses back to it.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let _ = writeln!(out, "description = {}", quoted(&self.description));
        if let Some(seed) = self.seed {
            let _ = writeln!(out, "seed = {seed}");
        }
        if self.schedule != Schedule::Free {
            let _ = writeln!(out, "schedule = {}", quoted(self.schedule.name()));
        }
        if self.clients.is_empty() {
            match &self.plan {
                Plan::Sequence(actions) => {
                    let names: Vec<String> = actions.iter().map(|a| quoted(a.name())).collect();
                    let _ = writeln!(out, "sequence = [{}]", names.join(", "));
                }
                Plan::Weighted(weights) => {
                    let _ = writeln!(out, "\n[weights]");
                    for (action, weight) in &weights.0 {
                        let _ = writeln!(out, "{} = {weight}", action.name());
                    }
                }
            }
        }
        let table =
            |options: &ActionOptions| toml::to_string(options).expect("options serialize to TOML");
        let _ = write!(out, "\n[options]\n{}", table(&self.options));
        for (action, options) in &self.action_options {
            let _ = write!(
                out,
                "\n[action-options.{}]\n{}",
                action.name(),
                table(options)
            );
        }
        for (index, client) in self.clients.iter().enumerate() {
            let _ = writeln!(out, "\n[[clients]]  # client-{}", index + 1);
            if client.draws_as != index as u32 + 1 {
                let _ = writeln!(out, "draws-as = {}", client.draws_as);
            }
            if client.run != 1 {
                let _ = writeln!(out, "run = {}", client.run);
            }
            let _ = writeln!(out, "sequence = [");
            for step in &client.steps {
                let order = step
                    .order
                    .map(|o| format!(", order = {o}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {{ action = {}, seq = {}{order} }},",
                    quoted(step.action.name()),
                    step.seq
                );
            }
            let _ = writeln!(out, "]");
        }
        for fault in &self.faults {
            let entry = toml::to_string(&ScenarioFault::from_spec(fault))
                .expect("a fault serializes to TOML");
            let _ = write!(out, "\n[[faults]]\n{entry}");
        }
        out
    }

    /// The options one action runs with.
    pub fn options_for(&self, action: Action) -> &ActionOptions {
        self.action_options.get(&action).unwrap_or(&self.options)
    }

    pub fn presets() -> Vec<Scenario> {
        PRESETS
            .iter()
            .map(|(name, text)| Scenario::parse(name, text, name).expect("presets are valid"))
            .collect()
    }
}

/// On the recorded schedule every step needs its `order` and every fault
/// its `after`, each place taken once.
fn check_recorded_orders(clients: &[ClientScript], faults: &[FaultSpec]) -> Result<(), String> {
    if clients.is_empty() {
        return Err("`schedule = \"recorded\"` paces `[[clients]]` sequences; give them".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, client) in clients.iter().enumerate() {
        for step in &client.steps {
            let order = step.order.ok_or_else(|| {
                format!(
                    "client {}: on the recorded schedule every step needs its `order`, and `{}` has none",
                    index + 1,
                    step.action
                )
            })?;
            if !seen.insert(order) {
                return Err(format!(
                    "order {order} is given twice; each place is taken once"
                ));
            }
        }
    }
    for fault in faults {
        let order = fault.after.ok_or_else(|| {
            format!("on the recorded schedule every fault needs `after`, and {fault} has none")
        })?;
        if !seen.insert(order) {
            return Err(format!(
                "order {order} is given twice; each place is taken once"
            ));
        }
    }
    Ok(())
}

/// Reads a scenario file, refusing one over [`MAX_SCENARIO_BYTES`]: the
/// read stops there, so an endless source (`/dev/zero`) is never read to its end.
fn read_capped(path: &Path) -> Result<String, ScenarioError> {
    use std::io::Read;
    let read_error = |source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_SCENARIO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(ScenarioError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e})"),
        ))
    })
}

/// Options from a table; errors point at the table's place in the file.
fn options_from(
    table: toml::Table,
    text: &str,
    span: std::ops::Range<usize>,
    origin: &str,
) -> Result<ActionOptions, ScenarioError> {
    let (line, column) = line_and_column(text, span.start);
    let at = |message: String| ScenarioError::Parse {
        origin: origin.to_owned(),
        line,
        column,
        message,
    };
    let options: ActionOptions = table
        .try_into()
        .map_err(|e: toml::de::Error| at(e.message().trim().to_owned()))?;
    options.validate().map_err(|e| at(e.to_string()))?;
    Ok(options)
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses() {
        let presets = Scenario::presets();
        assert_eq!(presets.len(), PRESETS.len());
        let randomized = Scenario::resolve(DEFAULT_SCENARIO).unwrap();
        let Plan::Weighted(weights) = &randomized.plan else {
            panic!("randomized-small is weighted");
        };
        assert_eq!(weights.0[&Action::SnapshotRoot], 2);
        assert_eq!(weights.0[&Action::DeleteFiles], 1);
    }

    #[test]
    fn action_options_override_the_common_ones() {
        let tree = Scenario::resolve("many-small-files-across-directory-tree").unwrap();
        assert_eq!(
            tree.options_for(Action::WriteRandomFiles).repeat_action,
            100
        );
        assert_eq!(tree.options_for(Action::WriteRandomFiles).max_dir_depth, 15);
        assert_eq!(tree.options_for(Action::SnapshotRoot).repeat_action, 1);

        let text = "description = \"d\"\n[action-options.write-random-files]\nrepeat-actoin = 2\n";
        let err = Scenario::parse("x", text, "x.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.toml:2:1: unknown field `repeat-actoin`"),
            "{err}"
        );
    }

    #[test]
    fn faults_in_a_scenario() {
        let text = "description = \"d\"\n[[faults]]\nkind = \"network\"\nat = \"10s\"\nduration = \"20s\"\ndrop-percent = 30\n";
        let scenario = Scenario::parse("x", text, "x.toml").unwrap();
        assert_eq!(scenario.faults.len(), 1);
        assert_eq!(scenario.faults[0].network.drop_percent, 30);
        let bad = "description = \"d\"\n\n[[faults]]\nkind = \"network\"\nat = \"later\"\n";
        let err = Scenario::parse("x", bad, "x.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("x.toml:3:1: `later` is not a duration"),
            "{err}"
        );
        let unknown = "description = \"d\"\n[[faults]]\nkind = \"meteor\"\nat = \"1s\"\n";
        let err = Scenario::parse("x", unknown, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `meteor`"), "{err}");
    }

    #[test]
    fn per_client_sequences_round_trip_through_a_file() {
        let text = r#"description = "two clients"
seed = 42
schedule = "recorded"
[options]
max-file-size = "64KiB"
[action-options.write-random-files]
repeat-action = 2
[[clients]]
draws-as = 3
sequence = [
  { action = "write-random-files", seq = 4, order = 0 },
  { action = "snapshot-root", seq = 7, order = 2 },
]
[[clients]]
sequence = [{ action = "run-gc", seq = 0, order = 1 }]
[[faults]]
kind = "network"
at = "2s"
duration = "5s"
drop-percent = 30
after = 3
"#;
        let scenario = Scenario::parse("x", text, "x.toml").unwrap();
        assert_eq!(scenario.seed, Some(42));
        assert_eq!(scenario.schedule, Schedule::Recorded);
        assert_eq!(scenario.clients.len(), 2);
        assert_eq!(scenario.clients[0].draws_as, 3);
        assert_eq!(scenario.clients[1].draws_as, 2, "its own number by default");
        assert_eq!(
            scenario.clients[0].steps[1],
            ScriptStep {
                action: Action::SnapshotRoot,
                seq: 7,
                order: Some(2)
            }
        );
        assert_eq!(scenario.faults[0].after, Some(3));
        let written = scenario.to_toml();
        let again = Scenario::parse("x", &written, "x.toml").unwrap();
        assert_eq!(again, scenario, "{written}");

        let plain = "description = \"d\"\n[[clients]]\nsequence = [\"write-random-files\", \"snapshot-root\"]\n";
        let plain = Scenario::parse("x", plain, "x.toml").unwrap();
        assert_eq!(
            plain.clients[0]
                .steps
                .iter()
                .map(|s| s.seq)
                .collect::<Vec<_>>(),
            vec![0, 1],
            "plain names draw as positions"
        );
        assert_eq!(plain.schedule, Schedule::Free);
        let written = Scenario::resolve(DEFAULT_SCENARIO).unwrap().to_toml();
        let preset = Scenario::parse(DEFAULT_SCENARIO, &written, "x.toml").unwrap();
        assert_eq!(preset, Scenario::resolve(DEFAULT_SCENARIO).unwrap());
    }

    #[test]
    fn per_client_sequences_are_checked() {
        let both =
            "description = \"d\"\nsequence = [\"run-gc\"]\n[[clients]]\nsequence = [\"run-gc\"]\n";
        let err = Scenario::parse("x", both, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.toml: give either `[[clients]]`"),
            "{err}"
        );
        let unordered =
            "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [\"run-gc\"]\n";
        let err = Scenario::parse("x", unordered, "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.toml: client 1: on the recorded schedule every step needs its `order`, and `run-gc` has none"
        );
        let twice = "description = \"d\"\nschedule = \"recorded\"\n[[clients]]\nsequence = [{ action = \"run-gc\", seq = 0, order = 1 }, { action = \"run-gc\", seq = 1, order = 1 }]\n";
        let err = Scenario::parse("x", twice, "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.toml: order 1 is given twice; each place is taken once"
        );
        let empty = "description = \"d\"\n[[clients]]\nsequence = []\n";
        let err = Scenario::parse("x", empty, "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x.toml: client 1: `sequence` is empty: list at least one action"
        );
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let err = Scenario::parse(
            "x",
            "description = \"d\"\n[options]\nmax-dir-dpth = 3\n",
            "x.toml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("x.toml:2:1: unknown field `max-dir-dpth`"),
            "{text}"
        );

        let err = Scenario::parse("x", "description = 5\n", "x.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.toml:1:15: invalid type: integer `5`, expected a string"),
            "{err}"
        );

        let err = Scenario::parse(
            "x",
            "description = \"d\"\n[weights]\nsnapshot-all = 1\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.toml:3:1: unknown variant `snapshot-all`"),
            "{err}"
        );

        let err = Scenario::parse(
            "x",
            "description = \"d\"\n\n[options]\nmin-dedup-percent = 120\n",
            "x.toml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.toml:3:1: option `min-dedup-percent`: 120 is not a percentage (0..=100)"
        );

        let err = Scenario::resolve("no-such-preset").unwrap_err();
        assert!(err.to_string().contains("snapstorm scenarios"), "{err}");
    }
}
