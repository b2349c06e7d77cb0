//! A client that is the `restic` program (Debian's 0.14 to the current
//! 0.18; what differs between them is decided by the version the program
//! gave once): one process per call, as the client's own REST user, with
//! its own cache directory, its output read as JSON. Failures are
//! classified with the embedded backend's evidence first (`errors.rs`), so
//! attribution works as for rustic_core clients.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::errors::{CallContext, Said, said_by};
use super::locks::{LockWait, Waited};
use super::process::{Invocation, Output, Processes, ResticBinary, Target};
use crate::backend::embedded::evidence::Evidence;
use crate::engine::progress::Progress;
use crate::engine::traits::{
    BackendError, BackendResult, ClientCredentials, ClientFactory, ClientId, ClientSnapshotter,
    Details, GcOptions, SnapshotId, Snapshotter,
};

/// How long one restic call may take before its process group is SIGKILLed.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a call that finds the repository locked by another process (a
/// forget's or a prune's exclusive lock, or for those any lock) waits for
/// it, in all (`locks.rs`: until the holder ends, or after `restic unlock`
/// removed the locks of processes that are gone — a client `kill-client`
/// killed leaves its lock behind).
pub(super) const LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// A snapshot as `restic snapshots --json` lists it (restic 0.14,
/// `cmd/restic/cmd_snapshots.go`, `Snapshot` with `id` and `short_id`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapshotJson {
    pub id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub paths: Vec<String>,
}

/// How often a forget looks whether its process has begun deleting.
const DELETE_WATCH: Duration = Duration::from_millis(5);

/// One group of `restic forget --json`: the snapshots it removed (`null`
/// when none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ForgetGroup {
    #[serde(default)]
    remove: Option<Vec<SnapshotJson>>,
}

/// The snapshots `restic forget --json` says it removed.
fn forgotten(stdout: &str) -> Result<Vec<SnapshotId>, serde_json::Error> {
    let groups: Vec<ForgetGroup> = serde_json::from_str(stdout.trim())?;
    Ok(groups
        .into_iter()
        .flat_map(|group| group.remove.unwrap_or_default())
        .map(|snapshot| snapshot.id)
        .collect())
}

/// One line of `restic backup --json` (`cmd/restic/json_output` in restic
/// 0.14: `status`, `verbose_status`, `error` and the final `summary`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum BackupLine {
    Summary {
        /// Short in restic 0.14, whole in later versions.
        snapshot_id: String,
    },
    /// How far the backup has got (`statusUpdate`: restic leaves out the
    /// counts that are still 0).
    Status {
        #[serde(default)]
        files_done: u64,
        #[serde(default)]
        bytes_done: u64,
    },
    #[serde(other)]
    Other,
}

/// Reports a `restic backup --json` status line into `progress`; any other
/// line is left alone. Only what is done: restic's totals grow while its
/// scan runs beside the backup, and the engine's (from its fingerprint of
/// the same source) are whole from the start.
fn report_status(line: &str, progress: &Progress) {
    if let Ok(BackupLine::Status {
        files_done,
        bytes_done,
    }) = serde_json::from_str(line.trim())
    {
        progress.set_done(Some(files_done), bytes_done);
    }
}

/// One line of `restic restore --json` (restic 0.16 on,
/// `internal/ui/restore/json.go`: `status` lines and the `summary`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum RestoreLine {
    /// How far the restore has got; the summary, where it ended.
    #[serde(alias = "summary")]
    Status {
        #[serde(default)]
        files_restored: u64,
        #[serde(default)]
        bytes_restored: u64,
    },
    #[serde(other)]
    Other,
}

/// Reports a `restic restore --json` status or summary line into
/// `progress`; any other line is left alone.
fn report_restore_status(line: &str, progress: &Progress) {
    if let Ok(RestoreLine::Status {
        files_restored,
        bytes_restored,
    }) = serde_json::from_str(line.trim())
    {
        progress.set_done(Some(files_restored), bytes_restored);
    }
}

