//! snapstorm killed with SIGKILL at moments chosen by what it is doing —
//! writing a file, uploading a snapshot, deleting one, collecting garbage,
//! checking at the end, writing the report — and run again on the same
//! state dir: no file is torn, every snapshot the trace reported is
//! recorded and verifies, and the rerun exits 0.
//!
//! `cargo test --test survival -- --ignored` repeats every moment ten times.

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_json, rerun_verifying_everything};

/// What snapstorm is doing when it is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// A file of a client's data dir is open for writing.
    Write,
    /// The server is receiving a pack of a snapshot.
    SnapshotUpload,
    /// The repository just removed a snapshot file.
    Delete,
    /// A GC just removed an index file it replaced.
    Gc,
    /// The run stopped its actions and checks the repository at the end.
    FinalCheck,
    /// The report is being written.
    Report,
}

const MOMENTS: [Moment; 6] = [
    Moment::Write,
    Moment::SnapshotUpload,
    Moment::Delete,
    Moment::Gc,
    Moment::FinalCheck,
    Moment::Report,
];

/// Writes, snapshots, deletes and collects: every moment comes up often.
const BUSY: &str = r#"
description = "every kind of action, often"
sequence = ["write-random-files", "snapshot-root", "snapshot-root", "restore-random-snapID", "delete-random-snapID", "run-gc"]
[options]
max-num-files-per-write = 30
min-file-size = "64KiB"
max-file-size = "2MiB"
"#;

fn repo(state: &Path) -> PathBuf {
    state.join("repository/repo")
}

/// Watches `dir` (once it exists) for files removed from it.
fn watch_deletions(dir: &Path, until: Instant) -> Option<OwnedFd> {
    use rustix::fs::inotify;
    while !dir.is_dir() {
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).ok()?;
    inotify::add_watch(&fd, dir, inotify::WatchFlags::DELETE).ok()?;
    Some(fd)
}

fn deletion_seen(fd: &OwnedFd) -> bool {
    let mut buf = [std::mem::MaybeUninit::uninit(); 1024];
    rustix::fs::inotify::Reader::new(fd, &mut buf)
        .next()
        .is_ok()
}

/// Whether the process has a file open (for writing, if `writing`) whose
/// path `matches`.
fn has_open_file(pid: u32, writing: bool, matches: &dyn Fn(&str) -> bool) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let for_writing = |fd: &std::ffi::OsStr| {
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy()))
            .unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
            .is_some_and(|flags| flags & 0o3 != 0)
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| matches(&target.to_string_lossy()))
            && (!writing || for_writing(&fd.file_name()))
    })
}

/// Starts a run that will show `moment`, and kills it there. Returns
/// whether the moment was met (a run can end before it comes).
fn kill_at(moment: Moment, dir: &Path, state: &Path, scenario: &Path) -> bool {
    let report = dir.join("killed-report.json");
    let mut args: Vec<String> = ["run", "--clients", "1", "--seed", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--scenario".into(), scenario.display().to_string()]);
    args.extend(["--state-dir".into(), state.display().to_string()]);
    args.extend(["--report".into(), report.display().to_string()]);
    match moment {
        // Damage makes the run end with a full check reading every pack.
        // Requests dropped: restores end in errors and are restored again
        // at the end, reading packs, once the fault is over.
        Moment::FinalCheck => args.extend(
            [
                "--actions",
                "8",
                "--fault",
                "network@0s:10m,latency=0ms,drop=60,error=0",
            ]
            .map(String::from),
        ),
        Moment::Report => args.extend(["--actions", "4"].map(String::from)),
        _ => args.extend(["--duration", "60s"].map(String::from)),
    }
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let until = Instant::now() + Duration::from_secs(90);
    // The stderr line that says the actions are over.
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stderr = child.stderr.take().unwrap();
        let stopping = stopping.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("stopping; waiting") {
                    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
    }
    let data_dir = state.join("clients/client-1/data").display().to_string();
    let packs = repo(state).join("data").display().to_string();
    let report_dir = dir.display().to_string();
    let watched = match moment {
        Moment::Delete => watch_deletions(&repo(state).join("snapshots"), until),
        Moment::Gc => watch_deletions(&repo(state).join("index"), until),
        _ => None,
    };
    // Armed once the run has done a few actions, so there is something to lose.
    let trace = state.join("trace.jsonl");
    let mut armed = false;
    let met = loop {
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            break false;
        }
        if !armed {
            armed = std::fs::read_to_string(&trace).is_ok_and(|t| t.lines().count() >= 4);
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let now = match moment {
            Moment::Write => has_open_file(pid, true, &|p| {
                p.starts_with(&data_dir) && p.contains("/file-")
            }),
            Moment::SnapshotUpload => {
                has_open_file(pid, true, &|p| p.starts_with(&packs) && p.contains("/.tmp"))
            }
            Moment::Delete | Moment::Gc => watched.as_ref().is_some_and(deletion_seen),
            Moment::FinalCheck => {
                stopping.load(std::sync::atomic::Ordering::SeqCst)
                    && has_open_file(pid, false, &|p| p.starts_with(&packs))
            }
            Moment::Report => has_open_file(pid, true, &|p| {
                p.starts_with(&report_dir) && p.contains(".tmp")
            }),
        };
        if now {
            break true;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = child.kill();
    child.wait().unwrap();
    met
}

/// Every line of the trace is a whole JSON object, the last one possibly
/// excepted (cut off by the next run).
fn trace_lines(state: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(state.join("trace.jsonl")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut parsed = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(value) => parsed.push(value),
            Err(error) => assert!(
                n + 1 == lines.len() && !text.ends_with('\n'),
                "trace line {} is torn: {error}: {line}",
                n + 1
            ),
        }
    }
    parsed
}

/// Kills at `moment`, checks what was left, reruns; returns whether the moment was met.
fn survive(moment: Moment) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let scenario = dir.path().join("busy.toml");
    std::fs::write(&scenario, BUSY).unwrap();
    let met = kill_at(moment, dir.path(), &state, &scenario);
    if !met {
        return false;
    }

    // Nothing torn: the state and every fingerprint read whole.
    let before = read_json(&state.join("state.json"));
    for entry in std::fs::read_dir(state.join("fingerprints")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{moment:?}: {} torn: {e}", path.display()));
        }
    }
    // Every snapshot the trace reported is recorded, live or deleted.
    let client = &before["clients"]["1"];
    let recorded: Vec<&str> = ["live", "deleted"]
        .iter()
        .flat_map(|key| client[key].as_array().into_iter().flatten())
        .map(|s| s["id"].as_str().or(s.as_str()).unwrap())
        .collect();
    for line in trace_lines(&state) {
        if line["action"] == "snapshot-root" && line["outcome"] == "ok" {
            let id = line["snapshot"].as_str().unwrap();
            assert!(
                recorded.contains(&id),
                "{moment:?}: snapshot {id} reported but not recorded"
            );
        }
    }

    // The rerun verifies every snapshot it inherits and finds nothing wrong.
    eprintln!("{moment:?}: killed; rerunning");
    rerun_verifying_everything(&state, &dir.path().join("rerun.json"), 1);
    let text = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
    assert!(
        text.ends_with('\n'),
        "{moment:?}: the rerun left a whole trace"
    );
    true
}

