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
//!
//! Only a crash (or `kill -9`) leaves a temp file behind. The server removes
//! those when it starts ([`Storage::remove_stale_uploads`]); a temp file is
//! held under an exclusive `flock` while its upload lives, so the start of a
//! second server on the same directory never removes a live upload.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::locks::{LockOwner, LockOwners, Stamped};
use super::resource::{FileId, FileType, RepoName};

/// Temp files of uploads in progress start with this.
const TEMP_PREFIX: &str = ".tmp-";

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

/// What [`Storage::remove_stale_uploads`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub files: u64,
    pub bytes: u64,
}

/// The directory that holds all served repositories.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    owners: Arc<LockOwners>,
}

impl Storage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Storage {
            root: root.into(),
            owners: Arc::new(LockOwners::new()),
        }
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
    /// With `lock_owner`, the file is a lock and appears with its owner
    /// recorded.
    pub async fn save<S, E>(
        &self,
        repo: &RepoName,
        target: &Path,
        expected_id: Option<&FileId>,
        lock_owner: Option<&LockOwner>,
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

        let (std_file, temp_path) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || create_held_temp(&dir))
                .await
                .map_err(io::Error::other)??
        };
        let stamped = match lock_owner {
            Some(owner) => Some((owner, self.owners.stamp(&std_file, owner)?)),
            None => None,
        };
        // Holds the temp file's flock until it has its final name, also
        // after `file` is closed.
        let held = std_file.try_clone()?;
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

        let destination = target.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), SaveError> {
            temp_path.persist_noclobber(&destination).map_err(|e| {
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    SaveError::AlreadyExists
                } else {
                    SaveError::Io(e.error)
                }
            })?;
            drop(held);
            sync_dir(&dir)?;
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        if let Some((owner, Stamped::NotSupported)) = stamped {
            self.owners.remember(target, owner);
        }
        Ok(written)
    }

    /// Who created the lock at `path` through this server, if known.
    pub fn lock_owner(&self, path: &Path) -> io::Result<Option<LockOwner>> {
        self.owners.owner(path)
    }

    /// Removes a file and makes the removal durable.
    pub fn delete(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        self.owners.forget(path);
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Removes the temp files of uploads that a crash broke off, in every
    /// repository: the root one and each `DIR/NAME/`. A temp file whose
    /// upload is still running (in another server on the same directory)
    /// is locked and left alone. What cannot be read or removed is logged
    /// and skipped: a leftover temp file wastes space but harms nothing.
    pub fn remove_stale_uploads(&self) -> Reclaimed {
        let mut reclaimed = Reclaimed::default();
        for repo in self.repositories() {
            let repo_dir = self.repo_dir(&repo);
            let mut dirs = vec![repo_dir.clone()];
            for kind in FileType::ALL {
                let type_dir = self.type_dir(&repo, kind);
                if kind == FileType::Data {
                    dirs.extend(subdirectories(&type_dir));
                }
                dirs.push(type_dir);
            }
            for dir in dirs {
                remove_stale_temps_in(&dir, &mut reclaimed);
            }
        }
        reclaimed
    }

    /// The root repository and every directory under the root named like a repository.
    fn repositories(&self) -> Vec<RepoName> {
        let mut repos = vec![RepoName::Root];
        for dir in subdirectories(&self.root) {
            let name = dir.file_name().and_then(|n| n.to_str());
            if let Some(repo) = name.and_then(RepoName::from_segment) {
                repos.push(repo);
            }
        }
        repos
    }
}

/// Creates a temp file for an upload in `dir`, locked for as long as the
/// returned file (or a clone of it) is open.
fn create_held_temp(dir: &Path) -> io::Result<(std::fs::File, tempfile::TempPath)> {
    let (file, path) = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?
        .into_parts();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    // A server starting on this directory may have removed the file in the
    // instant between its creation and the lock: then it is not ours to use.
    let (ours, named) = (file.metadata()?, std::fs::symlink_metadata(&path)?);
    if (ours.dev(), ours.ino()) != (named.dev(), named.ino()) {
        return Err(io::Error::other(
            "upload temp file removed by a starting server; try again",
        ));
    }
    Ok((file, path))
}

/// Removes the unlocked temp files directly in `dir`.
fn remove_stale_temps_in(dir: &Path, reclaimed: &mut Reclaimed) {
    let entries = match read_dir_if_present(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(target: "snapstorm::server", dir = %dir.display(), %error, "cannot look for stale uploads");
            return;
        }
    };
    for entry in entries.flatten() {
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TEMP_PREFIX));
        if !is_temp || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match remove_if_unlocked(&path) {
            Ok(Some(bytes)) => {
                reclaimed.files += 1;
                reclaimed.bytes += bytes;
            }
            Ok(None) => {
                tracing::debug!(target: "snapstorm::server", path = %path.display(), "upload in progress; kept");
            }
            Err(error) => {
                tracing::warn!(target: "snapstorm::server", path = %path.display(), %error, "cannot remove stale upload");
            }
        }
    }
}

/// Removes a temp file unless its upload holds it; its size if removed.
fn remove_if_unlocked(path: &Path) -> io::Result<Option<u64>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let bytes = file.metadata()?.len();
    std::fs::remove_file(path)?;
    Ok(Some(bytes))
}

/// The directories directly under `dir` (following symlinks); none if unreadable.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect()
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
