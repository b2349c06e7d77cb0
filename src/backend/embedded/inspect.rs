// Over 500 lines: one reader of the restic format: index, pack headers, trees, and the check built on them.
//! Reading the repository directly, as the verdict needs it: which blobs
//! the index names and where, which blobs a pack holds (its own header),
//! what a snapshot needs, and whether each pack is still what its id says.
//!
//! This is a reader of the restic format of its own (restic's crypto and
//! layout, rustic_core's types), so that a failure is judged by what the
//! repository holds, not by the words of the client that failed: a fault
//! that damaged data records the packs and blobs it damaged, and a failure
//! is explained only by damage holding everything it could not read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::{Aead, generic_array::GenericArray};
use binrw::BinRead;
use rayon::prelude::*;
use rustic_core::repofile::{HeaderEntry, IndexFile, MasterKey, Tree};
use serde::Deserialize;
use sha2::Digest;

use crate::engine::damage::{DataRef, Unreadable};
use crate::engine::traits::Problem;

/// Why the repository could not be read as the verdict needs.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: cannot be decrypted (MAC check failed)")]
    Decrypt(String),
    #[error("{what}: unreadable: {why}")]
    Format { what: String, why: String },
}

type Result<T> = std::result::Result<T, InspectError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_owned(),
        source,
    }
}

fn format(what: impl Into<String>, why: impl ToString) -> InspectError {
    InspectError::Format {
        what: what.into(),
        why: why.to_string(),
    }
}

/// Where the index says a blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    pack: String,
    offset: u32,
    length: u32,
    compressed: bool,
}

/// The repository's index as its clients use it: packs marked for deletion
/// are left out (rustic's clients and restic do not read them).
#[derive(Debug, Default)]
pub struct Index {
    blobs: HashMap<String, Vec<Place>>,
    /// Each index file and the blobs it names.
    files: BTreeMap<String, BTreeSet<String>>,
    /// Every pack the index names, with the size it gives.
    packs: BTreeMap<String, Option<u32>>,
}

impl Index {
    /// Blobs only the index file `file` names (what deleting it loses).
    pub fn named_only_by(&self, file: &str) -> BTreeSet<String> {
        let Some(mine) = self.files.get(file) else {
            return BTreeSet::new();
        };
        let elsewhere: HashSet<&String> = self
            .files
            .iter()
            .filter(|(name, _)| name.as_str() != file)
            .flat_map(|(_, blobs)| blobs)
            .collect();
        mine.iter()
            .filter(|blob| !elsewhere.contains(blob))
            .cloned()
            .collect()
    }

    /// The blobs the index says `pack` holds.
    pub fn blobs_in(&self, pack: &str) -> BTreeSet<String> {
        self.blobs
            .iter()
            .filter(|(_, places)| places.iter().any(|p| p.pack == pack))
            .map(|(blob, _)| blob.clone())
            .collect()
    }
}

/// Whether a pack is what its id says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackState {
    Intact,
    Missing,
    /// Its content does not hash to its id.
    Damaged,
}

/// A pack already hashed, as it was then.
#[derive(Debug, Clone, Copy)]
struct Hashed {
    len: u64,
    modified: SystemTime,
    intact: bool,
}

/// Reads one repository directory with its master key.
pub struct Inspector {
    repo_dir: PathBuf,
    cipher: Aes256CtrPoly1305Aes,
    /// Packs are written once: a pack hashed before is hashed again only
    /// when its size or time changed (a fault rewrote it).
    hashed: Mutex<HashMap<String, Hashed>>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("repo_dir", &self.repo_dir)
            .finish_non_exhaustive()
    }
}

/// A snapshot file, as far as the walk needs it.
#[derive(Deserialize)]
struct SnapshotTree {
    tree: String,
}

