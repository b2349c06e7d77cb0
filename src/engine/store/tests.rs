//! The store against real directories: fresh, resumed, damaged, shared.

use super::*;

/// Opens the state dir and begins a run in it, as a launch does.
fn open_run(layout: StateLayout, seed: u64) -> Result<MetadataStore, StoreError> {
    let store = MetadataStore::open(layout, "embedded")?;
    store.begin_run(seed, "x")?;
    Ok(store)
}

fn record(id: &str) -> SnapshotRecord {
    SnapshotRecord {
        id: id.into(),
        run: 1,
        created: now_rfc3339(),
        sub_path: None,
        entries: 0,
        bytes: 0,
        deleting: false,
        unsettled: false,
    }
}

#[test]
fn state_survives_reopening_and_counts_runs() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path().join("state"));
    {
        let store = open_run(layout.clone(), 1).unwrap();
        assert_eq!(store.run_number(), 1);
        store
            .record_snapshot(ClientId(1), record("aa"), &Fingerprint::default())
            .unwrap();
        store
            .record_snapshot(ClientId(1), record("bb"), &Fingerprint::default())
            .unwrap();
        store.mark_deleted(ClientId(1), "aa").unwrap();
        assert!(!layout.fingerprint("aa").exists());
    }
    let store = open_run(layout.clone(), 2).unwrap();
    assert_eq!(store.run_number(), 2);
    let live: Vec<_> = store.live(ClientId(1)).into_iter().map(|s| s.id).collect();
    assert_eq!(live, vec!["bb"]);
    assert_eq!(store.deleted_count(ClientId(1)), 1);
    assert!(store.fingerprint("bb").is_ok());
    assert!(matches!(
        store.fingerprint("aa"),
        Err(StoreError::NoFingerprint(_))
    ));
    // No temp files are left behind.
    let leftovers: Vec<_> = fs::read_dir(layout.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_run_begins_with_an_empty_scratch_dir() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path().join("state"));
    let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
    store.begin_run(1, "x").unwrap();
    let left = layout.scratch().join("client-1-0123456789abcdef");
    fs::create_dir_all(left.join("deep")).unwrap();
    fs::write(left.join("deep/file"), b"restored").unwrap();
    drop(store);
    let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
    assert!(left.exists(), "opening alone writes nothing");
    store.begin_run(1, "x").unwrap();
    assert!(!left.exists());
    assert!(layout.scratch().is_dir());
}

#[test]
fn a_delete_in_flight_is_neither_restored_nor_lost() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path());
    let store = open_run(layout.clone(), 1).unwrap();
    for id in ["aa", "bb"] {
        store
            .record_snapshot(ClientId(1), record(id), &Fingerprint::default())
            .unwrap();
    }
    store.mark_deleting(ClientId(1), "aa").unwrap();
    drop(store);
    let store = open_run(layout, 2).unwrap();
    let live: Vec<_> = store.live(ClientId(1)).into_iter().map(|s| s.id).collect();
    assert_eq!(live, vec!["bb"]);
    assert_eq!(
        store.pending_deletes(),
        vec![(ClientId(1), "aa".to_owned())]
    );
    assert_eq!(store.live_counts()[&ClientId(1)], 2);
    store.mark_deleted(ClientId(1), "aa").unwrap();
    assert!(store.pending_deletes().is_empty());
}

#[test]
fn unreadable_fingerprints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path());
    let store = open_run(layout.clone(), 1).unwrap();
    for id in ["aa", "bb", "cc"] {
        store
            .record_snapshot(ClientId(1), record(id), &Fingerprint::default())
            .unwrap();
    }
    drop(store);
    fs::write(layout.fingerprint("aa"), b"").unwrap();
    fs::write(layout.fingerprint("bb"), b"garbage").unwrap();
    let state_before = fs::read(layout.state_file()).unwrap();
    let err = open_run(layout.clone(), 2).unwrap_err().to_string();
    assert_eq!(
        fs::read(layout.state_file()).unwrap(),
        state_before,
        "nothing is written when the metadata is refused"
    );
    assert!(err.contains("2 live snapshot(s)"), "{err}");
    assert!(err.contains("client-1 snapshot aa"), "{err}");
    assert!(err.contains("client-1 snapshot bb"), "{err}");
    assert!(!err.contains("snapshot cc"), "{err}");
}

#[test]
fn a_state_dir_is_used_by_one_snapstorm_and_one_backend() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path());
    let first = open_run(layout.clone(), 1).unwrap();
    assert!(matches!(
        open_run(layout.clone(), 1),
        Err(StoreError::InUse(_))
    ));
    drop(first);
    assert!(matches!(
        MetadataStore::open(layout, "restic"),
        Err(StoreError::OtherBackend { .. })
    ));
}

