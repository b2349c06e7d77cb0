//! What snapstorm writes where a person tells it to (`--report`, `shrink
//! -o`, `--into`): checked before anything runs. An output never lands in a
//! state dir snapstorm is using (its `state.json`, trace and repository are
//! what later runs stand on), never replaces what is not a regular file — a
//! character device or a FIFO is written into, as the person means, other
//! kinds are refused — and a write that fails is an error, never a silent
//! success.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::UsageError;
use crate::engine::store::write_durably;

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A regular file, replaced whole (temp file, fsync, rename).
    File(PathBuf),
    /// A character device or a FIFO, written into.
    Stream(PathBuf),
}

impl Output {
    pub fn path(&self) -> &Path {
        match self {
            Output::File(path) | Output::Stream(path) => path,
        }
    }

    /// Writes `bytes` there.
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::File(path) => write_durably(path, bytes),
            Output::Stream(path) => {
                let mut stream = std::fs::OpenOptions::new().write(true).open(path)?;
                stream.write_all(bytes)?;
                stream.flush()
            }
        }
    }
}

/// `path` as the file system will see it: symlinks and `..` resolved as
/// far as the path exists.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => resolved(parent).join(name),
        _ => absolute,
    }
}

/// Whether `path` is `dir` or lies inside it.
pub fn inside(path: &Path, dir: &Path) -> bool {
    resolved(path).starts_with(resolved(dir))
}

/// Refuses an output `option` names when it lands in one of the state dirs
/// snapstorm is using.
fn outside_state_dirs(option: &str, path: &Path, state_dirs: &[&Path]) -> Result<(), UsageError> {
    match state_dirs.iter().find(|dir| inside(path, dir)) {
        Some(dir) => Err(UsageError(format!(
            "{option} {}: that is inside the state dir {}, whose files snapstorm keeps (state.json, the trace, the repository); write it elsewhere",
            path.display(),
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// A file `option` is to write: its directory exists, it is not in a state
/// dir snapstorm is using, and it is a regular file (or none yet), a
/// character device or a FIFO.
pub fn check_file(option: &str, path: &Path, state_dirs: &[&Path]) -> Result<Output, UsageError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(UsageError(format!(
            "{option} {}: directory {} does not exist; create it or write the file elsewhere",
            path.display(),
            parent.display()
        )));
    }
    outside_state_dirs(option, path, state_dirs)?;
    let kind = match std::fs::metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(_) => return Ok(Output::File(path.to_path_buf())),
    };
    let refused = |what: &str| {
        Err(UsageError(format!(
            "{option} {}: is {what}; give a file name",
            path.display()
        )))
    };
    if kind.is_file() {
        Ok(Output::File(path.to_path_buf()))
    } else if kind.is_char_device() || kind.is_fifo() {
        Ok(Output::Stream(path.to_path_buf()))
    } else if kind.is_dir() {
        refused("a directory")
    } else if kind.is_block_device() {
        refused("a block device")
    } else {
        refused("a socket")
    }
}

/// A directory `option` names to make state dirs in: it exists, and it is
/// not in a state dir snapstorm is using.
pub fn check_dir(option: &str, dir: &Path, state_dirs: &[&Path]) -> Result<(), UsageError> {
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "{option} {}: no such directory; create it or leave {option} out",
            dir.display()
        )));
    }
    outside_state_dirs(option, dir, state_dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_checked_by_what_they_are_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("state.json"), "{}").unwrap();
        let report = dir.path().join("r.json");
        assert_eq!(
            check_file("--report", &report, &[&state]).unwrap(),
            Output::File(report.clone())
        );
        assert!(check_file("--report", &state.join("state.json"), &[&state]).is_err());
        assert!(
            check_file("--report", &state.join("new.json"), &[&state]).is_err(),
            "nothing new inside it either"
        );
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(state.join("state.json"), &link).unwrap();
        assert!(
            check_file("--report", &link, &[&state]).is_err(),
            "{link:?}"
        );
        let sneaky = dir
            .path()
            .join("x")
            .join("..")
            .join("state")
            .join("trace.jsonl");
        std::fs::create_dir(dir.path().join("x")).unwrap();
        assert!(check_file("--report", &sneaky, &[&state]).is_err());
        assert_eq!(
            check_file("--report", Path::new("/dev/null"), &[&state]).unwrap(),
            Output::Stream("/dev/null".into())
        );
        assert!(check_file("--report", dir.path(), &[]).is_err());
        let full = check_file("--report", Path::new("/dev/full"), &[]).unwrap();
        assert!(full.write(b"x").is_err(), "a full device is an error");
        assert!(check_dir("--into", &state, &[&state]).is_err());
        assert!(check_dir("--into", dir.path(), &[&state]).is_ok());
    }
}