/// Kills `rounds` times at each moment; a run that ended before its moment
/// came is tried again (up to three times as many runs).
fn survive_each(rounds: usize) {
    let mut missed = Vec::new();
    for moment in MOMENTS {
        let met = (0..rounds * 3)
            .filter(|_| survive(moment))
            .take(rounds)
            .count();
        if met < rounds {
            missed.push((moment, met));
        }
    }
    assert!(
        missed.is_empty(),
        "kills met fewer times than asked: {missed:?}"
    );
}

#[test]
fn a_kill_at_each_moment_loses_nothing() {
    survive_each(1);
}

#[test]
#[ignore = "long: ten kills at each moment (about 7 minutes)"]
fn ten_kills_at_each_moment_lose_nothing() {
    survive_each(10);
}

/// `snapstorm serve` killed with SIGKILL while restic uploads into it, then
/// started again on the same directory: the partial upload is gone and the
/// repository passes `restic check --read-data`.
#[test]
fn a_server_killed_during_a_restic_upload_leaves_nothing_behind() {
    use common::{ServeProcess, build_test_tree, require_program, write_htpasswd};
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("repos");
    let htpasswd = work.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "pw")]);
    let source = work.path().join("source");
    build_test_tree(&source, 96 * 1024 * 1024, 50);
    let serve_args = [
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--htpasswd".as_ref(),
        htpasswd.as_os_str(),
    ];
    let restic = |server: &ServeProcess, args: &[&str]| {
        let mut command = Command::new(require_program("restic"));
        command
            .args(args)
            .env(
                "RESTIC_REPOSITORY",
                format!("rest:http://alice:pw@{}/repo/", server.addr),
            )
            .env("RESTIC_PASSWORD", "repository-password")
            .env("RESTIC_CACHE_DIR", work.path().join("cache"))
            .current_dir(&source)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut server = ServeProcess::start(&serve_args);
    let init = restic(&server, &["init"]).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let packs = data.join("repo/data");
    let mut backup = restic(&server, &["backup", "."]).spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    let partial = loop {
        let found = walkdir::WalkDir::new(&packs)
            .into_iter()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .map(|e| e.into_path());
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < until, "restic never uploaded");
        assert!(
            backup.try_wait().unwrap().is_none(),
            "the backup ended before an upload was caught"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(partial.exists() || partial.parent().unwrap().is_dir());
    let left = |dir: &Path| {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .count()
    };
    assert!(left(&packs) >= 1, "the kill left a partial upload");
    let _ = backup.kill();
    let _ = backup.wait();

    let server = ServeProcess::start(&serve_args);
    assert_eq!(
        left(&packs),
        0,
        "the restarted server removed the partial upload"
    );
    let check = restic(&server, &["check", "--no-lock", "--read-data"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        check.status.success() && text.contains("no errors were found"),
        "{text}"
    );
}
