//! Repositories on disk, in restic's local layout: `config`, `keys/`,
//! `locks/`, `snapshots/`, `index/` and `data/XX/` (the first two hex digits
//! of the id). The same directory can be opened directly by a local restic or
//! rustic client, which is how the Server runs GC while it keeps serving.
//!
//! Writes are atomic and durable: the body streams into a hidden temp file in
//! the target directory, is fsynced, and is linked into place only if no file
//! of that name exists; then the directory is fsynced. A body that breaks off
//! leaves nothing behind, because the temp file is removed when its guard is
//! dropped — also when the request future is dropped mid-upload.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::resource::{FileId, FileType, RepoName};

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedFile {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("file already exists")]
    AlreadyExists,
    #[error("repository does not exist")]
    NoRepository,
    #[error("upload broke off: {0}")]
    Body(String),
    #[error("content does not match its id (SHA-256 {actual})")]
    HashMismatch { actual: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The directory that holds all served repositories.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Storage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one repository (the root repository is the data dir itself).
    pub fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        match repo {
            RepoName::Root => self.root.clone(),
            RepoName::Named(name) => self.root.join(name),
        }
    }

    pub fn config_path(&self, repo: &RepoName) -> PathBuf {
        self.repo_dir(repo).join("config")
    }

    pub fn type_dir(&self, repo: &RepoName, kind: FileType) -> PathBuf {
        self.repo_dir(repo).join(kind.dir_name())
    }

    pub fn file_path(&self, repo: &RepoName, kind: FileType, id: &FileId) -> PathBuf {
        let dir = self.type_dir(repo, kind);
        match kind {
            FileType::Data => dir.join(&id.as_str()[..2]).join(id.as_str()),
            _ => dir.join(id.as_str()),
        }
    }

    /// A repository exists once its folder layout was created (restic `init`).
    pub fn repo_exists(&self, repo: &RepoName) -> bool {
        self.type_dir(repo, FileType::Keys).is_dir()
    }

    /// Creates the folder layout of a repository; existing folders are kept.
    pub fn create_repo(&self, repo: &RepoName) -> io::Result<()> {
        let dir = self.repo_dir(repo);
        std::fs::create_dir_all(&dir)?;
        for kind in FileType::ALL {
            std::fs::create_dir_all(self.type_dir(repo, kind))?;
        }
        let data = self.type_dir(repo, FileType::Data);
        for prefix in 0..=255u8 {
            std::fs::create_dir_all(data.join(format!("{prefix:02x}")))?;
        }
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Lists the files of one type; `None` if the repository does not exist.
    /// Only names that are valid ids are listed, so temp files never show.
    pub fn list(&self, repo: &RepoName, kind: FileType) -> io::Result<Option<Vec<ListedFile>>> {
        if !self.repo_exists(repo) {
            return Ok(None);
        }
        let dir = self.type_dir(repo, kind);
        let mut files = Vec::new();
        if kind == FileType::Data {
            for sub in read_dir_if_present(&dir)? {
                let sub = sub?;
                if sub.file_type()?.is_dir() {
                    collect_ids(&sub.path(), &mut files)?;
                }
            }
        } else {
            collect_ids(&dir, &mut files)?;
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(files))
    }

    /// Streams `body` into `target` atomically. With `expected_id`, the
    /// content's SHA-256 must equal it (restic names files by their hash).
    pub async fn save<S, E>(
        &self,
        repo: &RepoName,
        target: &Path,
        expected_id: Option<&FileId>,
        body: S,
    ) -> Result<u64, SaveError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if !self.repo_exists(repo) {
            return Err(SaveError::NoRepository);
        }
        if tokio::fs::try_exists(target).await? {
            return Err(SaveError::AlreadyExists);
        }
        let dir = target
            .parent()
            .expect("repository files live in a directory")
            .to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;

        let temp = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)
            })
            .await
            .map_err(io::Error::other)??
        };
        let (std_file, temp_path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = expected_id.map(|_| Sha256::new());
        let mut written = 0u64;

        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| SaveError::Body(e.to_string()))?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);

        if let (Some(h), Some(id)) = (hasher, expected_id) {
            let actual = hex::encode(h.finalize());
            if actual != id.as_str() {
                return Err(SaveError::HashMismatch { actual });
            }
        }

        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), SaveError> {
            temp_path.persist_noclobber(&target).map_err(|e| {
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    SaveError::AlreadyExists
                } else {
                    SaveError::Io(e.error)
                }
            })?;
            sync_dir(&dir)?;
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        Ok(written)
    }

    /// Removes a file and makes the removal durable.
    pub fn delete(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

fn read_dir_if_present(
    dir: &Path,
) -> io::Result<Box<dyn Iterator<Item = io::Result<std::fs::DirEntry>>>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Box::new(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

fn collect_ids(dir: &Path, out: &mut Vec<ListedFile>) -> io::Result<()> {
    for entry in read_dir_if_present(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if FileId::parse(name).is_none() {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            out.push(ListedFile {
                name: name.to_owned(),
                size: meta.len(),
            });
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
