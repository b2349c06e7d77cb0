//! The local file writer: random files and random deletions in one data
//! directory, driven entirely by the action's random source so that a run
//! can be reproduced from its seed.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::options::ActionOptions;
use super::traits::{ActionRng, ClientId, Details, FileWriter, WriteEffect};

/// All clients' deduplicable content comes from this one stream.
const SHARED_CONTENT_SEED: u64 = 0x5eed_da7a;
const WRITE_CHUNK: usize = 1024 * 1024;

/// Writes into a single data directory (the calling client is ignored: the
/// multi-client writer hands each client its own `LocalFileWriter`).
#[derive(Debug, Clone)]
pub struct LocalFileWriter {
    root: PathBuf,
}

impl LocalFileWriter {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(LocalFileWriter { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Walks down `depth` levels from the root, at each level entering a
    /// random existing subdirectory or creating a new one.
    fn random_branch(&self, depth: u32, rng: &mut ActionRng) -> io::Result<PathBuf> {
        let mut dir = self.root.clone();
        for _ in 0..depth {
            let subdirs = subdirectories(&dir)?;
            // One chance in (n + 1) of a new branch keeps the tree growing sideways too.
            let pick_existing = !subdirs.is_empty() && rng.random_range(0..=subdirs.len()) != 0;
            dir = if pick_existing {
                subdirs.choose(rng).expect("not empty").clone()
            } else {
                let fresh = dir.join(format!("dir-{:08x}", rng.random::<u32>()));
                fs::create_dir_all(&fresh)?;
                fresh
            };
        }
        Ok(dir)
    }

    fn directories_at_depth(&self, depth: u32) -> io::Result<Vec<PathBuf>> {
        let mut level = vec![self.root.clone()];
        for _ in 0..depth {
            let mut next = Vec::new();
            for dir in &level {
                next.extend(subdirectories(dir)?);
            }
            level = next;
        }
        level.sort();
        Ok(level)
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

fn subdirectories(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    // read_dir order is the filesystem's; sort so the same seed picks the same.
    dirs.sort();
    Ok(dirs)
}

/// A size drawn log-uniformly from `min..=max`.
fn random_size(min: u64, max: u64, rng: &mut ActionRng) -> u64 {
    if min >= max {
        return min;
    }
    let (lo, hi) = ((min.max(1) as f64).ln(), (max as f64).ln());
    let size = rng.random_range(lo..=hi).exp().round() as u64;
    size.clamp(min, max)
}

fn random_dedup_percent(options: &ActionOptions, rng: &mut ActionRng) -> u8 {
    let step = options.dedup_percent_step.max(1);
    let steps = (options.max_dedup_percent - options.min_dedup_percent) / step;
    options.min_dedup_percent + step * rng.random_range(0..=steps)
}

/// The free space a write must leave on the data directory's file system
/// (the scenario's `free-space-limit`). Checked before every chunk, not only
/// before the write: one write of a huge file must not fill the disk that
/// holds the state dir's metadata and trace.
#[derive(Debug, Clone, Copy)]
struct SpaceFloor<'a> {
    dir: &'a Path,
    floor: u64,
}

impl SpaceFloor<'_> {
    /// Bytes that may still be written before free space drops below the floor.
    fn room(&self) -> io::Result<u64> {
        Ok(available_space(self.dir)?.saturating_sub(self.floor))
    }
}

/// What one file write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    bytes: u64,
    /// Stopped before its size: free space reached the floor.
    cut_short: bool,
}

/// Writes up to `size` bytes: first `dedup_percent` of shared content, then
/// random bytes; stops early when free space reaches `floor`.
fn write_file(
    path: &Path,
    size: u64,
    dedup_percent: u8,
    rng: &mut ActionRng,
    floor: SpaceFloor<'_>,
) -> io::Result<Written> {
    // Unbuffered: every chunk reaches the file system before free space is
    // measured again, so the floor is never overshot by a buffer's worth.
    let mut file = fs::File::create_new(path)?;
    let shared = size * u64::from(dedup_percent) / 100;
    let mut shared_rng = ActionRng::seed_from_u64(SHARED_CONTENT_SEED);
    let mut buf = vec![0u8; WRITE_CHUNK.min(usize::try_from(size).unwrap_or(WRITE_CHUNK))];
    let mut written = 0u64;
    while written < size {
        let wanted = (size - written).min(WRITE_CHUNK as u64);
        let room = floor.room()?;
        let n = wanted.min(room) as usize;
        let chunk = &mut buf[..n];
        if written < shared {
            // The shared stream restarts at every file, so every file's prefix is the same.
            let from_shared = (shared - written).min(n as u64) as usize;
            shared_rng.fill(&mut chunk[..from_shared]);
            rng.fill(&mut chunk[from_shared..]);
        } else {
            rng.fill(chunk);
        }
        file.write_all(chunk)?;
        written += n as u64;
        if room < wanted {
            return Ok(Written {
                bytes: written,
                cut_short: true,
            });
        }
    }
    Ok(Written {
        bytes: written,
        cut_short: false,
    })
}

impl FileWriter for LocalFileWriter {
    fn data_dir(&self, _client: ClientId) -> PathBuf {
        self.root.clone()
    }

