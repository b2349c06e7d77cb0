//! The restic backend against each restic it runs with: Debian's on PATH
//! (0.14) and the one `RESTIC_EXE` names (`./scripts/test`: 0.18.1, what
//! users run today). Each test runs once per program and fails naming a
//! program that is missing.
//!
//! What differs between the two, and what the backend does about it, is in
//! `src/backend/restic/` (`errors.rs`, `locks.rs`, `process.rs`); here each
//! is seen happen for real: restic's own `unlock` on the locks of dead
//! processes, a lock held by a process a fault cut off, `kill-client`, and a
//! mixed run through a network fault and a server restart in which every
//! error is explained.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{KEEP_EVERYTHING, ResticProgram};
use snapstorm::backend::BackendKind;
use snapstorm::backend::embedded::{EmbeddedFaults, STALE_LOCK_HOST};
use snapstorm::engine::Engine;
use snapstorm::engine::traits::{ClientId, FaultHost, FaultInjector};
use snapstorm::engine::{Action, ActionParams, Outcome};
use snapstorm::faults::{FaultKind, FaultSpec};
use snapstorm::run::launch::{EmbeddedParts, RunSpec, embedded_parts};

/// The two programs are two restic releases: otherwise the suite covers one.
#[test]
fn the_suite_runs_two_restic_releases() {
    let [on_path, exe] = ResticProgram::BOTH.map(ResticProgram::binary);
    println!(
        "restic on PATH: {} ({}); RESTIC_EXE: {} ({})",
        on_path.version,
        on_path.path.display(),
        exe.version,
        exe.path.display()
    );
    assert_ne!(
        on_path.version, exe.version,
        "restic on PATH and RESTIC_EXE are both {}: point RESTIC_EXE at another release (../shared/bin/restic is 0.18.1, Debian's is 0.14)",
        exe.version
    );
}

/// `restic` run on a local repository with `password`, its output kept.
fn restic(program: &Path, repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", "password")
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn locks(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("locks")).unwrap().count()
}

