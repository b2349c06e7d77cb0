//! The repository's files as the inspector and the data faults reach them:
//! a directory on this machine, or the storage's own API (S3, or an external
//! REST server's protocol through the server's own proxy). A file has
//! the same name either way (`data/ab/<id>`, `index/<id>`: restic's layout,
//! an object's key under the prefix), so damage recorded on one storage is
//! named as on another.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustic_core::{FileType, Id, ReadBackend, RusticError, WriteBackend};

use crate::backend::location::Secret;
use crate::backend::s3::{S3Backend, repository_path};

/// What tells that a file changed since it was last read: its length and
/// what the storage keeps cheaply besides (a file's modification time, an
/// object's ETag), so that one written again at the same length (another
/// run's fault, in a shared repository) is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub len: u64,
    stamp: Option<Stamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Modified(SystemTime),
    /// The first bytes of the BLAKE3 of the object's ETag.
    Etag([u8; 16]),
}

impl Stamp {
    fn etag(etag: &str) -> Stamp {
        let hash = blake3::hash(etag.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash.as_bytes()[..16]);
        Stamp::Etag(first)
    }
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
    /// A REST server snapstorm does not run, through the server's own port
    /// of the proxy (which adds the storage's credentials).
    Rest(RestFiles),
}

/// An external REST server's files: rustic's REST backend for the file
/// types it knows, and a plain POST for a lock, which it has no type for.
pub struct RestFiles {
    backend: Arc<dyn WriteBackend>,
    /// `http://ADDR/PATH/` of the server's own proxy port.
    base: String,
    user: String,
    password: Secret,
    client: reqwest::blocking::Client,
}

impl RestFiles {
    /// The server at `base` (`http://ADDR/PATH/`), as `user`; `backend` is
    /// rustic's REST backend on the same URL.
    pub fn new(
        backend: Arc<dyn WriteBackend>,
        base: String,
        user: &str,
        password: Secret,
    ) -> io::Result<RestFiles> {
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(io::Error::other)?;
        Ok(RestFiles {
            backend,
            base,
            user: user.to_owned(),
            password,
            client,
        })
    }

    fn post(&self, path: &str, bytes: Vec<u8>) -> io::Result<()> {
        let answer = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(self.password.expose()))
            .body(bytes)
            .send()
            .map_err(|e| io::Error::other(e.without_url()))?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(io::Error::other(format!("POST {path}: HTTP {status}"))),
        }
    }
}

/// Where a file is read and written: a directory, or an API.
enum Place<'a> {
    Dir(&'a Path),
    Api(&'a dyn WriteBackend),
}

impl std::fmt::Debug for RepoFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoFiles::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            RepoFiles::S3(backend) => f.debug_tuple("S3").field(&backend.location()).finish(),
            RepoFiles::Rest(rest) => f.debug_tuple("Rest").field(&rest.base).finish(),
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

    /// A directory, or the storage's API.
    fn place(&self) -> Place<'_> {
        match self {
            RepoFiles::Directory(dir) => Place::Dir(dir),
            RepoFiles::S3(backend) => Place::Api(backend.as_ref()),
            RepoFiles::Rest(rest) => Place::Api(rest.backend.as_ref()),
        }
    }

    /// Every file of `kind`, each with its version.
    pub fn list(&self, kind: FileType) -> io::Result<Vec<Listed>> {
        // An object's ETag tells a rewrite at the same size.
        if let RepoFiles::S3(backend) = self {
            return Ok(backend
                .list_objects(kind)
                .map_err(|e| storage_error(&e))?
                .into_iter()
                .map(|object| Listed {
                    name: object.id.to_hex().to_string(),
                    version: Version {
                        len: object.size,
                        stamp: Some(Stamp::etag(&object.etag)),
                    },
                })
                .collect());
        }
        match self.place() {
            Place::Dir(dir) => Ok(walkdir::WalkDir::new(dir.join(kind.dirname()))
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
                            stamp: meta.modified().ok().map(Stamp::Modified),
                        },
                    })
                })
                .collect()),
            // A REST server lists names and sizes only: a file written
            // again at the same length reads as the same version.
            Place::Api(api) => Ok(api
                .list_with_size(kind)
                .map_err(|e| storage_error(&e))?
                .into_iter()
                .map(|(id, size)| Listed {
                    name: id.to_hex().to_string(),
                    version: Version {
                        len: u64::from(size),
                        stamp: None,
                    },
                })
                .collect()),
        }
    }

    pub fn read(&self, kind: FileType, name: &str) -> io::Result<Vec<u8>> {
        match self.place() {
            Place::Dir(dir) => std::fs::read(Self::path(dir, kind, name)),
            Place::Api(api) => api
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
        match self.place() {
            Place::Dir(dir) => {
                let file = std::fs::File::open(Self::path(dir, kind, name))?;
                let mut bytes = vec![0; len as usize];
                file.read_exact_at(&mut bytes, u64::from(offset))?;
                Ok(bytes)
            }
            Place::Api(api) => {
                let bytes = api
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
        match self.place() {
            Place::Dir(dir) => {
                let path = Self::path(dir, kind, name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, bytes)
            }
            Place::Api(api) => api
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
            RepoFiles::Rest(rest) => rest.post(&path, bytes),
        }
    }

    pub fn remove(&self, kind: FileType, name: &str) -> io::Result<()> {
        match self.place() {
            Place::Dir(dir) => std::fs::remove_file(Self::path(dir, kind, name)),
            Place::Api(api) => api
                .remove(kind, &id_of(name)?, false)
                .map_err(|e| storage_error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_written_again_at_the_same_size_is_another_version() {
        let version = |etag: &str| Version {
            len: 10,
            stamp: Some(Stamp::etag(etag)),
        };
        assert_eq!(version("\"9e107d9d\""), version("\"9e107d9d\""));
        assert_ne!(version("\"9e107d9d\""), version("\"e4d909c2\""));
    }

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
