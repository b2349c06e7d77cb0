//! Where everything lives inside a state directory (see the module above).

use std::path::{Path, PathBuf};

use crate::engine::traits::ClientId;

/// Paths inside a state directory.
#[derive(Debug, Clone)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn fingerprints(&self) -> PathBuf {
        self.root.join("fingerprints")
    }
    pub fn fingerprint(&self, id: &str) -> PathBuf {
        self.fingerprints().join(format!("{id}.json"))
    }
    pub fn repository(&self) -> PathBuf {
        self.root.join("repository")
    }
    pub fn client_dir(&self, client: ClientId) -> PathBuf {
        self.root.join("clients").join(client.to_string())
    }
    pub fn client_data(&self, client: ClientId) -> PathBuf {
        self.client_dir(client).join("data")
    }
    pub fn client_cache(&self, client: ClientId) -> PathBuf {
        self.client_dir(client).join("cache")
    }
    pub fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }
    pub fn trace(&self) -> PathBuf {
        self.root.join("trace.jsonl")
    }
    pub(super) fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }
}
