//! Fingerprints of directory trees: what a snapshot captured, and what a
//! restore gave back.
//!
//! An entry records what a backup tool promises to preserve: relative path,
//! type, size, permission bits, content hash (BLAKE3) and symlink target.
//! Modification times are recorded but only compared when asked for; the
//! sizes of directories are filesystem details and never recorded.
//!
//! Hashing dominates the cost, so files are hashed in parallel on all cores,
//! and a large file is memory-mapped and hashed by several threads at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Files at least this large are hashed with all cores via a memory map.
const PARALLEL_HASH_THRESHOLD: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices: recorded by type only.
    Other,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    /// Content length for files, 0 for everything else.
    pub size: u64,
    /// Permission bits (`0o7777`); 0 for symlinks, whose mode means nothing on Linux.
    pub mode: u32,
    /// BLAKE3 of the content, hex, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Link target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// What to compare beyond content, type and permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Compare modification times of files and symlinks.
    #[serde(default)]
    pub mtimes: bool,
}

/// A whole tree: relative path (with `/` separators) to entry. The root
/// directory itself is not an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FingerprintError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FingerprintError {
    fn at(path: &Path, source: std::io::Error) -> Self {
        FingerprintError {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Fingerprint {
    /// Walks `root` and fingerprints everything under it. A missing root is
    /// an empty tree (a client that never wrote has nothing to capture).
    pub fn of_tree(root: &Path) -> Result<Self, FingerprintError> {
        if !root.exists() {
            return Ok(Fingerprint::default());
        }
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(root).to_path_buf();
                FingerprintError {
                    path,
                    source: e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("walk failed")),
                }
            })?;
            found.push(entry.into_path());
        }
        let entries = found
            .par_iter()
            .map(|path| {
                let relative = path
                    .strip_prefix(root)
                    .expect("walk stays under its root")
                    .to_string_lossy()
                    .into_owned();
                describe(path).map(|entry| (relative, entry))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok(Fingerprint { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many regular files it holds.
    pub fn file_count(&self) -> u64 {
        self.entries
            .values()
            .filter(|e| e.kind == EntryKind::File)
            .count() as u64
    }

    /// Total bytes of file content.
    pub fn content_bytes(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }

    /// How `actual` differs from `self` (the expected tree).
    pub fn diff(&self, actual: &Fingerprint, options: CompareOptions) -> TreeDiff {
        let mut diff = TreeDiff::default();
        for (path, expected) in &self.entries {
            match actual.entries.get(path) {
                None => diff.missing.push(path.clone()),
                Some(got) => {
                    if let Some(what) = difference(expected, got, options) {
                        diff.changed.push(Change {
                            path: path.clone(),
                            what,
                        });
                    }
                }
            }
        }
        diff.extra = actual
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
            .cloned()
            .collect();
        diff
    }
}

fn describe(path: &Path) -> Result<Entry, FingerprintError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| FingerprintError::at(path, e))?;
    let file_type = meta.file_type();
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let mode = meta.permissions().mode() & 0o7777;
    let entry = if file_type.is_file() {
        Entry {
            kind: EntryKind::File,
            size: meta.len(),
            mode,
            hash: Some(hash_file(path, meta.len())?),
            target: None,
            mtime_ns,
        }
    } else if file_type.is_dir() {
        Entry {
            kind: EntryKind::Dir,
            size: 0,
            mode,
            hash: None,
            target: None,
            mtime_ns,
        }
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| FingerprintError::at(path, e))?;
        Entry {
            kind: EntryKind::Symlink,
            size: 0,
            mode: 0,
            hash: None,
            target: Some(target.to_string_lossy().into_owned()),
            mtime_ns,
        }
    } else {
        Entry {
            kind: EntryKind::Other,
            size: 0,
            mode,
            hash: None,
            target: None,
            mtime_ns,
        }
    };
    Ok(entry)
}

