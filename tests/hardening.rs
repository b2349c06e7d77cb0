//! Outputs that never clobber, inputs that are bounded, a refused start
//! that writes nothing: each class through the binary, as a careless or
//! hostile user would meet it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    LOCAL_ONLY, assert_one_line_usage_error, disk_state, local_run_args, mkfifo, scenario_file,
    snapstorm, snapstorm_run, state_after_one_run,
};

/// The binary with `args`, killed if it runs longer than `limit`: an input
/// that is never refused must fail the test, not hang it.
fn snapstorm_within(limit: Duration, args: &[&str]) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_report_never_lands_on_what_a_state_dir_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    let before = disk_state(&state);
    let link = dir.path().join("innocent.json");
    std::os::unix::fs::symlink(state.join("state.json"), &link).unwrap();
    std::fs::create_dir(dir.path().join("x")).unwrap();
    let sneaky = dir.path().join("x/../state/trace.jsonl");
    let s = state.to_str().unwrap();
    for report in [
        state.join("state.json"),
        state.join("trace.jsonl"),
        state.join("new.json"),
        link,
        sneaky,
    ] {
        assert_one_line_usage_error(
            &[
                "run",
                "--state-dir",
                s,
                "--actions",
                "1",
                "--report",
                report.to_str().unwrap(),
            ],
            &["that is inside the state dir", "write it elsewhere"],
        );
    }
    assert_eq!(
        disk_state(&state),
        before,
        "nothing in the state dir changed"
    );
}

#[test]
fn a_report_to_a_device_or_fifo_is_written_into_and_a_full_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(dir.path(), "local.toml", LOCAL_ONLY);
    let args = local_run_args(&scenario);

    let run_with_report = |state: &str, report: &Path| {
        let state = dir.path().join(state);
        let mut all = vec![
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ];
        all.extend_from_slice(&args);
        snapstorm(&all)
    };
    let (code, out, err) = run_with_report("s1", Path::new("/dev/null"));
    assert_eq!(code, 0, "{out}\n{err}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device(),
        "/dev/null is still a device"
    );

    let (code, out, err) = run_with_report("s2", Path::new("/dev/full"));
    assert_eq!(code, 2, "a write that fails is no success:\n{out}\n{err}");
    assert!(err.contains("/dev/full"), "{err}");

    let fifo = dir.path().join("report.fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let (code, out, err) = run_with_report("s3", &fifo);
    assert_eq!(code, 0, "{out}\n{err}");
    let written: serde_json::Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(written["totals"]["actions"], 2, "{written}");
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO is still a FIFO"
    );
}

#[test]
fn replay_and_shrink_never_write_into_the_recorded_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    let before = disk_state(&state);
    let s = state.to_str().unwrap();
    assert_one_line_usage_error(
        &["replay", s, "--into", s],
        &["--into", "that is inside the state dir"],
    );
    let inside = state.join("smaller.toml");
    assert_one_line_usage_error(
        &["shrink", s, "-o", inside.to_str().unwrap()],
        &["-o", "that is inside the state dir"],
    );
    assert_eq!(disk_state(&state), before);
}

#[test]
fn a_trace_that_never_ends_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_after_one_run(dir.path());
    let trace = state.join("trace.jsonl");
    let s = state.to_str().unwrap();
    let out = dir.path().join("out.toml");

    std::fs::remove_file(&trace).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &trace).unwrap();
    for args in [
        vec!["replay", s],
        vec!["shrink", s, "-o", out.to_str().unwrap()],
    ] {
        let (code, err) = snapstorm_within(Duration::from_secs(60), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("is a device, not a regular file"),
            "{args:?}: {err}"
        );
    }

    // A FIFO nobody writes to: opening it to read would wait for ever.
    std::fs::remove_file(&trace).unwrap();
    mkfifo(&trace);
    let (code, err) = snapstorm_within(Duration::from_secs(60), &["replay", s]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a FIFO, not a regular file"), "{err}");
    assert!(!out.exists());
}

#[test]
fn actions_caps_fixed_sequences_too() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_file(
        dir.path(),
        "sequence.toml",
        "description = \"five writes\"\n[[clients]]\nsequence = [\"write-random-files\", \"write-random-files\", \"write-random-files\", \"write-random-files\", \"write-random-files\"]\n[options]\nmin-num-files-per-write = 1\nmax-num-files-per-write = 1\nmin-file-size = \"1KiB\"\nmax-file-size = \"1KiB\"\n",
    );
    let (code, out, err, report) = snapstorm_run(
        &dir.path().join("state"),
        &dir.path().join("report.json"),
        &[
            "--actions",
            "2",
            "--seed",
            "1",
            "--scenario",
            scenario.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(report["totals"]["actions"], 2, "{report:#}");
}

#[test]
fn a_backend_that_fails_to_start_leaves_no_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let not_kopia = dir.path().join("kopia");
    std::fs::write(&not_kopia, "#!/bin/sh\necho 'not kopia' >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&not_kopia, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args([
            "run",
            "--backend",
            "kopia",
            "--actions",
            "1",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .env("KOPIA_EXE", &not_kopia)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        !state.exists(),
        "a refused start left {:?}",
        disk_state(&state).keys().collect::<Vec<_>>()
    );
    // And the same state dir works at once with a backend that starts.
    let scenario = scenario_file(dir.path(), "local.toml", LOCAL_ONLY);
    let (code, out, err, _) = snapstorm_run(
        &state,
        &dir.path().join("r.json"),
        &local_run_args(&scenario),
    );
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_fault_option_given_twice_is_refused() {
    let (code, out, err) = snapstorm(&["run", "--fault", "network@1s:2s,drop=10,drop=20"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("`drop` is given twice"), "{err}");
}

/// Password checks at the highest cost an htpasswd file may give (about a
/// second each) from many requests at once: they run at most one per core,
/// and SIGTERM stops the server within its grace (and one check in flight),
/// however many wait.
#[test]
fn serve_stops_on_sigterm_within_its_grace_under_costly_password_checks() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("a", snapstorm::server::users::MAX_HTPASSWD_COST).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let data = dir.path().join("repos");
    let mut server = common::ServeProcess::start(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
    ]);
    let addr = server.addr;
    // 48 checks of about a second each: two dozen seconds of work on two
    // cores, which a server that waited for them all would take to stop.
    let knocking: Vec<_> = (0..48)
        .map(|_| {
            std::thread::spawn(move || {
                let _ = reqwest::blocking::Client::new()
                    .head(format!("http://{addr}/config"))
                    .basic_auth("alice", Some("wrong"))
                    .timeout(Duration::from_secs(120))
                    .send();
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    server.signal(rustix::process::Signal::TERM);
    let status = server.wait();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}: {}", server.stderr());
    // The grace for the requests, then at most the grace again for a check
    // already running (bcrypt cannot be interrupted); a noisy machine's
    // margin on top. Never the whole queue.
    let grace = snapstorm::server::DEFAULT_SHUTDOWN_GRACE;
    assert!(
        took <= grace * 2 + Duration::from_secs(2),
        "stopped after {took:?}, the grace is {grace:?}: {}",
        server.stderr()
    );
    for thread in knocking {
        thread.join().unwrap();
    }
}
