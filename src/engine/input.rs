//! Reading what a person or an earlier run left (a scenario file, a state
//! dir's `state.json`, fingerprints and trace): regular files only, and
//! never more than a bound, so a link to `/dev/zero` or a FIFO is refused
//! at once instead of growing memory or waiting for ever.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// The most a scenario file may hold.
pub const MAX_SCENARIO_BYTES: u64 = 4 * 1024 * 1024;
/// The most a `state.json` may hold (a long soak's failures included).
pub const MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;
/// The most one fingerprint may hold (a million files' entries).
pub const MAX_FINGERPRINT_BYTES: u64 = 512 * 1024 * 1024;
/// The most a trace may hold, and one line of it.
pub const MAX_TRACE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
pub const MAX_TRACE_LINE_BYTES: u64 = 4 * 1024 * 1024;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: is {kind}, not a regular file; give the file itself")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path}: larger than {max} bytes, more than snapstorm reads of it")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}:{line}: a line longer than {max} bytes, more than snapstorm reads")]
    LineTooLong {
        path: PathBuf,
        line: usize,
        max: u64,
    },
}

impl InputError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
        move |source| InputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the file is simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, InputError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Opens `path` for reading if it is a regular file (after symlinks).
fn open_regular(path: &Path) -> Result<std::fs::File, InputError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path)
        .map_err(InputError::io(path))?
        .file_type();
    let not = |kind| {
        Err(InputError::NotAFile {
            path: path.to_path_buf(),
            kind,
        })
    };
    if kind.is_fifo() {
        return not("a FIFO");
    }
    if kind.is_char_device() || kind.is_block_device() {
        return not("a device");
    }
    if kind.is_dir() {
        return not("a directory");
    }
    if !kind.is_file() {
        return not("a socket");
    }
    std::fs::File::open(path).map_err(InputError::io(path))
}

/// The whole of a regular file of at most `max` bytes; the read stops there.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, InputError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::io(path))?;
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

/// The lines of a regular text file, each at most `max_line` bytes, all
/// together at most `max` bytes.
pub fn read_lines_bounded(path: &Path, max: u64, max_line: u64) -> Result<Vec<String>, InputError> {
    let file = open_regular(path)?;
    let mut reader = std::io::BufReader::new(file.take(max + 1));
    let mut lines = Vec::new();
    let mut total = 0u64;
    loop {
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(max_line + 1)
            .read_until(b'\n', &mut line)
            .map_err(InputError::io(path))?;
        if read == 0 {
            return Ok(lines);
        }
        total += read as u64;
        if total > max {
            return Err(InputError::TooLarge {
                path: path.to_path_buf(),
                max,
            });
        }
        if line.last() != Some(&b'\n') && read as u64 > max_line {
            return Err(InputError::LineTooLong {
                path: path.to_path_buf(),
                line: lines.len() + 1,
                max: max_line,
            });
        }
        let text = String::from_utf8(line).map_err(|e| InputError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        lines.push(text.trim_end_matches(['\n', '\r']).to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_and_never_more_than_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "one\ntwo\n").unwrap();
        assert_eq!(read_bounded(&file, 8).unwrap(), b"one\ntwo\n");
        assert!(matches!(
            read_bounded(&file, 7),
            Err(InputError::TooLarge { .. })
        ));
        assert_eq!(read_lines_bounded(&file, 100, 4).unwrap(), ["one", "two"]);
        assert!(matches!(
            read_lines_bounded(&file, 100, 2),
            Err(InputError::LineTooLong { line: 1, .. })
        ));
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_bounded(&zero, 8),
            Err(InputError::NotAFile {
                kind: "a device",
                ..
            })
        ));
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            read_lines_bounded(&fifo, 8, 8),
            Err(InputError::NotAFile { kind: "a FIFO", .. })
        ));
        assert!(
            read_bounded(&dir.path().join("none"), 8)
                .unwrap_err()
                .is_not_found()
        );
    }
}
