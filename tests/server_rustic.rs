//! rustic_core (through rustic_backend's REST backend) against the
//! in-process server, alone and at the same time as Debian's restic on the
//! same repository.

mod common;

use std::path::Path;

use common::{assert_same_tree, build_test_tree};
use snapstorm::backend::embedded::{ClientTimeouts, EmbeddedServer, RusticClient};
use snapstorm::engine::progress::Progress;
use snapstorm::engine::traits::{ClientId, ClientSnapshotter, Server, Snapshotter};

const PASSWORD: &str = "shared-repository-password";

fn restic(repo_url: &str, cache: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    common::restic(repo_url, PASSWORD, cache, cwd, args)
}

#[test]
fn rustic_and_restic_back_up_into_one_repository_at_the_same_time() {
    let work = tempfile::tempdir().unwrap();
    let runtime = common::runtime();
    // The server initializes the repository (rustic_core, locally) and serves it.
    let server = runtime
        .block_on(EmbeddedServer::start(
            &work.path().join("repos"),
            PASSWORD,
            1,
        ))
        .unwrap();

    // A rustic_core client over HTTP, with its own user and cache.
    let rustic_source = work.path().join("rustic-source");
    build_test_tree(&rustic_source, 24 * 1024 * 1024, 300);
    let client = ClientId(1);
    let rustic = RusticClient::new(
        work.path().join("rustic-cache"),
        client.to_string(),
        server.master_key(),
        ClientTimeouts::default(),
        server.evidence().clone(),
    );
    rustic
        .connect(client, &server.authorize_client(client).unwrap())
        .unwrap();

    // restic as another user of the same server and repository.
    server.users().add("restic", "restic-pw", false).unwrap();
    let restic_url = format!("rest:http://restic:restic-pw@{}/repo/", server.addr());
    let restic_source = work.path().join("restic-source");
    build_test_tree(&restic_source, 16 * 1024 * 1024, 200);
    std::fs::write(restic_source.join("restic-only.txt"), "from restic\n").unwrap();
    let cache = work.path().join("restic-cache");

    let (rustic_id, _) = std::thread::scope(|scope| {
        let rustic_backup = scope.spawn(|| {
            rustic
                .create_snapshot(client, &rustic_source, &Progress::unobserved())
                .unwrap()
        });
        let restic_backup =
            scope.spawn(|| restic(&restic_url, &cache, &restic_source, &["backup", "."]));
        (rustic_backup.join().unwrap(), restic_backup.join().unwrap())
    });

    // Both snapshots are in the one repository, and each restores byte for byte.
    let listed = rustic.list_snapshots(client).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&rustic_id));

    let rustic_target = work.path().join("rustic-restored");
    rustic
        .restore_snapshot(client, &rustic_id, &rustic_target, &Progress::unobserved())
        .unwrap();
    assert_same_tree(&rustic_source, &rustic_target);

    // restic restores what rustic wrote, and rustic what restic wrote.
    let restic_target = work.path().join("restic-restores-rustic");
    restic(
        &restic_url,
        &cache,
        work.path(),
        &[
            "restore",
            &rustic_id,
            "--target",
            restic_target.to_str().unwrap(),
        ],
    );
    assert_same_tree(&rustic_source, &restic_target);
    let restic_id = listed.iter().find(|id| **id != rustic_id).unwrap();
    let cross = work.path().join("rustic-restores-restic");
    rustic
        .restore_snapshot(client, restic_id, &cross, &Progress::unobserved())
        .unwrap();
    assert_same_tree(&restic_source, &cross);

    restic(&restic_url, &cache, work.path(), &["check", "--read-data"]);
    let check = server.verify_repo().unwrap();
    assert!(check.healthy, "{:?}", check.problems);
    runtime.block_on(server.stop());
}
