//! A real distributed object store under restic: the throw-away Ceph
//! cluster of `scripts/ceph` (one mon, three memstore OSDs with pool size 3,
//! one mgr, radosgw), started in a temporary directory and stopped by the
//! test on every path. restic (`RESTIC_EXE` when set, else Debian's)
//! initialises, backs up, checks every byte and restores through the S3
//! endpoint; then one OSD is stopped (SIGSTOP) and a backup and a check
//! still succeed on the other two; at the end every process the script
//! started is gone. snapstorm's kopia backend runs on the same cluster
//! through kopia's own S3 storage.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The programs the cluster needs (Debian bookworm's ceph-mon, ceph-osd,
/// ceph-mgr, radosgw, ceph-common) and python3, which signs the request
/// that creates the bucket.
const CLUSTER_PROGRAMS: [&str; 7] = [
    "ceph-mon",
    "ceph-osd",
    "ceph-mgr",
    "radosgw",
    "ceph",
    "radosgw-admin",
    "python3",
];

/// Longest a restic command may take before the test calls it stuck.
const RESTIC_DEADLINE: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ceph")
}

/// A running cluster; dropping it stops it (`scripts/ceph stop`, and as a
/// last resort SIGKILL to every pid the script recorded).
struct Cluster {
    dir: tempfile::TempDir,
    s3: BTreeMap<String, String>,
}

