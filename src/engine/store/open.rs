//! What opening a state directory checks before anything is written.

use std::fs;
use std::io;
use std::path::Path;

use super::{State, StateLayout, StoreError, io_error};
use crate::engine::fingerprint::Fingerprint;
use crate::engine::input::{MAX_FINGERPRINT_BYTES, read_bounded};
use crate::engine::traits::ClientId;

pub(super) fn read_fingerprint(layout: &StateLayout, id: &str) -> Result<Fingerprint, StoreError> {
    let path = layout.fingerprint(id);
    let bytes = match read_bounded(&path, MAX_FINGERPRINT_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(StoreError::NoFingerprint(id.to_owned()));
        }
        Err(e) => return Err(StoreError::Input(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path,
        message: e.to_string(),
    })
}

/// Checks that the fingerprint of every live snapshot can be read, before a
/// run starts: one that cannot is snapstorm's own problem, said up front,
/// never a restore that silently cannot be verified.
pub(super) fn check_fingerprints(layout: &StateLayout, state: &State) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let live: Vec<(ClientId, &str)> = state
        .clients
        .iter()
        .flat_map(|(id, c)| c.live.iter().map(move |s| (*id, s.id.as_str())))
        .collect();
    let mut unreadable: Vec<String> = live
        .par_iter()
        .filter_map(|(client, id)| {
            read_fingerprint(layout, id)
                .err()
                .map(|e| format!("{client} snapshot {id}: {e}"))
        })
        .collect();
    if unreadable.is_empty() {
        return Ok(());
    }
    unreadable.sort();
    Err(StoreError::UnreadableFingerprints {
        path: layout.root().to_path_buf(),
        unreadable,
    })
}

/// Creates `root` (its parents as usual, itself `0700`) if missing; says whether it did.
pub(super) fn create_private_dir(root: &Path) -> Result<bool, StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if root.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && root.is_dir() => Ok(false),
        Err(e) => Err(io_error(root)(e)),
    }
}

/// A directory without `state.json` may be set up only if it holds nothing
/// of value: it is empty but for what a set-up cut short leaves (the lock,
/// a temp file, empty layout directories). One whose `repository/` or
/// fingerprints hold data lost its `state.json`: starting afresh would make
/// a new password the repository refuses, and every later run would fail.
pub(super) fn check_fresh(layout: &StateLayout) -> Result<(), StoreError> {
    let root = layout.root();
    let entries = fs::read_dir(root).map_err(io_error(root))?;
    let mut found = Vec::new();
    let mut other = false;
    for entry in entries {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_empty_dir =
            path.is_dir() && fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
        match name.as_str() {
            ".lock" => {}
            _ if name.starts_with(".tmp-") => {}
            "fingerprints" | "scratch" | "repository" if is_empty_dir => {}
            "repository" => found.push("repository/ holds a repository"),
            "fingerprints" => found.push("fingerprints/ holds fingerprints"),
            "trace.jsonl" => found.push("trace.jsonl holds a trace"),
            "clients" => found.push("clients/ holds client data"),
            _ => other = true,
        }
    }
    if !found.is_empty() {
        return Err(StoreError::MissingState {
            path: root.to_path_buf(),
            what: found.join(", "),
        });
    }
    if other {
        return Err(StoreError::NotAStateDir {
            path: root.to_path_buf(),
        });
    }
    Ok(())
}

/// Warns when others can read or enter an existing state dir (it holds the
/// repository's password); it is not changed behind its owner's back.
pub(super) fn warn_if_others_can_read(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(root) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "state directory {} is open to others (mode {mode:o}) and holds the repository's password; make it private with `chmod 700 {}`",
                root.display(),
                root.display()
            );
        }
    }
}
