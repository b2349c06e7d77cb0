//! The scenarios snapstorm ships (`assets/scenarios/`): the seed's tests
//! (the seed: Kopia's robustness framework, which snapstorm re-designs),
//! and the field's reported failures (`assets/scenarios/field/`), each a
//! report's fault with the clients it needs, named `field/…` after it.

use super::Scenario;

/// The presets, by name, with their TOML text: the seed's, then the field's.
pub const PRESETS: [(&str, &str); 13] = [
    (
        "randomized-small",
        include_str!("../../../assets/scenarios/randomized-small.toml"),
    ),
    (
        "many-small-files",
        include_str!("../../../assets/scenarios/many-small-files.toml"),
    ),
    (
        "one-large-file",
        include_str!("../../../assets/scenarios/one-large-file.toml"),
    ),
    (
        "many-small-files-across-directory-tree",
        include_str!("../../../assets/scenarios/many-small-files-across-directory-tree.toml"),
    ),
    (
        "maintenance",
        include_str!("../../../assets/scenarios/maintenance.toml"),
    ),
    (
        "delete-random-snapshot",
        include_str!("../../../assets/scenarios/delete-random-snapshot.toml"),
    ),
    (
        "field/restic-3023-truncated-pack",
        include_str!("../../../assets/scenarios/field/restic-3023-truncated-pack.toml"),
    ),
    (
        "field/restic-2191-empty-pack",
        include_str!("../../../assets/scenarios/field/restic-2191-empty-pack.toml"),
    ),
    (
        "field/kopia-1087-overlapping-gc",
        include_str!("../../../assets/scenarios/field/kopia-1087-overlapping-gc.toml"),
    ),
    (
        "field/restic-3646-storage-errors",
        include_str!("../../../assets/scenarios/field/restic-3646-storage-errors.toml"),
    ),
    (
        "field/rustic-docs-144-paused-backup",
        include_str!("../../../assets/scenarios/field/rustic-docs-144-paused-backup.toml"),
    ),
    (
        "field/restic-3126-stale-lock-and-unlock",
        include_str!("../../../assets/scenarios/field/restic-3126-stale-lock-and-unlock.toml"),
    ),
    (
        "field/rustic-1421-parallel-forget",
        include_str!("../../../assets/scenarios/field/rustic-1421-parallel-forget.toml"),
    ),
];

/// Where a preset comes from: `snapstorm scenarios` lists each group on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetGroup {
    /// The seed's robustness tests: no faults, every restore must verify.
    Seed,
    /// A reported failure from the field: its fault, and the failures it
    /// should explain.
    Field,
}

impl PresetGroup {
    /// The group of the preset `name` (its `field/` prefix).
    pub fn of(name: &str) -> PresetGroup {
        if name.starts_with("field/") {
            PresetGroup::Field
        } else {
            PresetGroup::Seed
        }
    }
}

pub const DEFAULT_SCENARIO: &str = "randomized-small";

impl Scenario {
    pub fn presets() -> Vec<Scenario> {
        PRESETS
            .iter()
            .map(|(name, text)| Scenario::parse(name, text, name).expect("presets are valid"))
            .collect()
    }
}
