//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod ceph;
pub mod console;
pub mod rest_server;
pub mod tmux;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use snapstorm::server::{RestServer, RunningServer, ServerConfig, Users};

/// Writes, snapshots and restores, never deletes a snapshot: every pack
/// stays referenced, so damage to any of them must show.
pub const KEEP_EVERYTHING: &str = r#"
description = "write, snapshot, verify; no deletes"
[weights]
write-random-files = 2
snapshot-root = 2
restore-random-snapID = 3
[options]
max-num-files-per-write = 20
max-file-size = "256KiB"
min-dedup-percent = 0
max-dedup-percent = 0
"#;

pub const ID_A: &str = "a000000000000000000000000000000000000000000000000000000000000000";

/// The front door and the reference: README.md and every file of docs/,
/// with their text.
pub fn documents() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

/// The `sh` block that README.md or a file of docs/ marks with
/// `<!-- name -->` … `<!-- /name -->`, as a script: the lines inside its
/// fence, with the fence's indent taken off (a block in a list item is indented).
pub fn readme_script(name: &str) -> String {
    let (path, block) = documents()
        .into_iter()
        .find_map(|(path, text)| {
            let block = text
                .split_once(&format!("<!-- {name} -->"))
                .and_then(|(_, rest)| rest.split_once(&format!("<!-- /{name} -->")))?
                .0
                .to_owned();
            Some((path, block))
        })
        .unwrap_or_else(|| panic!("no document has a block marked {name}"));
    let mut lines = block.lines().skip_while(|l| l.trim() != "```sh");
    let fence = lines
        .next()
        .unwrap_or_else(|| panic!("{}: the {name} block has no ```sh fence", path.display()));
    let indent = &fence[..fence.len() - fence.trim_start().len()];
    lines
        .take_while(|l| l.trim() != "```")
        .map(|l| format!("{}\n", l.strip_prefix(indent).unwrap_or(l)))
        .collect()
}

/// A directory under `root` whose `snapstorm` is the binary under test, to
/// put first on PATH (see [`path_with`]).
pub fn snapstorm_bin_dir(root: &Path) -> PathBuf {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_snapstorm"), bin.join("snapstorm")).unwrap();
    bin
}

/// This process's PATH with `bin` first.
pub fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A two-thread runtime for in-process servers and runs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs Debian's restic against `repository` and fails the test if it fails.
pub fn restic(
    repository: &str,
    password: &str,
    cache: &Path,
    cwd: &Path,
    args: &[&str],
) -> std::process::Output {
    let out = std::process::Command::new(require_program("restic"))
        .args(args)
        .current_dir(cwd)
        .env("RESTIC_REPOSITORY", repository)
        .env("RESTIC_PASSWORD", password)
        .env("RESTIC_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An in-process server on its own runtime, with a fresh data directory.
pub struct TestServer {
    pub runtime: tokio::runtime::Runtime,
    pub server: Option<RunningServer>,
    pub users: Arc<Users>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), configure)
    }

    /// A server on `dir`, e.g. the data directory of a server that stopped.
    pub fn start_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let runtime = runtime();
        let users = Arc::new(Users::new());
        let mut config = ServerConfig::loopback(dir.path(), users.clone());
        configure(&mut config);
        let server = runtime.block_on(RestServer::start(config)).unwrap();
        TestServer {
            runtime,
            server: Some(server),
            users,
            dir,
        }
    }

    /// Stops the server and hands back its data directory.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The SHA-256 of `content` as restic names files.
pub fn restic_id(content: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content))
}

/// Every file under `root` with its content, to prove nothing changed on disk.
pub fn disk_state(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let content = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                b"<dir>".to_vec()
            };
            (e.path().strip_prefix(root).unwrap().to_path_buf(), content)
        })
        .collect()
}

