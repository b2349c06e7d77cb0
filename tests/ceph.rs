//! A real distributed object store under restic: the throw-away Ceph
//! cluster of `scripts/ceph` (one mon, three memstore OSDs with pool size 3,
//! one mgr, radosgw), started in a temporary directory and stopped by the
//! test on every path. restic (`RESTIC_EXE` when set, else Debian's)
//! initialises, backs up, checks every byte and restores through the S3
//! endpoint; then one OSD is stopped (SIGSTOP) and a backup and a check
//! still succeed on the other two; at the end every process the script
//! started is gone. snapstorm's kopia backend runs on the same cluster
//! through kopia's own S3 storage, and its rustic_core and restic clients
//! through the fault proxy on one prefix.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ceph::{Cluster, running, script};

/// Longest a restic command may take before the test calls it stuck.
const RESTIC_DEADLINE: Duration = Duration::from_secs(120);

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
    restic_on(
        cluster,
        work,
        (&cluster.repository(), "ceph-test-password"),
        args,
    )
}

/// As [`restic`], on another repository of the cluster (location, password).
fn restic_on(
    cluster: &Cluster,
    work: &Path,
    (repository, password): (&str, &str),
    args: &[&str],
) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(common::require_program("restic"))
        .args(args)
        .current_dir(work)
        .env("RESTIC_REPOSITORY", repository)
        .env("RESTIC_PASSWORD", password)
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
    snapstorm_as(cluster, args, secret, &[])
}

/// As [`snapstorm_on`], with more variables in its environment.
fn snapstorm_with(cluster: &Cluster, args: &[&str], env: &[(&str, &str)]) -> (i32, String, bool) {
    snapstorm_as(cluster, args, None, env)
}

