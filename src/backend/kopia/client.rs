//! A client that is the `kopia` program: connected to the kopia server as
//! its own user (`repo connect server` with the server's certificate
//! fingerprint and an overridden user and host name), with its own config
//! file and cache directory; one process per call, its output read as JSON.
//! The flags follow `tests/tools/kopiarunner/kopia_snapshotter.go`
//! (`ConnectClient`, `DeleteSnapshot`) and the `cli/` commands.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::errors::classify_with;
use super::json::{parse_created, parse_listed};
use super::process::{Invocation, KopiaBinary, Output, Processes};
use super::server::CLIENT_HOST;
use crate::backend::embedded::evidence::Evidence;
use crate::engine::progress::Progress;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientFactory, ClientId, ClientSnapshotter,
    Details, GcOptions, SnapshotId, Snapshotter,
};

/// How long one kopia call may take before its process group is SIGKILLed.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// The arguments of each kopia command a client runs, in one place.
pub mod args {
    /// `repo connect server` as `user` (`client-N@host`).
    pub fn connect(url: &str, fingerprint: &str, user: &str, cache: &str) -> Vec<String> {
        let (name, host) = user.split_once('@').unwrap_or((user, super::CLIENT_HOST));
        [
            "repository",
            "connect",
            "server",
            "--url",
            url,
            "--server-cert-fingerprint",
            fingerprint,
            "--override-username",
            name,
            "--override-hostname",
            host,
            "--cache-directory",
            cache,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    pub fn create(source: &str) -> Vec<String> {
        ["snapshot", "create", source, "--json", "--no-progress"]
            .map(str::to_owned)
            .to_vec()
    }

    /// Every client's snapshots, not just this user's and host's.
    pub fn list() -> Vec<String> {
        ["snapshot", "list", "--all", "--json"]
            .map(str::to_owned)
            .to_vec()
    }

    /// Owners are the test's own user; a mode kopia cannot set is an error,
    /// not a warning.
    pub fn restore(id: &str, target: &str) -> Vec<String> {
        [
            "snapshot",
            "restore",
            id,
            target,
            "--skip-owners",
            "--no-ignore-permission-errors",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `--delete` confirms it (without it kopia only shows what it would do).
    pub fn delete(id: &str) -> Vec<String> {
        ["snapshot", "delete", id, "--delete"]
            .map(str::to_owned)
            .to_vec()
    }

    pub fn disconnect() -> Vec<String> {
        ["repository", "disconnect"].map(str::to_owned).to_vec()
    }
}

struct Connected {
    /// `client-N@snapstorm`.
    user: String,
    password: String,
}

/// A kopia client of the kopia server.
pub struct KopiaClient {
    binary: KopiaBinary,
    /// Holds the client's config file and kopia's logs.
    dir: PathBuf,
    cache_dir: PathBuf,
    fingerprint: String,
    action_timeout: Duration,
    processes: Arc<Processes>,
    /// What the fault proxy saw happen to the connections.
    evidence: Arc<Evidence>,
    connection: Mutex<Option<Arc<Connected>>>,
}

impl KopiaClient {
    fn connected(&self, client: ClientId) -> BackendResult<Arc<Connected>> {
        self.connection
            .lock()
            .expect("connection lock")
            .clone()
            .ok_or(BackendError::NotConnected(client))
    }

    /// Runs one kopia command as the client; the output of a successful
    /// run, or the classified error.
    fn kopia(
        &self,
        connected: &Connected,
        command: &str,
        args: Vec<String>,
    ) -> BackendResult<Output> {
        let config_file = self.dir.join("kopia.config");
        let log_dir = self.dir.join("kopia-logs");
        let started = Instant::now();
        let output = Invocation {
            binary: &self.binary,
            config_file: &config_file,
            log_dir: &log_dir,
            password: &connected.password,
            secret_env: Vec::new(),
            args,
            cwd: None,
            deadline: self.action_timeout,
            processes: Some((&self.processes, &connected.user)),
        }
        .run()
        .map_err(|e| BackendError::Local(format!("cannot run kopia {command}: {e}")))?;
        if output.success() {
            Ok(output)
        } else {
            let disturbed = self.evidence.disturbed(&connected.user, started);
            Err(classify_with(command, &output, disturbed))
        }
    }
}

fn absolute_utf8(path: &Path, what: &str) -> BackendResult<String> {
    let path = std::path::absolute(path).map_err(|e| BackendError::Local(e.to_string()))?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| BackendError::Local(format!("{what} path is not UTF-8")))
}

impl Snapshotter for KopiaClient {
    /// kopia's `--json` prints no progress: the console shows the time taken.
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &Path,
        _progress: &Progress,
    ) -> BackendResult<SnapshotId> {
        let connected = self.connected(client)?;
        let source = absolute_utf8(source, "source")?;
        let output = self.kopia(&connected, "snapshot create", args::create(&source))?;
        let created = parse_created(&output.stdout).map_err(|e| {
            BackendError::failed(format!(
                "kopia snapshot create --json: unreadable output: {e}"
            ))
        })?;
        if let Some(reason) = created.incomplete_reason.filter(|r| !r.is_empty()) {
            return Err(BackendError::failed(format!(
                "kopia snapshot create: snapshot {} is incomplete: {reason}",
                created.id
            )));
        }
        Ok(created.id)
    }

    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        let connected = self.connected(client)?;
        let output = self.kopia(&connected, "snapshot list", args::list())?;
        parse_listed(&output.stdout)
            .map(|listed| listed.into_iter().map(|m| m.id).collect())
            .map_err(|e| {
                BackendError::failed(format!(
                    "kopia snapshot list --json: unreadable output: {e}"
                ))
            })
    }

    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &Path,
        _progress: &Progress,
    ) -> BackendResult<()> {
        let connected = self.connected(client)?;
        let target = absolute_utf8(target, "restore")?;
        self.kopia(&connected, "snapshot restore", args::restore(id, &target))
            .map(|_| ())
    }

    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        let connected = self.connected(client)?;
        self.kopia(&connected, "snapshot delete", args::delete(id))
            .map(|_| ())
    }

    fn run_gc(&self, _client: ClientId, _options: &GcOptions) -> BackendResult<Details> {
        Err(BackendError::gc_is_the_servers())
    }
}