/// The id in the summary line of `restic backup --json`.
pub fn backup_snapshot_id(stdout: &str) -> Option<String> {
    stdout.lines().rev().find_map(
        |line| match serde_json::from_str::<BackupLine>(line.trim()) {
            Ok(BackupLine::Summary { snapshot_id }) => Some(snapshot_id),
            _ => None,
        },
    )
}

/// The snapshots of `restic snapshots --json`.
pub fn parse_snapshots(stdout: &str) -> Result<Vec<SnapshotJson>, serde_json::Error> {
    serde_json::from_str(stdout.trim())
}

struct Connected {
    target: Target,
    user: String,
}

/// A restic client of the embedded server.
pub struct ResticClient {
    binary: ResticBinary,
    cache_dir: PathBuf,
    /// The host name its snapshots carry.
    host: String,
    repo_password: String,
    action_timeout: Duration,
    evidence: Arc<Evidence>,
    processes: Arc<Processes>,
    connection: Mutex<Option<Arc<Connected>>>,
}

impl ResticClient {
    fn connected(&self, client: ClientId) -> BackendResult<Arc<Connected>> {
        self.connection
            .lock()
            .expect("connection lock")
            .clone()
            .ok_or(BackendError::NotConnected(client))
    }

    /// Runs one restic command as the client; a lock held by another
    /// process is waited out (see [`LOCK_PATIENCE`], `locks.rs`). Returns
    /// the output of a successful run, or the classified error.
    fn restic(
        &self,
        connected: &Connected,
        command: &str,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> BackendResult<Output> {
        self.restic_reporting(connected, command, args, cwd, None)
    }

    /// As [`ResticClient::restic`], with each line restic prints handed to
    /// `on_line` as it comes.
    fn restic_reporting(
        &self,
        connected: &Connected,
        command: &str,
        args: &[&str],
        cwd: Option<&Path>,
        on_line: Option<&(dyn Fn(&str) + Sync)>,
    ) -> BackendResult<Output> {
        let started = Instant::now();
        let context = CallContext {
            evidence: &self.evidence,
            user: &connected.user,
            started,
            command,
        };
        let remaining = || self.action_timeout.saturating_sub(started.elapsed());
        let waited = LockWait {
            version: self.binary.version,
            processes: &self.processes,
            patience: LOCK_PATIENCE.min(self.action_timeout),
            started,
        }
        .run(
            |retry_lock| {
                // restic 0.16 on waits for the lock itself this long.
                let wait = retry_lock.map(|wait| format!("{}ms", wait.as_millis()));
                let mut all = Vec::new();
                if let Some(wait) = &wait {
                    all.extend(["--retry-lock", wait.as_str()]);
                }
                all.push(command);
                all.extend(args);
                self.run(connected, &all, cwd, remaining(), on_line)
            },
            || self.run(connected, &["unlock"], None, remaining(), None),
        )?;
        match waited {
            Waited::Done(output) if output.success() => Ok(output),
            Waited::Done(output) => Err(context.classify(&output)),
            Waited::GaveUp { output, holder } => {
                Err(context.gave_up_waiting(&output, holder.as_ref()))
            }
        }
    }

    fn run(
        &self,
        connected: &Connected,
        args: &[&str],
        cwd: Option<&Path>,
        deadline: Duration,
        on_line: Option<&(dyn Fn(&str) + Sync)>,
    ) -> BackendResult<Output> {
        Invocation {
            binary: &self.binary,
            target: &connected.target,
            cache_dir: Some(&self.cache_dir),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cwd,
            deadline,
            processes: Some((&self.processes, &connected.user)),
            on_stdout_line: on_line,
        }
        .run()
        .map_err(|e| BackendError::Local(format!("cannot run restic {}: {e}", args.join(" "))))
    }

    fn snapshots(&self, connected: &Connected, ids: &[&str]) -> BackendResult<Vec<SnapshotJson>> {
        let mut args = vec!["--json"];
        args.extend(ids);
        let output = self.restic(connected, "snapshots", &args, None)?;
        parse_snapshots(&output.stdout).map_err(|e| {
            BackendError::failed(format!("restic snapshots --json: unreadable output: {e}"))
        })
    }
}

fn utf8<'a>(path: &'a Path, what: &str) -> BackendResult<&'a str> {
    path.to_str()
        .ok_or_else(|| BackendError::Local(format!("{what} path is not UTF-8")))
}

