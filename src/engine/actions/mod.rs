//! The actions a client can take, by their user-facing names, how one is
//! picked by weight, and what each does: one file per family, each a part
//! of the [`Engine`]'s work (`snapshot`, `restore`, `delete`, `gc`,
//! `write`, `verify`), returning a [`Step`] the engine records.

mod delete;
mod gc;
mod restore;
mod snapshot;
mod step;
mod verify;
mod write;

use std::collections::BTreeMap;
use std::fmt;

use rand::RngExt;
use serde::{Deserialize, Serialize};

pub(super) use step::{Found, Step};

use super::checker::RestoreAttempt;
use super::exec::Engine;
use super::options::ActionOptions;
use super::record::ActionParams;
use super::store::SnapshotRecord;
use super::traits::{ActionRng, ClientId, SnapshotId};
use step::writer_step;

/// The snapshot `params` prefers, if it is among `live`.
fn preferred(params: &ActionParams, live: &[SnapshotRecord]) -> Option<SnapshotId> {
    let id = params.prefer.as_ref()?;
    live.iter().any(|s| &s.id == id).then(|| id.clone())
}

impl Engine {
    /// One repetition of `action` for `client`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
        &self,
        client: ClientId,
        action: Action,
        params: &ActionParams,
        options: &ActionOptions,
        rng: &mut ActionRng,
        attempt: RestoreAttempt,
        origin: Origin,
    ) -> Step {
        match action {
            Action::SnapshotRoot => self.snapshot_root(client, params),
            Action::RestoreRandomSnapshot | Action::RestoreIntoDataDir => {
                self.restore(client, params, rng, action, attempt, origin)
            }
            Action::DeleteRandomSnapshot => self.delete_random_snapshot(client, params, rng),
            Action::ForgetSnapshots => self.forget_snapshots(client),
            Action::RunGc => self.run_gc(),
            Action::WriteRandomFiles => self.write_random_files(client, options, rng),
            Action::DeleteRandomSubdirectory => {
                writer_step(self.writer.delete_random_subdirectory(client, options, rng))
            }
            Action::DeleteFiles => writer_step(self.writer.delete_directory_contents(
                client,
                options,
                options.delete_contents_percent,
                rng,
            )),
            Action::VerifyRepo => self.verify_repo(client, origin),
        }
    }
}
/// One kind of action. The names are those of the seed (Kopia's robustness
/// framework, which snapstorm re-designs), kebab-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// Snapshot the client's data dir (or `sub-path`) and record its fingerprint.
    #[serde(rename = "snapshot-root")]
    SnapshotRoot,
    /// Restore `snapshot-ID` or a random live snapshot into scratch and verify it.
    #[serde(rename = "restore-random-snapID")]
    RestoreRandomSnapshot,
    /// Delete a random live snapshot, never the last one.
    #[serde(rename = "delete-random-snapID")]
    DeleteRandomSnapshot,
    /// Forget every live snapshot but the newest by policy, as `forget
    /// --keep-last 1` does (reading every snapshot the repository lists).
    #[serde(rename = "forget-snapshots")]
    ForgetSnapshots,
    /// Garbage-collect the repository, through the Server.
    #[serde(rename = "run-gc")]
    RunGc,
    /// Write random files at a random depth under a random branch.
    #[serde(rename = "write-random-files")]
    WriteRandomFiles,
    /// Remove a random directory at a random depth.
    #[serde(rename = "delete-random-subdirectory")]
    DeleteRandomSubdirectory,
    /// Remove each entry of a random directory with `delete-contents-percent`.
    #[serde(rename = "delete-files")]
    DeleteFiles,
    /// Restore a snapshot over the live data dir and verify it.
    #[serde(rename = "restore-into-data-dir")]
    RestoreIntoDataDir,
    /// Run the backend's full repository check (reads all data).
    #[serde(rename = "verify-repo")]
    VerifyRepo,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::SnapshotRoot,
        Action::RestoreRandomSnapshot,
        Action::DeleteRandomSnapshot,
        Action::ForgetSnapshots,
        Action::RunGc,
        Action::WriteRandomFiles,
        Action::DeleteRandomSubdirectory,
        Action::DeleteFiles,
        Action::RestoreIntoDataDir,
        Action::VerifyRepo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::SnapshotRoot => "snapshot-root",
            Action::RestoreRandomSnapshot => "restore-random-snapID",
            Action::DeleteRandomSnapshot => "delete-random-snapID",
            Action::ForgetSnapshots => "forget-snapshots",
            Action::RunGc => "run-gc",
            Action::WriteRandomFiles => "write-random-files",
            Action::DeleteRandomSubdirectory => "delete-random-subdirectory",
            Action::DeleteFiles => "delete-files",
            Action::RestoreIntoDataDir => "restore-into-data-dir",
            Action::VerifyRepo => "verify-repo",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the action talks to the repository at all (the others touch
    /// only the client's own data directory).
    pub fn touches_repository(self) -> bool {
        !matches!(
            self,
            Action::WriteRandomFiles | Action::DeleteRandomSubdirectory | Action::DeleteFiles
        )
    }

    /// Whether the action reads data the repository holds (packs, indexes,
    /// trees), so that damage to that data can make it fail. Deleting a
    /// snapshot only reads and removes snapshot files.
    pub fn reads_data(self) -> bool {
        self.touches_repository()
            && !matches!(self, Action::DeleteRandomSnapshot | Action::ForgetSnapshots)
    }

    /// The seed's default weights: all 1, except the data-dir restore (and
    /// the full repository check, which reads everything), and the forget
    /// by policy, which is not the seed's (its runs delete one at a time).
    pub fn default_weight(self) -> u32 {
        match self {
            Action::RestoreIntoDataDir | Action::VerifyRepo | Action::ForgetSnapshots => 0,
            _ => 1,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an incident (a failure or an error) was found: an action, or one
/// of the checks that compare the repository's listing with the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Action(Action),
    /// The listing check before the first action of a run.
    StartupCheck,
    /// The checks after the last action: restores that had ended in errors,
    /// the full repository check, the listing check.
    FinalCheck,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Action(action) => action.name(),
            Origin::StartupCheck => "startup-check",
            Origin::FinalCheck => "final-check",
        }
    }

    pub fn parse(name: &str) -> Option<Origin> {
        match name {
            "startup-check" => Some(Origin::StartupCheck),
            "final-check" => Some(Origin::FinalCheck),
            _ => Action::parse(name).map(Origin::Action),
        }
    }

    /// The listing checks read the repository's snapshot list.
    pub fn touches_repository(self) -> bool {
        match self {
            Origin::Action(action) => action.touches_repository(),
            Origin::StartupCheck | Origin::FinalCheck => true,
        }
    }

    /// The final checks read every snapshot that had to be restored again
    /// and, after damage, all data; the start-up check reads only the list.
    pub fn reads_data(self) -> bool {
        match self {
            Origin::Action(action) => action.reads_data(),
            Origin::FinalCheck => true,
            Origin::StartupCheck => false,
        }
    }
}