/// Sends raw bytes (for requests an HTTP client library would refuse to
/// send), returns the status code and the whole response text.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The variable that names a program the tests drive, as users name it
/// (`RESTIC_EXE=/path/to/restic`).
pub fn program_variable(name: &str) -> Option<&'static str> {
    match name {
        "restic" => Some("RESTIC_EXE"),
        "kopia" => Some("KOPIA_EXE"),
        "rest-server" => Some("REST_SERVER_EXE"),
        _ => None,
    }
}

/// Fails the test with a clear message when a required external program is
/// missing: never a silent skip that would hide what was not tested.
pub fn require_program(name: &str) -> PathBuf {
    let how = match name {
        "htpasswd" => "install it with `apt-get install -y apache2-utils`".to_owned(),
        "ceph" | "radosgw-admin" => "install it with `apt-get install -y ceph-common`".to_owned(),
        "kopia" | "rest-server" => format!(
            "set {} to it (../shared/bin has one)",
            program_variable(name).unwrap()
        ),
        other => format!("install it with `apt-get install -y {other}`"),
    };
    which(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH nor named by its variable: {how}, or run the tests with `./scripts/test`, which does"
        )
    })
}

/// The restic programs the restic-backed tests run, each of them: the one
/// on PATH (Debian's 0.14) and the one `RESTIC_EXE` names (the restic users
/// run today: `./scripts/test` sets it to `../shared/bin/restic`, 0.18.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResticProgram {
    OnPath,
    Exe,
}

impl ResticProgram {
    pub const BOTH: [ResticProgram; 2] = [ResticProgram::OnPath, ResticProgram::Exe];

    /// The program; a missing one fails the test, naming it and the fix.
    pub fn path(self) -> PathBuf {
        match self {
            ResticProgram::OnPath => std::env::var_os("PATH")
                .and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|dir| dir.join("restic"))
                        .find(|candidate| candidate.is_file())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "`restic` is not on PATH: install it with `apt-get install -y restic` (Debian's 0.14), or run the tests with `./scripts/test`, which does"
                    )
                }),
            ResticProgram::Exe => std::env::var_os("RESTIC_EXE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|path| path.is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "RESTIC_EXE does not name a restic program ({:?}): set it to a current restic (../shared/bin/restic is 0.18.1), or run the tests with `./scripts/test`, which does",
                        std::env::var_os("RESTIC_EXE")
                    )
                }),
        }
    }

    /// The program and the version `restic version` gives.
    pub fn binary(self) -> snapstorm::backend::restic::ResticBinary {
        let path = self.path();
        snapstorm::backend::restic::ResticBinary::at(path.clone())
            .unwrap_or_else(|e| panic!("{self:?} ({}): {e}", path.display()))
    }
}

/// A program as snapstorm finds it: its variable (`RESTIC_EXE`) when set,
/// else the first on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    if let Some(exe) = program_variable(name)
        .and_then(std::env::var_os)
        .filter(|v| !v.is_empty())
    {
        return Some(PathBuf::from(exe)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// `snapstorm serve` running as its own process (the binary under test).
/// `snapstorm serve ARGS…`, its stderr piped, nothing on stdin or stdout.
pub fn serve_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"));
    command
        .arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub stderr_lines: Arc<std::sync::Mutex<Vec<String>>>,
    /// The thread copying stderr into `stderr_lines`: joined on exit, so the
    /// last lines the server wrote are there once it has stopped.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `snapstorm serve --listen 127.0.0.1:0 ARGS…` and waits for its address.
    pub fn start(args: &[&std::ffi::OsStr]) -> Self {
        Self::start_with(
            &[&["--listen".as_ref(), "127.0.0.1:0".as_ref()], args].concat(),
            |_| {},
        )
    }

    /// Starts `snapstorm serve ARGS…` (which must name `--listen`), after
    /// `configure` had its say on the command, and waits for its address.
    pub fn start_with(
        args: &[&std::ffi::OsStr],
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        use std::io::BufRead;
        let mut command = serve_command(args);
        configure(&mut command);
        let mut child = command.spawn().expect("start snapstorm serve");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("on http://").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve did not start: {:?}", lines.lock().unwrap()));
        ServeProcess {
            child,
            addr: addr.parse().unwrap(),
            stderr_lines: lines,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits for the server to exit and for the last of its stderr to be read.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// Peak resident memory of the server process so far, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc status");
        kib * 1024
    }

    /// Sends SIGINT (Ctrl-C) and waits for a clean exit.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::INT);
        self.wait()
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr_lines.lock().unwrap().join("\n")
    }

    /// Waits until a line of stderr after the first `skip` lines satisfies
    /// `found`; returns that line. Fails the test after `timeout`.
    pub fn wait_for_line(
        &self,
        what: &str,
        skip: usize,
        timeout: Duration,
        found: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .stderr_lines
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|l| found(l))
            {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line {what} within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many lines the server wrote to stderr so far.
    pub fn stderr_line_count(&self) -> usize {
        self.stderr_lines.lock().unwrap().len()
    }
}

/// Raises this process's soft open-file limit to at least `wanted` (as far
/// as the hard limit allows), for tests that hold many sockets.
pub fn raise_open_file_limit(wanted: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else { return };
    let target = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
    if soft < target {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )
        .unwrap();
    }
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|n| n >= wanted),
        "the open-file limit is {now:?}, the test needs {wanted}: raise the hard limit (ulimit -Hn)"
    );
}