impl Cluster {
    fn start() -> Cluster {
        for program in CLUSTER_PROGRAMS {
            common::require_program(program);
        }
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // Whatever happened, the guard exists before anything is asserted.
        let mut cluster = Cluster {
            dir,
            s3: BTreeMap::new(),
        };
        assert!(
            out.status.success(),
            "scripts/ceph start failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("cluster up in {:.1} s", started.elapsed().as_secs_f64());
        cluster.s3 = parse_env(&String::from_utf8(out.stdout).unwrap());
        let file = cluster.dir.path().join("s3.env");
        assert_eq!(common::mode(&file), 0o600, "s3.env holds the secret key");
        assert_eq!(
            parse_env(&std::fs::read_to_string(&file).unwrap()),
            cluster.s3,
            "s3.env holds what start printed"
        );
        for key in ["endpoint", "bucket", "access_key", "secret_key"] {
            assert!(cluster.s3.contains_key(key), "start printed no {key}=");
        }
        cluster
    }

    fn repository(&self) -> String {
        format!("s3:{}/{}", self.s3["endpoint"], self.s3["bucket"])
    }

    /// Every pid the script recorded, by its pid file's name.
    fn pids(&self) -> Vec<(String, i32)> {
        let mut pids: Vec<(String, i32)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pid"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                let pid = text.split_whitespace().next().unwrap().parse().unwrap();
                (p.file_stem().unwrap().to_string_lossy().into_owned(), pid)
            })
            .collect();
        pids.sort();
        pids
    }

    fn osd_pid(&self, n: u32) -> i32 {
        let pid = self.s3[&format!("osd{n}_pid")].parse().unwrap();
        let name = format!("osd.{n}");
        assert!(
            self.pids().contains(&(name, pid)),
            "start printed osd{n}_pid={pid}, DIR/osd.{n}.pid says otherwise"
        );
        pid
    }

    fn stop(&self) -> std::process::Output {
        Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
        for (_, pid) in self.pids() {
            if running(pid) {
                // SAFETY: a plain signal to a pid this cluster recorded.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The process exists and is not a zombie (an exited child not yet reaped).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

fn resident_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs restic against the cluster; fails the test if it fails or is still
/// running after [`RESTIC_DEADLINE`]. Returns its stdout and how long it took.
fn restic(cluster: &Cluster, work: &Path, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(common::require_program("restic"))
        .args(args)
        .current_dir(work)
        .env("RESTIC_REPOSITORY", cluster.repository())
        .env("RESTIC_PASSWORD", "ceph-test-password")
        .env("RESTIC_CACHE_DIR", work.join("cache"))
        .env("AWS_ACCESS_KEY_ID", &cluster.s3["access_key"])
        .env("AWS_SECRET_ACCESS_KEY", &cluster.s3["secret_key"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RESTIC_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "restic {args:?} still running after {RESTIC_DEADLINE:?}; stderr: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "restic {args:?} failed ({status}) after {took:?}:\n{err}"
    );
    eprintln!("restic {args:?}: {:.1} s", took.as_secs_f64());
    (out, took)
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: a plain signal to a pid the cluster recorded.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

fn restore_and_compare(cluster: &Cluster, work: &Path, source: &Path, target: &str) {
    let target = work.join(target);
    restic(
        cluster,
        work,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    // restic restores the absolute path under the target.
    let restored = target.join(source.strip_prefix("/").unwrap());
    assert_eq!(
        common::disk_state(source),
        common::disk_state(&restored),
        "the restored tree differs byte for byte"
    );
    common::assert_same_tree(source, &restored);
}

#[test]
fn restic_backs_up_to_ceph_and_survives_a_stopped_osd() {
    let restic_program = common::require_program("restic");
    eprintln!("restic: {}", restic_program.display());
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    common::build_test_tree(&source, 2 << 20, 60);

    let cluster = Cluster::start();
    let pids = cluster.pids();
    let names: Vec<&str> = pids.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["mgr", "mon", "osd.0", "osd.1", "osd.2", "rgw"]);
    let resident: u64 = pids.iter().map(|(_, pid)| resident_kib(*pid)).sum();
    eprintln!("cluster resident: {} MiB", resident / 1024);

    let src = source.to_str().unwrap();
    restic(&cluster, work.path(), &["init"]);
    restic(&cluster, work.path(), &["backup", "--no-scan", src]);
    restic(&cluster, work.path(), &["check", "--read-data"]);
    restore_and_compare(&cluster, work.path(), &source, "restore-1");

    // One of three OSDs stops answering: its PGs wait until the other two
    // report it down (heartbeat grace 5 s), then go on with two copies
    // (min_size 2).
    let stopped = cluster.osd_pid(1);
    signal(stopped, libc::SIGSTOP);
    std::fs::write(
        source.join("nested/while-osd-stopped.txt"),
        "written with osd.1 stopped\n",
    )
    .unwrap();
    let (_, backup) = restic(&cluster, work.path(), &["backup", "--no-scan", src]);
    let (_, check) = restic(&cluster, work.path(), &["check", "--read-data"]);
    restore_and_compare(&cluster, work.path(), &source, "restore-2");
    eprintln!(
        "with osd.1 stopped: backup {:.1} s, check --read-data {:.1} s",
        backup.as_secs_f64(),
        check.as_secs_f64()
    );
    signal(stopped, libc::SIGCONT);
    restic(&cluster, work.path(), &["check", "--read-data"]);

    let stop = cluster.stop();
    assert!(
        stop.status.success(),
        "scripts/ceph stop failed: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    for (name, pid) in cluster.pids() {
        assert!(!running(pid), "{name} (pid {pid}) still runs after stop");
    }
    let again = cluster.stop();
    assert!(again.status.success(), "a second stop is no error");
}

/// `snapstorm ARGS` with the cluster's S3 keys in its environment
/// (`secret` instead of the real secret key, when given), run to its end
/// while every process's command line is sampled: its exit code and
/// stderr, and whether the secret key was in any command line.
fn snapstorm_on(cluster: &Cluster, args: &[&str], secret: Option<&str>) -> (i32, String, bool) {
    let secret_key = secret.unwrap_or(&cluster.s3["secret_key"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &cluster.s3["access_key"])
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let mut in_a_command_line = false;
    while child.try_wait().unwrap().is_none() {
        in_a_command_line |= common::command_lines()
            .iter()
            .any(|(_, line)| line.contains(secret_key));
        std::thread::sleep(Duration::from_millis(50));
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, reader.join().unwrap(), in_a_command_line)
}

/// kopia's own S3 storage on the cluster: snapstorm creates the bucket it
/// names, refuses keys the store refuses before anything is written, and a
/// 4-client kopia run with network and server-restart faults verifies
/// every restore, explains every error, and leaves no repository in the
/// state dir; the same state dir then resumes on the same bucket.
#[test]
fn kopia_runs_on_ceph_through_s3() {
    common::require_program("kopia");
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    // A bucket the script did not make, and a prefix in it.
    let location = format!("s3:{}/kopia-bucket/team/a", cluster.s3["endpoint"]);

    let refused_state = work.path().join("refused");
    let (code, err, _) = snapstorm_on(
        &cluster,
        &[
            "run",
            "--backend",
            "kopia",
            "--repository",
            &location,
            "--duration",
            "5s",
            "--state-dir",
            refused_state.to_str().unwrap(),
        ],
        Some("not-the-secret"),
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("refused the S3 keys"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    assert!(
        !refused_state.exists(),
        "nothing is written when the keys are refused"
    );

    let state = work.path().join("state");
    let report = work.path().join("report.json");
    let run = |duration: &str, faults: &[&str]| {
        let mut args = vec![
            "run",
            "--backend",
            "kopia",
            "--repository",
            &location,
            "--clients",
            "4",
            "--duration",
            duration,
            "--seed",
            "5",
            "--state-dir",
            state.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ];
        for fault in faults {
            args.extend(["--fault", fault]);
        }
        let (code, err, in_a_command_line) = snapstorm_on(&cluster, &args, None);
        assert!(!in_a_command_line, "the secret key was in a command line");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        (code, err, report)
    };
    let started = Instant::now();
    let (code, err, first) = run(
        "45s",
        &["network@8s:10s,drop=20,error=20", "server-restart@25s:6s"],
    );
    eprintln!(
        "kopia on S3, 45 s run: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains(&cluster.s3["secret_key"]),
        "the secret key is never shown"
    );
    for kind in ["network", "server-restart"] {
        let fault = first["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {:#}", first["faults"]));
        assert_eq!(fault["injected"], true, "{fault}");
        assert_eq!(fault["detected"], true, "{kind} disturbed nobody: {fault}");
    }
    assert_eq!(
        first["totals"]["unexpected_failures"], 0,
        "{:#}",
        first["totals"]
    );
    assert!(
        first["totals"]["restores_verified"].as_u64().unwrap() > 0,
        "{:#}",
        first["totals"]
    );
    let unexplained: Vec<serde_json::Value> = std::fs::read_to_string(state.join("trace.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["outcome"] == "error" && record["explained_by"].is_null())
        .collect();
    assert!(unexplained.is_empty(), "unexplained: {unexplained:#?}");
    // The repository is in the bucket, not in the state dir.
    let recorded = std::fs::read_to_string(state.join("state.json")).unwrap();
    assert!(recorded.contains("kopia-bucket/team/a"), "{recorded}");
    assert!(!recorded.contains(&cluster.s3["secret_key"]), "{recorded}");
    assert!(!state.join("repo").join("kopia.repository.f").exists());
    // Ceph's own listing of the bucket snapstorm created: kopia's objects,
    // every one under the prefix.
    let listed = Command::new("radosgw-admin")
        .arg("--conf")
        .arg(cluster.dir.path().join("ceph.conf"))
        .args([
            "bucket",
            "list",
            "--bucket",
            "kopia-bucket",
            "--max-entries",
            "100000",
        ])
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = objects.iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(names.contains(&"team/a/kopia.repository"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("team/a/p")),
        "no pack: {names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("team/a/")), "{names:?}");
    eprintln!("kopia-bucket holds {} objects", names.len());

    // The same state dir again: kopia connects to the repository it made.
    let (code, err, again) = run("15s", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        again["totals"]["unexpected_failures"], 0,
        "{:#}",
        again["totals"]
    );
}

#[test]
fn bad_usage_exits_2_and_help_exits_0() {
    for args in [&[][..], &["start"][..], &["restart", "/tmp/x"][..]] {
        let out = Command::new(script()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "scripts/ceph {args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    }
    let help = Command::new(script()).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("scripts/ceph start DIR"));
}