impl ClientSnapshotter for KopiaClient {
    fn connect(&self, _client: ClientId, credentials: &ClientCredentials) -> BackendResult<()> {
        for dir in [&self.dir, &self.cache_dir] {
            std::fs::create_dir_all(dir).map_err(|e| BackendError::Local(e.to_string()))?;
        }
        let connected = Connected {
            user: credentials.user.clone(),
            password: credentials.password.clone(),
        };
        let cache = absolute_utf8(&self.cache_dir, "cache")?;
        // Proves the user, the password, the address and the certificate.
        self.kopia(
            &connected,
            "repository connect server",
            args::connect(&credentials.url, &self.fingerprint, &connected.user, &cache),
        )?;
        *self.connection.lock().expect("connection lock") = Some(Arc::new(connected));
        Ok(())
    }

    fn disconnect(&self, _client: ClientId) -> BackendResult<()> {
        let Some(connected) = self.connection.lock().expect("connection lock").take() else {
            return Ok(());
        };
        self.kopia(&connected, "repository disconnect", args::disconnect())
            .map(|_| ())
    }
}

/// Makes a `KopiaClient` per client, each with its own config file and
/// cache directory.
pub struct KopiaClients {
    pub binary: KopiaBinary,
    pub dir_for: Box<dyn Fn(ClientId) -> PathBuf + Send + Sync>,
    pub cache_dir_for: Box<dyn Fn(ClientId) -> PathBuf + Send + Sync>,
    /// The server's certificate fingerprint.
    pub fingerprint: String,
    pub action_timeout: Duration,
    pub processes: Arc<Processes>,
    /// The server's proxy's evidence.
    pub evidence: Arc<Evidence>,
}

