//! A scenario as a TOML file: read (capped in size, every error naming
//! its line and the fix), checked, and written back (what `shrink` writes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use super::presets::PRESETS;
use super::{
    ClientScript, MAX_SCENARIO_BYTES, Plan, PlannedGc, Scenario, ScenarioError, ScenarioRepository,
    Schedule, ScriptStep,
};
use crate::engine::MAX_CLIENTS;
use crate::engine::actions::{Action, Weights};
use crate::engine::options::ActionOptions;
use crate::faults::{FaultSpec, RacedStep, ScenarioFault};

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
#[derive(Debug)]
enum StepEntry {
    Name(Action),
    Step(ScriptStep),
}

/// What a step that names no action says, with the actions there are.
fn unknown_action(name: &str) -> String {
    let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    format!(
        "unknown action `{name}` in a sequence; the actions are {}",
        known.join(", ")
    )
}

impl<'de> Deserialize<'de> for StepEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(name) => Action::parse(&name)
                .map(StepEntry::Name)
                .ok_or_else(|| D::Error::custom(unknown_action(&name))),
            toml::Value::Table(table) => {
                if let Some(toml::Value::String(name)) = table.get("action")
                    && Action::parse(name).is_none()
                {
                    return Err(D::Error::custom(unknown_action(name)));
                }
                ScriptStep::deserialize(table)
                    .map(StepEntry::Step)
                    .map_err(|e| D::Error::custom(format!("a step: {}", e.message())))
            }
            other => Err(D::Error::custom(format!(
                "a step is an action's name or a table {{ action = …, seq = …, order = … }}, not a {}",
                other.type_str()
            ))),
        }
    }
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
    #[serde(default)]
    gcs: Vec<GcEntry>,
    #[serde(default)]
    repository: Option<ScenarioRepository>,
}