impl Snapshotter for ResticClient {
    fn create_snapshot(
        &self,
        client: ClientId,
        source: &Path,
        progress: &Progress,
    ) -> BackendResult<SnapshotId> {
        let connected = self.connected(client)?;
        let host = &self.host;
        let report = |line: &str| report_status(line, progress);
        // Run in the source with `.`: the snapshot holds the directory's
        // contents at its root, as the embedded clients' snapshots do.
        let output = self.restic_reporting(
            &connected,
            "backup",
            &["--json", "--host", host, "--tag", "snapstorm", "."],
            Some(source),
            Some(&report),
        )?;
        let id = backup_snapshot_id(&output.stdout).ok_or_else(|| {
            BackendError::failed("restic backup --json: no summary line with the snapshot id")
        })?;
        if id.len() == 64 {
            return Ok(id);
        }
        // restic 0.14 reports the short id: look the whole one up.
        let found = self.snapshots(&connected, &[&id])?;
        match found.as_slice() {
            [snapshot] if snapshot.id.starts_with(&id) => Ok(snapshot.id.clone()),
            _ => Err(BackendError::failed(format!(
                "restic backup made snapshot {id}, which its listing does not name once"
            ))),
        }
    }

    fn list_snapshots(&self, client: ClientId) -> BackendResult<Vec<SnapshotId>> {
        let connected = self.connected(client)?;
        Ok(self
            .snapshots(&connected, &[])?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }

    /// restic reports a restore's progress from 0.16 on (`restore
    /// --json`); restic 0.14's restore prints none, and the console shows
    /// the engine's totals and the time taken.
    fn restore_snapshot(
        &self,
        client: ClientId,
        id: &str,
        target: &Path,
        progress: &Progress,
    ) -> BackendResult<()> {
        let connected = self.connected(client)?;
        let target = std::path::absolute(target).map_err(|e| BackendError::Local(e.to_string()))?;
        let target = utf8(&target, "restore")?;
        if self.binary.version.restore_reports_progress() {
            let report = |line: &str| report_restore_status(line, progress);
            self.restic_reporting(
                &connected,
                "restore",
                &["--json", id, "--target", target],
                None,
                Some(&report),
            )
        } else {
            self.restic(&connected, "restore", &[id, "--target", target], None)
        }
        .map(|_| ())
    }

    fn delete_snapshot(&self, client: ClientId, id: &str) -> BackendResult<()> {
        let connected = self.connected(client)?;
        let output = self.restic(&connected, "forget", &[id], None)?;
        // restic forgets what it finds and only warns about the rest
        // (exit code 0 in 0.14 and 0.18).
        if said_by(&output) == Some(Said::SnapshotNotFound) {
            return Err(BackendError::Data(format!(
                "restic forget: snapshot {id} not found: {}",
                output.stderr.trim()
            )));
        }
        Ok(())
    }

    /// `restic forget --host HOST --keep-last 1`: restic reads every
    /// snapshot the repository lists to choose, under its exclusive lock.
    /// It begins deleting when the proxy sees its first snapshot `DELETE`.
    fn forget_all_but_newest(
        &self,
        client: ClientId,
        deleting: &(dyn Fn() + Sync),
    ) -> BackendResult<Vec<SnapshotId>> {
        let connected = self.connected(client)?;
        let started = Instant::now();
        let over = AtomicBool::new(false);
        let output = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !over.load(Ordering::SeqCst) {
                    if self
                        .evidence
                        .deleted_snapshot_since(&connected.user, started)
                    {
                        deleting();
                        return;
                    }
                    std::thread::sleep(DELETE_WATCH);
                }
            });
            let output = self.restic(
                &connected,
                "forget",
                &[
                    "--json",
                    "--host",
                    &self.host,
                    "--tag",
                    "snapstorm",
                    "--group-by",
                    "host",
                    "--keep-last",
                    "1",
                ],
                None,
            );
            over.store(true, Ordering::SeqCst);
            output
        })?;
        forgotten(&output.stdout).map_err(|error| {
            BackendError::failed(format!("restic forget --json: not its output ({error})"))
        })
    }

    fn run_gc(&self, _client: ClientId, _options: &GcOptions) -> BackendResult<Details> {
        Err(BackendError::gc_is_the_servers())
    }
}

