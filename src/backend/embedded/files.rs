//! The repository's files as the inspector and the data faults reach them:
//! a directory on this machine, or the storage's own API (S3). A file has
//! the same name either way (`data/ab/<id>`, `index/<id>`: restic's layout,
//! an object's key under the prefix), so damage recorded on one storage is
//! named as on another.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustic_core::{FileType, Id, ReadBackend, RusticError, WriteBackend};

use crate::backend::s3::{S3Backend, repository_path};

/// What tells that a file changed since it was last read: its length and,
/// where the storage keeps it cheaply, its modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub len: u64,
    modified: Option<SystemTime>,
}

/// One file a listing found.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub version: Version,
}

/// Where the repository's files are.
pub enum RepoFiles {
    /// A directory on this machine.
    Directory(PathBuf),
    /// S3 storage, reached through its API with the storage's own keys.
    S3(Arc<S3Backend>),
}

impl std::fmt::Debug for RepoFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoFiles::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            RepoFiles::S3(backend) => f.debug_tuple("S3").field(&backend.location()).finish(),
        }
    }
}

/// A storage's error as an I/O error: "not found" where the storage
/// answered 404, so a file a GC removed meanwhile reads as gone.
fn storage_error(error: &RusticError) -> io::Error {
    let kind = match super::errors::http_answer(error) {
        Some(Some(404)) => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error.display_log())
}

fn id_of(name: &str) -> io::Result<Id> {
    name.parse::<Id>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: not an id")))
}

impl RepoFiles {
    fn path(dir: &Path, kind: FileType, name: &str) -> PathBuf {
        dir.join(repository_path(kind, name))
    }

    /// Every file of `kind`, each with its version.
    pub fn list(&self, kind: FileType) -> io::Result<Vec<Listed>> {
        match self {
            RepoFiles::Directory(dir) => Ok(walkdir::WalkDir::new(dir.join(kind.dirname()))
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| {
                    // A file gone between the listing and its metadata is not listed.
                    let meta = e.metadata().ok()?;
                    Some(Listed {
                        name: e.file_name().to_string_lossy().into_owned(),
                        version: Version {
                            len: meta.len(),
                            modified: meta.modified().ok(),
                        },
                    })
                })
                .collect()),
            RepoFiles::S3(backend) => Ok(backend
                .list_with_size(kind)
                .map_err(|e| storage_error(&e))?
                .into_iter()
                .map(|(id, size)| Listed {
                    name: id.to_hex().to_string(),
                    version: Version {
                        len: u64::from(size),
                        modified: None,
                    },
                })
                .collect()),
        }
    }

    pub fn read(&self, kind: FileType, name: &str) -> io::Result<Vec<u8>> {
        match self {
            RepoFiles::Directory(dir) => std::fs::read(Self::path(dir, kind, name)),
            RepoFiles::S3(backend) => backend
                .read_full(kind, &id_of(name)?)
                .map(|bytes| bytes.to_vec())
                .map_err(|e| storage_error(&e)),
        }
    }

    /// `len` bytes at `offset`.
    pub fn read_at(
        &self,
        kind: FileType,
        name: &str,
        offset: u32,
        len: u32,
    ) -> io::Result<Vec<u8>> {
        match self {
            RepoFiles::Directory(dir) => {
                let file = std::fs::File::open(Self::path(dir, kind, name))?;
                let mut bytes = vec![0; len as usize];
                file.read_exact_at(&mut bytes, u64::from(offset))?;
                Ok(bytes)
            }
            RepoFiles::S3(backend) => {
                let bytes = backend
                    .read_partial(kind, &id_of(name)?, false, offset, len)
                    .map_err(|e| storage_error(&e))?;
                if bytes.len() != len as usize {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: shorter than asked", repository_path(kind, name)),
                    ));
                }
                Ok(bytes.to_vec())
            }
        }
    }

    /// Writes the file `name` of `kind` (a new one, or over an old one).
    pub fn write(&self, kind: FileType, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        match self {
            RepoFiles::Directory(dir) => {
                let path = Self::path(dir, kind, name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, bytes)
            }
            RepoFiles::S3(backend) => backend
                .write_bytes(kind, &id_of(name)?, false, bytes.into())
                .map_err(|e| storage_error(&e)),
        }
    }

    /// Writes a lock (`locks/<name>`), which rustic_core has no type for:
    /// restic's clients take them.
    pub fn write_lock(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        let path = format!("locks/{name}");
        match self {
            RepoFiles::Directory(dir) => {
                std::fs::create_dir_all(dir.join("locks"))?;
                std::fs::write(dir.join(path), bytes)
            }
            RepoFiles::S3(backend) => backend
                .write_other(&path, bytes)
                .map_err(|e| storage_error(&e)),
        }
    }

    pub fn remove(&self, kind: FileType, name: &str) -> io::Result<()> {
        match self {
            RepoFiles::Directory(dir) => std::fs::remove_file(Self::path(dir, kind, name)),
            RepoFiles::S3(backend) => backend
                .remove(kind, &id_of(name)?, false)
                .map_err(|e| storage_error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_lists_reads_writes_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let files = RepoFiles::Directory(dir.path().to_owned());
        let id = "cd34".repeat(16);
        files
            .write(FileType::Pack, &id, b"0123456789".to_vec())
            .unwrap();
        assert!(dir.path().join("data/cd").join(&id).is_file());
        let listed = files.list(FileType::Pack).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].name.as_str(), listed[0].version.len),
            (id.as_str(), 10)
        );
        assert_eq!(files.read_at(FileType::Pack, &id, 3, 4).unwrap(), b"3456");
        files.remove(FileType::Pack, &id).unwrap();
        let gone = files.read(FileType::Pack, &id).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
        assert!(files.list(FileType::Pack).unwrap().is_empty());
    }
}
