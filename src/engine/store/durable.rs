//! Writes a reader never sees half of: temp file, fsync, rename, fsync the directory.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` atomically and durably with `bytes`.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A bare file name's parent is the empty path: the working directory.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// A fresh random password: the repository's, and each REST user's.
pub fn random_password() -> String {
    use rand::RngExt;
    let bytes: [u8; 24] = rand::rng().random();
    hex::encode(bytes)
}
