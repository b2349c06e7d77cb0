//! The kopia Server: a filesystem repository in the state directory (or
//! an S3 bucket, `storage.rs`), served by `kopia server start` on 127.0.0.1 with a TLS certificate kopia
//! generates; users added and deleted at run time with `server user
//! add/delete` directly on the repository and made known to the running
//! server with `server refresh`; GC is kopia's maintenance directly on the
//! repository while the server serves (`gc.rs` says which).
//!
//! The flags follow kopia's robustness framework
//! (`tests/tools/kopiarunner/kopia_snapshotter.go`: `CreateServer`,
//! `AuthorizeClient`, `RefreshServer`, `setServerPermissions`,
//! `waitUntilServerStarted`), except that no password is ever on a command
//! line: the repository password and the server-control password go
//! through the environment, a user's password as its hash.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::errors::{Said, classify, explanation, said};
use super::gc;
use super::json::{parse_list, parse_listed};
use super::password::{random_salt, user_password_hash};
use super::process::{Invocation, KopiaBinary, Output};
use super::proxy::ConnectionProxy;
use super::starting::{FIRST_LISTEN, START_TIMEOUT, start_server};
pub use super::starting::{certificate_fingerprint, server_address};
use super::storage::{FORMAT_BLOB, KopiaStorage};
use crate::backend::embedded::evidence::Evidence;
use crate::engine::damage::{DataRef, Unreadable};
use crate::engine::store::random_password;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientId, Details, GcDone, GcOptions, Problem,
    RepoCheck, Server, ServerInfo, SnapshotId,
};

/// How long a kopia command on the repository may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a maintenance run (the GC) or a full verify may take.
const LONG_TIMEOUT: Duration = Duration::from_secs(1200);

/// The repository's global policy: keep every snapshot (as many as kopia
/// counts), expire none by age, skip no cache directory.
pub const GLOBAL_POLICY: [&str; 11] = [
    "policy",
    "set",
    "--global",
    "--keep-latest=2147483647",
    "--keep-hourly=0",
    "--keep-daily=0",
    "--keep-weekly=0",
    "--keep-monthly=0",
    "--keep-annual=0",
    "--ignore-cache-dirs=false",
    "--ignore-identical-snapshots=false",
];

/// The host name every client connects with (`--override-hostname`);
/// kopia users are `user@host`.
pub const CLIENT_HOST: &str = "snapstorm";

/// kopia's user name for a client.
pub fn kopia_user(client: ClientId) -> String {
    format!("{client}@{CLIENT_HOST}")
}

/// A running `kopia server start` and the repository it serves.
pub struct KopiaServer {
    binary: KopiaBinary,
    /// `state/kopia`: the server's config, cache, logs, certificate.
    dir: PathBuf,
    storage: KopiaStorage,
    repo_password: String,
    control_password: String,
    /// `https://127.0.0.1:PORT`, where the server itself listens (a
    /// restart listens there again).
    address: String,
    fingerprint: String,
    /// The server; its stdin kept open (`--shutdown-on-stdin`): when
    /// snapstorm ends, however it ends, the server ends too. `None` while
    /// it is stopped.
    child: Mutex<Option<(Child, ChildStdin)>>,
    /// Where the clients connect: a port of its own for each.
    proxy: ConnectionProxy,
    /// What the proxy saw happen to the clients' connections.
    evidence: Arc<Evidence>,
    /// Each client's password, so that a revoked client can be let in again.
    passwords: Mutex<HashMap<ClientId, String>>,
    gc_lock: Mutex<()>,
    /// One uncached check at a time.
    check_lock: Mutex<()>,
    /// One stop or start at a time (a restart's timer and the run's end
    /// may both start the server).
    restart_lock: Mutex<()>,
}

impl KopiaServer {
    /// One kopia command on the repository, as the server's connection.
    fn kopia(&self, args: &[&str], deadline: Duration) -> BackendResult<Output> {
        run_on_repository(
            &self.binary,
            &self.dir.join(SERVER_CONFIG),
            &self.secrets(),
            args,
            deadline,
        )
    }