    fn write_random_files(
        &self,
        _client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> io::Result<WriteEffect> {
        let depth = rng.random_range(1..=options.max_dir_depth);
        let dir = self.random_branch(depth, rng)?;
        let files =
            rng.random_range(options.min_num_files_per_write..=options.max_num_files_per_write);
        let limit = options.io_limit_per_write.as_u64();
        let floor = SpaceFloor {
            dir: &dir,
            floor: options.free_space_limit.as_u64(),
        };
        let mut bytes = 0u64;
        let mut written = 0u32;
        let mut cut_short = None;
        for _ in 0..files {
            let mut size = random_size(
                options.min_file_size.as_u64(),
                options.max_file_size.as_u64(),
                rng,
            );
            if limit > 0 {
                if bytes >= limit {
                    break;
                }
                size = size.min(limit - bytes);
            }
            let dedup = random_dedup_percent(options, rng);
            let path = dir.join(format!("file-{:016x}", rng.random::<u64>()));
            let free = available_space(&dir)?;
            if free <= floor.floor {
                cut_short = Some(free);
                break;
            }
            let file = write_file(&path, size, dedup, rng, floor)?;
            bytes += file.bytes;
            written += 1;
            if file.cut_short {
                cut_short = Some(available_space(&dir)?);
                break;
            }
        }
        let mut details = Details::new();
        details.insert("dir".into(), json!(self.relative(&dir)));
        details.insert("depth".into(), json!(depth));
        details.insert("files".into(), json!(written));
        details.insert("bytes".into(), json!(bytes));
        if let Some(free) = cut_short {
            // Said in the record, so a smaller write than drawn is never a mystery.
            details.insert(
                "cut-short".into(),
                json!({
                    "reason": "free space reached free-space-limit",
                    "free-space-limit": floor.floor,
                    "free-bytes": free,
                }),
            );
        }
        Ok(WriteEffect::Done(details))
    }

    fn delete_random_subdirectory(
        &self,
        _client: ClientId,
        options: &ActionOptions,
        rng: &mut ActionRng,
    ) -> io::Result<WriteEffect> {
        let depth = rng.random_range(1..=options.max_dir_depth);
        let candidates = self.directories_at_depth(depth)?;
        let Some(victim) = candidates.choose(rng) else {
            return Ok(WriteEffect::NoOp(format!("no directory at depth {depth}")));
        };
        fs::remove_dir_all(victim)?;
        let mut details = Details::new();
        details.insert("dir".into(), json!(self.relative(victim)));
        details.insert("depth".into(), json!(depth));
        Ok(WriteEffect::Done(details))
    }

    fn delete_directory_contents(
        &self,
        _client: ClientId,
        options: &ActionOptions,
        percent: u8,
        rng: &mut ActionRng,
    ) -> io::Result<WriteEffect> {
        let depth = rng.random_range(1..=options.max_dir_depth);
        let candidates = self.directories_at_depth(depth)?;
        let Some(dir) = candidates.choose(rng) else {
            return Ok(WriteEffect::NoOp(format!("no directory at depth {depth}")));
        };
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        let mut deleted = 0u32;
        for entry in &entries {
            if rng.random_range(0..100u8) < percent {
                if entry.is_dir() && !entry.is_symlink() {
                    fs::remove_dir_all(entry)?;
                } else {
                    fs::remove_file(entry)?;
                }
                deleted += 1;
            }
        }
        let mut details = Details::new();
        details.insert("dir".into(), json!(self.relative(dir)));
        details.insert("entries".into(), json!(entries.len()));
        details.insert("deleted".into(), json!(deleted));
        Ok(WriteEffect::Done(details))
    }

    fn delete_everything(&self, _client: ClientId) -> io::Result<()> {
        for entry in fs::read_dir(&self.root)? {
            let path = entry?.path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

/// Bytes of all files under `dir` (what a directory takes on disk, roughly).
pub fn disk_usage(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Free bytes on the filesystem holding `path`, for the low-disk check.
pub fn available_space(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fingerprint::Fingerprint;

    fn rng(seed: u64) -> ActionRng {
        ActionRng::seed_from_u64(seed)
    }

    fn options() -> ActionOptions {
        ActionOptions {
            max_dir_depth: 2,
            max_file_size: bytesize::ByteSize::kib(64),
            max_num_files_per_write: 10,
            ..ActionOptions::default()
        }
    }

    #[test]
    fn same_seed_writes_the_same_tree() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let writer = LocalFileWriter::new(dir.path()).unwrap();
            let mut r = rng(7);
            for _ in 0..3 {
                writer
                    .write_random_files(ClientId(1), &options(), &mut r)
                    .unwrap();
            }
        }
        let (fa, fb) = (
            Fingerprint::of_tree(a.path()).unwrap(),
            Fingerprint::of_tree(b.path()).unwrap(),
        );
        let strip = |f: &Fingerprint| -> Vec<_> {
            f.entries
                .iter()
                .map(|(p, e)| (p.clone(), e.hash.clone(), e.size))
                .collect()
        };
        assert_eq!(strip(&fa), strip(&fb));
        assert!(fa.entries.values().any(|e| e.size > 0));
    }

    #[test]
    fn io_limit_caps_the_bytes_of_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LocalFileWriter::new(dir.path()).unwrap();
        let options = ActionOptions {
            min_num_files_per_write: 50,
            max_num_files_per_write: 50,
            min_file_size: bytesize::ByteSize::kib(8),
            io_limit_per_write: bytesize::ByteSize::kib(20),
            ..options()
        };
        let WriteEffect::Done(details) = writer
            .write_random_files(ClientId(1), &options, &mut rng(1))
            .unwrap()
        else {
            panic!("a write is never a no-op");
        };
        assert_eq!(details["bytes"], json!(20 * 1024));
        assert_eq!(
            Fingerprint::of_tree(dir.path()).unwrap().content_bytes(),
            20 * 1024
        );
    }

    /// A write stops where free space would drop below `free-space-limit`,
    /// and says so; it never runs the file system full.
    #[test]
    fn a_write_stops_at_the_free_space_limit() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LocalFileWriter::new(dir.path()).unwrap();
        let room = 256 * 1024;
        let options = ActionOptions {
            min_num_files_per_write: 3,
            max_num_files_per_write: 3,
            min_file_size: bytesize::ByteSize::mib(8),
            max_file_size: bytesize::ByteSize::mib(8),
            free_space_limit: bytesize::ByteSize::b(available_space(dir.path()).unwrap() - room),
            ..options()
        };
        let WriteEffect::Done(details) = writer
            .write_random_files(ClientId(1), &options, &mut rng(1))
            .unwrap()
        else {
            panic!("a write is never a no-op");
        };
        let bytes = details["bytes"].as_u64().unwrap();
        assert!(bytes <= room, "{details:?}");
        assert_eq!(details["files"], json!(1), "{details:?}");
        assert_eq!(
            details["cut-short"]["reason"],
            json!("free space reached free-space-limit"),
            "{details:?}"
        );
        assert_eq!(
            Fingerprint::of_tree(dir.path()).unwrap().content_bytes(),
            bytes
        );
    }

    #[test]
    fn deletes_on_an_empty_tree_are_no_ops() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LocalFileWriter::new(dir.path()).unwrap();
        let mut r = rng(3);
        assert!(matches!(
            writer
                .delete_random_subdirectory(ClientId(1), &options(), &mut r)
                .unwrap(),
            WriteEffect::NoOp(_)
        ));
        assert!(matches!(
            writer
                .delete_directory_contents(ClientId(1), &options(), 50, &mut r)
                .unwrap(),
            WriteEffect::NoOp(_)
        ));
    }