impl ClientFactory for KopiaClients {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        Ok(Box::new(KopiaClient {
            binary: self.binary.clone(),
            dir: (self.dir_for)(client),
            cache_dir: (self.cache_dir_for)(client),
            fingerprint: self.fingerprint.clone(),
            action_timeout: self.action_timeout,
            processes: self.processes.clone(),
            evidence: self.evidence.clone(),
            connection: Mutex::new(None),
        }))
    }

    fn kind(&self, _client: ClientId) -> String {
        super::KIND.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each command as the robustness framework runs it
    /// (`tests/tools/kopiarunner/kopia_snapshotter.go`), plus `--json`.
    #[test]
    fn the_commands_are_kopias() {
        assert_eq!(
            args::connect("https://127.0.0.1:4711", "ab12", "client-1@snapstorm", "/c"),
            [
                "repository",
                "connect",
                "server",
                "--url",
                "https://127.0.0.1:4711",
                "--server-cert-fingerprint",
                "ab12",
                "--override-username",
                "client-1",
                "--override-hostname",
                "snapstorm",
                "--cache-directory",
                "/c"
            ]
        );
        assert_eq!(
            args::create("/d/my data"),
            [
                "snapshot",
                "create",
                "/d/my data",
                "--json",
                "--no-progress"
            ]
        );
        assert_eq!(args::list(), ["snapshot", "list", "--all", "--json"]);
        assert_eq!(
            args::restore("b4c1", "/r"),
            [
                "snapshot",
                "restore",
                "b4c1",
                "/r",
                "--skip-owners",
                "--no-ignore-permission-errors"
            ]
        );
        assert_eq!(
            args::delete("b4c1"),
            ["snapshot", "delete", "b4c1", "--delete"]
        );
    }

    /// A script standing in for kopia: prints a fixture and records how it
    /// was called, so the client's own logic (arguments, environment,
    /// parsing, errors) runs for real through the process runner.
    fn fake_kopia(dir: &Path, stdout: &str, exit: i32) -> KopiaBinary {
        use std::os::unix::fs::PermissionsExt;
        let out = dir.join("stdout");
        std::fs::write(&out, stdout).unwrap();
        let path = dir.join("kopia");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$@\" > {d}/args\necho \"$KOPIA_PASSWORD\" > {d}/password\ncat {o}\n[ {exit} -eq 0 ] || echo 'ERROR error loading snapshot x: snapshot not found' >&2\nexit {exit}\n",
                d = dir.display(),
                o = out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        KopiaBinary { path }
    }

    fn client(binary: KopiaBinary, dir: &Path) -> KopiaClient {
        let client = KopiaClient {
            binary,
            dir: dir.join("client"),
            cache_dir: dir.join("cache"),
            fingerprint: "ab12".into(),
            action_timeout: Duration::from_secs(20),
            processes: Arc::new(Processes::new()),
            evidence: Arc::new(Evidence::new()),
            connection: Mutex::new(None),
        };
        client
            .connect(
                ClientId(1),
                &ClientCredentials {
                    user: "client-1@snapstorm".into(),
                    password: "user-secret".into(),
                    url: "https://127.0.0.1:4711".into(),
                    environment: Vec::new(),
                },
            )
            .unwrap();
        client
    }

    #[test]
    fn a_snapshot_is_created_listed_and_its_errors_classified() {
        use crate::engine::traits::ErrorClass;
        let dir = tempfile::tempdir().unwrap();
        let kopia = fake_kopia(dir.path(), super::super::json::fixtures::CREATED, 0);
        let c = client(kopia, dir.path());
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert!(args.contains("repository connect server --url https://127.0.0.1:4711"));
        assert!(!args.contains("user-secret"), "{args}");
        let password = std::fs::read_to_string(dir.path().join("password")).unwrap();
        assert_eq!(password.trim(), "user-secret");
        let id = c
            .create_snapshot(ClientId(1), Path::new("/d"), &Progress::unobserved())
            .unwrap();
        assert_eq!(id, "b4c1f0a29e8d7c6b5a4f3e2d1c0b9a87");

        let kopia = fake_kopia(dir.path(), super::super::json::fixtures::LISTED, 0);
        let c = client(kopia, dir.path());
        assert_eq!(c.list_snapshots(ClientId(1)).unwrap().len(), 2);

        let kopia = fake_kopia(dir.path(), super::super::json::fixtures::PARTIAL, 0);
        let c = client(kopia, dir.path());
        let partial = c
            .create_snapshot(ClientId(1), Path::new("/d"), &Progress::unobserved())
            .unwrap_err();
        assert!(partial.to_string().contains("incomplete"), "{partial}");

        let kopia = fake_kopia(dir.path(), "", 0);
        let c = client(kopia, dir.path());
        // The same `kopia` now fails: the restore is a data error.
        fake_kopia(dir.path(), "", 1);
        let gone = c
            .restore_snapshot(ClientId(1), "x", Path::new("/r"), &Progress::unobserved())
            .unwrap_err();
        assert_eq!(gone.class(), ErrorClass::Data, "{gone}");
        c.disconnect(ClientId(1)).unwrap_err();
        assert!(matches!(
            c.list_snapshots(ClientId(1)),
            Err(BackendError::NotConnected(_))
        ));
    }
}