impl ClientSnapshotter for ResticClient {
    fn connect(&self, _client: ClientId, credentials: &ClientCredentials) -> BackendResult<()> {
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| BackendError::Local(e.to_string()))?;
        let connected = Connected {
            target: Target {
                repository: credentials.url.clone(),
                password: self.repo_password.clone(),
                also_secret: vec![credentials.password.clone()],
                environment: credentials.environment.clone(),
            },
            user: credentials.user.clone(),
        };
        // Proves the user, the address and the repository password.
        self.restic(&connected, "cat", &["config"], None)?;
        *self.connection.lock().expect("connection lock") = Some(Arc::new(connected));
        Ok(())
    }

    fn disconnect(&self, _client: ClientId) -> BackendResult<()> {
        self.connection.lock().expect("connection lock").take();
        Ok(())
    }
}

/// Makes a `ResticClient` per client, each with its own cache directory.
pub struct ResticClients {
    pub binary: ResticBinary,
    pub cache_dir_for: Box<dyn Fn(ClientId) -> PathBuf + Send + Sync>,
    /// The host name each client's snapshots carry (`backup --host`).
    pub host_for: Box<dyn Fn(ClientId) -> String + Send + Sync>,
    pub repo_password: String,
    pub action_timeout: Duration,
    /// The server's evidence, that every client classifies its errors with.
    pub evidence: Arc<Evidence>,
    /// The processes running now, for `kill-client`.
    pub processes: Arc<Processes>,
}

