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
use std::sync::Mutex;

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::{Aead, generic_array::GenericArray};
use binrw::BinRead;
use rayon::prelude::*;
use rustic_core::FileType;
use rustic_core::repofile::{HeaderEntry, IndexFile, MasterKey, Tree};
use serde::Deserialize;
use sha2::Digest;

use super::files::{RepoFiles, Version};
use crate::backend::s3::repository_path;
use crate::engine::damage::{DataRef, Unreadable};
use crate::engine::traits::Problem;

/// Why the repository could not be read as the verdict needs.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {source}")]
    Io {
        /// The file's name in the repository (`data/ab/<id>`).
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: cannot be decrypted (MAC check failed)")]
    Decrypt(String),
    #[error("{what}: unreadable: {why}")]
    Format { what: String, why: String },
}

type Result<T> = std::result::Result<T, InspectError>;

fn io(kind: FileType, name: &str) -> impl FnOnce(std::io::Error) -> InspectError {
    let path = repository_path(kind, name);
    move |source| InspectError::Io { path, source }
}

fn listing(kind: FileType) -> impl FnOnce(std::io::Error) -> InspectError {
    move |source| InspectError::Io {
        path: format!("{}/", kind.dirname()),
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

    /// Whether an index file names `pack`.
    pub fn names_pack(&self, pack: &str) -> bool {
        self.packs.contains_key(pack)
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
    version: Version,
    intact: bool,
}

/// The packs there are, as one listing found them: a question about many
/// packs lists them once (on S3 a listing is a request, not a `stat`).
struct Packs(HashMap<String, Version>);

/// Reads one repository, wherever its files are, with its master key.
pub struct Inspector {
    files: RepoFiles,
    cipher: Aes256CtrPoly1305Aes,
    /// Packs are written once: a pack hashed before is hashed again only
    /// when its version changed, or when a fault rewrote it through here.
    hashed: Mutex<HashMap<String, Hashed>>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A snapshot file, as far as the walk needs it.
#[derive(Deserialize)]
struct SnapshotTree {
    tree: String,
}

impl Inspector {
    pub fn new(files: RepoFiles, key: &MasterKey) -> Self {
        // restic's key: 32 bytes of AES key, then Poly1305's k and r.
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&key.encrypt);
        bytes.extend_from_slice(&key.mac.k);
        bytes.extend_from_slice(&key.mac.r);
        let key = GenericArray::clone_from_slice(&bytes);
        Inspector {
            files,
            cipher: Aes256CtrPoly1305Aes::new(&key),
            hashed: Mutex::new(HashMap::new()),
        }
    }

    /// The repository's files, for what a fault reads and lists.
    pub fn files(&self) -> &RepoFiles {
        &self.files
    }

    /// Writes `bytes` over the file (or removes it, with `None`): a fault's
    /// damage, which every later question sees.
    pub fn replace(&self, kind: FileType, name: &str, bytes: Option<Vec<u8>>) -> Result<()> {
        self.hashed.lock().expect("hash lock").remove(name);
        match bytes {
            Some(bytes) => self.files.write(kind, name, bytes),
            None => self.files.remove(kind, name),
        }
        .map_err(io(kind, name))
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

    /// Writes `plain` as a lock as restic writes a file that is no pack:
    /// encrypted with a fresh nonce, named by the SHA-256 of what is stored
    /// (uncompressed JSON, which restic reads in either format). Returns its
    /// name in the repository. For a fault that leaves a lock behind
    /// (`stale-lock`); the rest of the inspector only reads.
    pub fn write_lock(&self, plain: &[u8]) -> Result<String> {
        let mut nonce = [0u8; 16];
        rand::RngExt::fill(&mut rand::rng(), &mut nonce);
        let sealed = self
            .cipher
            .encrypt(GenericArray::from_slice(&nonce), plain)
            .map_err(|_| format("locks", "cannot be encrypted"))?;
        let stored = [nonce.as_slice(), &sealed].concat();
        let name = hex::encode(sha2::Sha256::digest(&stored));
        let path = format!("locks/{name}");
        self.files
            .write_lock(&name, stored)
            .map_err(|source| InspectError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    /// An index or snapshot file: encrypted JSON, compressed in format 2.
    fn json_file(&self, kind: FileType, name: &str) -> Result<Vec<u8>> {
        let what = repository_path(kind, name);
        let data = self.files.read(kind, name).map_err(io(kind, name))?;
        let plain = self.decrypt(&what, &data)?;
        match plain.first() {
            Some(2) => zstd::stream::decode_all(&plain[1..]).map_err(|e| format(what, e)),
            _ => Ok(plain),
        }
    }

    /// The names of the files of one kind.
    fn names(&self, kind: FileType) -> Result<Vec<String>> {
        Ok(self
            .files
            .list(kind)
            .map_err(listing(kind))?
            .into_iter()
            .map(|listed| listed.name)
            .collect())
    }

    fn packs(&self) -> Result<Packs> {
        Ok(Packs(
            self.files
                .list(FileType::Pack)
                .map_err(listing(FileType::Pack))?
                .into_iter()
                .map(|listed| (listed.name, listed.version))
                .collect(),
        ))
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
        for name in self.names(FileType::Index)? {
            let file: IndexFile = serde_json::from_slice(&self.json_file(FileType::Index, &name)?)
                .map_err(|e| format(repository_path(FileType::Index, &name), e))?;
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
    fn pack_blobs(&self, id: &str) -> Result<BTreeSet<String>> {
        let data = self
            .files
            .read(FileType::Pack, id)
            .map_err(io(FileType::Pack, id))?;
        self.header_blobs(id, &data)
    }

    /// The blobs the header of the pack `id`, holding `data`, names.
    fn header_blobs(&self, id: &str, data: &[u8]) -> Result<BTreeSet<String>> {
        let what = repository_path(FileType::Pack, id);
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

    /// What damaging the pack `id` damages: the pack, and the blobs it
    /// holds (from its header — in `contents` when the caller read it
    /// already, else read here — or where that cannot be read, a pack
    /// damaged before, from the index).
    pub fn pack_damage(
        &self,
        id: &str,
        contents: Option<&[u8]>,
        index: impl FnOnce() -> Option<Index>,
    ) -> BTreeSet<DataRef> {
        let blobs = match contents {
            Some(data) => self.header_blobs(id, data),
            None => self.pack_blobs(id),
        };
        let blobs = blobs
            .ok()
            .or_else(|| index().map(|index| index.blobs_in(id)))
            .unwrap_or_default();
        std::iter::once(DataRef::Pack(id.to_owned()))
            .chain(blobs.into_iter().map(DataRef::Blob))
            .collect()
    }

    /// Whether the pack `id` is there (as `packs` listed) and still what
    /// its id says.
    fn pack_state(&self, id: &str, packs: &Packs) -> PackState {
        let Some(&version) = packs.0.get(id) else {
            return PackState::Missing;
        };
        let seen = self.hashed.lock().expect("hash lock").get(id).copied();
        if let Some(seen) = seen.filter(|s| s.version == version) {
            return if seen.intact {
                PackState::Intact
            } else {
                PackState::Damaged
            };
        }
        let intact = match self.files.read(FileType::Pack, id) {
            Ok(bytes) => hex::encode(sha2::Sha256::digest(&bytes)) == id,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return PackState::Missing;
            }
            Err(_) => false,
        };
        self.hashed
            .lock()
            .expect("hash lock")
            .insert(id.to_owned(), Hashed { version, intact });
        if intact {
            PackState::Intact
        } else {
            PackState::Damaged
        }
    }

    fn read_blob(&self, id: &str, place: &Place) -> Result<Vec<u8>> {
        let sealed = self
            .files
            .read_at(FileType::Pack, &place.pack, place.offset, place.length)
            .map_err(io(FileType::Pack, &place.pack))?;
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
    fn blob_problems(&self, seen: &Seen, blob: &str, found: &mut BTreeSet<DataRef>) -> bool {
        let Some(places) = seen.index.blobs.get(blob) else {
            found.insert(DataRef::Blob(blob.to_owned()));
            return false;
        };
        let mut readable = false;
        for place in places {
            match self.pack_state(&place.pack, &seen.packs) {
                PackState::Intact => readable = true,
                PackState::Missing | PackState::Damaged => {
                    found.insert(DataRef::Pack(place.pack.clone()));
                }
            }
        }
        readable
    }

    /// The index and the packs, read once for a question about many blobs.
    fn seen(&self) -> Result<Seen> {
        Ok(Seen {
            index: self.index()?,
            packs: self.packs()?,
        })
    }

    /// Everything restoring `snapshots` needs that cannot be read now: blobs
    /// no index names, packs missing or damaged. Trees below an unreadable
    /// tree are not known, so not named.
    pub fn unreadable(&self, snapshots: &[String]) -> Result<BTreeSet<DataRef>> {
        let seen = self.seen()?;
        let mut found = BTreeSet::new();
        let mut walked = HashSet::new();
        for snapshot in snapshots {
            let file: SnapshotTree =
                serde_json::from_slice(&self.json_file(FileType::Snapshot, snapshot)?)
                    .map_err(|e| format(repository_path(FileType::Snapshot, snapshot), e))?;
            self.walk(&seen, &file.tree, &mut walked, &mut found);
        }
        Ok(found)
    }

    fn walk(
        &self,
        seen: &Seen,
        root: &str,
        walked: &mut HashSet<String>,
        found: &mut BTreeSet<DataRef>,
    ) {
        let mut trees = vec![root.to_owned()];
        while let Some(tree_id) = trees.pop() {
            if !walked.insert(tree_id.clone()) || !self.blob_problems(seen, &tree_id, found) {
                continue;
            }
            let Some(tree) = self.tree(seen, &tree_id) else {
                // Its pack hashes to its id, yet the tree does not read:
                // the index names the wrong place.
                found.insert(DataRef::Blob(tree_id));
                continue;
            };
            for node in tree.nodes {
                for blob in node.content.into_iter().flatten() {
                    let blob = blob.to_hex().to_string();
                    if walked.insert(blob.clone()) {
                        self.blob_problems(seen, &blob, found);
                    }
                }
                if let Some(subtree) = node.subtree {
                    trees.push(subtree.to_hex().to_string());
                }
            }
        }
    }

    /// The tree `id`, read from the first intact pack the index names for it.
    fn tree(&self, seen: &Seen, id: &str) -> Option<Tree> {
        seen.index.blobs.get(id)?.iter().find_map(|place| {
            (self.pack_state(&place.pack, &seen.packs) == PackState::Intact)
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
        // Snapshots listed before the index is read: each one listed was
        // saved after its index (as clients save them), so a backup that
        // ends meanwhile (another run's, on a shared repository) is no
        // snapshot needing blobs no index names.
        let snapshots = self.names(FileType::Snapshot)?;
        let seen = self.seen()?;
        // Packs, in parallel: hashing is most of the work.
        let mut damaged: Vec<&String> = seen
            .packs
            .0
            .par_iter()
            .map(|(id, _)| id)
            .filter(|id| self.pack_state(id, &seen.packs) == PackState::Damaged)
            .collect();
        damaged.sort();
        for id in damaged {
            add(
                format!("Error: pack {id}: content does not match its id"),
                DataRef::Pack(id.clone()),
                &mut named,
            );
        }
        for kind in [FileType::Index, FileType::Snapshot, FileType::Key] {
            for name in self.names(kind)? {
                let differs = self
                    .files
                    .read(kind, &name)
                    .is_ok_and(|bytes| hex::encode(sha2::Sha256::digest(&bytes)) != name);
                if differs {
                    let relative = repository_path(kind, &name);
                    add(
                        format!("Error: {relative}: content does not match its id"),
                        DataRef::File(relative),
                        &mut named,
                    );
                }
            }
        }
        for pack in seen.index.packs.keys() {
            if self.pack_state(pack, &seen.packs) == PackState::Missing {
                add(
                    format!("Error: pack {pack} is named by the index but missing"),
                    DataRef::Pack(pack.clone()),
                    &mut named,
                );
            }
        }
        let mut walked = HashSet::new();
        for snapshot in snapshots {
            let Ok(file) = self
                .json_file(FileType::Snapshot, &snapshot)
                .and_then(|json| {
                    serde_json::from_slice::<SnapshotTree>(&json).map_err(|e| format(&snapshot, e))
                })
            else {
                // A snapshot removed meanwhile, or one that does not read
                // (already reported against its id above).
                continue;
            };
            let mut found = BTreeSet::new();
            self.walk(&seen, &file.tree, &mut walked, &mut found);
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

/// What a question about many blobs reads once: the index, and which packs
/// there are.
struct Seen {
    index: Index,
    packs: Packs,
}