    /// The secrets each kopia process on the repository has in its
    /// environment.
    fn secrets(&self) -> RepositorySecrets<'_> {
        RepositorySecrets {
            repo_password: &self.repo_password,
            control_password: &self.control_password,
            storage: &self.storage,
        }
    }

    /// One kopia command on the repository that reads it from the storage
    /// itself: a connection of its own whose cache is emptied first. kopia
    /// keeps the contents it read in its cache and reads them from there
    /// again, so a pack flipped after a restore read it would pass any
    /// check made through a cache. The connection is read-only: a kopia
    /// process that may write compacts the snapshot manifests it loaded
    /// (16 or more) and, having loaded them before a client's delete, can
    /// write the deleted snapshot back — the check would change what it
    /// judges. One at a time (they share the cache).
    fn kopia_uncached(&self, args: &[&str], deadline: Duration) -> BackendResult<Output> {
        let _one_at_a_time = self.check_lock.lock().expect("check lock");
        let config = self.dir.join(CHECK_CONFIG);
        let cache = self.dir.join("check-cache");
        let run = |args: &[&str], deadline| {
            run_on_repository(&self.binary, &config, &self.secrets(), args, deadline)
        };
        if let Err(error) = std::fs::remove_dir_all(&cache)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(BackendError::Local(format!(
                "kopia check cache {}: {error}",
                cache.display()
            )));
        }
        if !config.exists() {
            let mut connect = vec!["repository".to_owned(), "connect".to_owned()];
            connect.extend(self.storage.args()?);
            connect.extend(["--cache-directory".to_owned(), utf8(&cache)?.to_owned()]);
            connect.push("--readonly".to_owned());
            let connect: Vec<&str> = connect.iter().map(String::as_str).collect();
            let output = run(&connect, COMMAND_TIMEOUT)?;
            if !output.success() {
                let command = format!("repository connect {}", self.storage.kind());
                return Err(classify(&command, &output));
            }
        }
        run(args, deadline)
    }

    fn kopia_ok(&self, command: &str, args: &[&str], deadline: Duration) -> BackendResult<Output> {
        let output = self.kopia(args, deadline)?;
        if output.success() {
            Ok(output)
        } else {
            Err(classify(command, &output))
        }
    }

    /// Creates (or connects to) the repository in `storage` and starts the
    /// server on it, with the fault proxy (seeded with `seed`) in front of
    /// it on `runtime`. Blocking.
    pub fn start(
        binary: KopiaBinary,
        storage: KopiaStorage,
        dir: &Path,
        repo_password: &str,
        runtime: tokio::runtime::Handle,
        seed: u64,
    ) -> BackendResult<KopiaServer> {
        let local = |e: std::io::Error| BackendError::Local(format!("kopia server: {e}"));
        // kopia takes only an absolute repository path; a state dir given
        // as `st` is as good as any.
        let dir = &std::path::absolute(dir).map_err(local)?;
        std::fs::create_dir_all(dir).map_err(local)?;
        let (storage, fresh) = match storage {
            KopiaStorage::Filesystem(repo_dir) => {
                let repo_dir = std::path::absolute(repo_dir).map_err(local)?;
                std::fs::create_dir_all(&repo_dir).map_err(local)?;
                let fresh = std::fs::read_dir(&repo_dir)
                    .map_err(local)?
                    .next()
                    .is_none();
                (KopiaStorage::Filesystem(repo_dir), fresh)
            }
            KopiaStorage::S3(s3) => {
                let exists = runtime
                    .block_on(crate::backend::bucket::object_exists(&s3, FORMAT_BLOB))
                    .map_err(|e| BackendError::failed(e.to_string()))?;
                (KopiaStorage::S3(s3), !exists)
            }
        };
        let control_password = random_password();
        let secrets = RepositorySecrets {
            repo_password,
            control_password: &control_password,
            storage: &storage,
        };
        let run = |args: &[&str], deadline| {
            run_on_repository(&binary, &dir.join(SERVER_CONFIG), &secrets, args, deadline)
        };
        let cache = dir.join("cache");
        let verb = if fresh { "create" } else { "connect" };
        let mut create = vec!["repository".to_owned(), verb.to_owned()];
        create.extend(storage.args()?);
        create.extend(["--cache-directory".to_owned(), utf8(&cache)?.to_owned()]);
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        let output = run(&create, COMMAND_TIMEOUT)?;
        if !output.success() {
            let command = format!("repository {verb} {}", storage.kind());
            return Err(classify(&command, &output));
        }
        // Every client may read every snapshot: the checker restores other
        // clients' snapshots too (the framework's `setServerPermissions`).
        let enabled = run(&["server", "acl", "enable"], COMMAND_TIMEOUT)?;
        if enabled.success() {
            let added = run(
                &[
                    "server",
                    "acl",
                    "add",
                    "--user",
                    "*@*",
                    "--access",
                    "FULL",
                    "--target",
                    "type=snapshot",
                ],
                COMMAND_TIMEOUT,
            )?;
            if !added.success() {
                return Err(classify("server acl add", &added));
            }
        } else if said(&enabled.stderr) != Some(Said::AclEnabled) {
            return Err(classify("server acl enable", &enabled));
        }
        // kopia expires snapshots by its retention policy at every
        // `snapshot create` (by default it keeps the latest 10 of a source
        // within the hour): a snapshot snapstorm recorded live would vanish
        // without anyone deleting it, and the verdict would blame the
        // repository. Only snapstorm's own deletes remove snapshots here;
        // nothing a client writes is skipped as a cache directory.
        let policy = run(&GLOBAL_POLICY, COMMAND_TIMEOUT)?;
        if !policy.success() {
            return Err(classify("policy set --global", &policy));
        }
        let (child, stdin, address, fingerprint) =
            start_server(&binary, FIRST_LISTEN, dir, repo_password, &control_password)?;
        let evidence = Arc::new(Evidence::new());
        let proxy = ConnectionProxy::new(socket_of(&address)?, runtime, seed, evidence.clone());
        let server = KopiaServer {
            binary,
            dir: dir.to_path_buf(),
            storage,
            repo_password: repo_password.to_owned(),
            control_password,
            address,
            fingerprint,
            child: Mutex::new(Some((child, stdin))),
            proxy,
            evidence,
            passwords: Mutex::new(HashMap::new()),
            gc_lock: Mutex::new(()),
            check_lock: Mutex::new(()),
            restart_lock: Mutex::new(()),
        };
        server.wait_until_answering()?;
        Ok(server)
    }

    /// The repository's directory, where kopia's storage is one (data
    /// faults damage its files).
    pub fn repo_dir(&self) -> Option<&Path> {
        self.storage.dir()
    }

    /// The packs the index names live contents in: the ones whose damage
    /// some snapshot or check will meet (a pack whose contents all have a
    /// newer copy elsewhere is needed by nothing).
    pub fn packs_in_use(&self) -> BackendResult<std::collections::BTreeSet<String>> {
        let listed = self.kopia_ok(
            "content list",
            &["content", "list", "--json"],
            COMMAND_TIMEOUT,
        )?;
        let contents: Vec<gc::ContentJson> = parse_list(&listed.stdout).map_err(|e| {
            BackendError::failed(format!("kopia content list --json: unreadable output: {e}"))
        })?;
        Ok(contents
            .into_iter()
            .filter(|c| !c.deleted)
            .map(|c| c.pack_file)
            .collect())
    }

    /// The fault proxy the clients connect through.
    pub fn proxy(&self) -> &ConnectionProxy {
        &self.proxy
    }

    /// What the proxy saw happen to the clients' connections: every client
    /// classifies its errors with it.
    pub fn evidence(&self) -> &Arc<Evidence> {
        &self.evidence
    }

    /// Stops the server (`server-restart`): connections are refused until
    /// [`KopiaServer::serve_again`]. Blocking.
    pub fn stop_serving(&self) {
        let _one_at_a_time = self.restart_lock.lock().expect("restart lock");
        self.evidence.server_stopped();
        self.proxy.set_upstream(None);
        self.stop();
    }

    /// Starts the server again where it listened, on the same repository
    /// and certificate; a server that runs is left alone. Blocking.
    pub fn serve_again(&self) -> BackendResult<()> {
        let _one_at_a_time = self.restart_lock.lock().expect("restart lock");
        if self.running() {
            return Ok(());
        }
        let listen = socket_of(&self.address)?;
        let (child, stdin, address, fingerprint) = start_server(
            &self.binary,
            &listen.to_string(),
            &self.dir,
            &self.repo_password,
            &self.control_password,
        )?;
        *self.child.lock().expect("server lock") = Some((child, stdin));
        if (address.as_str(), fingerprint.as_str())
            != (self.address.as_str(), self.fingerprint.as_str())
        {
            self.stop();
            return Err(BackendError::Failed(format!(
                "kopia server: restarted at {address} with certificate {fingerprint}, the clients trust {} at {}",
                self.fingerprint, self.address
            )));
        }
        self.wait_until_answering()?;
        self.proxy.set_upstream(Some(listen));
        self.evidence.server_serving();
        Ok(())
    }

    /// The `--server-cert-fingerprint` clients connect with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `https://127.0.0.1:PORT`, where the server itself listens.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn control_args<'a>(&'a self, command: &[&'a str]) -> Vec<&'a str> {
        let mut args = command.to_vec();
        args.extend([
            "--address",
            &self.address,
            "--server-cert-fingerprint",
            &self.fingerprint,
        ]);
        args
    }

    /// `server status` until it succeeds (the framework's
    /// `waitUntilServerStarted`).
    fn wait_until_answering(&self) -> BackendResult<()> {
        let started = Instant::now();
        loop {
            let output = self.kopia(&self.control_args(&["server", "status"]), START_TIMEOUT)?;
            if output.success() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT || !self.running() {
                self.stop();
                return Err(BackendError::Failed(format!(
                    "kopia server at {} does not answer: {}",
                    self.address,
                    explanation(&output)
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn running(&self) -> bool {
        let mut child = self.child.lock().expect("server lock");
        child
            .as_mut()
            .is_some_and(|(child, _)| matches!(child.try_wait(), Ok(None)))
    }

    /// The server reads its users again (`server refresh`).
    fn refresh(&self) -> BackendResult<()> {
        self.kopia_ok(
            "server refresh",
            &self.control_args(&["server", "refresh"]),
            COMMAND_TIMEOUT,
        )
        .map(|_| ())
    }

    fn maintenance(&self, flags: &[&str]) -> BackendResult<Output> {
        let mut args = vec!["maintenance", "run"];
        args.extend_from_slice(flags);
        self.kopia_ok("maintenance run", &args, LONG_TIMEOUT)
    }

    /// The aggressive GC of [`super::gc`]: frees now what only deleted
    /// snapshots held. Returns how many contents were rewritten and in how
    /// many rounds.
    fn free_at_once(&self) -> BackendResult<(usize, usize)> {
        let none = ["--full", "--safety=none"];
        let listed = |command: &str, args: &[&str]| -> BackendResult<String> {
            Ok(self.kopia_ok(command, args, LONG_TIMEOUT)?.stdout)
        };
        let unreadable = |command: &str, e: serde_json::Error| {
            BackendError::failed(format!("kopia {command} --json: unreadable output: {e}"))
        };
        let mut rewritten = 0;
        for round in 1..=gc::MAX_ROUNDS {
            if round > 1 {
                gc::next_second();
            }
            self.maintenance(&none)?;
            let contents: Vec<gc::ContentJson> = parse_list(&listed(
                "content list",
                &["content", "list", "--deleted", "--json"],
            )?)
            .map_err(|e| unreadable("content list", e))?;
            let blobs: Vec<gc::BlobJson> =
                parse_list(&listed("blob list", &["blob", "list", "--json"])?)
                    .map_err(|e| unreadable("blob list", e))?;
            let rewrite = gc::packs_to_compact(&contents, &blobs);
            if rewrite.is_empty() && !contents.iter().any(|c| c.deleted) {
                return Ok((rewritten, round));
            }
            // A few hundred ids a process keeps each command line short.
            for ids in rewrite.chunks(500) {
                let mut args = vec![
                    "content",
                    "rewrite",
                    "--safety=none",
                    "--dangerous-commands=enabled",
                ];
                args.extend(ids.iter().map(String::as_str));
                self.kopia_ok("content rewrite", &args, LONG_TIMEOUT)?;
            }
            rewritten += rewrite.len();
        }
        gc::next_second();
        self.maintenance(&none)?;
        Ok((rewritten, gc::MAX_ROUNDS + 1))
    }

    /// Adds (or, when it exists, updates) `client`'s user with `password`.
    fn set_user(&self, client: ClientId, password: &str) -> BackendResult<()> {
        let user = kopia_user(client);
        let hash = user_password_hash(password, &random_salt());
        let args = |verb| {
            [
                "server",
                "user",
                verb,
                user.as_str(),
                "--user-password-hash",
                hash.as_str(),
            ]
        };
        let added = self.kopia(&args("add"), COMMAND_TIMEOUT)?;
        if !added.success() {
            if said(&added.stderr) != Some(Said::UserExists) {
                return Err(classify("server user add", &added));
            }
            self.kopia_ok("server user set", &args("set"), COMMAND_TIMEOUT)?;
        }
        self.refresh()
    }

    /// Lets a revoked client in again, with the password it connected with.
    pub fn readmit_client(&self, client: ClientId) -> BackendResult<()> {
        let password = self
            .passwords
            .lock()
            .expect("passwords lock")
            .get(&client)
            .cloned()
            .ok_or(BackendError::NotConnected(client))?;
        self.set_user(client, &password)
    }

    /// Ends the server: its stdin closed, then SIGKILL if it has not ended
    /// within its grace period. Blocking.
    pub fn stop(&self) {
        let Some((mut child, stdin)) = self.child.lock().expect("server lock").take() else {
            return;
        };
        drop(stdin);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = child.wait();
    }
}

impl Drop for KopiaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The socket address of `https://127.0.0.1:PORT`.
fn socket_of(address: &str) -> BackendResult<SocketAddr> {
    address
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BackendError::Failed(format!("kopia server: unusable address {address}")))
}

pub(super) fn utf8(path: &Path) -> BackendResult<&str> {
    path.to_str()
        .ok_or_else(|| BackendError::Local(format!("{} is not UTF-8", path.display())))
}

/// The server's connection to the repository, in the server's directory.
pub(super) const SERVER_CONFIG: &str = "server.config";
/// The checks' read-only connection, beside it (a state dir of an older
/// snapstorm may hold a `check.config` that could write; it is not used).
const CHECK_CONFIG: &str = "check-read-only.config";

/// What a kopia process on the repository has in its environment.
struct RepositorySecrets<'a> {
    repo_password: &'a str,
    control_password: &'a str,
    storage: &'a KopiaStorage,
}

/// One kopia command with `config_file`, a connection to the repository;
/// its logs beside it.
fn run_on_repository(
    binary: &KopiaBinary,
    config_file: &Path,
    secrets: &RepositorySecrets<'_>,
    args: &[&str],
    deadline: Duration,
) -> BackendResult<Output> {
    let log_dir = config_file.with_file_name("logs");
    // The server-control password: `server start` reads it from
    // KOPIA_SERVER_CONTROL_PASSWORD, `server refresh/status` from
    // KOPIA_SERVER_PASSWORD (`cli/command_server.go`); the storage's keys
    // where its flags read them.
    let mut secret_env = vec![
        (
            "KOPIA_SERVER_CONTROL_PASSWORD",
            secrets.control_password.to_owned(),
        ),
        ("KOPIA_SERVER_PASSWORD", secrets.control_password.to_owned()),
    ];
    secret_env.extend(secrets.storage.secret_env());
    Invocation {
        binary,
        config_file,
        log_dir: &log_dir,
        password: secrets.repo_password,
        secret_env,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        cwd: None,
        deadline,
        processes: None,
    }
    .run()
    .map_err(|e| BackendError::Local(format!("cannot run kopia {}: {e}", args.join(" "))))
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

impl Server for KopiaServer {
    fn info(&self) -> ServerInfo {
        ServerInfo {
            backend: super::KIND.into(),
            address: "127.0.0.1, a proxy port per client".into(),
            behind_proxy: Some(self.address.clone()),
            repository: self.storage.shown(),
        }
    }

    fn authorize_client(&self, client: ClientId) -> BackendResult<ClientCredentials> {
        let password = random_password();
        self.set_user(client, &password)?;
        self.passwords
            .lock()
            .expect("passwords lock")
            .insert(client, password.clone());
        let user = kopia_user(client);
        let listener = self.proxy.listener_for(&user).map_err(|e| {
            BackendError::Local(format!("the fault proxy cannot listen for {user}: {e}"))
        })?;
        Ok(ClientCredentials {
            user,
            password,
            url: format!("https://{listener}"),
            environment: Vec::new(),
        })
    }

    fn remove_client(&self, client: ClientId) -> BackendResult<()> {
        let user = kopia_user(client);
        self.kopia_ok(
            "server user delete",
            &["server", "user", "delete", &user],
            COMMAND_TIMEOUT,
        )?;
        self.refresh()
    }

    fn run_gc(&self, options: &GcOptions) -> BackendResult<GcDone> {
        let _one_at_a_time = options.one_at_a_time(&self.gc_lock);
        let mut details = Details::new();
        details.insert("tool".into(), json!("kopia"));
        details.insert("aggressive".into(), json!(options.aggressive));
        if options.aggressive {
            let (rewritten, rounds) = self.free_at_once()?;
            details.insert("safety".into(), json!("none"));
            details.insert("contents_rewritten".into(), json!(rewritten));
            details.insert("rounds".into(), json!(rounds));
        } else {
            self.maintenance(&["--full"])?;
            details.insert("safety".into(), json!("full"));
        }
        // The server reads the index again: the packs it knew may be gone.
        self.refresh()?;
        Ok(GcDone {
            details,
            removed: None,
            listed: None,
            raced: Vec::new(),
        })
    }

    /// Through the checks' read-only connection: the listing the checker
    /// judges must not be written by the listing itself.
    fn list_snapshots(&self) -> BackendResult<Vec<SnapshotId>> {
        let output =
            self.kopia_uncached(&["snapshot", "list", "--all", "--json"], COMMAND_TIMEOUT)?;
        if !output.success() {
            return Err(classify("snapshot list", &output));
        }
        parse_listed(&output.stdout)
            .map(|listed| listed.into_iter().map(|m| m.id).collect())
            .map_err(|e| {
                BackendError::failed(format!(
                    "kopia snapshot list --json: unreadable output: {e}"
                ))
            })
    }

    /// kopia's two checks: every file of every snapshot read
    /// (`snapshot verify`: an object nothing can give back), and every
    /// content the index names read against its id (`content verify`: a
    /// pack missing or flipped, whichever snapshot needs it).
    fn verify_repo(&self) -> BackendResult<RepoCheck> {
        let content_verify = ["content", "verify", "--download-percent=100"];
        let mut problems = Vec::new();
        for (command, output) in [
            ("snapshot verify", self.verify(&[])?),
            (
                "content verify",
                self.kopia_uncached(&content_verify, LONG_TIMEOUT)?,
            ),
        ] {
            match output.exit {
                super::process::Exit::Code(0) => {}
                // snapstorm's own side or an unreachable repository: no verdict.
                super::process::Exit::Code(_)
                    if matches!(said(&output.stderr), Some(Said::Local | Said::NotThrough)) =>
                {
                    return Err(classify(command, &output));
                }
                super::process::Exit::Code(_) => {
                    let found = problems.len();
                    problems.extend(output.stderr.lines().filter(|l| is_verify_error(l)).map(
                        |line| Problem {
                            text: line.trim().to_owned(),
                            unreadable:
                                unreadable_in(line).map_or(Unreadable::Unknown, Unreadable::named),
                        },
                    ));
                    let named = problems.len() - found;
                    if named == 0 {
                        // It failed without an error line: its words, unnamed.
                        problems.push(Problem::unnamed(format!(
                            "kopia {command}: {}",
                            explanation(&output)
                        )));
                    } else if let Some(counted) = errors_counted(&output.stderr)
                        && counted > named
                    {
                        // Lines of a kind not known here: not dropped, but
                        // unnamed, so no damage explains them by cause.
                        problems.push(Problem::unnamed(format!(
                            "kopia {command} counted {counted} errors, {named} of them in lines naming what they could not read: {}",
                            explanation(&output)
                        )));
                    }
                }
                _ => return Err(classify(command, &output)),
            }
        }
        Ok(RepoCheck {
            healthy: problems.is_empty(),
            problems,
        })
    }

    /// What kopia's own verify of these snapshots, reading every file,
    /// could not read: the packs its errors name.
    fn unreadable(&self, snapshots: &[SnapshotId]) -> Unreadable {
        let ids: Vec<&str> = snapshots.iter().map(String::as_str).collect();
        let output = match self.verify(&ids) {
            Ok(output) => output,
            Err(_) => return Unreadable::Unknown,
        };
        if output.success() {
            return Unreadable::named([]);
        }
        if said(&output.stderr).is_some_and(|s| matches!(s, Said::Local | Said::NotThrough)) {
            return Unreadable::Unknown;
        }
        let mut items = Vec::new();
        for line in output.stderr.lines().filter(|l| is_verify_error(l)) {
            match unreadable_in(line) {
                Some(named) => items.extend(named),
                None => return Unreadable::Unknown,
            }
        }
        if items.is_empty() {
            // It failed and named nothing: no telling what.
            return Unreadable::Unknown;
        }
        Unreadable::named(items)
    }

    fn repository_size(&self) -> u64 {
        match self.storage.dir() {
            Some(dir) => dir_size(dir),
            // The sizes the storage lists (its objects' bytes).
            None => self.listed_size().unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot list the repository's sizes");
                0
            }),
        }
    }
}

impl KopiaServer {
    /// The bytes of every blob the storage lists (`blob list --json`).
    fn listed_size(&self) -> BackendResult<u64> {
        let listed = self.kopia_ok("blob list", &["blob", "list", "--json"], COMMAND_TIMEOUT)?;
        let blobs: Vec<gc::BlobJson> = parse_list(&listed.stdout).map_err(|e| {
            BackendError::failed(format!("kopia blob list --json: unreadable output: {e}"))
        })?;
        Ok(blobs.iter().map(|b| b.length).sum())
    }

    /// `snapshot verify` reading every file, of `snapshots` (all, when none).
    fn verify(&self, snapshots: &[&str]) -> BackendResult<Output> {
        let mut args = vec!["snapshot", "verify", "--verify-files-percent=100"];
        args.extend_from_slice(snapshots);
        self.kopia_uncached(&args, LONG_TIMEOUT)
    }
}

/// Whether a line of `snapshot verify` or `content verify` reports one
/// thing it could not read (not its progress or its count of errors).
fn is_verify_error(line: &str) -> bool {
    let line = line.trim();
    line.starts_with("error")
        || (line.starts_with("content ")
            && (line.contains(" is invalid: ")
                || line.contains(" depends on missing blob ")
                || line.contains(" out of bounds of its pack blob ")))
}

/// The errors kopia's verify says it met (`encountered 24 errors: …`).
fn errors_counted(stderr: &str) -> Option<usize> {
    stderr.lines().find_map(|line| {
        let (_, after) = line.split_once("encountered ")?;
        after
            .strip_suffix("errors")
            .or_else(|| after.split_once(" errors").map(|(n, _)| n))?
            .trim()
            .parse()
            .ok()
    })
}

/// What one error line of kopia names as unreadable: the blobs (packs) it
/// names, else the object it could not read; `None` when it names neither.
fn unreadable_in(line: &str) -> Option<Vec<DataRef>> {
    let words = || {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| !w.is_empty())
    };
    let blobs: Vec<DataRef> = words()
        .filter(|w| is_blob_id(w))
        .map(|w| DataRef::Pack(w.to_owned()))
        .collect();
    if !blobs.is_empty() {
        return Some(dedup(blobs));
    }
    let mut after_object = words().skip_while(|w| *w != "object").skip(1);
    after_object
        .next()
        .filter(|id| id.len() >= 32 && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|id| vec![DataRef::Blob(id.to_owned())])
}

fn dedup(mut items: Vec<DataRef>) -> Vec<DataRef> {
    items.sort();
    items.dedup();
    items
}

/// A kopia pack blob id: `p` or `q`, 32 hex digits, then an optional
/// session suffix (`-s…`) and an optional `-c…` (`pf21f11…-sf73b3d…`).
fn is_blob_id(word: &str) -> bool {
    let Some(rest) = word.strip_prefix(['p', 'q']) else {
        return false;
    };
    let (hash, suffix) = rest.split_at(rest.find('-').unwrap_or(rest.len()));
    hash.len() == 32
        && hash.chars().all(|c| c.is_ascii_hexdigit())
        && suffix.split('-').skip(1).all(|part| {
            part.len() > 1
                && matches!(part.as_bytes()[0], b's' | b'c')
                && part[1..].chars().all(|c| c.is_ascii_hexdigit())
        })
}

#[cfg(test)]
mod tests;
