//! The action trace: one JSON object per line, written as each action ends,
//! so that a run can be followed (and replayed) from its state directory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug)]
pub struct Trace {
    out: Mutex<BufWriter<File>>,
}

impl Trace {
    /// Appends to `path`: a resumed run continues the same trace. A last
    /// line torn by a crash (no newline at its end) is cut off first, so
    /// every line of the trace stays a whole JSON object.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        cut_torn_tail(&file)?;
        Ok(Trace {
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Writes one line and flushes it, so a crash loses at most the line being written.
    pub fn write(&self, record: &impl Serialize) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut out = self.out.lock().expect("trace lock");
        out.write_all(&line)?;
        out.flush()
    }
}

/// Truncates `file` after its last newline, if anything follows it.
fn cut_torn_tail(file: &File) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
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