/// The data packs in the repository at `repo`.
fn packs(repo: &Path) -> usize {
    walkdir::WalkDir::new(repo.join("data"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

/// What the backend counts on before it tries again: `restic unlock`
/// removes the lock of a process that is gone (SIGKILLed, and reaped, as
/// snapstorm reaps every process it runs), and keeps the lock of one that
/// runs; an exclusive command then gets its lock.
#[test]
fn unlock_removes_the_lock_of_a_killed_process_and_keeps_a_live_ones() {
    for program in ResticProgram::BOTH {
        let binary = program.binary();
        let version = binary.version;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let init = restic(&binary.path, &repo, &["init"]);
        assert!(init.status.success(), "{version}: {init:?}");
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("f"), b"data").unwrap();
        let backup = restic(&binary.path, &repo, &["backup", source.to_str().unwrap()]);
        assert!(backup.status.success(), "{version}: {backup:?}");
        // A backup from a pipe that stays open holds its lock until killed.
        let mut holder = Command::new(&binary.path)
            .args(["backup", "--stdin", "--stdin-filename", "x"])
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD", "password")
            .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while locks(&repo) == 0 {
            assert!(Instant::now() < until, "{version}: the holder took no lock");
            std::thread::sleep(Duration::from_millis(50));
        }
        let unlocked = restic(&binary.path, &repo, &["unlock"]);
        assert!(unlocked.status.success(), "{version}: {unlocked:?}");
        assert_eq!(locks(&repo), 1, "{version}: a live process keeps its lock");
        let refused = restic(&binary.path, &repo, &["forget", "latest"]);
        assert!(
            !refused.status.success(),
            "{version}: forget ran beside a lock"
        );
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains(&format!("by PID {}", holder.id())),
            "{version}: {said}"
        );
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert_eq!(locks(&repo), 1, "{version}: SIGKILL left the lock");
        let unlocked = restic(&binary.path, &repo, &["unlock"]);
        assert!(unlocked.status.success(), "{version}: {unlocked:?}");
        assert_eq!(locks(&repo), 0, "{version}: the dead process's lock went");
        let forgot = restic(&binary.path, &repo, &["forget", "latest"]);
        assert!(forgot.status.success(), "{version}: {forgot:?}");
    }
}

/// The locks in the repository at `repo` of processes that still run:
/// `restic unlock` removes the rest (their processes are gone).
fn live_locks(program: &Path, repo: &Path, password: &str) -> usize {
    let out = Command::new(program)
        .args(["--no-cache", "unlock"])
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    locks(repo)
}

/// The repository of a state dir (the embedded server serves `repo` there).
fn repository(state: &Path) -> std::path::PathBuf {
    state.join("repository").join("repo")
}

/// The repository password of a state dir (`state.json`).
fn repository_password(state: &Path) -> String {
    let state = common::read_json(&state.join("state.json"));
    state["repository_password"]
        .as_str()
        .expect("state.json names the repository password")
        .to_owned()
}

/// A lock held by a client whose process a fault cut off is that fault's:
/// client-2's backup is under way when it is revoked; client-4's forget
/// needs the exclusive lock. restic 0.14 retries the 401s for about a
/// minute, holding its lock: the forget gives up, held up by client-2, and
/// the revoke explains it although it was client-2 that was revoked.
/// restic 0.18 takes a 401 as final: its backup ends at once, its lock
/// left behind (the lock's removal is refused too), and the forget's
/// `restic unlock` removes it. Either way nothing is unexplained.
#[test]
fn a_lock_held_by_a_process_a_fault_cut_off_is_that_faults() {
    for program in ResticProgram::BOTH {
        let binary = program.binary();
        let version = binary.version;
        let run = DrivenRun::start(&binary);
        let (state, parts, engine, faults, host) =
            (&run.state, &run.parts, &run.engine, &run.faults, &run.host);
        let exec = |client: u32, action| run.exec(client, action);
        for _ in 0..2 {
            assert_eq!(exec(4, Action::WriteRandomFiles).outcome, Outcome::Ok);
            let snapshot = exec(4, Action::SnapshotRoot);
            assert_eq!(snapshot.outcome, Outcome::Ok, "{version}: {snapshot:?}");
        }
        // client-2: a backup long enough to be cut off in the middle.
        use snapstorm::engine::traits::FileWriter;
        let data = parts.writer.data_dir(ClientId(2));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("big"), common_random(400 << 20)).unwrap();
        let repo = parts.server.repo_dir().expect("a directory").to_path_buf();
        let packs_before = packs(&repo);
        std::thread::scope(|scope| {
            let backup = scope.spawn(|| exec(2, Action::SnapshotRoot));
            // Its first pack landed: the backup runs, with its lock.
            let until = Instant::now() + Duration::from_secs(120);
            while packs(&repo) == packs_before {
                assert!(
                    Instant::now() < until,
                    "{version}: client-2's backup uploaded nothing"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                locks(&repo) > 0,
                "{version}: client-2's backup holds a lock"
            );
            let mut revoke = FaultSpec::new(FaultKind::RevokeClient, Duration::ZERO);
            revoke.client = Some(2);
            revoke.duration = Some(Duration::from_secs(40));
            let injected = faults
                .inject(&revoke, &[ClientId(2), ClientId(4)], host)
                .unwrap();
            let forget = exec(4, Action::DeleteRandomSnapshot);
            println!("restic {version}: client-4's forget: {forget:?}");
            let backup = backup.join().unwrap();
            println!("restic {version}: client-2's backup: {backup:?}");
            assert_ne!(backup.outcome, Outcome::Failure, "{version}: {backup:?}");
            if backup.outcome == Outcome::Error {
                assert_eq!(
                    backup.explained_by.as_deref(),
                    Some(injected.label.as_str()),
                    "{version}: {backup:?}"
                );
            }
            match forget.outcome {
                Outcome::Ok => assert!(
                    !version.retries_locks() || backup.outcome == Outcome::Error,
                    "{version}: {backup:?}"
                ),
                Outcome::Error => {
                    let message = forget.message.as_deref().unwrap_or("");
                    assert!(
                        message.starts_with("held up ")
                            && message.contains(" s by the lock of client-2's restic process"),
                        "{version}: {forget:?}"
                    );
                    assert_eq!(
                        forget.explained_by.as_deref(),
                        Some(injected.label.as_str()),
                        "{version}: the revoke of client-2 explains client-4's wait: {forget:?}"
                    );
                }
                _ => panic!("{version}: {forget:?}"),
            }
            // restic 0.14 keeps its lock while it retries; 0.18 gives up at once.
            if !version.retries_locks() {
                assert_eq!(forget.outcome, Outcome::Error, "{version}: {forget:?}");
            }
        });
        let report = engine.report();
        assert_eq!(
            report.totals.errors, report.totals.expected_errors,
            "{version}: every error is explained: {report:#?}"
        );
        let password = repository_password(state.path());
        assert_eq!(
            live_locks(&binary.path, &repo, &password),
            0,
            "{version}: no process lingers with a lock"
        );
        run.stop();
    }
}

/// `stale-lock` then `unlock`, with each release: restic reads the lock
/// snapstorm leaves (another host's, so plain `restic unlock` keeps it), a
/// backup waits for it until its patience runs out and gives up — an error
/// the lock explains — and `unlock` (restic's `unlock --remove-all`) removes
/// it, after which backups go through and nothing more is the lock's.
#[test]
fn a_stale_lock_holds_every_backup_until_unlock_removes_it() {
    for program in ResticProgram::BOTH {
        let binary = program.binary();
        let version = binary.version;
        let run = DrivenRun::start(&binary);
        let (state, engine, faults, host) = (&run.state, &run.engine, &run.faults, &run.host);
        let exec = |action| run.exec(1, action);
        let clients = [ClientId(1)];
        assert_eq!(exec(Action::WriteRandomFiles).outcome, Outcome::Ok);
        assert_eq!(exec(Action::SnapshotRoot).outcome, Outcome::Ok);

        let stale = faults
            .inject(
                &FaultSpec::new(FaultKind::StaleLock, Duration::ZERO),
                &clients,
                host,
            )
            .unwrap();
        let repo = repository(state.path());
        let password = repository_password(state.path());
        assert_eq!(
            live_locks(&binary.path, &repo, &password),
            1,
            "{version}: plain unlock keeps another host's fresh lock"
        );
        let lock_id = stale.target.trim_start_matches("locks/");
        let shown = Command::new(&binary.path)
            .args(["--no-cache", "--no-lock", "cat", "lock", lock_id])
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD", &password)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let shown_text = String::from_utf8_lossy(&shown.stdout);
        assert!(
            shown.status.success() && shown_text.contains(STALE_LOCK_HOST),
            "{version}: restic reads the lock left behind: {shown:?}"
        );

        assert_eq!(exec(Action::WriteRandomFiles).outcome, Outcome::Ok);
        let held = exec(Action::SnapshotRoot);
        assert_eq!(held.outcome, Outcome::Error, "{version}: {held:?}");
        assert_eq!(
            held.error_class,
            Some(snapstorm::engine::traits::ErrorClass::LockedOut),
            "{version}: locked out by another host's lock, not a race: {held:?}"
        );
        assert_eq!(
            held.explained_by.as_deref(),
            Some(stale.label.as_str()),
            "{version}: {held:?}"
        );

        let unlock = faults
            .inject(
                &FaultSpec::new(FaultKind::Unlock, Duration::ZERO),
                &clients,
                host,
            )
            .unwrap();
        // 0.18 counts them ("removed 1 locks"), 0.14 does not.
        assert!(
            unlock.target.contains("successfully removed"),
            "{version}: {}",
            unlock.target
        );
        assert_eq!(locks(&repo), 0, "{version}");
        let after = exec(Action::SnapshotRoot);
        assert_eq!(after.outcome, Outcome::Ok, "{version}: {after:?}");
        let report = engine.report();
        assert_eq!(
            report.totals.errors, report.totals.expected_errors,
            "{version}: {report:#?}"
        );
        assert_eq!(report.unexpected_failures(), 0, "{version}");
        run.stop();
    }
}

/// A restic-backend run over a fresh state dir, driven action by action:
/// its parts, its engine (the faults' host) and its faults.
struct DrivenRun {
    state: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    parts: EmbeddedParts,
    engine: Arc<Engine>,
    faults: EmbeddedFaults,
    host: Arc<dyn FaultHost>,
}

impl DrivenRun {
    fn start(binary: &snapstorm::backend::restic::ResticBinary) -> DrivenRun {
        let state = tempfile::tempdir().unwrap();
        let runtime = common::runtime();
        let scenario =
            snapstorm::engine::scenario::Scenario::parse("locks", KEEP_EVERYTHING, "locks")
                .unwrap();
        let mut spec = RunSpec::new(scenario, state.path().to_path_buf(), 5);
        spec.backend = BackendKind::Restic;
        spec.restic_exe = Some(binary.path.clone());
        let parts = runtime.block_on(embedded_parts(&spec)).unwrap();
        let (engine, _) = parts.engine(&spec).unwrap();
        let remove = parts.remove_all_locks.clone().expect("restic takes locks");
        let faults = EmbeddedFaults::new(parts.server.clone(), runtime.handle().clone(), 5)
            .removing_locks_with(remove);
        let host: Arc<dyn FaultHost> = engine.clone();
        DrivenRun {
            state,
            runtime,
            parts,
            engine,
            faults,
            host,
        }
    }

    fn exec(&self, client: u32, action: Action) -> snapstorm::engine::ActionRecord {
        let params = ActionParams::default();
        self.engine.exec_action(ClientId(client), action, &params)
    }

    fn stop(&self) {
        self.runtime.block_on(self.parts.server.stop());
    }
}

fn common_random(len: usize) -> Vec<u8> {
    use rand::{RngExt, SeedableRng};
    let mut bytes = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(len as u64).fill(&mut bytes[..]);
    bytes
}

/// `kill-client` SIGKILLs the restic client's process mid-snapshot with
/// either release; the error is the fault's, no process is left holding a
/// lock, and every snapshot the run reported restores.
#[test]
fn kill_client_sigkills_restic_of_each_release() {
    for program in ResticProgram::BOTH {
        let binary = program.binary();
        let version = binary.version;
        let dir = tempfile::tempdir().unwrap();
        let scenario = dir.path().join("writes.toml");
        std::fs::write(&scenario, KEEP_EVERYTHING).unwrap();
        let state = dir.path().join("state");
        let (code, out, err, report) = common::snapstorm_run_with(
            &state,
            &dir.path().join("r.json"),
            &[
                "--backend",
                "restic",
                "--clients",
                "2",
                "--duration",
                "20s",
                "--seed",
                "5",
                "--scenario",
                scenario.to_str().unwrap(),
                "--fault",
                "kill-client@3s,client=1",
            ],
            Some(&binary.path),
        );
        assert_eq!(code, 0, "{version}: {out}\n{err}");
        let trace = std::fs::read_to_string(state.join("trace.jsonl")).unwrap();
        let killed: Vec<serde_json::Value> = trace
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("killed by signal 9"))
            })
            .collect();
        assert!(
            !killed.is_empty(),
            "{version}: no restic process was SIGKILLed:\n{err}"
        );
        for line in &killed {
            assert_eq!(line["client"], 1, "{version}: {line}");
            assert!(
                line["explained_by"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("kill-client@")),
                "{version}: {line}"
            );
        }
        assert_eq!(report["faults"][0]["detected"], true, "{version}: {report}");
        assert_eq!(
            report["totals"]["errors"], report["totals"]["expected_errors"],
            "{version}: {report:#}"
        );
        assert_eq!(
            live_locks(
                &binary.path,
                &repository(&state),
                &repository_password(&state)
            ),
            0,
            "{version}: no process lingers with a lock"
        );
        // Every snapshot the run reported, restored once more.
        let (code, out, err, rerun) = common::snapstorm_run_with(
            &state,
            &dir.path().join("r2.json"),
            &[
                "--backend",
                "restic",
                "--clients",
                "2",
                "--actions",
                "1",
                "--verify-inherited",
                "all",
                "--scenario",
                scenario.to_str().unwrap(),
            ],
            Some(&binary.path),
        );
        assert_eq!(code, 0, "{version}: {out}\n{err}");
        assert_eq!(
            rerun["failures"],
            serde_json::json!([]),
            "{version}: {rerun:#}"
        );
        assert_eq!(rerun["inherited_verified"], rerun["inherited_snapshots"]);
    }
}