impl From<Action> for Origin {
    fn from(action: Action) -> Self {
        Origin::Action(action)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Origin::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown origin `{name}`")))
    }
}

/// Relative weights; an action missing from the table has weight 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Weights(pub BTreeMap<Action, u32>);

impl Default for Weights {
    fn default() -> Self {
        Weights(
            Action::ALL
                .into_iter()
                .filter(|a| a.default_weight() > 0)
                .map(|a| (a, a.default_weight()))
                .collect(),
        )
    }
}

impl Weights {
    pub fn total(&self) -> u64 {
        self.0.values().map(|&w| u64::from(w)).sum()
    }

    /// Picks an action with probability proportional to its weight.
    pub fn pick(&self, rng: &mut ActionRng) -> Option<Action> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let mut ticket = rng.random_range(0..total);
        for (&action, &weight) in &self.0 {
            if ticket < u64::from(weight) {
                return Some(action);
            }
            ticket -= u64::from(weight);
        }
        unreachable!("ticket is below the total of the weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.name()), Some(action));
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.name()));
        }
        assert_eq!(Action::parse("snapshot-everything"), None);
    }

    /// With a fixed seed, 60 000 picks land within 2 % (relative) of each weight's share.
    #[test]
    fn weights_pick_proportionally() {
        let weights = Weights(BTreeMap::from([
            (Action::SnapshotRoot, 2),
            (Action::RestoreRandomSnapshot, 2),
            (Action::DeleteRandomSnapshot, 1),
            (Action::WriteRandomFiles, 2),
            (Action::DeleteRandomSubdirectory, 1),
            (Action::DeleteFiles, 1),
            (Action::RunGc, 0),
        ]));
        let mut rng = ActionRng::seed_from_u64(11);
        let draws = 60_000u32;
        let mut counts: BTreeMap<Action, u32> = BTreeMap::new();
        for _ in 0..draws {
            *counts.entry(weights.pick(&mut rng).unwrap()).or_default() += 1;
        }
        assert_eq!(counts.get(&Action::RunGc), None, "weight 0 is never picked");
        for (action, weight) in &weights.0 {
            let expected = f64::from(draws) * f64::from(*weight) / weights.total() as f64;
            let got = f64::from(counts.get(action).copied().unwrap_or(0));
            if expected > 0.0 {
                let off = (got - expected).abs() / expected;
                assert!(off < 0.02, "{action}: expected ~{expected}, got {got}");
            }
        }
    }

    #[test]
    fn origins_round_trip_by_name() {
        for origin in Action::ALL
            .into_iter()
            .map(Origin::Action)
            .chain([Origin::StartupCheck, Origin::FinalCheck])
        {
            let json = serde_json::to_string(&origin).unwrap();
            assert_eq!(serde_json::from_str::<Origin>(&json).unwrap(), origin);
        }
        assert!(!Origin::Action(Action::WriteRandomFiles).touches_repository());
        assert!(Origin::Action(Action::DeleteRandomSnapshot).touches_repository());
        assert!(!Origin::Action(Action::DeleteRandomSnapshot).reads_data());
        assert!(!Origin::StartupCheck.reads_data());
    }

    #[test]
    fn no_weights_picks_nothing() {
        let mut rng = ActionRng::seed_from_u64(1);
        assert_eq!(Weights(BTreeMap::new()).pick(&mut rng), None);
    }
}
