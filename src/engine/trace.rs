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
    /// Appends to `path`: a resumed run continues the same trace.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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
