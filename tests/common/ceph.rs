//! The throw-away Ceph cluster of `scripts/ceph` for the tests that need
//! S3 storage: started in a temporary directory, one at a time per test
//! binary, and stopped by the test that started it on every path (its
//! drop, a failing test's too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The programs the cluster needs (Debian bookworm's ceph-mon, ceph-osd,
/// ceph-mgr, radosgw, ceph-common) and python3, which signs the request
/// that creates the bucket.
pub const CLUSTER_PROGRAMS: [&str; 7] = [
    "ceph-mon",
    "ceph-osd",
    "ceph-mgr",
    "radosgw",
    "ceph",
    "radosgw-admin",
    "python3",
];

/// The script, in the project.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ceph")
}

/// A running cluster; dropping it stops it (`scripts/ceph stop`, and as a
/// last resort SIGKILL to every pid the script recorded).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// What `scripts/ceph start` printed: `endpoint`, `bucket`, the keys, the OSDs' pids.
    pub s3: BTreeMap<String, String>,
    /// One cluster at a time: each takes about 600 MB and a core while it
    /// starts, and the tests' runs are timed against it.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    pub fn start() -> Cluster {
        for program in CLUSTER_PROGRAMS {
            super::require_program(program);
        }
        let one_at_a_time = ONE_CLUSTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        // radosgw serves https too, with the certificate of tests/tls.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .env("CEPH_TLS_CERT", fixtures.join("server.pem"))
            .env("CEPH_TLS_KEY", fixtures.join("server-key.pem"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // Whatever happened, the guard exists before anything is asserted.
        let mut cluster = Cluster {
            dir,
            s3: BTreeMap::new(),
            _one_at_a_time: one_at_a_time,
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
        assert_eq!(super::mode(&file), 0o600, "s3.env holds the secret key");
        assert_eq!(
            parse_env(&std::fs::read_to_string(&file).unwrap()),
            cluster.s3,
            "s3.env holds what start printed"
        );
        for key in [
            "endpoint",
            "tls_endpoint",
            "bucket",
            "access_key",
            "secret_key",
        ] {
            assert!(cluster.s3.contains_key(key), "start printed no {key}=");
        }
        cluster
    }

    pub fn repository(&self) -> String {
        format!("s3:{}/{}", self.s3["endpoint"], self.s3["bucket"])
    }

    /// `s3:https://127.0.0.1:PORT/BUCKET/PREFIX`: radosgw's https port,
    /// its certificate signed by `tests/tls/ca.pem`.
    pub fn tls_repository(&self, bucket: &str, prefix: &str) -> String {
        format!("s3:{}/{bucket}/{prefix}", self.s3["tls_endpoint"])
    }

    /// Every pid the script recorded, by its pid file's name.
    pub fn pids(&self) -> Vec<(String, i32)> {
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

    pub fn osd_pid(&self, n: u32) -> i32 {
        let pid = self.s3[&format!("osd{n}_pid")].parse().unwrap();
        let name = format!("osd.{n}");
        assert!(
            self.pids().contains(&(name, pid)),
            "start printed osd{n}_pid={pid}, DIR/osd.{n}.pid says otherwise"
        );
        pid
    }

    pub fn stop(&self) -> std::process::Output {
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
pub fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}
