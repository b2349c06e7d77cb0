//! The action trace: one JSON object per line, written as each action ends,
//! so that a run can be followed (and replayed) from its state directory.
//!
//! A line is written whole or not at all: a write that fails half-way (a
//! full disk) is cut back to the end of the last whole line, so the trace
//! never holds a torn line that would hide the lines after it. A trace that
//! cannot be written stops the run (see [`crate::engine::Engine::halted`]):
//! a run that cannot be followed or replayed is not worth going on with.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::input::{MAX_TRACE_BYTES, MAX_TRACE_LINE_BYTES, read_lines_bounded};
use super::record::ActionRecord;
use super::traits::ClientId;
use crate::faults::FaultKind;

/// The first line of each run: everything a replay needs besides the
/// actions and faults that follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStartLine {
    pub time: String,
    pub run: u32,
    /// Always `true`: marks the line as a run's start.
    pub start: bool,
    pub seed: u64,
    pub scenario: String,
    /// The whole scenario, as a scenario file.
    pub scenario_toml: String,
    pub clients: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_per_client: Option<u64>,
    /// The faults planned, as `--fault` takes them.
    #[serde(default)]
    pub faults: Vec<String>,
}

/// A fault that took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultLine {
    pub time: String,
    pub run: u32,
    /// Its label (`aggressive-gc@20.0s`).
    pub fault: String,
    pub kind: FaultKind,
    pub target: String,
    pub client: Option<ClientId>,
    pub duration_ms: Option<u64>,
    /// As `--fault` takes it, with every setting (`network@10s:20s,latency=…`);
    /// absent for faults that did not come through the run (the console's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// Milliseconds into the run.
    #[serde(default)]
    pub at_ms: u64,
    /// Its place in the order in which actions and faults started.
    #[serde(default)]
    pub order: u64,
}

/// A GC asked for outside every client's stream (the console's `g`): no
/// action records it, so this line does, for a replay to run it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcLine {
    pub time: String,
    pub run: u32,
    /// Always `true`: marks the line as such a GC.
    pub gc: bool,
    /// Unused data deleted at once.
    pub aggressive: bool,
    /// Milliseconds into the run.
    pub at_ms: u64,
    /// Its place in the order in which actions, faults and GCs started.
    pub order: u64,
}

/// One line of a trace, read back.
/// What an aggressive GC fault's prune met of the backups beside it (see
/// [`crate::engine::traits::GcDone`]): when it listed the packs and was
/// done, and the packs of running backups it removed. A replay finds the backup it
/// raced from them, and races it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneLine {
    pub time: String,
    pub run: u32,
    /// The fault's label (`aggressive-gc@30.0s`).
    pub prune: String,
    /// When it listed the packs, in milliseconds into the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_ms: Option<u64>,
    /// When it was done (its old index files and packs removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    #[serde(default)]
    pub raced: Vec<RacedAt>,
}

/// One pack a backup stored that a GC raced: by whom, and when (the
/// storage took it), in milliseconds into the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RacedAt {
    pub client: ClientId,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TraceLine {
    Start(Box<RunStartLine>),
    Action(Box<ActionRecord>),
    Fault(Box<FaultLine>),
    Gc(Box<GcLine>),
    Prune(Box<PruneLine>),
}

/// A trace that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum TraceReadError {
    #[error("cannot read the action trace: {0}")]
    Io(#[from] crate::engine::input::InputError),
    #[error("{path}:{line}: not a trace line: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads every line of the trace at `path`.
pub fn read_trace(path: &Path) -> Result<Vec<TraceLine>, TraceReadError> {
    let text = read_lines_bounded(path, MAX_TRACE_BYTES, MAX_TRACE_LINE_BYTES)?;
    let mut lines = Vec::new();
    for (index, line) in text.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TraceReadError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let parsed = if value.get("start").is_some() {
            serde_json::from_value(value).map(|l| TraceLine::Start(Box::new(l)))
        } else if value.get("fault").is_some() {
            serde_json::from_value(value).map(|l| TraceLine::Fault(Box::new(l)))
        } else if value.get("gc").is_some() {
            serde_json::from_value(value).map(|l| TraceLine::Gc(Box::new(l)))
        } else if value.get("prune").is_some() {
            serde_json::from_value(value).map(|l| TraceLine::Prune(Box::new(l)))
        } else {
            serde_json::from_value(value).map(|l| TraceLine::Action(Box::new(l)))
        };
        lines.push(parsed.map_err(|e| bad(e.to_string()))?);
    }
    Ok(lines)
}

