//! `--repository`: the storage under test outside the state dir — restic's
//! `rest-server` (REST_SERVER_EXE) and a directory — through the binary:
//! runs that pass, locations refused before anything is written, and the
//! storage's password in no process's command line, trace, report, state
//! or log line at -vv.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rest_server::{Auth, PASSWORD, RestServerProcess, USER, test_ca};

/// `snapstorm ARGS…` with the rest-server's user and password in restic's
/// variables.
fn snapstorm_with_credentials(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(args)
        .env("RESTIC_REST_USERNAME", USER)
        .env("RESTIC_REST_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 10 s run of 2 clients with a network fault on `server`'s repository
/// `name`, with `extra` arguments: it passes, its report names the
/// location, and the repository is on the server. Its report.
fn short_run_passes(
    server: &RestServerProcess,
    name: &str,
    state: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let report = state.with_extension("report.json");
    let location = server.location(name);
    let mut args = vec![
        "run",
        "--repository",
        &location,
        "--duration",
        "10s",
        "--clients",
        "2",
        "--fault",
        "network@2s:2s,drop=20",
        "--state-dir",
        state.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend(extra);
    let (code, out, err) = snapstorm_with_credentials(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    let report = common::read_json(&report);
    assert_eq!(report["repository"], location.as_str());
    assert!(
        report["totals"]["snapshots_created"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(server.repo_dir(name).join("config").is_file());
    report
}

#[test]
fn a_run_on_a_rest_server_passes_and_its_state_dir_keeps_to_it() {
    let server = RestServerProcess::start(Auth::Htpasswd, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let location = server.location("run");
    short_run_passes(&server, "run", &state, &[]);
    assert!(!state.join("repository/repo").exists());

    // The state dir belongs to that repository: another is refused.
    let before = std::fs::read(state.join("state.json")).unwrap();
    for other in [
        Some(server.location("other")),
        None, // the state dir's own repository
    ] {
        let mut args = vec!["run", "--duration", "1s", "--state-dir"];
        args.push(state.to_str().unwrap());
        if let Some(other) = &other {
            args.extend(["--repository", other]);
        }
        let (code, _, err) = snapstorm_with_credentials(&args);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&location), "{err}");
    }
    assert_eq!(std::fs::read(state.join("state.json")).unwrap(), before);
    assert!(!server.repo_dir("other").exists(), "nothing written there");
}

/// A REST server over https whose certificate a private CA signed (as on a
/// NAS): refused before anything is written while snapstorm does not trust
/// it, naming `--cacert`; with `--cacert` naming the CA, a run of rustic_core
/// and restic clients passes through the fault proxy to it, a network fault
/// included, and the repository is on that server.
#[test]
fn a_rest_server_over_https_is_trusted_through_cacert() {
    common::require_program("restic");
    let server = RestServerProcess::start_tls(Auth::Htpasswd);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let location = server.location("tls");
    assert!(
        location.starts_with("rest:https://localhost:"),
        "{location}"
    );

    let (code, _, err) = snapstorm_with_credentials(&[
        "run",
        "--repository",
        &location,
        "--duration",
        "2s",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("certificate snapstorm does not trust") && err.contains("--cacert"),
        "{err}"
    );
    assert!(!state.exists() && !server.repo_dir("tls").exists());

    let ca = test_ca();
    let report = short_run_passes(
        &server,
        "tls",
        &state,
        &["--backend", "mixed", "--cacert", ca.to_str().unwrap()],
    );
    let on_server = std::fs::read_dir(server.repo_dir("tls").join("snapshots"))
        .unwrap()
        .count() as u64;
    assert_eq!(
        on_server,
        report["totals"]["snapshots_live"].as_u64().unwrap(),
        "the run's live snapshots are the https server's: {report}"
    );
}

/// A server that is not there, credentials it refuses, a storage not yet
/// supported, a fault it cannot take: exit 2, one line naming the fix,
/// nothing written.
#[test]
fn locations_that_cannot_be_used_are_refused_before_anything_is_written() {
    let server = RestServerProcess::start(Auth::Htpasswd, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let unreachable = format!("rest:http://{closed}/repo/");
    let wrong_password = format!("rest:http://{USER}:wrong@{}/repo/", server.addr());
    let missing_dir = dir.path().join("no-such-dir");
    let reachable = server.location("repo");
    let s3_closed = format!("s3:http://{closed}/bucket");
    let ca = test_ca().to_str().unwrap().to_owned();
    let s3_tls_closed = format!("s3:https://{closed}/bucket");
    // More certificates than kopia's command line holds, with a second file.
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, std::fs::read_to_string(&ca).unwrap().repeat(200)).unwrap();
    let bundle = bundle.to_str().unwrap().to_owned();
    // Each case: its arguments, what its one line names, and whether the
    // S3 keys are in the environment.
    let cases: Vec<(Vec<&str>, &str, bool)> = vec![
        (vec!["--repository", &unreachable], "cannot reach", false),
        (
            vec!["--repository", &wrong_password],
            "RESTIC_REST_PASSWORD",
            false,
        ),
        (
            vec!["--repository", "sftp:host:/srv/repo"],
            "not yet supported",
            false,
        ),
        (
            vec!["--repository", &reachable, "--cacert", &ca],
            "--cacert is for storage reached over https",
            false,
        ),
        (
            vec!["--cacert", &ca],
            "--cacert is for storage reached over https",
            false,
        ),
        (
            vec![
                "--repository",
                "rest:https://localhost:1/r",
                "--cacert",
                "missing.pem",
            ],
            "--cacert missing.pem: cannot be read",
            false,
        ),
        (
            vec!["--repository", missing_dir.to_str().unwrap()],
            "create the directory",
            false,
        ),
        (
            vec!["--backend", "kopia", "--repository", &reachable],
            "kopia keeps its repository in the state dir or in an S3 bucket",
            false,
        ),
        (
            vec!["--repository", &reachable, "--fault", "corrupt-pack@1s"],
            "writes a damaged file over a whole one",
            false,
        ),
        (
            vec![
                "--backend",
                "restic",
                "--repository",
                &reachable,
                "--fault",
                "truncate-pack@1s",
            ],
            "use delete-pack or delete-index there",
            false,
        ),
        (
            vec!["--fault", "unlock@1s"],
            "rustic_core is lock-free",
            false,
        ),
        (
            vec!["--repository", &reachable, "--fault", "storage-errors@1s"],
            "snapstorm's own server",
            false,
        ),
        (
            vec!["--backend", "kopia", "--repository", &s3_closed],
            "AWS_ACCESS_KEY_ID",
            false,
        ),
        (
            vec!["--backend", "kopia", "--repository", &s3_closed],
            "cannot reach",
            true,
        ),
        (vec!["--repository", &s3_closed], "cannot reach", true),
        (
            vec![
                "--backend",
                "kopia",
                "--repository",
                &s3_tls_closed,
                "--cacert",
                &bundle,
                "--cacert",
                &ca,
            ],
            "put them in one --cacert file, which kopia reads however large",
            true,
        ),
        (vec!["--fault", "stop-osd@1s"], "pid=PID", false),
        (vec!["--fault", "stop-osd@1s,pid=1"], "not ceph-osd", false),
        (
            vec!["--backend", "mixed", "--repository", &s3_closed],
            "cannot reach",
            true,
        ),
        (
            vec![
                "--backend",
                "kopia",
                "--repository",
                &s3_closed,
                "--fault",
                "delete-pack@2s",
            ],
            "delete-pack",
            true,
        ),
    ];
    for (extra, names, keys) in cases {
        let mut args = vec!["run", "--duration", "2s", "--state-dir"];
        args.push(state.to_str().unwrap());
        args.extend(extra.iter().copied());
        let mut command = Command::new(env!("CARGO_BIN_EXE_snapstorm"));
        command.args(&args).stdin(Stdio::null());
        if keys {
            command
                .env("AWS_ACCESS_KEY_ID", "snapstorm-test")
                .env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
        } else {
            command
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        let out = command.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The warning about a password written in the URL comes first.
        let last = err.lines().last().unwrap_or_default();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(last.contains(names), "{extra:?}: {err}");
        assert!(!err.contains("wrong"), "no password or key is shown: {err}");
        assert!(!state.exists(), "{extra:?}: nothing is written");
    }
    assert!(!server.repo_dir("repo").exists(), "nothing written there");
}

#[test]
fn a_run_on_a_directory_keeps_the_repository_there() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("mounted");
    std::fs::create_dir(&storage).unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("report.json");
    let (code, out, err, report) = common::snapstorm_run(
        &state,
        &report,
        &[
            "--repository",
            storage.to_str().unwrap(),
            "--duration",
            "6s",
            "--clients",
            "2",
            "--fault",
            "corrupt-pack@3s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(storage.join("config").is_file());
    assert!(!state.join("repository/repo").exists());
    assert_eq!(report["repository"], storage.to_str().unwrap());
}

/// Every command line on the machine while a run goes, and everything the
/// run wrote or logged at -vv: the storage's password is in none of them.
#[test]
fn the_storage_password_is_in_no_command_line_trace_report_or_log() {
    common::require_program("restic");
    let server = RestServerProcess::start(Auth::Htpasswd, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args([
            "run",
            "-vv",
            "--backend",
            "mixed",
            "--repository",
            &server.location("secret"),
            "--duration",
            "12s",
            "--clients",
            "2",
            "--fault",
            "network@2s:3s,drop=30,error=10",
            "--fault",
            "kill-client@4s",
            "--fault",
            "revoke-client@6s:2s",
            "--fault",
            "aggressive-gc@8s",
            "--state-dir",
            state.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .env("RESTIC_REST_USERNAME", USER)
        .env("RESTIC_REST_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes while sampling, so the run never blocks on them.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let (out_reader, err_reader) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut samples = 0;
    let mut saw_restic = false;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run did not end");
        for (pid, cmdline) in common::command_lines() {
            assert!(
                !cmdline.contains(PASSWORD),
                "pid {pid}'s command line holds the password: {cmdline}"
            );
            saw_restic |= cmdline.contains("restic") && !cmdline.contains("rest-server");
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let (out, err) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    assert!(
        samples > 10,
        "sampled {samples} times; {status}: {out}\n{err}"
    );
    assert!(saw_restic, "a restic process was running while sampled");
    assert!(
        err.lines().count() > 100,
        "-vv logs: {} lines",
        err.lines().count()
    );
    // Every fault acts on the external storage as on snapstorm's own, and
    // nothing comes back wrong that they do not explain.
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    for (what, text) in [("stdout", &out), ("stderr at -vv", &err)] {
        assert!(!text.contains(PASSWORD), "{what} holds the password");
    }
    for entry in walkdir::WalkDir::new(dir.path()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            assert!(
                !common::file_holds(entry.path(), PASSWORD),
                "{} holds the password",
                entry.path().display()
            );
        }
    }
    let report = common::read_json(&report);
    assert!(report["repository"].is_string());
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 4, "{faults:?}");
    for fault in faults {
        assert_eq!(fault["injected"], true, "{fault}");
    }
}

/// A password written in the URL works, with a warning, and is shown
/// nowhere after: not even in snapstorm's own command line once it started.
#[test]
fn a_password_in_the_url_works_with_a_warning() {
    let server = RestServerProcess::start(Auth::Htpasswd, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("report.json");
    let location = format!("rest:http://{USER}:{PASSWORD}@{}/url/", server.addr());
    let child = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(["run", "--repository", &location, "--duration", "5s", "-vv"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--report")
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the run is under way (its trace exists), `ps` shows stars.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.join("trace.jsonl").exists() {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(!cmdline.contains(PASSWORD), "{cmdline}");
    assert!(
        cmdline.contains(&format!("{USER}:{}@", "*".repeat(PASSWORD.len()))),
        "{cmdline}"
    );
    let out = child.wait_with_output().unwrap();
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let report = common::read_json(&report);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("warning: the password written in --repository"),
        "{err}"
    );
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    assert_eq!(report["repository"], server.location("url"));
    for entry in walkdir::WalkDir::new(&state) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            assert!(
                !common::file_holds(entry.path(), PASSWORD),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// On an append-only rest-server a GC fault is refused before anything is
/// written, naming why; a scenario that never deletes runs there.
#[test]
fn an_append_only_server_refuses_gc_faults_and_takes_a_run_that_keeps_everything() {
    let server = RestServerProcess::start(Auth::None, true);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let location = server.location("kept");
    for fault in ["aggressive-gc@2s", "gc-storm@2s:2s", "delete-pack@2s"] {
        let (code, _, err) = common::snapstorm(&[
            "run",
            "--repository",
            &location,
            "--duration",
            "3s",
            "--fault",
            fault,
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("append-only") && err.contains(fault), "{err}");
        assert!(!state.exists(), "nothing is written");
        assert!(!server.repo_dir("kept").exists(), "nothing written there");
    }
    let scenario = dir.path().join("keep.toml");
    std::fs::write(&scenario, common::KEEP_EVERYTHING).unwrap();
    let report = dir.path().join("report.json");
    let (code, out, err, report) = common::snapstorm_run(
        &state,
        &report,
        &[
            "--repository",
            &location,
            "--scenario",
            scenario.to_str().unwrap(),
            "--duration",
            "6s",
            "--clients",
            "2",
            "--fault",
            "kill-client@2s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        report["totals"]["restores_verified"].as_u64().unwrap() >= 1,
        "{out}"
    );
    assert!(server.repo_dir("kept").join("config").is_file());
}

/// restic clients on an external REST server: `stale-lock` leaves its
/// lock there through the REST protocol (restic waits on it), `unlock`
/// removes it, and the run passes with no lock left.
#[test]
fn a_stale_lock_is_left_on_a_rest_server_and_unlock_removes_it() {
    common::require_program("restic");
    let server = RestServerProcess::start(Auth::Htpasswd, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let report = short_run_passes(
        &server,
        "stale",
        &state,
        &[
            "--backend",
            "restic",
            "--fault",
            "stale-lock@3s",
            "--fault",
            "unlock@6s",
        ],
    );
    let faults = report["faults"].as_array().unwrap();
    let lock = faults.iter().find(|f| f["kind"] == "stale-lock").unwrap();
    assert_eq!(lock["injected"], true, "{lock}");
    let target = lock["target"].as_str().unwrap();
    assert!(target.contains("snapstorm-gone-host"), "{target}");
    let unlock = faults.iter().find(|f| f["kind"] == "unlock").unwrap();
    assert_eq!(unlock["injected"], true, "{unlock}");
    // The lock was written on the server, and unlock took it (restic's own
    // are gone with their processes).
    let locks = server.repo_dir("stale").join("locks");
    let left: Vec<_> = std::fs::read_dir(&locks).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A scenario file's `[repository]` table names the storage; the command
/// line's `--repository` wins over it.
#[test]
fn a_scenario_file_names_its_repository() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let from_line = dir.path().join("from-line");
    std::fs::create_dir(&from_file).unwrap();
    std::fs::create_dir(&from_line).unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        format!(
            "{}\n[repository]\nlocation = \"{}\"\n",
            common::KEEP_EVERYTHING,
            from_file.display()
        ),
    )
    .unwrap();
    for (state, extra, used) in [
        ("a", vec![], &from_file),
        (
            "b",
            vec!["--repository", from_line.to_str().unwrap()],
            &from_line,
        ),
    ] {
        let state = dir.path().join(state);
        let report = dir.path().join("report.json");
        let mut args = vec!["--scenario", scenario.to_str().unwrap(), "--actions", "3"];
        args.extend(extra);
        let (code, out, err, report) = common::snapstorm_run(&state, &report, &args);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(report["repository"], used.to_str().unwrap());
        assert!(used.join("config").is_file());
    }
    std::fs::write(
        &scenario,
        format!("{}\n[repository]\nplace = \"x\"\n", common::KEEP_EVERYTHING),
    )
    .unwrap();
    let (code, _, err) = common::snapstorm(&["run", "--scenario", scenario.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("place"), "{err}");
}

/// The repository at the server's root (`rest-server --path DIR` serves
/// one there), through `snapstorm run --repository rest:http://HOST:PORT/`,
/// with the storage taken away and given back (`server-restart` stops the
/// proxy in front of it).
#[test]
fn a_run_on_a_rest_servers_root_survives_a_restart() {
    let server = RestServerProcess::start(Auth::None, false);
    let dir = tempfile::tempdir().unwrap();
    let location = format!("rest:http://{}/", server.addr());
    let (code, out, err, report) = common::snapstorm_run(
        &dir.path().join("state"),
        &dir.path().join("report.json"),
        &[
            "--repository",
            &location,
            "--duration",
            "10s",
            "--fault",
            "server-restart@4s:2s",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(report["repository"], location);
    assert_eq!(report["faults"][0]["injected"], true, "{report}");
    assert!(server.dir().join("data/config").is_file());
}
