//! The scenarios snapstorm ships (`assets/scenarios/`): the seed's tests
//! (the seed: Kopia's robustness framework, which snapstorm re-designs).

use super::Scenario;

/// The presets, by name, with their TOML text.
pub const PRESETS: [(&str, &str); 6] = [
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
];

pub const DEFAULT_SCENARIO: &str = "randomized-small";

impl Scenario {
    pub fn presets() -> Vec<Scenario> {
        PRESETS
            .iter()
            .map(|(name, text)| Scenario::parse(name, text, name).expect("presets are valid"))
            .collect()
    }
}
