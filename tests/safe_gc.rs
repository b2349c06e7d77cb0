//! What rustic_core's safe (two-phase) prune does to a backup that runs
//! beside it, pinned step by step so the README's account of it stays true
//! (README "Failure modes": the safe GC can hide a new snapshot). When a
//! rustic_core release changes this, this test fails and the README needs
//! a new look.

use rustic_backend::BackendOptions;
use rustic_core::{
    BackupOptions, ConfigOptions, Credentials, IndexedIdsStatus, KeyOptions, LocalDestination,
    LsOptions, OpenStatus, PathList, PruneOptions, Repository, RepositoryBackends,
    RepositoryOptions, RestoreOptions, SnapshotOptions, repofile::SnapshotFile,
};

/// What one GC did with packs.
struct Gc {
    /// Packs no snapshot uses: marked for deletion.
    unused: u64,
    /// Packs marked earlier and deleted now.
    removed: u64,
    /// Packs marked earlier that a snapshot uses again: taken back.
    recovered: u64,
}

struct Repo {
    backends: RepositoryBackends,
    options: RepositoryOptions,
    credentials: Credentials,
}

impl Repo {
    fn init(dir: &std::path::Path) -> Repo {
        let backends = BackendOptions::default()
            .repository(dir.to_str().unwrap())
            .to_backends()
            .unwrap();
        let repo = Repo {
            backends,
            options: RepositoryOptions::default().no_cache(true),
            credentials: Credentials::password("password"),
        };
        Repository::new(&repo.options, &repo.backends)
            .unwrap()
            .init(
                &repo.credentials,
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .unwrap();
        repo
    }

    fn open(&self) -> Repository<OpenStatus> {
        Repository::new(&self.options, &self.backends)
            .unwrap()
            .open(&self.credentials)
            .unwrap()
    }

    /// The safe GC snapstorm's embedded server runs: rustic_core's defaults.
    fn gc(&self) -> Gc {
        let repo = self.open();
        let plan = repo.prune_plan(&PruneOptions::default()).unwrap();
        let gc = Gc {
            unused: plan.stats.packs.unused,
            removed: plan.stats.packs_to_delete.remove,
            recovered: plan.stats.packs_to_delete.recover,
        };
        repo.prune(&PruneOptions::default(), plan).unwrap();
        gc
    }

    fn restore(&self, snapshot: &SnapshotFile, target: &std::path::Path) -> Result<(), String> {
        let text = |e: Box<rustic_core::RusticError>| e.to_string();
        let repo = self.open().to_indexed().map_err(text)?;
        let node = repo
            .node_from_snapshot_and_path(snapshot, "")
            .map_err(text)?;
        let entries = repo.ls(&node, &LsOptions::default()).map_err(text)?;
        let destination =
            LocalDestination::new(target.to_str().unwrap(), true, false).map_err(text)?;
        let options = RestoreOptions::default();
        let plan = repo
            .prepare_restore(&options, entries.clone(), &destination, false)
            .map_err(text)?;
        repo.restore(plan, &options, entries, &destination)
            .map_err(text)
    }
}

fn backup(repo: &Repository<IndexedIdsStatus>, source: &std::path::Path) -> SnapshotFile {
    let sources = PathList::from_string(source.to_str().unwrap())
        .unwrap()
        .sanitize()
        .unwrap();
    let snapshot = SnapshotOptions::default().to_snapshot().unwrap();
    // Contents at the snapshot root, as snapstorm's clients back up.
    let options = BackupOptions::default().as_path(std::path::PathBuf::from("/"));
    repo.backup(&options, &sources, snapshot).unwrap()
}

/// A backup that read the index before a GC marked packs for deletion
/// deduplicates against those packs; its snapshot cannot be restored
/// (`Tree ID … not found in index`: clients leave packs marked for deletion
/// out of their index) until the next GC sees the snapshot and recovers
/// the packs. Nothing is lost, but in between the repository does not give
/// the snapshot back — which is what a restore during a gc-storm can meet.
#[test]
fn the_safe_gc_hides_a_snapshot_made_with_an_older_index_until_the_next_gc() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(&dir.path().join("repo"));
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let content: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(source.join("file.bin"), &content).unwrap();

    let first = backup(&repo.open().to_indexed_ids().unwrap(), &source);
    // A client starts its backup: it reads the index now.
    let in_flight = repo.open().to_indexed_ids().unwrap();
    // Meanwhile the only snapshot using those packs is deleted and a GC runs.
    repo.open().delete_snapshots(&[first.id]).unwrap();
    let marked = repo.gc();
    assert_eq!(
        (marked.unused, marked.removed),
        (2, 0),
        "the GC marks the tree and data packs for deletion, deleting nothing"
    );
    // The backup goes on with the index it read, and reuses those packs.
    let second = backup(&in_flight, &source);

    let hidden = repo
        .restore(&second, &dir.path().join("before"))
        .unwrap_err();
    assert!(hidden.contains("not found in index"), "{hidden}");

    let next = repo.gc();
    assert_eq!(next.recovered, 2, "the next GC recovers them");
    repo.restore(&second, &dir.path().join("after")).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("after/file.bin")).unwrap(),
        content
    );
}