/// BLAKE3 of a file's content, hex.
pub fn hash_file(path: &Path, len: u64) -> Result<String, FingerprintError> {
    let mut hasher = blake3::Hasher::new();
    if len >= PARALLEL_HASH_THRESHOLD {
        hasher
            .update_mmap_rayon(path)
            .map_err(|e| FingerprintError::at(path, e))?;
    } else {
        let content = std::fs::read(path).map_err(|e| FingerprintError::at(path, e))?;
        hasher.update(&content);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn difference(expected: &Entry, got: &Entry, options: CompareOptions) -> Option<String> {
    if expected.kind != got.kind {
        return Some(format!("type {:?} became {:?}", expected.kind, got.kind));
    }
    if expected.size != got.size {
        return Some(format!("size {} became {}", expected.size, got.size));
    }
    if expected.hash != got.hash {
        return Some("content differs".to_owned());
    }
    if expected.target != got.target {
        return Some(format!(
            "link target {:?} became {:?}",
            expected.target.as_deref().unwrap_or(""),
            got.target.as_deref().unwrap_or("")
        ));
    }
    if expected.mode != got.mode {
        return Some(format!("mode {:o} became {:o}", expected.mode, got.mode));
    }
    if options.mtimes && expected.kind != EntryKind::Dir && expected.mtime_ns != got.mtime_ns {
        return Some(format!(
            "mtime {} became {}",
            expected.mtime_ns, got.mtime_ns
        ));
    }
    None
}

/// One entry present on both sides but different.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub what: String,
}

/// The difference between an expected and an actual tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDiff {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub changed: Vec<Change>,
}

impl TreeDiff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }

    /// One line: the counts and the first offending path.
    pub fn summary(&self) -> String {
        let first = self
            .missing
            .first()
            .map(|p| format!("missing {p}"))
            .or_else(|| self.extra.first().map(|p| format!("extra {p}")))
            .or_else(|| {
                self.changed
                    .first()
                    .map(|c| format!("{}: {}", c.path, c.what))
            });
        format!(
            "{} missing, {} extra, {} changed{}",
            self.missing.len(),
            self.extra.len(),
            self.changed.len(),
            first.map(|f| format!(" (first: {f})")).unwrap_or_default()
        )
    }

    /// Several lines: the summary and up to `limit` entries of each kind.
    pub fn render(&self, limit: usize) -> String {
        let mut out = self.summary();
        let mut section = |title: &str, lines: Vec<String>| {
            if lines.is_empty() {
                return;
            }
            let _ = write!(out, "\n{title} ({}):", lines.len());
            for line in lines.iter().take(limit) {
                let _ = write!(out, "\n  {line}");
            }
            if lines.len() > limit {
                let _ = write!(out, "\n  … and {} more", lines.len() - limit);
            }
        };
        section("missing", self.missing.clone());
        section("extra", self.extra.clone());
        section(
            "changed",
            self.changed
                .iter()
                .map(|c| format!("{}: {}", c.path, c.what))
                .collect(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/one.txt"), b"one").unwrap();
        std::fs::write(dir.path().join("a/b/two.bin"), vec![2u8; 5 * 1024 * 1024]).unwrap();
        symlink("one.txt", dir.path().join("a/link")).unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        dir
    }

    #[test]
    fn identical_trees_have_no_diff() {
        let dir = tree();
        let a = Fingerprint::of_tree(dir.path()).unwrap();
        let b = Fingerprint::of_tree(dir.path()).unwrap();
        assert!(a.diff(&b, CompareOptions::default()).is_empty());
        assert_eq!(a.len(), 6);
        assert_eq!(a.entries["a/link"].target.as_deref(), Some("one.txt"));
        assert_eq!(
            a.entries["a/b/two.bin"].hash.as_deref(),
            Some(blake3::hash(&vec![2u8; 5 * 1024 * 1024]).to_hex().as_str())
        );
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let dir = tree();
        let before = Fingerprint::of_tree(dir.path()).unwrap();
        std::fs::write(dir.path().join("a/one.txt"), b"ONE").unwrap();
        std::fs::remove_dir(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("new"), b"").unwrap();
        std::fs::set_permissions(
            dir.path().join("a/b"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("a/link")).unwrap();
        symlink("elsewhere", dir.path().join("a/link")).unwrap();
        let after = Fingerprint::of_tree(dir.path()).unwrap();
        let diff = before.diff(&after, CompareOptions::default());
        assert_eq!(diff.missing, vec!["empty"]);
        assert_eq!(diff.extra, vec!["new"]);
        let changed: Vec<_> = diff
            .changed
            .iter()
            .map(|c| (c.path.as_str(), c.what.as_str()))
            .collect();
        assert_eq!(
            changed,
            vec![
                ("a/b", "mode 755 became 700"),
                ("a/link", "link target \"one.txt\" became \"elsewhere\""),
                ("a/one.txt", "content differs"),
            ]
        );
        assert_eq!(
            diff.summary(),
            "1 missing, 1 extra, 3 changed (first: missing empty)"
        );
        let rendered = diff.render(10);
        assert!(
            rendered.contains("changed (3):\n  a/b: mode 755 became 700"),
            "{rendered}"
        );
    }

    #[test]
    fn missing_root_is_an_empty_tree() {
        let fp = Fingerprint::of_tree(Path::new("/nonexistent/snapstorm")).unwrap();
        assert!(fp.is_empty());
    }
}