/// Makes the command's process start with `resource` limited to `limit`
/// (soft and hard, so it cannot raise it).
pub fn limit_child(
    command: &mut std::process::Command,
    resource: rustix::process::Resource,
    limit: u64,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            rustix::process::setrlimit(
                resource,
                rustix::process::Rlimit {
                    current: Some(limit),
                    maximum: Some(limit),
                },
            )
            .map_err(std::io::Error::from)
        });
    }
}

/// A TCP connection to `addr` from the loopback address `from` (any of
/// 127.0.0.0/8 on Linux), so one test can be several peers.
pub async fn connect_from(
    from: std::net::Ipv4Addr,
    addr: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(addr).await
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `text` to a new file only its owner may read (mode 0600).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// An htpasswd file with bcrypt entries, as `htpasswd -B` writes it.
pub fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 5).unwrap()))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// A tree with what backup tools find hard: one large file, many small
/// files, nested and empty directories, a symlink, unicode names, odd modes.
pub fn build_test_tree(root: &Path, large_file_bytes: usize, small_files: usize) {
    use rand::{RngExt, SeedableRng};
    use std::os::unix::fs::PermissionsExt;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    std::fs::create_dir_all(root.join("nested/deeper/deepest")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("ünïcödé/日本語")).unwrap();
    let mut large = vec![0u8; large_file_bytes];
    rng.fill(&mut large[..]);
    std::fs::write(root.join("nested/large.bin"), &large).unwrap();
    for i in 0..small_files {
        let dir = match i % 3 {
            0 => root.join("nested"),
            1 => root.join("nested/deeper/deepest"),
            _ => root.join("ünïcödé/日本語"),
        };
        let mut content = vec![0u8; rng.random_range(0..8192)];
        rng.fill(&mut content[..]);
        std::fs::write(dir.join(format!("small-{i:05}.dat")), content).unwrap();
    }
    std::fs::write(root.join("ünïcödé/файл 🦀.txt"), "unicode content\n").unwrap();
    std::os::unix::fs::symlink("nested/large.bin", root.join("link-to-large")).unwrap();
    let script = root.join("nested/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// Asserts two trees are identical by snapstorm's own fingerprint.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    use snapstorm::engine::fingerprint::{CompareOptions, Fingerprint};
    let want = Fingerprint::of_tree(expected).unwrap();
    let got = Fingerprint::of_tree(actual).unwrap();
    let diff = want.diff(&got, CompareOptions::default());
    assert!(
        diff.is_empty(),
        "restored tree differs:\n{}",
        diff.render(20)
    );
    assert!(!want.is_empty());
}

/// An engine on the real embedded backend (own REST server, rustic_core
/// clients), driven directly from the test thread.
pub struct EngineFixture {
    pub runtime: tokio::runtime::Runtime,
    pub parts: snapstorm::run::launch::EmbeddedParts,
    pub engine: Arc<snapstorm::engine::Engine>,
    pub snapshotter: Arc<snapstorm::multiclient::MultiClientSnapshotter>,
    pub state: tempfile::TempDir,
}

impl EngineFixture {
    pub fn new(scenario: &str, seed: u64) -> Self {
        Self::with_clients(scenario, seed, |clients| clients)
    }

    /// A scenario written inline, as a user would write a scenario file.
    pub fn inline(toml: &str, seed: u64) -> Self {
        let scenario =
            snapstorm::engine::scenario::Scenario::parse("inline", toml, "inline").unwrap();
        Self::open(tempfile::tempdir().unwrap(), scenario, seed, |clients| {
            clients
        })
    }

    /// Lets the test wrap the backend's client factory (to inject panics).
    pub fn with_clients(
        scenario: &str,
        seed: u64,
        wrap: impl FnOnce(
            Arc<dyn snapstorm::engine::traits::ClientFactory>,
        ) -> Arc<dyn snapstorm::engine::traits::ClientFactory>,
    ) -> Self {
        let state = tempfile::tempdir().unwrap();
        let scenario = snapstorm::engine::scenario::Scenario::resolve(scenario).unwrap();
        Self::open(state, scenario, seed, wrap)
    }

    /// A scenario written inline, its repository at `location`.
    pub fn inline_on(
        location: snapstorm::backend::location::RepositoryLocation,
        toml: &str,
        seed: u64,
    ) -> Self {
        let scenario =
            snapstorm::engine::scenario::Scenario::parse("inline", toml, "inline").unwrap();
        Self::open_on(
            location,
            tempfile::tempdir().unwrap(),
            scenario,
            seed,
            |clients| clients,
        )
    }

    pub fn open(
        state: tempfile::TempDir,
        scenario: snapstorm::engine::scenario::Scenario,
        seed: u64,
        wrap: impl FnOnce(
            Arc<dyn snapstorm::engine::traits::ClientFactory>,
        ) -> Arc<dyn snapstorm::engine::traits::ClientFactory>,
    ) -> Self {
        Self::open_on(Default::default(), state, scenario, seed, wrap)
    }

    fn open_on(
        location: snapstorm::backend::location::RepositoryLocation,
        state: tempfile::TempDir,
        scenario: snapstorm::engine::scenario::Scenario,
        seed: u64,
        wrap: impl FnOnce(
            Arc<dyn snapstorm::engine::traits::ClientFactory>,
        ) -> Arc<dyn snapstorm::engine::traits::ClientFactory>,
    ) -> Self {
        use snapstorm::run::launch::{RunSpec, embedded_parts};
        let runtime = runtime();
        let mut spec = RunSpec::new(scenario, state.path().to_path_buf(), seed);
        spec.repository = location;
        let mut parts = runtime.block_on(embedded_parts(&spec)).unwrap();
        parts.clients = wrap(parts.clients.clone());
        let (engine, snapshotter) = parts.engine(&spec).unwrap();
        EngineFixture {
            runtime,
            parts,
            engine,
            snapshotter,
            state,
        }
    }

    pub fn data_dir(&self, client: snapstorm::engine::ClientId) -> PathBuf {
        use snapstorm::engine::traits::FileWriter;
        self.parts.writer.data_dir(client)
    }

    /// Stops the server and hands back the state directory for a later run.
    pub fn close(self) -> tempfile::TempDir {
        self.runtime.block_on(self.parts.server.stop());
        self.state
    }
}

/// Runs the snapstorm binary with arguments; returns (exit code, stdout, stderr).
pub fn snapstorm(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `snapstorm run --state-dir STATE --report REPORT EXTRA…`; returns the
/// exit code, stdout, stderr and the report (null when none was written).
pub fn snapstorm_run(
    state: &Path,
    report: &Path,
    extra: &[&str],
) -> (i32, String, String, serde_json::Value) {
    snapstorm_run_with(state, report, extra, None)
}

/// [`snapstorm_run`] with the restic program `restic` (as `RESTIC_EXE`;
/// `None`: this process's environment decides).
pub fn snapstorm_run_with(
    state: &Path,
    report: &Path,
    extra: &[&str],
    restic: Option<&Path>,
) -> (i32, String, String, serde_json::Value) {
    snapstorm_run_env(state, report, extra, restic, &[])
}

/// As [`snapstorm_run_with`], with more variables in the run's environment.
pub fn snapstorm_run_env(
    state: &Path,
    report: &Path,
    extra: &[&str],
    restic: Option<&Path>,
    env: &[(String, String)],
) -> (i32, String, String, serde_json::Value) {
    let mut args = vec![
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_snapstorm"));
    command
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null());
    if let Some(restic) = restic {
        command.env("RESTIC_EXE", restic);
    }
    let out = command.output().unwrap();
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let json = if report.exists() {
        read_json(report)
    } else {
        serde_json::Value::Null
    };
    (code, out, err, json)
}

/// The report's unexpected failures, one line each with the evidence
/// (what could not be read, the attribution's note): put first in an
/// assertion's message so a truncated log still says why a run failed.
pub fn unexpected_failures(report: &serde_json::Value) -> String {
    report["failures"]
        .as_array()
        .map(|failures| {
            failures
                .iter()
                .filter(|f| f["unexpected"] == true)
                .map(|f| {
                    format!(
                        "{} {} {}: {} | unreadable {} | {}\n",
                        f["client"],
                        f["action"],
                        f["snapshot"],
                        f["summary"],
                        f["unreadable"],
                        f["details"]
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `failure` of a run's `report` is kopia's manifest race: kopia
/// 0.23.1 writes a deleted snapshot back when one of its processes compacts
/// the snapshot manifests it loaded before the delete, after another one
/// compacted the delete away (`scripts/kopia-manifest-race` makes it
/// happen; `tests/kopia_faults.rs` checks that kopia still does). A kopia
/// run can meet it between the server's sessions and `server user add`: a
/// deleted snapshot listed again, an unexpected failure that is kopia's,
/// and rightly reported. (So on kopia a false "deleted snapshot listed
/// again" of snapstorm's own would pass these tests too; the listing
/// check itself is tested in `tests/engine_actions.rs`, both ways.)
pub fn is_kopia_s_manifest_race(report: &serde_json::Value, failure: &serde_json::Value) -> bool {
    report["backend"] == "kopia"
        && failure["kind"] == "deleted-snapshot-present"
        && failure["unexpected"] == true
}

/// Asserts that a run found nothing unexpected but kopia's manifest race:
/// exit 0 and no unexpected failure, or, on kopia, exit 1 and every
/// unexpected failure that race (said on stderr). Returns how many of
/// those there were.
pub fn assert_nothing_unexpected_but_kopia_s_race(
    code: i32,
    err: &str,
    report: &serde_json::Value,
) -> usize {
    let unexpected: Vec<&serde_json::Value> = report["failures"]
        .as_array()
        .map(|failures| {
            failures
                .iter()
                .filter(|f| f["unexpected"] == true)
                .collect()
        })
        .unwrap_or_default();
    let race = unexpected
        .iter()
        .filter(|f| is_kopia_s_manifest_race(report, f))
        .count();
    assert_eq!(
        race,
        unexpected.len(),
        "unexpected:\n{}\n{err}",
        unexpected_failures(report)
    );
    assert_eq!(
        report["totals"]["unexpected_failures"],
        unexpected.len(),
        "{:#}",
        report["totals"]
    );
    let expected_code = if race == 0 { 0 } else { 1 };
    assert_eq!(code, expected_code, "{err}");
    if race > 0 {
        eprintln!(
            "kopia's manifest race: {race} deleted snapshot(s) listed again\n{}",
            unexpected_failures(report)
        );
    }
    race
}

/// Runs once more on `state` with `clients` clients, each first restoring
/// and verifying every snapshot it inherits; asserts exit 0, no failure and
/// every inherited snapshot verified. Returns the report.
pub fn rerun_verifying_everything(state: &Path, report: &Path, clients: u32) -> serde_json::Value {
    let clients = clients.to_string();
    let (code, out, err, report) = snapstorm_run(
        state,
        report,
        &[
            "--clients",
            &clients,
            "--actions",
            "1",
            "--verify-inherited",
            "all",
            "--scenario",
            "one-large-file",
        ],
    );
    assert_eq!(code, 0, "rerun on {}\n{out}\n{err}", state.display());
    assert_eq!(report["failures"], serde_json::json!([]), "{report:#}");
    assert_eq!(
        report["inherited_verified"], report["inherited_snapshots"],
        "every inherited snapshot verified: {report:#}"
    );
    report
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A tmpfs of a given size mounted for one test, unmounted when dropped.
/// Mounting needs root: without it the test fails with a clear message
/// rather than being skipped in silence.
pub struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `16k`).
    pub fn new(size: &str) -> Self {
        Self::try_new(size).unwrap_or_else(|why| {
            panic!(
                "this test needs a tmpfs of {size} and cannot mount one: {why}; run the tests as root (or with CAP_SYS_ADMIN), e.g. in the project's container"
            )
        })
    }

    /// Mounts a tmpfs of `size`, or says why it cannot.
    pub fn try_new(size: &str) -> Result<Self, String> {
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("cannot run `id -u`: {e}"))?;
        let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
        if uid != "0" {
            return Err(format!("not root (uid {uid})"));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run `mount`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount -t tmpfs` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy: a process of the test still holding a file there cannot keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Free bytes on the file system holding `path`, as snapstorm measures them.
pub fn available_space(path: &Path) -> u64 {
    snapstorm::engine::file_writer::available_space(path).unwrap()
}

/// Permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Only actions on the client's own data: fast, and no repository traffic.
pub const LOCAL_ONLY: &str = r#"
description = "local writes and deletes only"
[weights]
write-random-files = 3
delete-files = 1
delete-random-subdirectory = 1
[options]
max-dir-depth = 2
min-num-files-per-write = 1
max-num-files-per-write = 2
min-file-size = "1KiB"
max-file-size = "4KiB"
"#;

pub fn scenario_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// One line on stderr, `snapstorm: PROBLEM…`, and exit code 2.
pub fn assert_one_line_usage_error(args: &[&str], expected: &[&str]) -> String {
    let (code, out, err) = snapstorm(args);
    assert_eq!(code, 2, "{args:?}: {out}\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected:\n{err}");
    assert!(lines[0].starts_with("snapstorm: "), "{args:?}: {err}");
    for part in expected {
        assert!(err.contains(part), "{args:?}: expected `{part}` in:\n{err}");
    }
    err
}

/// A state dir after one short, clean run.
pub fn state_after_one_run(dir: &Path) -> PathBuf {
    let scenario = scenario_file(dir, "local.toml", LOCAL_ONLY);
    let state = dir.join("state");
    let (code, out, err, _) =
        snapstorm_run(&state, &dir.join("first.json"), &local_run_args(&scenario));
    assert_eq!(code, 0, "{out}\n{err}");
    state
}

/// One client, two actions of `scenario` (a [`LOCAL_ONLY`] file), seed 1.
pub fn local_run_args(scenario: &Path) -> Vec<&str> {
    vec![
        "--clients",
        "1",
        "--actions",
        "2",
        "--seed",
        "1",
        "--scenario",
        scenario.to_str().unwrap(),
    ]
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// Each process's command line, as `ps` shows it.
pub fn command_lines() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bytes = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&bytes).replace('\0', " ")))
        })
        .collect()
}

pub fn file_holds(path: &Path, secret: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .windows(secret.len())
        .any(|window| window == secret.as_bytes())
}

/// The lines of a state dir's trace, as JSON.
pub fn trace_of(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("trace.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
