//! Action options: the named keys of the seed (Kopia's robustness framework,
//! which snapstorm re-designs), with laptop-sized defaults.
//!
//! | key | default | seed default |
//! |---|---|---|
//! | `max-dir-depth` | 3 | 20 |
//! | `min-file-size` | 4 KiB | 4 KiB |
//! | `max-file-size` | 1 MiB | 1 GiB |
//! | `min-num-files-per-write` | 1 | 1 |
//! | `max-num-files-per-write` | 100 | 10000 |
//! | `min-dedup-percent` / `max-dedup-percent` / `dedup-percent-step` | 0 / 100 / 25 | same |
//! | `io-limit-per-write` | 0 (none) | 0 |
//! | `free-space-limit` | 100 MiB | 100 MiB |
//! | `delete-contents-percent` | 20 | 20 |
//! | `repeat-action` | 1 | 1 |

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Every option an action reads. Scenario files set them under `[options]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ActionOptions {
    /// Files are written, and directories deleted, at a depth in `1..=max-dir-depth`.
    pub max_dir_depth: u32,
    /// File sizes are drawn log-uniformly between these bounds, so small and
    /// large files are both common.
    pub min_file_size: ByteSize,
    pub max_file_size: ByteSize,
    pub min_num_files_per_write: u32,
    pub max_num_files_per_write: u32,
    /// Share of each written file that repeats content shared by all
    /// clients, so the repository has something to deduplicate.
    pub min_dedup_percent: u8,
    pub max_dedup_percent: u8,
    pub dedup_percent_step: u8,
    /// Stop a write once this many bytes were written (0: no limit).
    pub io_limit_per_write: ByteSize,
    /// Below this much free disk, the engine recovers before writing more.
    pub free_space_limit: ByteSize,
    /// `delete-files` removes each entry of the chosen directory with this probability.
    pub delete_contents_percent: u8,
    /// How many times one chosen action is carried out.
    pub repeat_action: u32,
    /// Which prune the Server runs as GC (a run-wide choice: `[options]` only).
    #[serde(skip_serializing_if = "GcTool::is_default")]
    pub gc: GcTool,
}

/// The prune a Server runs as GC. The engine only carries the choice; the
/// backend decides whether it can (`restic` needs the restic binary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GcTool {
    /// rustic_core's prune, without locks.
    #[default]
    Rustic,
    /// `restic prune`, with restic's exclusive lock.
    Restic,
}

impl GcTool {
    fn is_default(&self) -> bool {
        *self == GcTool::default()
    }
}

impl Default for ActionOptions {
    fn default() -> Self {
        ActionOptions {
            max_dir_depth: 3,
            min_file_size: ByteSize::kib(4),
            max_file_size: ByteSize::mib(1),
            min_num_files_per_write: 1,
            max_num_files_per_write: 100,
            min_dedup_percent: 0,
            max_dedup_percent: 100,
            dedup_percent_step: 25,
            io_limit_per_write: ByteSize::b(0),
            free_space_limit: ByteSize::mib(100),
            delete_contents_percent: 20,
            repeat_action: 1,
            gc: GcTool::Rustic,
        }
    }
}

/// The deepest tree a write may build. Each level adds a 13-byte directory
/// name (`dir-xxxxxxxx/`) to every path, and Linux refuses paths longer than
/// 4096 bytes: 200 levels take 2600, leaving room for the state directory's
/// own path, the scratch directory restores go to and a file name. Deeper
/// trees would fail on snapstorm's own file system, never in the repository.
pub const MAX_DIR_DEPTH: u32 = 200;

/// An option value that cannot work, naming the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option `{key}`: {problem}")]
pub struct OptionError {
    pub key: &'static str,
    pub problem: String,
}

impl ActionOptions {
    /// Checks bounds that serde cannot: ranges the right way round, percentages.
    pub fn validate(&self) -> Result<(), OptionError> {
        let fail = |key, problem: String| Err(OptionError { key, problem });
        if self.max_dir_depth == 0 {
            return fail("max-dir-depth", "must be at least 1".into());
        }
        if self.max_dir_depth > MAX_DIR_DEPTH {
            return fail(
                "max-dir-depth",
                format!(
                    "{} is deeper than paths on this machine allow; give at most {MAX_DIR_DEPTH} (each level adds 13 bytes to paths of at most 4096)",
                    self.max_dir_depth
                ),
            );
        }
        if self.min_file_size > self.max_file_size {
            return fail(
                "min-file-size",
                format!(
                    "{} is larger than max-file-size {}",
                    self.min_file_size, self.max_file_size
                ),
            );
        }
        if self.min_num_files_per_write > self.max_num_files_per_write {
            return fail(
                "min-num-files-per-write",
                format!(
                    "{} is larger than max-num-files-per-write {}",
                    self.min_num_files_per_write, self.max_num_files_per_write
                ),
            );
        }
        for (key, value) in [
            ("min-dedup-percent", self.min_dedup_percent),
            ("max-dedup-percent", self.max_dedup_percent),
            ("delete-contents-percent", self.delete_contents_percent),
        ] {
            if value > 100 {
                return fail(key, format!("{value} is not a percentage (0..=100)"));
            }
        }
        if self.min_dedup_percent > self.max_dedup_percent {
            return fail(
                "min-dedup-percent",
                "is larger than max-dedup-percent".into(),
            );
        }
        if self.dedup_percent_step == 0 {
            return fail("dedup-percent-step", "must be at least 1".into());
        }
        if self.repeat_action == 0 {
            return fail("repeat-action", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_kebab_case() {
        ActionOptions::default().validate().unwrap();
        let parsed: ActionOptions =
            toml::from_str("max-file-size = \"64MiB\"\nmax-dir-depth = 7\n").unwrap();
        assert_eq!(parsed.max_file_size, ByteSize::mib(64));
        assert_eq!(parsed.max_dir_depth, 7);
        assert_eq!(parsed.min_file_size, ByteSize::kib(4));
    }

    #[test]
    fn inconsistent_options_name_the_key() {
        let options = ActionOptions {
            min_num_files_per_write: 5,
            max_num_files_per_write: 2,
            ..ActionOptions::default()
        };
        assert_eq!(
            options.validate().unwrap_err().to_string(),
            "option `min-num-files-per-write`: 5 is larger than max-num-files-per-write 2"
        );
        let too_deep = ActionOptions {
            max_dir_depth: 100_000,
            ..ActionOptions::default()
        };
        assert!(
            too_deep
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("option `max-dir-depth`: 100000 is deeper than paths on this machine allow; give at most 200"),
        );
        let unknown = toml::from_str::<ActionOptions>("max-file-sise = 3\n").unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("unknown field `max-file-sise`"),
            "{unknown}"
        );
    }
}