#[test]
fn opening_writes_nothing_until_the_run_begins() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path().join("state"));
    drop(open_run(layout.clone(), 1).unwrap());
    let before = fs::read(layout.state_file()).unwrap();
    let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
    assert_eq!(store.run_number(), 1);
    drop(store);
    assert_eq!(fs::read(layout.state_file()).unwrap(), before);
    let store = open_run(layout.clone(), 2).unwrap();
    assert_eq!(store.run_number(), 2);
    assert_eq!(store.state().runs.len(), 2);
}

#[test]
fn a_new_state_dir_is_private_and_keeps_its_password_before_any_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path().join("new/state"));
    let store = MetadataStore::open(layout.clone(), "embedded").unwrap();
    let mode = fs::metadata(layout.root()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let saved: State = serde_json::from_slice(&fs::read(layout.state_file()).unwrap()).unwrap();
    assert_eq!(saved.repository_password, store.repository_password());
    assert_eq!((saved.run_counter, saved.runs.len()), (0, 0));
    // An empty directory the user made is set up the same way.
    let empty = tempfile::tempdir().unwrap();
    fs::set_permissions(empty.path(), fs::Permissions::from_mode(0o755)).unwrap();
    MetadataStore::open(StateLayout::new(empty.path()), "embedded").unwrap();
    let mode = fs::metadata(empty.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

#[test]
fn a_repository_without_its_state_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path());
    drop(open_run(layout.clone(), 1).unwrap());
    fs::create_dir_all(layout.repository().join("repo/keys")).unwrap();
    fs::write(layout.repository().join("repo/config"), b"x").unwrap();
    fs::remove_file(layout.state_file()).unwrap();
    let before: Vec<_> = walkdir::WalkDir::new(dir.path())
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    let err = MetadataStore::open(layout.clone(), "embedded").unwrap_err();
    assert!(matches!(err, StoreError::MissingState { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("repository/ holds a repository but state.json is missing"),
        "{text}"
    );
    let after: Vec<_> = walkdir::WalkDir::new(dir.path())
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    assert_eq!(before, after, "nothing created");
}

#[test]
fn a_directory_that_is_not_a_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let err = MetadataStore::open(StateLayout::new(dir.path()), "embedded").unwrap_err();
    assert!(matches!(err, StoreError::NotAStateDir { .. }), "{err}");
    assert!(!dir.path().join("state.json").exists());
    assert!(!dir.path().join(".lock").exists());
}

#[test]
fn a_state_dir_belongs_to_one_repository_location() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StateLayout::new(dir.path().join("state"));
    let rest = "rest:http://127.0.0.1:8000/repo/";
    drop(MetadataStore::open_for(layout.clone(), "embedded", Some(rest), None).unwrap());
    let before = fs::read(layout.state_file()).unwrap();
    for other in [
        None,
        Some("rest:http://127.0.0.1:8001/repo/"),
        Some("/mnt/repo"),
    ] {
        let err = MetadataStore::open_for(layout.clone(), "embedded", other, None).unwrap_err();
        assert!(matches!(err, StoreError::OtherRepository { .. }), "{err}");
        assert!(err.to_string().contains(rest), "{err}");
    }
    assert_eq!(
        fs::read(layout.state_file()).unwrap(),
        before,
        "nothing written"
    );
    let store = MetadataStore::open_for(layout.clone(), "embedded", Some(rest), None).unwrap();
    assert_eq!(store.state().repository.as_deref(), Some(rest));
    drop(store);
    // A state dir of the embedded directory refuses a location.
    let own = StateLayout::new(dir.path().join("own"));
    drop(MetadataStore::open(own.clone(), "embedded").unwrap());
    let err = MetadataStore::open_for(own, "embedded", Some(rest), None).unwrap_err();
    assert!(err.to_string().contains("no --repository"), "{err}");
}

#[test]
fn clients_on_a_shared_repository_carry_their_state_dirs_tag() {
    let dir = tempfile::tempdir().unwrap();
    let client = ClientId(3);
    let own = MetadataStore::open(StateLayout::new(dir.path().join("own")), "embedded").unwrap();
    assert_eq!(own.host_of(client), "client-3");
    let shared = "s3:http://127.0.0.1:7480/bucket/team";
    let hosts = |name: &str| {
        let layout = StateLayout::new(dir.path().join(name));
        let store = MetadataStore::open_for(layout, "embedded", Some(shared), None).unwrap();
        store.host_of(client)
    };
    let (a, b) = (hosts("a"), hosts("b"));
    let tag = a.strip_prefix("client-3.").unwrap();
    assert!(
        tag.len() == 8 && tag.chars().all(|c| c.is_ascii_hexdigit()),
        "{a}"
    );
    assert_ne!(a, b, "each state dir's own");
    assert_eq!(hosts("a"), a, "a resumed run keeps it");
}