fn snapstorm_as(
    cluster: &Cluster,
    args: &[&str],
    secret: Option<&str>,
    env: &[(&str, &str)],
) -> (i32, String, bool) {
    let secret_key = secret.unwrap_or(&cluster.s3["secret_key"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(args)
        .envs(env.iter().copied())
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

/// A run (its exit code, stderr and report) that met `faults` and should
/// have survived them: each injected and detected, no unexpected failure
/// (kopia's manifest race aside: `common::is_kopia_s_manifest_race`),
/// every error in the trace explained — by a fault, or as a race the
/// evidence named (a backup that loaded a snapshot another client had just
/// deleted: clients of one repository race each other, fault or none).
fn assert_survived(
    (code, err, report): (i32, &str, &serde_json::Value),
    state: &Path,
    faults: &[&str],
) {
    for kind in faults {
        let fault = report["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == *kind)
            .unwrap_or_else(|| panic!("no {kind}: {:#}", report["faults"]));
        assert_eq!(fault["injected"], true, "{fault}");
        assert_eq!(fault["detected"], true, "{kind} disturbed nobody: {fault}");
    }
    common::assert_nothing_unexpected_but_kopia_s_race(code, err, report);
    let unexplained: Vec<serde_json::Value> = common::trace_of(state)
        .into_iter()
        .filter(|record| record["outcome"] == "error" && record["explained_by"].is_null())
        .filter(|record| record["error_class"] != "raced")
        // Ended after the run stopped waiting for it: the run's own doing.
        .filter(|record| record["abandoned"] != true)
        .collect();
    assert!(unexplained.is_empty(), "unexplained: {unexplained:#?}");
}

/// A 4-client run on the cluster, as the S3 tests make them.
struct FourClients<'a> {
    cluster: &'a Cluster,
    backend: &'a str,
    location: String,
    seed: &'a str,
    state: PathBuf,
    report: PathBuf,
    /// More arguments (a scenario).
    extra: Vec<String>,
}

impl<'a> FourClients<'a> {
    /// `backend`'s clients on `location`, their state dir and report in `work`.
    fn new(
        cluster: &'a Cluster,
        work: &Path,
        backend: &'a str,
        location: String,
        seed: &'a str,
    ) -> Self {
        FourClients {
            cluster,
            backend,
            location,
            seed,
            state: work.join("state"),
            report: work.join("report.json"),
            extra: Vec::new(),
        }
    }

    /// With the small-files scenario (written into `work`): the cluster's
    /// OSDs hold little.
    fn small_files(mut self, work: &Path) -> Self {
        let scenario = work.join("small-files.toml");
        std::fs::write(&scenario, SMALL_FILES).unwrap();
        self.extra = vec!["--scenario".into(), scenario.display().to_string()];
        self
    }

    /// Runs for `duration` with `faults`: its exit code, stderr and report.
    /// The secret key was in no command line and is not in stderr.
    fn run(&self, duration: &str, faults: &[&str]) -> (i32, String, serde_json::Value) {
        let (state, report) = (self.state.to_str().unwrap(), self.report.to_str().unwrap());
        let mut args: Vec<&str> = vec![
            "run",
            "--backend",
            self.backend,
            "--repository",
            &self.location,
            "--clients",
            "4",
            "--duration",
            duration,
            "--seed",
            self.seed,
            "--state-dir",
            state,
            "--report",
            report,
        ];
        args.extend(self.extra.iter().map(String::as_str));
        for fault in faults {
            args.extend(["--fault", fault]);
        }
        let started = Instant::now();
        let (code, err, in_a_command_line) = snapstorm_on(self.cluster, &args, None);
        eprintln!(
            "{} on S3, {duration} run: {:.1} s",
            self.backend,
            started.elapsed().as_secs_f64()
        );
        assert!(!in_a_command_line, "the secret key was in a command line");
        assert!(
            !err.contains(&self.cluster.s3["secret_key"]),
            "the secret key is never shown"
        );
        let written = std::fs::read_to_string(&self.report)
            .unwrap_or_else(|e| panic!("no report ({e}); exit {code}: {err}"));
        let report: serde_json::Value = serde_json::from_str(&written).unwrap();
        (code, err, report)
    }
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

    let runs = FourClients::new(&cluster, work.path(), "kopia", location.clone(), "5");
    let state = &runs.state;
    let run = |duration: &str, faults: &[&str]| runs.run(duration, faults);
    let (code, err, first) = run(
        "45s",
        &["network@8s:10s,drop=20,error=20", "server-restart@25s:6s"],
    );
    assert_survived((code, &err, &first), state, &["network", "server-restart"]);
    assert!(
        first["totals"]["restores_verified"].as_u64().unwrap() > 0,
        "{:#}",
        first["totals"]
    );
    // The repository is in the bucket, not in the state dir.
    let recorded = std::fs::read_to_string(state.join("state.json")).unwrap();
    assert!(recorded.contains("kopia-bucket/team/a"), "{recorded}");
    assert!(!recorded.contains(&cluster.s3["secret_key"]), "{recorded}");
    assert!(!state.join("repo").join("kopia.repository.f").exists());
    // Ceph's own listing of the bucket snapstorm created: kopia's objects,
    // every one under the prefix.
    let names = bucket_objects(&cluster, "kopia-bucket");
    assert!(
        names.iter().any(|n| n == "team/a/kopia.repository"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("team/a/p")),
        "no pack: {names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("team/a/")), "{names:?}");
    eprintln!("kopia-bucket holds {} objects", names.len());

    // The same state dir again: kopia connects to the repository it made.
    let (code, err, again) = run("15s", &[]);
    common::assert_nothing_unexpected_but_kopia_s_race(code, &err, &again);
}

/// Ceph's own listing of `bucket`: every object's name.
/// S3 over https, as object storage is reached outside a lab: radosgw's
/// https port, its certificate signed by a private CA. Without the CA the
/// run is refused before anything is written, naming `--cacert`; with it,
/// mixed clients (through the fault proxy, a network fault in the way) and
/// kopia (its own S3 client, given the CA file) both pass on a bucket
/// snapstorm creates over https.
#[test]
fn s3_over_https_is_trusted_through_cacert() {
    common::require_program("restic");
    common::require_program("kopia");
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/ca.pem");
    let ca = ca.to_str().unwrap();

    let refused = work.path().join("refused");
    let location = cluster.tls_repository("tls-bucket", "mixed");
    let (code, err, _) = snapstorm_on(
        &cluster,
        &[
            "run",
            "--repository",
            &location,
            "--duration",
            "5s",
            "--state-dir",
            refused.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("does not trust") && err.contains("--cacert"),
        "{err}"
    );
    assert!(!refused.exists(), "nothing is written");
    assert!(!bucket_exists(&cluster, "tls-bucket"), "no bucket was made");

    let mixed = work.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    let mut runs = FourClients::new(&cluster, &mixed, "mixed", location, "7").small_files(&mixed);
    runs.extra.extend(["--cacert".to_owned(), ca.to_owned()]);
    // The fault is shorter than the clients' retries: requests are
    // dropped and failed at the proxy, and every action gets through.
    let (code, err, report) = runs.run("12s", &["network@4s:4s,drop=20,error=10"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        report["faults"][0]["injected"], true,
        "{:#}",
        report["faults"]
    );
    assert_eq!(
        report["totals"]["unexpected_failures"], 0,
        "{:#}",
        report["totals"]
    );
    assert!(
        report["totals"]["restores_verified"].as_u64().unwrap() > 0,
        "{:#}",
        report["totals"]
    );
    let names = bucket_objects(&cluster, "tls-bucket");
    assert!(names.iter().any(|n| n == "mixed/config"), "{names:?}");

    // kopia reaches the storage itself: the CA from RESTIC_CACERT.
    let kopia_state = work.path().join("kopia");
    let kopia_report = work.path().join("kopia.json");
    let (code, err, _) = snapstorm_with(
        &cluster,
        &[
            "run",
            "--backend",
            "kopia",
            "--repository",
            &cluster.tls_repository("tls-bucket", "kopia"),
            "--clients",
            "2",
            "--duration",
            "10s",
            "--state-dir",
            kopia_state.to_str().unwrap(),
            "--report",
            kopia_report.to_str().unwrap(),
        ],
        &[("RESTIC_CACERT", ca)],
    );
    assert!(code <= 1, "{err}");
    let report = common::read_json(&kopia_report);
    common::assert_nothing_unexpected_but_kopia_s_race(code, &err, &report);
    assert!(
        report["totals"]["snapshots_created"].as_u64().unwrap() > 0,
        "{:#}",
        report["totals"]
    );
    let names = bucket_objects(&cluster, "tls-bucket");
    assert!(
        names.iter().any(|n| n == "kopia/kopia.repository"),
        "{names:?}"
    );
}

/// Whether `bucket` exists at all (radosgw-admin knows it).
fn bucket_exists(cluster: &Cluster, bucket: &str) -> bool {
    Command::new("radosgw-admin")
        .arg("--conf")
        .arg(cluster.dir.path().join("ceph.conf"))
        .args(["bucket", "stats", "--bucket", bucket])
        .output()
        .unwrap()
        .status
        .success()
}

fn bucket_objects(cluster: &Cluster, bucket: &str) -> Vec<String> {
    let listed = Command::new("radosgw-admin")
        .arg("--conf")
        .arg(cluster.dir.path().join("ceph.conf"))
        .args([
            "bucket",
            "list",
            "--bucket",
            bucket,
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
    objects
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_owned))
        .collect()
}

/// randomized-small's mix with small files and a check now and then: the
/// cluster's OSDs hold little (see the file).
const SMALL_FILES: &str = include_str!("scenarios/small-files.toml");

/// rustic_core and restic clients on one S3 prefix of the cluster, each
/// through its own listener of the fault proxy: a 4-client mixed run of
/// 60 s with network, kill-client and stop-osd faults verifies restores of
/// both kinds of client and explains every error; the bucket holds restic's layout
/// under the prefix, and restic itself then reads every byte of it
/// (`check --read-data`). A snapshot object removed behind the run's back
/// is then an unexpected failure of the next run on the same state dir.
#[test]
fn mixed_clients_run_on_ceph_through_s3() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let bucket = "mixed-bucket";
    let location = format!("s3:{}/{bucket}/team/b", cluster.s3["endpoint"]);
    let runs = FourClients::new(&cluster, work.path(), "mixed", location.clone(), "3")
        .small_files(work.path());
    let state = &runs.state;
    let run = |duration: &str, faults: &[&str]| runs.run(duration, faults);

    let osd = cluster.osd_pid(1);
    let stop_osd = format!("stop-osd@44s:10s,pid={osd}");
    // Every request dropped or answered 500 for 20 s: restic clients wait
    // it out in their retries, so the rustic_core clients' actions are the
    // ones that fail, and 20 s gives both of them several.
    let (code, err, first) = run(
        "60s",
        &[
            "network@6s:20s,drop=50,error=50",
            "kill-client@30s",
            &stop_osd,
        ],
    );
    assert_survived((code, &err, &first), state, &["network", "kill-client"]);
    // The OSD was stopped and goes on: a cluster that lost one of three
    // serves on, and its wait is no error of the data.
    let stopped = first["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "stop-osd")
        .unwrap_or_else(|| panic!("no stop-osd: {:#}", first["faults"]));
    assert_eq!(stopped["injected"], true, "{stopped}");
    assert!(running(osd), "the OSD was let go on");
    let state_line = std::fs::read_to_string(format!("/proc/{osd}/stat")).unwrap();
    let run_state = state_line
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next();
    assert_ne!(
        run_state,
        Some("T"),
        "the OSD is still stopped: {state_line}"
    );
    for kind in ["rustic", "restic"] {
        let verified: u64 = first["clients"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == kind)
            .map(|c| c["restores_verified"].as_u64().unwrap())
            .sum();
        assert!(
            verified > 0,
            "no {kind} restore verified: {:#}",
            first["clients"]
        );
    }
    assert_eq!(first["repository"], location.as_str());

    // restic's layout, every object under the prefix, in the bucket
    // snapstorm created.
    let names = bucket_objects(&cluster, bucket);
    assert!(names.iter().any(|n| n == "team/b/config"), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("team/b/data/") && n.split('/').count() == 5),
        "no pack under data/XX/: {names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("team/b/")), "{names:?}");
    eprintln!("{bucket} holds {} objects", names.len());

    // restic, outside snapstorm, reads every byte the clients wrote.
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
    assert!(!recorded.to_string().contains(&cluster.s3["secret_key"]));
    let password = recorded["repository_password"].as_str().unwrap();
    // The killed client's lock first, as a user would after a crash (its
    // process is gone from this host, so restic removes it).
    restic_on(&cluster, work.path(), (&location, password), &["unlock"]);
    restic_on(
        &cluster,
        work.path(),
        (&location, password),
        &["check", "--read-data"],
    );

    // A snapshot removed behind the run's back: the next run finds it
    // lost, and no fault explains that.
    let removed = names
        .iter()
        .find(|n| n.starts_with("team/b/snapshots/"))
        .expect("a snapshot object")
        .clone();
    let rm = Command::new("radosgw-admin")
        .arg("--conf")
        .arg(cluster.dir.path().join("ceph.conf"))
        .args(["object", "rm", "--bucket", bucket, "--object", &removed])
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let id = removed.rsplit('/').next().unwrap();
    let (code, err, second) = run("5s", &[]);
    assert_eq!(code, 1, "{err}");
    let failures: Vec<&serde_json::Value> = second["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.to_string().contains(id))
        .collect();
    assert!(
        !failures.is_empty(),
        "{id} not among {:#}",
        second["failures"]
    );
    assert!(
        failures
            .iter()
            .all(|f| f["unexpected"] == true && f["explained_by"].is_null()),
        "{failures:#?}"
    );
}

/// The data faults on S3, through the storage's API: `corrupt-pack` reads
/// a pack's object, flips bytes and writes it back, `delete-pack` deletes
/// one. Each fault's target is the object's key under the prefix, the
/// cluster's own listing agrees (the deleted key gone, the corrupted one
/// there), and every failure they cause (restores, the checks reading
/// every object) is theirs: 4 rustic_core clients, 30 s, exit 0.
#[test]
fn data_faults_on_s3_damage_objects_and_explain_their_failures() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let bucket = "damage-bucket";
    let location = format!("s3:{}/{bucket}/team/c", cluster.s3["endpoint"]);
    let runs =
        FourClients::new(&cluster, work.path(), "embedded", location, "5").small_files(work.path());
    let (code, err, report) = runs.run("30s", &["corrupt-pack@8s", "delete-pack@14s"]);
    assert_survived(
        (code, &err, &report),
        &runs.state,
        &["corrupt-pack", "delete-pack"],
    );
    let names = bucket_objects(&cluster, bucket);
    let target = |kind: &str| {
        let fault = report["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap()
            .clone();
        let target = fault["target"].as_str().unwrap().to_owned();
        assert!(
            target.starts_with("data/") && target.split('/').count() == 3,
            "{kind}'s target is no pack's key: {target}"
        );
        format!("team/c/{target}")
    };
    let corrupted = target("corrupt-pack");
    let deleted = target("delete-pack");
    assert!(names.contains(&corrupted), "{corrupted} not in {names:?}");
    assert!(!names.contains(&deleted), "{deleted} still in the bucket");
    // Each fault explained at least one failure, named by the pack it
    // damaged: the object's id.
    for (kind, key) in [("corrupt-pack", &corrupted), ("delete-pack", &deleted)] {
        let id = key.rsplit('/').next().unwrap();
        let explained: Vec<&serde_json::Value> = report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                f["explained_by"]
                    .as_str()
                    .is_some_and(|by| by.starts_with(&format!("{kind}@")))
            })
            .collect();
        assert!(!explained.is_empty(), "{kind}: {:#}", report["failures"]);
        assert!(
            explained.iter().any(|f| f.to_string().contains(id)),
            "no failure of {kind} names {id}: {explained:#?}"
        );
    }
}

/// The snapshots a run's trace says its clients made.
fn snapshots_made(state: &Path) -> std::collections::BTreeSet<String> {
    common::trace_of(state)
        .into_iter()
        .filter(|r| r["action"] == "snapshot-root" && r["outcome"] == "ok")
        .filter_map(|r| r["snapshot"].as_str().map(str::to_owned))
        .collect()
}

/// Two runs on one prefix at once, as from two machines sharing a bucket:
/// the first (rustic_core clients) made the repository and runs a GC now
/// and then, the second (mixed clients, a new state dir) joins it with its
/// password from `RESTIC_PASSWORD`. Each checks only its own snapshots:
/// both exit 0 with no failure, neither's trace names a snapshot of the
/// other's, and the repository holds the live snapshots of both.
#[test]
fn two_runs_share_one_prefix_while_one_prunes() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let location = format!(
        "s3:{}/{}/shared",
        cluster.s3["endpoint"], cluster.s3["bucket"]
    );
    let pruning = work.path().join("pruning.toml");
    std::fs::write(
        &pruning,
        SMALL_FILES.replace("verify-repo = 1", "verify-repo = 1\nrun-gc = 1"),
    )
    .unwrap();
    let backing_up = work.path().join("backing-up.toml");
    std::fs::write(&backing_up, SMALL_FILES).unwrap();
    let (first, second) = (work.path().join("first"), work.path().join("second"));
    let args = |state: &Path, backend: &'static str, scenario: &Path, seed: &'static str| {
        vec![
            "run".to_owned(),
            "--backend".to_owned(),
            backend.to_owned(),
            "--repository".to_owned(),
            location.clone(),
            "--scenario".to_owned(),
            scenario.to_str().unwrap().to_owned(),
            "--clients".to_owned(),
            "2".to_owned(),
            "--duration".to_owned(),
            "30s".to_owned(),
            "--seed".to_owned(),
            seed.to_owned(),
            "--state-dir".to_owned(),
            state.to_str().unwrap().to_owned(),
        ]
    };
    // The first run makes the repository; its password is the one to share.
    let (code, err, _) = snapstorm_on(
        &cluster,
        &[
            "run",
            "--repository",
            &location,
            "--actions",
            "1",
            "--state-dir",
            first.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("state.json")).unwrap()).unwrap();
    let password = recorded["repository_password"].as_str().unwrap().to_owned();

    let pruning_args = args(&first, "embedded", &pruning, "11");
    let backing_up_args = args(&second, "mixed", &backing_up, "12");
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(|| {
            let args: Vec<&str> = pruning_args.iter().map(String::as_str).collect();
            snapstorm_on(&cluster, &args, None)
        });
        let two = scope.spawn(|| {
            let args: Vec<&str> = backing_up_args.iter().map(String::as_str).collect();
            snapstorm_with(&cluster, &args, &[("RESTIC_PASSWORD", &password)])
        });
        (one.join().unwrap(), two.join().unwrap())
    });
    for ((code, err, in_a_command_line), state) in [(one, &first), (two, &second)] {
        assert!(!in_a_command_line, "the secret key was in a command line");
        assert_eq!(code, 0, "{}: {err}", state.display());
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(
            report["failures"],
            serde_json::json!([]),
            "{}",
            state.display()
        );
    }
    let gc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("report.json")).unwrap()).unwrap();
    assert!(
        gc["gc_runs"].as_u64().unwrap() > 0,
        "the first run pruned: {gc:#}"
    );
    let (mine, theirs) = (snapshots_made(&first), snapshots_made(&second));
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "{mine:?} {theirs:?}"
    );
    assert!(mine.is_disjoint(&theirs));
    // No action of one run acted on a snapshot of the other's (a GC's
    // error may name a file of the other's it raced, as any file).
    for (state, others) in [(&first, &theirs), (&second, &mine)] {
        let touched: Vec<serde_json::Value> = common::trace_of(state)
            .into_iter()
            .filter(|r| r["snapshot"].as_str().is_some_and(|id| others.contains(id)))
            .collect();
        assert!(touched.is_empty(), "{}: {touched:#?}", state.display());
    }
    // restic lists the live snapshots of both runs in the one repository.
    let (listed, _) = restic_on(
        &cluster,
        work.path(),
        (&location, &password),
        &["snapshots", "--json", "--no-lock"],
    );
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let host_of: std::collections::BTreeMap<&str, &str> = listed
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?, s["hostname"].as_str()?)))
        .collect();
    let mut tags = Vec::new();
    for state in [&first, &second] {
        let recorded: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap())
                .unwrap();
        // Each run's clients carry its state dir's tag in their host name.
        let tag = recorded["host_tag"].as_str().unwrap().to_owned();
        for (client, record) in recorded["clients"].as_object().unwrap() {
            for live in record["live"].as_array().unwrap() {
                let id = live["id"].as_str().unwrap();
                let host = host_of
                    .get(id)
                    .unwrap_or_else(|| panic!("{id} of {} not listed", state.display()));
                assert_eq!(*host, format!("client-{client}.{tag}"), "{id}");
            }
        }
        tags.push(tag);
    }
    assert_ne!(tags[0], tags[1], "each run's host names are its own");
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