/// A `[[gcs]]` entry of a scenario file.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct GcEntry {
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    aggressive: bool,
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
        let mut gcs = Vec::new();
        for gc in file.gcs {
            let at = crate::faults::parse_time(&gc.at)
                .map_err(|message| invalid(format!("a GC's `at`: {message}")))?;
            gcs.push(PlannedGc {
                at,
                after: gc.after,
                aggressive: gc.aggressive,
            });
        }
        if !file.clients.is_empty() && (file.sequence.is_some() || file.weights.is_some()) {
            return Err(invalid(
                "give either `[[clients]]` (a sequence per client) or a shared `sequence`/`[weights]`, not both".into(),
            ));
        }
        if file.clients.len() > MAX_CLIENTS as usize {
            return Err(invalid(format!(
                "{} `[[clients]]` sequences: a run takes at most {MAX_CLIENTS} clients, as --clients does",
                file.clients.len()
            )));
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
                        at_ms: None,
                        picks: None,
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
        let longest = crate::faults::MAX_TIME.as_millis();
        if let Some(step) = clients
            .iter()
            .flat_map(|c: &ClientScript| &c.steps)
            .find(|s| s.at_ms.is_some_and(|ms| u128::from(ms) > longest))
        {
            return Err(invalid(format!(
                "`{}`: at-ms = {} is later than a year, the longest snapstorm takes",
                step.action,
                step.at_ms.unwrap_or_default()
            )));
        }
        if let Some((fault, race)) = faults
            .iter()
            .find_map(|f| Some((f, f.races?)))
            .filter(|(_, race)| !names_a_backup(&clients, *race))
        {
            return Err(invalid(format!(
                "{fault}: `races = \"{race}\"` names client-{}'s step of seq {}, and the scenario's client {} has no `snapshot-root` step of that seq; give the seq of one of its snapshot steps, or drop `races`",
                race.client, race.seq, race.client
            )));
        }
        let schedule = file.schedule.unwrap_or_default();
        if schedule.keeps_order() {
            check_recorded_orders(schedule, &clients, &faults, &gcs).map_err(invalid)?;
        } else if let Some(fault) = faults.iter().find(|f| f.after.is_some()) {
            return Err(invalid(format!(
                "{fault}: `after` places a fault on the recorded schedule, and this scenario's schedule is free; give `schedule = \"recorded\"` or drop `after`"
            )));
        } else if gcs.iter().any(|gc| gc.after.is_some()) {
            return Err(invalid(
                "a GC's `after` places it on the recorded schedule, and this scenario's schedule is free; give `schedule = \"recorded\"` or drop `after`".into(),
            ));
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
            gcs,
            repository: file.repository,
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
                let at = step
                    .at_ms
                    .map(|ms| format!(", at-ms = {ms}"))
                    .unwrap_or_default();
                let picks = step
                    .picks
                    .map(|seq| format!(", picks = {seq}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {{ action = {}, seq = {}{order}{at}{picks} }},",
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
        for gc in &self.gcs {
            let entry = toml::to_string(&GcEntry {
                at: crate::faults::compact_duration(gc.at),
                after: gc.after,
                aggressive: gc.aggressive,
            })
            .expect("a GC serializes to TOML");
            let _ = write!(out, "\n[[gcs]]\n{entry}");
        }
        out
    }
}

/// Whether `race` names a snapshot step of the scenario's sequences: a
/// race is with a backup.
fn names_a_backup(clients: &[ClientScript], race: RacedStep) -> bool {
    (race.client as usize)
        .checked_sub(1)
        .and_then(|index| clients.get(index))
        .is_some_and(|client| {
            client
                .steps
                .iter()
                .any(|s| s.seq == race.seq && s.action == Action::SnapshotRoot)
        })
}

/// On the recorded schedule every step needs its `order` and every fault
/// and GC its `after`, each place taken once.
fn check_recorded_orders(
    schedule: Schedule,
    clients: &[ClientScript],
    faults: &[FaultSpec],
    gcs: &[PlannedGc],
) -> Result<(), String> {
    if clients.is_empty() {
        return Err(format!(
            "`schedule = \"{}\"` paces `[[clients]]` sequences; give them",
            schedule.name()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, client) in clients.iter().enumerate() {
        let mut before: Option<(u64, Action)> = None;
        for (position, step) in client.steps.iter().enumerate() {
            let order = step.order.ok_or_else(|| {
                format!(
                    "client {}: on the {} schedule every step needs its `order`, and `{}` has none",
                    index + 1,
                    schedule.name(),
                    step.action
                )
            })?;
            if !seen.insert(order) {
                return Err(format!(
                    "order {order} is given twice; each place is taken once"
                ));
            }
            // A client runs its steps one after another: a step placed
            // before the one ahead of it would wait for a turn that the
            // step ahead holds, for ever.
            if let Some((previous, action)) = before
                && order < previous
            {
                return Err(format!(
                    "client {}: step {} (`{}`, order {order}) comes after `{action}` (order {previous}) in its sequence but before it on the schedule, so it could never start; give orders that rise along each sequence",
                    index + 1,
                    position + 1,
                    step.action
                ));
            }
            before = Some((order, step.action));
        }
    }
    let last = seen.last().copied().unwrap_or(0);
    // Faults and GCs take places too: after the last step, one each.
    let planned = faults.len() + gcs.len();
    let room = last + planned as u64;
    for fault in faults {
        let order = fault.after.ok_or_else(|| {
            format!(
                "on the {} schedule every fault needs `after`, and {fault} has none",
                schedule.name()
            )
        })?;
        if order > room {
            return Err(format!(
                "{fault}: `after = {order}` names a place the schedule does not have (its steps take places up to {last}, and its {planned} fault(s) and GC(s) as many after); give an `after` from 0 to {room}"
            ));
        }
        if !seen.insert(order) {
            return Err(format!(
                "order {order} is given twice; each place is taken once"
            ));
        }
    }
    for gc in gcs {
        let at = crate::faults::compact_duration(gc.at);
        let order = gc.after.ok_or_else(|| {
            format!(
                "on the {} schedule every GC needs `after`, and the GC at {at} has none",
                schedule.name()
            )
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
    use crate::engine::input::{InputError, read_bounded};
    let bytes = read_bounded(path, MAX_SCENARIO_BYTES).map_err(|e| match e {
        InputError::TooLarge { path, .. } => ScenarioError::TooLarge { path },
        other => ScenarioError::Read(other),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        ScenarioError::Read(InputError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text ({e})"),
            ),
        })
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