/// The trace could not be written: snapstorm's own problem, never the repository's.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write the action trace {path}: {source}; free space on its file system (or make it writable) and give the same --state-dir again to resume"
)]
pub struct TraceError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

#[derive(Debug)]
struct TraceFile {
    file: File,
    /// Length up to the end of the last whole line.
    len: u64,
}

#[derive(Debug)]
pub struct Trace {
    path: PathBuf,
    out: Mutex<TraceFile>,
}

impl Trace {
    /// Appends to `path`: a resumed run continues the same trace. Created
    /// readable by its owner only: it names every file and snapshot. A last
    /// line torn by a crash (no newline at its end) is cut off first, so
    /// every line of the trace stays a whole JSON object.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)?;
        cut_torn_tail(&file)?;
        let len = file.metadata()?.len();
        Ok(Trace {
            path: path.to_path_buf(),
            out: Mutex::new(TraceFile { file, len }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line, whole or not at all (a crash loses at most the line being written).
    pub fn write(&self, record: &impl Serialize) -> Result<(), TraceError> {
        let fail = |source| TraceError {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(record).map_err(|e| fail(io::Error::other(e)))?;
        line.push(b'\n');
        let mut out = self.out.lock().expect("trace lock");
        match out.file.write_all(&line) {
            Ok(()) => {
                out.len += line.len() as u64;
                Ok(())
            }
            Err(error) => {
                // Shrinking needs no space: cut the torn part away.
                let len = out.len;
                if let Err(cut) = out.file.set_len(len) {
                    tracing::error!(path = %self.path.display(), %cut, "cannot cut a torn line from the trace");
                }
                Err(fail(error))
            }
        }
    }
}

/// Truncates `file` after its last newline, if anything follows it.
fn cut_torn_tail(file: &File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut reader = file;
    // Lines are short; look back far enough to find the last newline.
    let mut back = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(back);
        reader.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail)?;
        if tail.last() == Some(&b'\n') {
            return Ok(());
        }
        match tail.iter().rposition(|&b| b == b'\n') {
            Some(at) => {
                let keep = start + at as u64 + 1;
                tracing::warn!(
                    cut = len - keep,
                    "the trace's last line was torn (a crash); cut off"
                );
                return file.set_len(keep);
            }
            None if start == 0 => {
                tracing::warn!(
                    cut = len,
                    "the trace held only a torn line (a crash); cut off"
                );
                return file.set_len(0);
            }
            None => back *= 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_trace_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.jsonl");
        Trace::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn a_write_that_fails_names_the_trace_and_leaves_no_torn_line() {
        // /dev/full refuses every write with ENOSPC, as a full disk does.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let trace = Trace::open(&path).unwrap();
        let error = trace.write(&serde_json::json!({"b": 2})).unwrap_err();
        assert_eq!(error.source.raw_os_error(), Some(28), "{error}");
        assert!(
            error.to_string().starts_with(&format!(
                "cannot write the action trace {}: No space left on device",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_torn_last_line_is_cut_and_whole_lines_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let trace = Trace::open(&path).unwrap();
        trace.write(&serde_json::json!({"d": 4})).unwrap();
        drop(trace);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n{\"d\":4}\n");

        std::fs::write(&path, "{\"torn").unwrap();
        drop(Trace::open(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");

        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        drop(Trace::open(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
    }
}
