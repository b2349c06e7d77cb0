//! Debian's `restic` against `snapstorm serve`: an independent, real client.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{ServeProcess, assert_same_tree, build_test_tree, require_program, write_htpasswd};

struct Restic {
    repo: String,
    cache: tempfile::TempDir,
}

impl Restic {
    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        common::restic(&self.repo, "repo-password", self.cache.path(), cwd, args)
    }

    fn snapshot_ids(&self, cwd: &Path) -> Vec<String> {
        let out = self.run(cwd, &["snapshots", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[test]
fn restic_backs_up_restores_checks_and_prunes_through_snapstorm_serve() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("repos");
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("backup", "s3cret"), ("other", "x")]);
    let server = ServeProcess::start(&[
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
    ]);
    let restic = Restic {
        repo: format!("rest:http://backup:s3cret@{}/repo/", server.addr),
        cache: tempfile::tempdir().unwrap(),
    };
    let source = work.path().join("source");
    build_test_tree(&source, 64 * 1024 * 1024 + 12_345, 600);

    restic.run(work.path(), &["init"]);
    assert!(data_dir.join("repo/config").is_file());
    restic.run(&source, &["backup", "."]);
    let first = restic.snapshot_ids(work.path());
    assert_eq!(first.len(), 1);

    let target = work.path().join("restored");
    restic.run(
        work.path(),
        &["restore", &first[0], "--target", target.to_str().unwrap()],
    );
    assert_same_tree(&source, &target);

    restic.run(work.path(), &["check", "--read-data"]);

    // A second snapshot after a change, then forget the first and prune.
    std::fs::remove_file(source.join("nested/large.bin")).unwrap();
    std::fs::write(source.join("nested/after.txt"), "second snapshot\n").unwrap();
    restic.run(&source, &["backup", "."]);
    assert_eq!(restic.snapshot_ids(work.path()).len(), 2);
    restic.run(work.path(), &["forget", "--keep-last", "1", "--prune"]);
    let remaining = restic.snapshot_ids(work.path());
    assert_eq!(remaining.len(), 1);
    assert_ne!(remaining[0], first[0]);
    restic.run(work.path(), &["check", "--read-data"]);

    let target2 = work.path().join("restored-2");
    restic.run(
        work.path(),
        &["restore", "latest", "--target", target2.to_str().unwrap()],
    );
    assert_same_tree(&source, &target2);

    let status = server.interrupt();
    assert!(
        status.success(),
        "serve exits cleanly on Ctrl-C: {status:?}"
    );
}

/// The README's `snapstorm serve` + restic example, run as written (only the
/// demo directory and the port are moved out of the way).
#[test]
fn readme_serve_example_works_as_written() {
    require_program("htpasswd");
    let script = common::readme_script("serve-example");
    let work = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = script
        .replace("/tmp/snapstorm-demo", work.path().to_str().unwrap())
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_snapstorm")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .env("PATH", path)
        .env("RESTIC_CACHE_DIR", work.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no errors were found"), "{stdout}");
    assert!(work.path().join("repos/repo/config").is_file());
}