impl Inspector {
    pub fn new(repo_dir: &Path, key: &MasterKey) -> Self {
        // restic's key: 32 bytes of AES key, then Poly1305's k and r.
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&key.encrypt);
        bytes.extend_from_slice(&key.mac.k);
        bytes.extend_from_slice(&key.mac.r);
        let key = GenericArray::clone_from_slice(&bytes);
        Inspector {
            repo_dir: repo_dir.to_owned(),
            cipher: Aes256CtrPoly1305Aes::new(&key),
            hashed: Mutex::new(HashMap::new()),
        }
    }

    pub fn pack_path(&self, id: &str) -> PathBuf {
        self.repo_dir
            .join("data")
            .join(id.get(..2).unwrap_or(id))
            .join(id)
    }

    fn decrypt(&self, what: &str, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() < 32 {
            return Err(format(what, "shorter than a nonce and a MAC"));
        }
        let (nonce, sealed) = data.split_at(16);
        self.cipher
            .decrypt(GenericArray::from_slice(nonce), sealed)
            .map_err(|_| InspectError::Decrypt(what.to_owned()))
    }

    /// Writes `plain` into `dir` (`locks`) as restic writes a file that is
    /// no pack: encrypted with a fresh nonce, named by the SHA-256 of what
    /// is stored (uncompressed JSON, which restic reads in either format).
    /// Returns its path in the repository. For a fault that leaves a file
    /// behind (`stale-lock`); the rest of the inspector only reads.
    pub fn write_sealed(&self, dir: &str, plain: &[u8]) -> Result<String> {
        let mut nonce = [0u8; 16];
        rand::RngExt::fill(&mut rand::rng(), &mut nonce);
        let sealed = self
            .cipher
            .encrypt(GenericArray::from_slice(&nonce), plain)
            .map_err(|_| format(dir, "cannot be encrypted"))?;
        let stored = [nonce.as_slice(), &sealed].concat();
        let name = hex::encode(sha2::Sha256::digest(&stored));
        let dir_path = self.repo_dir.join(dir);
        std::fs::create_dir_all(&dir_path).map_err(io(&dir_path))?;
        let path = dir_path.join(&name);
        std::fs::write(&path, &stored).map_err(io(&path))?;
        Ok(format!("{dir}/{name}"))
    }

    /// An index or snapshot file: encrypted JSON, compressed in format 2.
    fn json_file(&self, path: &Path) -> Result<Vec<u8>> {
        let what = self.relative(path);
        let data = std::fs::read(path).map_err(io(path))?;
        let plain = self.decrypt(&what, &data)?;
        match plain.first() {
            Some(2) => zstd::stream::decode_all(&plain[1..]).map_err(|e| format(what, e)),
            _ => Ok(plain),
        }
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.repo_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Files of one kind (`index`, `snapshots`, `data` with its subdirectories).
    fn files(&self, kind: &str) -> Vec<PathBuf> {
        walkdir::WalkDir::new(self.repo_dir.join(kind))
            .into_iter()
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(walkdir::DirEntry::into_path)
            .collect()
    }

    /// Reads every index file. A GC may replace index files meanwhile: one
    /// that is gone by the time it is read is tried again with a new listing.
    pub fn index(&self) -> Result<Index> {
        let mut last = None;
        for _ in 0..5 {
            match self.index_once() {
                Ok(index) => return Ok(index),
                Err(InspectError::Io { source, path })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    last = Some(InspectError::Io { source, path });
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.expect("tried"))
    }

    fn index_once(&self) -> Result<Index> {
        let mut index = Index::default();
        for path in self.files("index") {
            let name = file_name(&path);
            let file: IndexFile = serde_json::from_slice(&self.json_file(&path)?)
                .map_err(|e| format(self.relative(&path), e))?;
            let mut named = BTreeSet::new();
            for pack in file.packs {
                let pack_id = pack.id.to_hex().to_string();
                index.packs.insert(pack_id.clone(), pack.size);
                for blob in pack.blobs {
                    let blob_id = blob.id.to_hex().to_string();
                    named.insert(blob_id.clone());
                    index.blobs.entry(blob_id).or_default().push(Place {
                        pack: pack_id.clone(),
                        offset: blob.location.offset,
                        length: blob.location.length,
                        compressed: blob.location.uncompressed_length.is_some(),
                    });
                }
            }
            index.files.insert(name, named);
        }
        Ok(index)
    }

    /// The blobs a pack holds, from its own header (the index may not name
    /// it yet: a backup's pack uploaded before its index).
    pub fn pack_blobs(&self, path: &Path) -> Result<BTreeSet<String>> {
        let what = self.relative(path);
        let data = std::fs::read(path).map_err(io(path))?;
        let length_at = data
            .len()
            .checked_sub(4)
            .ok_or_else(|| format(&what, "too short for a pack"))?;
        let header_len =
            u32::from_le_bytes(data[length_at..].try_into().expect("4 bytes")) as usize;
        let header_at = length_at
            .checked_sub(header_len)
            .ok_or_else(|| format(&what, "header longer than the pack"))?;
        let header = self.decrypt(&what, &data[header_at..length_at])?;
        let mut reader = std::io::Cursor::new(&header[..]);
        let mut blobs = BTreeSet::new();
        while (reader.position() as usize) < header.len() {
            let entry = HeaderEntry::read(&mut reader).map_err(|e| format(&what, e))?;
            let id = match entry {
                HeaderEntry::Data { id, .. }
                | HeaderEntry::Tree { id, .. }
                | HeaderEntry::CompData { id, .. }
                | HeaderEntry::CompTree { id, .. } => id,
            };
            blobs.insert(id.to_hex().to_string());
        }
        Ok(blobs)
    }

    /// What damaging the pack at `path` damages: the pack, and the blobs
    /// it holds (from its header, or where that cannot be read — a pack
    /// damaged before — from the index).
    pub fn pack_damage(
        &self,
        path: &Path,
        index: impl FnOnce() -> Option<Index>,
    ) -> BTreeSet<DataRef> {
        let id = file_name(path);
        let blobs = self
            .pack_blobs(path)
            .ok()
            .or_else(|| index().map(|index| index.blobs_in(&id)))
            .unwrap_or_default();
        std::iter::once(DataRef::Pack(id))
            .chain(blobs.into_iter().map(DataRef::Blob))
            .collect()
    }

    /// Whether the pack `id` is there and still what its id says.
    pub fn pack_state(&self, id: &str) -> PackState {
        let path = self.pack_path(id);
        let Ok(meta) = std::fs::metadata(&path) else {
            return PackState::Missing;
        };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let seen = self.hashed.lock().expect("hash lock").get(id).copied();
        if let Some(seen) = seen.filter(|s| s.len == meta.len() && s.modified == modified) {
            return if seen.intact {
                PackState::Intact
            } else {
                PackState::Damaged
            };
        }
        let intact = match sha256_of(&path) {
            Ok(hash) => hash == id,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return PackState::Missing;
            }
            Err(_) => false,
        };
        self.hashed.lock().expect("hash lock").insert(
            id.to_owned(),
            Hashed {
                len: meta.len(),
                modified,
                intact,
            },
        );
        if intact {
            PackState::Intact
        } else {
            PackState::Damaged
        }
    }

    fn read_blob(&self, id: &str, place: &Place) -> Result<Vec<u8>> {
        let path = self.pack_path(&place.pack);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let mut sealed = vec![0; place.length as usize];
        file.read_exact_at(&mut sealed, u64::from(place.offset))
            .map_err(io(&path))?;
        let plain = self.decrypt(&format!("blob {id}"), &sealed)?;
        if place.compressed {
            zstd::stream::decode_all(&plain[..]).map_err(|e| format(format!("blob {id}"), e))
        } else {
            Ok(plain)
        }
    }

    /// Where `blob` cannot be read from: itself when no index names it, or
    /// each pack that should hold it and is missing or damaged (a client may
    /// have read any of them). Empty when it can be read.
    fn blob_problems(&self, index: &Index, blob: &str, found: &mut BTreeSet<DataRef>) -> bool {
        let Some(places) = index.blobs.get(blob) else {
            found.insert(DataRef::Blob(blob.to_owned()));
            return false;
        };
        let mut readable = false;
        for place in places {
            match self.pack_state(&place.pack) {
                PackState::Intact => readable = true,
                PackState::Missing | PackState::Damaged => {
                    found.insert(DataRef::Pack(place.pack.clone()));
                }
            }
        }
        readable
    }

    /// Everything restoring `snapshots` needs that cannot be read now: blobs
    /// no index names, packs missing or damaged. Trees below an unreadable
    /// tree are not known, so not named.
    pub fn unreadable(&self, snapshots: &[String]) -> Result<BTreeSet<DataRef>> {
        let index = self.index()?;
        let mut found = BTreeSet::new();
        let mut seen = HashSet::new();
        for snapshot in snapshots {
            let path = self.repo_dir.join("snapshots").join(snapshot);
            let file: SnapshotTree = serde_json::from_slice(&self.json_file(&path)?)
                .map_err(|e| format(self.relative(&path), e))?;
            self.walk(&index, &file.tree, &mut seen, &mut found);
        }
        Ok(found)
    }

    fn walk(
        &self,
        index: &Index,
        root: &str,
        seen: &mut HashSet<String>,
        found: &mut BTreeSet<DataRef>,
    ) {
        let mut trees = vec![root.to_owned()];
        while let Some(tree_id) = trees.pop() {
            if !seen.insert(tree_id.clone()) || !self.blob_problems(index, &tree_id, found) {
                continue;
            }
            let Some(tree) = self.tree(index, &tree_id) else {
                // Its pack hashes to its id, yet the tree does not read:
                // the index names the wrong place.
                found.insert(DataRef::Blob(tree_id));
                continue;
            };
            for node in tree.nodes {
                for blob in node.content.into_iter().flatten() {
                    let blob = blob.to_hex().to_string();
                    if seen.insert(blob.clone()) {
                        self.blob_problems(index, &blob, found);
                    }
                }
                if let Some(subtree) = node.subtree {
                    trees.push(subtree.to_hex().to_string());
                }
            }
        }
    }

    /// The tree `id`, read from the first intact pack the index names for it.
    fn tree(&self, index: &Index, id: &str) -> Option<Tree> {
        index.blobs.get(id)?.iter().find_map(|place| {
            (self.pack_state(&place.pack) == PackState::Intact)
                .then(|| self.read_blob(id, place).ok())
                .flatten()
                .and_then(|plain| serde_json::from_slice(&plain).ok())
        })
    }

    /// The whole repository, checked so that each problem names what it
    /// found unreadable: every file against its id, every pack the index
    /// names, everything every snapshot needs.
    pub fn check(&self) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let mut named = BTreeSet::new();
        let mut add = |text: String, item: DataRef, named: &mut BTreeSet<DataRef>| {
            if named.insert(item.clone()) {
                problems.push(Problem {
                    text,
                    unreadable: Unreadable::named([item]),
                });
            }
        };
        // Packs, in parallel: hashing is most of the work.
        let packs = self.files("data");
        let damaged: Vec<String> = packs
            .par_iter()
            .map(|path| file_name(path))
            .filter(|id| self.pack_state(id) == PackState::Damaged)
            .collect();
        for id in damaged {
            add(
                format!("Error: pack {id}: content does not match its id"),
                DataRef::Pack(id),
                &mut named,
            );
        }
        for kind in ["index", "snapshots", "keys"] {
            for path in self.files(kind) {
                let id = file_name(&path);
                if sha256_of(&path).is_ok_and(|hash| hash != id) {
                    let relative = self.relative(&path);
                    add(
                        format!("Error: {relative}: content does not match its id"),
                        DataRef::File(relative),
                        &mut named,
                    );
                }
            }
        }
        let index = self.index()?;
        for pack in index.packs.keys() {
            if self.pack_state(pack) == PackState::Missing {
                add(
                    format!("Error: pack {pack} is named by the index but missing"),
                    DataRef::Pack(pack.clone()),
                    &mut named,
                );
            }
        }
        let snapshots: Vec<String> = self
            .files("snapshots")
            .iter()
            .map(|path| file_name(path))
            .collect();
        let mut seen = HashSet::new();
        for snapshot in &snapshots {
            let path = self.repo_dir.join("snapshots").join(snapshot);
            let Ok(file) = self.json_file(&path).and_then(|json| {
                serde_json::from_slice::<SnapshotTree>(&json).map_err(|e| format(snapshot, e))
            }) else {
                // A snapshot removed meanwhile, or one that does not read
                // (already reported against its id above).
                continue;
            };
            let mut found = BTreeSet::new();
            self.walk(&index, &file.tree, &mut seen, &mut found);
            for item in found {
                let text = match &item {
                    DataRef::Blob(blob) => {
                        format!(
                            "Error: snapshot {snapshot} needs blob {blob}, which no index names"
                        )
                    }
                    other => format!(
                        "Error: snapshot {snapshot} needs {other}, which is missing or damaged"
                    ),
                };
                add(text, item, &mut named);
            }
        }
        Ok(problems)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