impl ClientFactory for ResticClients {
    fn new_client(&self, client: ClientId) -> BackendResult<Box<dyn ClientSnapshotter>> {
        Ok(Box::new(ResticClient {
            binary: self.binary.clone(),
            cache_dir: (self.cache_dir_for)(client),
            host: (self.host_for)(client),
            repo_password: self.repo_password.clone(),
            action_timeout: self.action_timeout,
            evidence: self.evidence.clone(),
            processes: self.processes.clone(),
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

    // Captured from restic 0.14.0 (`restic backup --json .`), the shape of
    // `cmd/restic/cmd_backup.go`'s JSON progress printer.
    const BACKUP: &str = r#"{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":2}
{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":2,"data_added":1050,"total_files_processed":2,"total_bytes_processed":5,"total_duration":0.221201927,"snapshot_id":"4acb4822"}
"#;

    // Captured from restic 0.14.0 (`restic snapshots --json`).
    const SNAPSHOTS: &str = r#"[{"time":"2026-11-26T00:10:39.402917358Z","tree":"cad89f4c5c3e5908c464b3733d3bdc876558bd7db1a17d5b3e9bdd92ac5de9b3","paths":["/tmp/h9t/src"],"hostname":"client-1","username":"root","tags":["snapstorm"],"id":"4acb4822eba680a6f6044a9ad03a85815889eb239165cc659bea6489b1297747","short_id":"4acb4822"}]
"#;

    #[test]
    fn the_backup_summary_names_the_snapshot() {
        assert_eq!(backup_snapshot_id(BACKUP).as_deref(), Some("4acb4822"));
        assert_eq!(
            backup_snapshot_id(r#"{"message_type":"status","percent_done":0.5}"#),
            None
        );
        assert_eq!(backup_snapshot_id("Fatal: not json"), None);
    }

    // Captured from restic 0.14.0 (`RESTIC_PROGRESS_FPS=2 restic backup --json`
    // of a 400 MB file and three small ones).
    const STATUS: [&str; 3] = [
        r#"{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":400000000}"#,
        r#"{"message_type":"status","percent_done":0.3610086545848702,"total_files":4,"files_done":3,"total_bytes":400000006,"bytes_done":144403464,"current_files":["/big"]}"#,
        r#"{"message_type":"status","seconds_elapsed":1,"percent_done":0.7396305864055412,"total_files":4,"files_done":3,"total_bytes":400000006,"bytes_done":295852239,"current_files":["/big"]}"#,
    ];

    #[test]
    fn status_lines_say_what_is_done_and_keep_the_engines_totals() {
        let progress = Progress::unobserved();
        progress.set_totals(Some(4), Some(400_000_006));
        report_status(STATUS[0], &progress);
        let view = progress.view();
        assert_eq!((view.files_done, view.bytes_done), (Some(0), 0));
        // restic's scan had found one file so far: the engine's totals stay.
        assert_eq!(
            (view.files_total, view.bytes_total),
            (Some(4), Some(400_000_006))
        );
        report_status(STATUS[1], &progress);
        report_status(STATUS[2], &progress);
        let view = progress.view();
        assert_eq!((view.files_done, view.bytes_done), (Some(3), 295_852_239));
        assert_eq!(view.percent(), Some(73));
        // The summary and anything else leave it as it was.
        report_status(BACKUP.lines().last().unwrap(), &progress);
        report_status("Fatal: not json", &progress);
        assert_eq!(progress.view(), view);
    }

    // Captured from restic 0.18.1 (`RESTIC_PROGRESS_FPS=4 restic restore
    // --json latest`, a 200 MB file and two small ones).
    const RESTORE: &str = r#"{"message_type":"status","percent_done":0.06615801380062049,"total_files":3,"files_restored":2,"total_bytes":203000003,"bytes_restored":13430077}
{"message_type":"status","percent_done":0.4038156048697201,"total_files":3,"files_restored":2,"total_bytes":203000003,"bytes_restored":81974569}
{"message_type":"summary","total_files":3,"files_restored":3,"total_bytes":203000003,"bytes_restored":203000003}
"#;

    #[test]
    fn restore_status_lines_say_what_is_done() {
        let progress = Progress::unobserved();
        progress.set_totals(Some(3), Some(203_000_003));
        let mut lines = RESTORE.lines();
        report_restore_status(lines.next().unwrap(), &progress);
        let view = progress.view();
        assert_eq!((view.files_done, view.bytes_done), (Some(2), 13_430_077));
        report_restore_status(lines.next().unwrap(), &progress);
        assert_eq!(progress.view().bytes_done, 81_974_569);
        // The summary: where it ended.
        report_restore_status(lines.next().unwrap(), &progress);
        let view = progress.view();
        assert_eq!((view.files_done, view.bytes_done), (Some(3), 203_000_003));
        // An error, anything else: left alone.
        report_restore_status(
            r#"{"message_type":"error","error":{"message":"x"},"during":"restore","item":"/f"}"#,
            &progress,
        );
        report_restore_status("Fatal: not json", &progress);
        assert_eq!(progress.view(), view);
    }

    #[test]
    fn the_listing_gives_whole_ids() {
        let snapshots = parse_snapshots(SNAPSHOTS).unwrap();
        assert_eq!(snapshots.len(), 1);
        assert_eq!(
            snapshots[0].id,
            "4acb4822eba680a6f6044a9ad03a85815889eb239165cc659bea6489b1297747"
        );
        assert_eq!(snapshots[0].hostname, "client-1");
        // `restic forget --json` (0.18.1): a group per host, `remove` null
        // when nothing goes.
        let forget = format!(
            r#"[{{"tags":null,"host":"client-1","paths":null,"keep":{SNAPSHOTS},"remove":{SNAPSHOTS},"reasons":[]}},{{"host":"client-2","keep":{SNAPSHOTS},"remove":null}}]"#
        );
        assert_eq!(
            forgotten(&forget).unwrap(),
            ["4acb4822eba680a6f6044a9ad03a85815889eb239165cc659bea6489b1297747"]
        );
        assert!(forgotten("not json").is_err());
        assert_eq!(parse_snapshots("[]\n").unwrap(), vec![]);
    }
}