    #[test]
    fn delete_subdirectory_removes_a_directory_at_the_chosen_depth() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        let writer = LocalFileWriter::new(dir.path()).unwrap();
        let one_level = ActionOptions {
            max_dir_depth: 1,
            ..options()
        };
        let effect = writer
            .delete_random_subdirectory(ClientId(1), &one_level, &mut rng(5))
            .unwrap();
        assert!(
            matches!(effect, WriteEffect::Done(ref d) if d["dir"] == json!("a")),
            "{effect:?}"
        );
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn delete_contents_at_100_percent_empties_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/sub")).unwrap();
        for i in 0..10 {
            fs::write(dir.path().join(format!("a/f{i}")), b"x").unwrap();
        }
        let writer = LocalFileWriter::new(dir.path()).unwrap();
        let one_level = ActionOptions {
            max_dir_depth: 1,
            ..options()
        };
        writer
            .delete_directory_contents(ClientId(1), &one_level, 100, &mut rng(5))
            .unwrap();
        assert_eq!(fs::read_dir(dir.path().join("a")).unwrap().count(), 0);
        writer.delete_everything(ClientId(1)).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn dedup_prefix_is_shared_between_files() {
        let dir = tempfile::tempdir().unwrap();
        let floor = SpaceFloor {
            dir: dir.path(),
            floor: 0,
        };
        write_file(&dir.path().join("a"), 100_000, 50, &mut rng(1), floor).unwrap();
        write_file(&dir.path().join("b"), 100_000, 50, &mut rng(2), floor).unwrap();
        let (a, b) = (
            fs::read(dir.path().join("a")).unwrap(),
            fs::read(dir.path().join("b")).unwrap(),
        );
        assert_eq!(a[..50_000], b[..50_000]);
        assert_ne!(a[50_000..], b[50_000..]);
    }
}
