//! Who created each lock file, so that an append-only user may delete its
//! own locks (restic must, to refresh and release them) but not another
//! user's: removing someone else's lock would let an exclusive operation
//! such as `prune` run under that user's running backup.
//!
//! The owner is recorded as an extended attribute of the lock file itself
//! (`user.snapstorm.owner`), set on the temporary file before it is linked
//! into place. So a lock never exists without its owner, the owner goes
//! when the lock goes, it survives a restart of the server (a restic backup
//! that outlives a restart can still refresh and release its lock), and the
//! repository's directories hold nothing but restic's own files, which
//! local restic and rustic clients read directly.
//!
//! On a filesystem without user extended attributes the owner is kept in
//! memory instead, for the life of this server: a lock created before a
//! restart then has no known owner, and only users who may delete anything
//! can remove it (`restic unlock` as such a user).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The extended attribute that names a lock's owner.
const OWNER_ATTRIBUTE: &str = "user.snapstorm.owner";

/// Whoever created a lock through the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOwner {
    /// An authenticated user.
    User(String),
    /// A request of a server without authentication (`--no-auth`): every
    /// caller is the same anonymous one.
    Anonymous,
}

impl LockOwner {
    fn encode(&self) -> String {
        match self {
            LockOwner::User(name) => format!("user:{name}"),
            LockOwner::Anonymous => "anonymous".to_owned(),
        }
    }

    fn decode(bytes: &[u8]) -> Option<LockOwner> {
        let text = std::str::from_utf8(bytes).ok()?;
        match text.strip_prefix("user:") {
            Some(name) if !name.is_empty() => Some(LockOwner::User(name.to_owned())),
            Some(_) => None,
            None => (text == "anonymous").then_some(LockOwner::Anonymous),
        }
    }
}

/// Where owners are recorded: on the files, and in memory for files whose
/// filesystem refused the attribute.
#[derive(Debug, Default)]
pub struct LockOwners {
    in_memory: Mutex<HashMap<PathBuf, LockOwner>>,
    /// Keep every owner in memory (for tests of the fallback).
    memory_only: bool,
}

/// Where [`LockOwners::stamp`] put the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Stamped {
    /// On the file: it appears, and goes, with the lock.
    OnFile,
    /// Nowhere yet: the filesystem has no extended attributes, so
    /// [`LockOwners::remember`] it once the lock is in place.
    NotSupported,
}

impl LockOwners {
    pub fn new() -> Self {
        Self::default()
    }

    /// Owners kept only in memory, as on a filesystem without extended attributes.
    #[cfg(test)]
    fn memory_only() -> Self {
        LockOwners {
            memory_only: true,
            ..Self::default()
        }
    }

    /// Records `owner` on `file`, the open temporary file that becomes the lock.
    pub fn stamp(&self, file: &File, owner: &LockOwner) -> io::Result<Stamped> {
        if self.memory_only {
            return Ok(Stamped::NotSupported);
        }
        let stamped = rustix::fs::fsetxattr(
            file,
            OWNER_ATTRIBUTE,
            owner.encode().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        );
        match stamped {
            Ok(()) => Ok(Stamped::OnFile),
            Err(e) if e == rustix::io::Errno::NOTSUP => Ok(Stamped::NotSupported),
            Err(e) => Err(e.into()),
        }
    }

    /// Remembers the owner of the lock now at `path`, for this server's life.
    pub fn remember(&self, path: &Path, owner: &LockOwner) {
        self.in_memory
            .lock()
            .expect("lock owners")
            .insert(path.to_path_buf(), owner.clone());
    }

    /// Who created the lock at `path`: `Ok(None)` when nobody is known to
    /// have (made by a local client, or before a restart without extended
    /// attributes); `NotFound` when there is no such lock.
    pub fn owner(&self, path: &Path) -> io::Result<Option<LockOwner>> {
        if !self.memory_only {
            let mut value = [0u8; 256];
            match rustix::fs::getxattr(path, OWNER_ATTRIBUTE, &mut value[..]) {
                Ok(len) => return Ok(LockOwner::decode(&value[..len])),
                // No attribute, not supported, or not ours (too long): ask the memory.
                Err(e)
                    if e == rustix::io::Errno::NODATA
                        || e == rustix::io::Errno::NOTSUP
                        || e == rustix::io::Errno::RANGE => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            std::fs::symlink_metadata(path)?;
        }
        Ok(self
            .in_memory
            .lock()
            .expect("lock owners")
            .get(path)
            .cloned())
    }

    /// Forgets the owner of a lock that was deleted.
    pub fn forget(&self, path: &Path) {
        self.in_memory.lock().expect("lock owners").remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_through_the_encoding() {
        for owner in [LockOwner::User("alice".into()), LockOwner::Anonymous] {
            assert_eq!(LockOwner::decode(owner.encode().as_bytes()), Some(owner));
        }
        assert_eq!(LockOwner::decode(b"user:"), None);
        assert_eq!(LockOwner::decode(b"someone"), None);
        assert_eq!(LockOwner::decode(&[0xff]), None);
    }

    #[test]
    fn owner_is_recorded_on_the_file_or_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for owners in [LockOwners::new(), LockOwners::memory_only()] {
            let path = dir.path().join(format!("lock-{}", owners.memory_only));
            let file = File::create(&path).unwrap();
            assert_eq!(owners.owner(&path).unwrap(), None);
            let alice = LockOwner::User("alice".into());
            if owners.stamp(&file, &alice).unwrap() == Stamped::NotSupported {
                owners.remember(&path, &alice);
            }
            assert_eq!(owners.owner(&path).unwrap(), Some(alice));
            std::fs::remove_file(&path).unwrap();
            owners.forget(&path);
            assert_eq!(
                owners.owner(&path).unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
        }
    }
}