/// The measured run of issue 19 (`--backend mixed`, four clients, a
/// network fault that drops and fails a fifth of the requests each, then
/// the server down for 8 s), with each restic: every error is explained or
/// a no-op, nothing fails, exit code 0, and no restic process is left
/// holding a lock.
#[test]
fn a_mixed_run_through_network_faults_and_a_restart_explains_every_error() {
    for program in ResticProgram::BOTH {
        let binary = program.binary();
        let version = binary.version;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (code, out, err, report) = common::snapstorm_run_with(
            &state,
            &dir.path().join("r.json"),
            &[
                "--backend",
                "mixed",
                "--clients",
                "4",
                "--duration",
                "60s",
                "--seed",
                "13",
                "--fault",
                "network@8s:15s,drop=20,error=20",
                "--fault",
                "server-restart@35s:8s",
            ],
            Some(&binary.path),
        );
        // An action still running when the run's grace after its 60 s ran
        // out is the run's to abandon, not the repository's error: the run
        // ends without it, then kills its process, and its line comes after,
        // marked (on a loaded CI machine, a restic 0.14 backup begun at
        // 52.5 s was killed at 120 s).
        let lines = common::trace_of(&state);
        let unexplained: Vec<String> = lines
            .iter()
            .filter(|l| l["outcome"] == "error" && l["explained_by"].is_null())
            .filter(|l| l["abandoned"] != true)
            .map(|l| l.to_string())
            .collect();
        for abandoned in lines.iter().filter(|l| l["abandoned"] == true) {
            assert!(
                abandoned["outcome"] != "error" || abandoned["error_class"] == "local",
                "{version}: an abandoned action's error is the run's own: {abandoned}"
            );
        }
        if lines.iter().any(|l| l["abandoned"] == true) {
            assert!(
                report["abandoned_actions"].as_u64() > Some(0),
                "{version}: the report says what it ended without: {report:#}"
            );
        }
        println!(
            "restic {version}: errors {}, explained {}, no-ops {}",
            report["totals"]["errors"],
            report["totals"]["expected_errors"],
            report["totals"]["no_ops"]
        );
        assert_eq!(code, 0, "{version}: {out}\n{err}");
        assert!(unexplained.is_empty(), "{version}: {unexplained:#?}");
        assert_eq!(
            report["totals"]["errors"], report["totals"]["expected_errors"],
            "{version}: {report:#}"
        );
        assert_eq!(
            report["totals"]["verification_failures"], 0,
            "{version}: {report:#}"
        );
        assert_eq!(report["clients"][1]["kind"], "restic");
        for fault in report["faults"].as_array().unwrap() {
            assert_eq!(fault["injected"], true, "{version}: {fault}");
        }
        assert_eq!(
            live_locks(
                &binary.path,
                &repository(&state),
                &repository_password(&state)
            ),
            0,
            "{version}: no process lingers with a lock"
        );
    }
}
