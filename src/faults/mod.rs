//! The fault model: what can be broken and how a user names it. A plain
//! model that imports nothing else of snapstorm: attribution (which fault
//! explains an incident) is the engine's verdict, and each backend brings
//! its own injector.
//!
//! A fault is written `KIND@TIME[:DURATION][,key=value…]`, e.g.
//! `corrupt-pack@15s`, `server-restart@20s:5s`,
//! `network@10s:20s,latency=300ms,drop=10,error=10`, `revoke-client@30s,client=2`,
//! `truncate-pack@20s,size=2MiB`, `storage-errors@10s:20s,share=30`,
//! `pause-client@10s:20s,client=1`, `stop-osd@10s:20s,pid=4242`,
//! `corrupt-pack@20s,victim=client-2/5`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// How long a killed client stays cut off: long enough for its retries to
/// give up, so the snapshot in flight fails with its partial upload left behind.
pub const KILL_CUT: Duration = Duration::from_secs(10);

/// How long a `kill-client` or `pause-client` waits for the client's upload to catch
/// before it gives up.
pub const KILL_ARMED_FOR: Duration = Duration::from_secs(120);

/// Where `truncate-pack` cuts a pack when no `size=` is given: the 2 MiB
/// at which MinIO stored restic's packs in restic #3023.
pub const DEFAULT_TRUNCATE_TO: ByteSize = ByteSize::mib(2);

/// The share of requests `storage-errors` fails when no `share=` is given,
/// in percent: enough that most backups meet several, few enough that a
/// client's retries get through.
pub const DEFAULT_STORAGE_ERROR_SHARE: u8 = 30;

/// The faults snapstorm can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Flip bytes in a random data pack file.
    CorruptPack,
    /// Delete a random data pack file.
    DeletePack,
    /// Delete a random index file.
    DeleteIndex,
    /// Stop the server (connections refused) for a while, then start it again.
    ServerRestart,
    /// Latency, dropped connections and HTTP 500s between clients and server.
    Network,
    /// Revoke a client's permission on the server while it runs.
    RevokeClient,
    /// Cut a client off in the middle of a snapshot; its partial upload stays.
    KillClient,
    /// GC that deletes unused data at once, while clients back up.
    AggressiveGc,
    /// GC over and over, concurrent with all clients.
    GcStorm,
    /// Cut a data pack short (restic #3023: packs stored cut at 2 MiB).
    TruncatePack,
    /// Leave a data pack with no content (restic #2191: a pack stored empty).
    EmptyPack,
    /// Two GCs at once, neither waiting for the other (kopia #1087: two
    /// hosts' maintenance on one repository).
    OverlappingGc,
    /// The storage answers a share of requests with HTTP 500/503 (restic
    /// #3646: a storage upgrade), behind the proxy, where the server is.
    StorageErrors,
    /// Freeze a client in the middle of a snapshot for a while, its packs
    /// uploaded and not yet indexed (rustic docs #144: a frozen lock-free
    /// backup whose packs `restic prune` deleted).
    PauseClient,
    /// Leave an exclusive lock in the repository, of a process gone on
    /// another host (restic #3126/#3182: a lock left behind).
    StaleLock,
    /// Remove every lock, live ones too, as another host's `restic unlock
    /// --remove-all` does (restic #3126/#3182: a live lock removed, and a
    /// prune ran beside a backup).
    Unlock,
    /// Stop one OSD of a Ceph cluster on this machine (SIGSTOP) for a
    /// while, then let it go on (SIGCONT): the cluster serves on with the
    /// others, slower while it marks the OSD down.
    StopOsd,
    /// Every running client forgets its snapshots but the newest at once,
    /// each by policy, reading every snapshot the repository lists (rustic
    /// #1421: parallel forgets on S3, one reading a snapshot another had
    /// just deleted).
    ParallelForget,
}

impl FaultKind {
    /// Every fault, in the order menus number them (new ones last, so a
    /// fault keeps its key).
    pub const ALL: [FaultKind; 18] = [
        FaultKind::CorruptPack,
        FaultKind::DeletePack,
        FaultKind::DeleteIndex,
        FaultKind::ServerRestart,
        FaultKind::Network,
        FaultKind::RevokeClient,
        FaultKind::KillClient,
        FaultKind::AggressiveGc,
        FaultKind::GcStorm,
        FaultKind::TruncatePack,
        FaultKind::EmptyPack,
        FaultKind::OverlappingGc,
        FaultKind::StorageErrors,
        FaultKind::PauseClient,
        FaultKind::StaleLock,
        FaultKind::Unlock,
        FaultKind::StopOsd,
        FaultKind::ParallelForget,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::CorruptPack => "corrupt-pack",
            FaultKind::DeletePack => "delete-pack",
            FaultKind::DeleteIndex => "delete-index",
            FaultKind::ServerRestart => "server-restart",
            FaultKind::Network => "network",
            FaultKind::RevokeClient => "revoke-client",
            FaultKind::KillClient => "kill-client",
            FaultKind::AggressiveGc => "aggressive-gc",
            FaultKind::GcStorm => "gc-storm",
            FaultKind::TruncatePack => "truncate-pack",
            FaultKind::EmptyPack => "empty-pack",
            FaultKind::OverlappingGc => "overlapping-gc",
            FaultKind::StorageErrors => "storage-errors",
            FaultKind::PauseClient => "pause-client",
            FaultKind::StaleLock => "stale-lock",
            FaultKind::Unlock => "unlock",
            FaultKind::StopOsd => "stop-osd",
            FaultKind::ParallelForget => "parallel-forget",
        }
    }

    /// One line for menus and `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::CorruptPack => "flip bytes in a random data pack",
            FaultKind::DeletePack => "delete a random data pack",
            FaultKind::DeleteIndex => "delete a random index file",
            FaultKind::ServerRestart => "stop the server, start it again after DURATION",
            FaultKind::Network => "latency, dropped connections, HTTP 500s for DURATION",
            FaultKind::RevokeClient => "revoke a client on the server (for DURATION, or for good)",
            FaultKind::KillClient => "cut a client off in the middle of a snapshot",
            FaultKind::AggressiveGc => "GC with instant delete while clients back up",
            FaultKind::GcStorm => "GC over and over for DURATION",
            FaultKind::TruncatePack => "cut a data pack short at size= (default 2 MiB)",
            FaultKind::EmptyPack => "leave a data pack with no content",
            FaultKind::OverlappingGc => "two GCs at once, neither waiting for the other",
            FaultKind::StorageErrors => {
                "the storage fails share= of requests (30%) with 500/503 for DURATION"
            }
            FaultKind::PauseClient => {
                "freeze a client mid-snapshot for DURATION, then let it go on"
            }
            FaultKind::StaleLock => "leave an exclusive lock of a process gone on another host",
            FaultKind::Unlock => "remove every lock, live ones too (restic unlock --remove-all)",
            FaultKind::StopOsd => "stop the Ceph OSD process pid= for DURATION, then let it go on",
            FaultKind::ParallelForget => {
                "every client forgets all but its newest snapshot at once, by policy"
            }
        }
    }

    /// Damage to the repository's data: it stays until the end of the run.
    pub fn damages_data(self) -> bool {
        self.damages_files() || self.runs_gc()
    }

    /// Carried out by the repository's own GC: what it removed is its damage.
    pub fn runs_gc(self) -> bool {
        matches!(self, FaultKind::AggressiveGc | FaultKind::OverlappingGc)
    }

    /// Runs the repository's GC at all, once or over and over: it deletes
    /// from the repository, and what it removes can race a reader.
    pub fn runs_any_gc(self) -> bool {
        self == FaultKind::GcStorm || self.runs_gc()
    }

    /// Writes the repository's files itself (damage, or a lock left
    /// behind): only where they are files snapstorm can reach.
    pub fn writes_files(self) -> bool {
        self.damages_files() || self == FaultKind::StaleLock
    }

    /// Damages the repository's files themselves (not through the
    /// repository's own GC): only where they are files snapstorm can reach.
    pub fn damages_files(self) -> bool {
        matches!(
            self,
            FaultKind::CorruptPack
                | FaultKind::DeletePack
                | FaultKind::DeleteIndex
                | FaultKind::TruncatePack
                | FaultKind::EmptyPack
        )
    }

    /// Writes a damaged file where the whole one was: a storage that
    /// stores a file only under the hash of its content and never over
    /// another (a REST server) cannot take it.
    pub fn overwrites_files(self) -> bool {
        matches!(
            self,
            FaultKind::CorruptPack | FaultKind::TruncatePack | FaultKind::EmptyPack
        )
    }

    /// How long it lasts when no duration is given.
    pub fn default_duration(self) -> Option<Duration> {
        match self {
            FaultKind::ServerRestart => Some(Duration::from_secs(5)),
            FaultKind::Network
            | FaultKind::GcStorm
            | FaultKind::StorageErrors
            | FaultKind::PauseClient
            | FaultKind::StopOsd => Some(Duration::from_secs(15)),
            _ => None,
        }
    }

    /// Whether it lasts for a DURATION (`server-restart@20s:5s`); the others
    /// act once, and a duration given them would be silently ignored.
    pub fn takes_duration(self) -> bool {
        matches!(
            self,
            FaultKind::ServerRestart
                | FaultKind::Network
                | FaultKind::RevokeClient
                | FaultKind::GcStorm
                | FaultKind::StorageErrors
                | FaultKind::PauseClient
                | FaultKind::StopOsd
        )
    }

    /// Acts on restic's locks: only where restic clients take them
    /// (rustic_core and kopia clients take none in the repository).
    pub fn acts_on_locks(self) -> bool {
        matches!(self, FaultKind::StaleLock | FaultKind::Unlock)
    }

    /// Carried out in snapstorm's own REST server (not at the proxy, not
    /// on the files): only where that server serves the storage.
    pub fn needs_own_server(self) -> bool {
        self == FaultKind::StorageErrors
    }

    /// Whether it asks clients for actions of its own (`kill-client`'s and
    /// `pause-client`'s write and snapshot, `parallel-forget`'s forgets).
    pub fn asks_for_actions(self) -> bool {
        matches!(
            self,
            FaultKind::KillClient | FaultKind::PauseClient | FaultKind::ParallelForget
        )
    }

    /// Whether it hits one client (`client=N`).
    pub fn targets_client(self) -> bool {
        matches!(
            self,
            FaultKind::RevokeClient | FaultKind::KillClient | FaultKind::PauseClient
        )
    }

    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of the fault a label names (`aggressive-gc@20.0s`, as
    /// failures and errors name the fault that explains them): known the
    /// moment the fault takes effect, before the run hears it was injected.
    pub fn of_label(label: &str) -> Option<FaultKind> {
        FaultKind::parse(label.split_once('@')?.0)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of the network fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFault {
    /// Added before every request is forwarded.
    pub latency: Duration,
    /// Share of requests whose connection is dropped, in percent.
    pub drop_percent: u8,
    /// Share of requests answered with HTTP 500, in percent.
    pub error_percent: u8,
}

impl Default for NetworkFault {
    fn default() -> Self {
        NetworkFault {
            latency: Duration::from_millis(200),
            drop_percent: 10,
            error_percent: 10,
        }
    }
}

/// One fault to inject, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Time into the run.
    pub at: Duration,
    pub duration: Option<Duration>,
    pub network: NetworkFault,
    /// `revoke-client` / `kill-client` / `pause-client`: client number N (`client-N`)
    /// instead of a random one.
    pub client: Option<u32>,
    /// In a run of fixed per-client sequences on the `order` or `recorded`
    /// schedule: the fault's place in the order in which actions and faults
    /// start (it starts once everything before it has started). `at` is
    /// then when it started in the recording: on `recorded`, it also waits
    /// until as long after the start before it; on `order`, `at` is unused.
    pub after: Option<u64>,
    /// `truncate-pack`: the size the pack is cut to (`size=`), where one
    /// was given; [`DEFAULT_TRUNCATE_TO`] otherwise.
    pub size: Option<ByteSize>,
    /// `storage-errors`: the share of requests failed, in percent, where
    /// one was given (`share=`); [`DEFAULT_STORAGE_ERROR_SHARE`] otherwise.
    pub share: Option<u8>,
    /// `stop-osd`: the OSD's process (`pid=`), which it needs.
    pub pid: Option<u32>,
    /// A data fault's victim named by its role (`victim=`) rather than
    /// drawn at random.
    pub victim: Option<VictimRole>,
    /// `aggressive-gc` in a run of fixed per-client sequences: the backup
    /// it took data from in the recording, which it takes again (see
    /// [`RacedStep`]). Only a scenario file names it (`races`).
    pub races: Option<RacedStep>,
}

/// The step of a fixed per-client sequence (the client as the run numbers
/// it, the step's `seq`) whose backup an aggressive prune raced in the
/// recording: the prune removed packs the step stored before it wrote the
/// index naming them, or data the step reused before it wrote its
/// snapshot. A replay keeps that race every time instead of now and then:
/// the step's first index (or snapshot) upload waits until the prune has
/// listed the repository's packs, and the prune lists them only once that
/// upload waits (each wait capped), so the prune reads neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RacedStep {
    pub client: u32,
    pub seq: u64,
}

/// Written as a scenario file takes it: `client-3:92`.
impl fmt::Display for RacedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client-{}:{}", self.client, self.seq)
    }
}

impl FromStr for RacedStep {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!(
                "`races = \"{text}\"` names no step: write \"client-N:SEQ\" for the step of client-N's sequence with that seq, e.g. \"client-2:14\""
            )
        };
        let (client, seq) = client_and_number(text, ':').ok_or_else(wrong)?;
        if client == 0 {
            return Err(format!(
                "`races = \"{text}\"`: clients are counted from 1, e.g. \"client-1:{seq}\""
            ));
        }
        Ok(RacedStep { client, seq })
    }
}

/// `client-N` then `separator` then a number, as a victim's role and a
/// raced step are written.
fn client_and_number<T: FromStr>(text: &str, separator: char) -> Option<(u32, T)> {
    let (client, number) = text.strip_prefix("client-")?.split_once(separator)?;
    Some((client.parse().ok()?, number.parse().ok()?))
}

/// A data fault's victim named by what it is: the `nth` file of the kind
/// the fault damages (a data pack; an index file for `delete-index`) that
/// `client` stored, counting from 1. A recorded fault is named so because
/// a replay runs on a fresh repository, where the same data lands in files
/// of other names: the role finds the file holding it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VictimRole {
    pub client: u32,
    pub nth: u32,
}

/// Written as the option takes it: `client-2/5`.
impl fmt::Display for VictimRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client-{}/{}", self.client, self.nth)
    }
}

impl FromStr for VictimRole {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!(
                "`victim={text}` names no victim: write victim=client-N/K for the K-th file client-N stored, e.g. victim=client-2/5"
            )
        };
        let (client, nth) = client_and_number(text, '/').ok_or_else(wrong)?;
        if client == 0 || nth == 0 {
            return Err(format!(
                "`victim={text}`: clients and their files are counted from 1, e.g. victim=client-1/1"
            ));
        }
        Ok(VictimRole { client, nth })
    }
}

impl VictimRole {
    /// How a report names the file: `client-2's 5th data pack`.
    pub fn describe(&self, what: &str) -> String {
        format!("client-{}'s {} {what}", self.client, ordinal(self.nth))
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

impl FaultSpec {
    pub fn new(kind: FaultKind, at: Duration) -> Self {
        FaultSpec {
            kind,
            at,
            duration: kind.default_duration(),
            network: NetworkFault::default(),
            client: None,
            after: None,
            size: None,
            share: None,
            pid: None,
            victim: None,
            races: None,
        }
    }

    /// Where `truncate-pack` cuts.
    pub fn truncate_to(&self) -> ByteSize {
        self.size.unwrap_or(DEFAULT_TRUNCATE_TO)
    }

    /// How many requests in a hundred `storage-errors` fails.
    pub fn error_share(&self) -> u8 {
        self.share.unwrap_or(DEFAULT_STORAGE_ERROR_SHARE)
    }
}

/// A duration as a person writes it: one unit, the largest that divides it
/// (`999h`, `90s`, `1500ms`), where humantime would write `41days 15h`.
pub fn compact_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(duration).to_string();
    }
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// Written back the way a user writes it (`network@10s:20s,latency=300ms,drop=10,error=10`),
/// so an error about a fault from a scenario file names it too.
impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind, compact_duration(self.at))?;
        if let Some(duration) = self.duration.filter(|_| self.kind.takes_duration()) {
            write!(f, ":{}", compact_duration(duration))?;
        }
        if self.kind == FaultKind::Network {
            let n = self.network;
            write!(
                f,
                ",latency={},drop={},error={}",
                compact_duration(n.latency),
                n.drop_percent,
                n.error_percent
            )?;
        }
        if let Some(client) = self.client {
            write!(f, ",client={client}")?;
        }
        if let Some(size) = self.size {
            write!(f, ",size={}", compact_size(size))?;
        }
        if let Some(share) = self.share {
            write!(f, ",share={share}")?;
        }
        if let Some(pid) = self.pid {
            write!(f, ",pid={pid}")?;
        }
        if let Some(victim) = self.victim {
            write!(f, ",victim={victim}")?;
        }
        Ok(())
    }
}

/// What a run lets a fault name: its length and its clients, where they are
/// known before it starts (a headless run); `None` where they are not (a run
/// limited by actions only, the console, where clients can be added).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunBounds {
    pub duration: Option<Duration>,
    pub clients: Option<u32>,
}

impl FaultSpec {
    /// Refuses what the spec itself makes impossible: a duration a fault
    /// does not take or of zero, options of another kind, client 0.
    fn check(&self, duration_given: bool) -> Result<(), String> {
        let kind = self.kind;
        if duration_given && !kind.takes_duration() {
            return Err(format!(
                "{kind} acts once and takes no duration; write {kind}@{}",
                compact_duration(self.at)
            ));
        }
        if kind.takes_duration() && self.duration.is_some_and(|d| d.is_zero()) {
            return Err(format!(
                "a duration of 0s does nothing; give one longer than 0s, e.g. {kind}@{}:15s",
                compact_duration(self.at)
            ));
        }
        if self.client.is_some() && !kind.targets_client() {
            return Err(format!(
                "{kind} hits no single client; `client=` is for revoke-client, kill-client and pause-client"
            ));
        }
        if self.client == Some(0) {
            return Err("clients are numbered from 1: give client=1 or more".into());
        }
        if kind != FaultKind::Network && self.network != NetworkFault::default() {
            return Err(format!(
                "latency, drop and error are options of network, not of {kind}"
            ));
        }
        if self.size.is_some() && kind != FaultKind::TruncatePack {
            return Err(format!("size is an option of truncate-pack, not of {kind}"));
        }
        if self.share.is_some() && kind != FaultKind::StorageErrors {
            return Err(format!(
                "share is an option of storage-errors, not of {kind}"
            ));
        }
        if self.share == Some(0) {
            return Err("share=0 fails no request: give a share of 1 to 100".into());
        }
        if self.victim.is_some() && !kind.damages_files() {
            return Err(format!(
                "victim names a damaged file; it is an option of corrupt-pack, delete-pack, truncate-pack, empty-pack and delete-index, not of {kind}"
            ));
        }
        if self.pid.is_some() && kind != FaultKind::StopOsd {
            return Err(format!("pid is an option of stop-osd, not of {kind}"));
        }
        if self.races.is_some() && kind != FaultKind::AggressiveGc {
            return Err(format!(
                "races names the backup an aggressive prune raced; it is an option of aggressive-gc, not of {kind}"
            ));
        }
        if kind == FaultKind::StopOsd && self.pid.is_none_or(|pid| pid == 0) {
            return Err(format!(
                "stop-osd needs the OSD's process: write stop-osd@{}:15s,pid=PID (scripts/ceph start prints osdN_pid=)",
                compact_duration(self.at)
            ));
        }
        if self.size.is_some_and(|size| size.as_u64() == 0) {
            return Err("size=0 leaves the pack empty: write empty-pack instead".into());
        }
        Ok(())
    }

    /// Refuses a fault that cannot happen in a run with these bounds: one
    /// timed at or after the run's end, one aimed at a client the run never has.
    pub fn check_bounds(&self, bounds: &RunBounds) -> Result<(), FaultSpecError> {
        let fail = |problem: String| FaultSpecError {
            text: self.to_string(),
            problem,
        };
        if let Some(length) = bounds.duration
            && self.at >= length
        {
            return Err(fail(format!(
                "at {} the run is over (it lasts {}); give a time under {}, or a longer --duration",
                compact_duration(self.at),
                compact_duration(length),
                compact_duration(length)
            )));
        }
        if let (Some(clients), Some(client)) = (bounds.clients, self.client)
            && client > clients
        {
            return Err(fail(format!(
                "the run has {clients} client(s), client-1 to client-{clients}; give client=1 to {clients}, or --clients {client}"
            )));
        }
        if let (Some(clients), Some(victim)) = (bounds.clients, self.victim)
            && victim.client > clients
        {
            return Err(fail(format!(
                "the run has {clients} client(s), client-1 to client-{clients}: no client-{} to have stored the victim; give victim=client-1/{} to client-{clients}/{}, or --clients {}",
                victim.client, victim.nth, victim.nth, victim.client
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault `{text}`: {problem}")]
pub struct FaultSpecError {
    pub text: String,
    pub problem: String,
}

/// The longest time or duration snapstorm takes anywhere (a run's length, a
/// fault's time, a latency): a year. Anything longer is a slip of the
/// keyboard, and would overflow the clock it is added to.
pub const MAX_TIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A time or duration as people write them (`15s`, `2m`, `1h30m`), at most [`MAX_TIME`].
pub fn parse_time(value: &str) -> Result<Duration, String> {
    let time = humantime::parse_duration(value)
        .map_err(|e| format!("`{value}` is not a duration ({e}; write e.g. 30s, 5m, 1h)"))?;
    if time > MAX_TIME {
        return Err(format!(
            "`{value}` is longer than a year, the longest snapstorm takes; write e.g. 30s, 5m, 1h"
        ));
    }
    Ok(time)
}

/// A size written back as a person writes it: the largest binary unit that
/// divides it (`2MiB`, `1536KiB`, `1000`), read back by [`parse_size`].
pub fn compact_size(size: ByteSize) -> String {
    let bytes = size.as_u64();
    for (unit, per) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes > 0 && bytes.is_multiple_of(per) {
            return format!("{}{unit}", bytes / per);
        }
    }
    bytes.to_string()
}

/// A size as people write it (`2MiB`, `512KiB`, `4096`).
fn parse_size(value: &str) -> Result<ByteSize, String> {
    value
        .parse::<ByteSize>()
        .map_err(|_| format!("`size={value}` is not a size (write e.g. 2MiB, 512KiB)"))
}

fn parse_percent(key: &str, value: &str) -> Result<u8, String> {
    let number = value.trim_end_matches('%');
    match number.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("`{key}={value}` is not a percentage (0..=100)")),
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |problem: String| FaultSpecError {
            text: text.to_owned(),
            problem,
        };
        let mut parts = text.split(',');
        let head = parts.next().unwrap_or_default();
        let (kind, when) = head
            .split_once('@')
            .ok_or_else(|| fail("write KIND@TIME[:DURATION], e.g. corrupt-pack@15s".into()))?;
        let kind = FaultKind::parse(kind).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            fail(format!(
                "unknown kind `{kind}`; one of: {}",
                names.join(", ")
            ))
        })?;
        let (at, duration) = match when.split_once(':') {
            Some((at, duration)) => (at, Some(duration)),
            None => (when, None),
        };
        let mut spec = FaultSpec::new(kind, parse_time(at).map_err(&fail)?);
        if let Some(duration) = duration {
            spec.duration = Some(parse_time(duration).map_err(&fail)?);
        }
        let mut given: Vec<&str> = Vec::new();
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| fail(format!("`{option}`: options are key=value")))?;
            if given.contains(&key) {
                return Err(fail(format!(
                    "`{key}` is given twice: which one holds is unclear; give it once"
                )));
            }
            given.push(key);
            match key {
                "latency" => spec.network.latency = parse_time(value).map_err(&fail)?,
                "drop" => spec.network.drop_percent = parse_percent(key, value).map_err(&fail)?,
                "error" => spec.network.error_percent = parse_percent(key, value).map_err(&fail)?,
                "client" => {
                    let number = value.trim_start_matches("client-");
                    let id = number
                        .parse::<u32>()
                        .map_err(|_| fail(format!("`client={value}` is not a client number")))?;
                    spec.client = Some(id);
                }
                "size" => spec.size = Some(parse_size(value).map_err(&fail)?),
                "share" => spec.share = Some(parse_percent(key, value).map_err(&fail)?),
                "pid" => {
                    let pid = value
                        .parse::<u32>()
                        .map_err(|_| fail(format!("`pid={value}` is not a process id")))?;
                    spec.pid = Some(pid);
                }
                "victim" => spec.victim = Some(value.parse().map_err(&fail)?),
                _ => {
                    return Err(fail(format!(
                        "unknown option `{key}`; options are latency, drop, error (network), client (revoke-client, kill-client, pause-client), size (truncate-pack), share (storage-errors), pid (stop-osd) and victim (the pack and index faults)"
                    )));
                }
            }
        }
        spec.check(duration.is_some()).map_err(fail)?;
        Ok(spec)
    }
}

/// A `[[faults]]` entry of a scenario file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScenarioFault {
    pub kind: FaultKind,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<u32>,
    /// Its place in the recorded order of starts (see [`FaultSpec::after`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// `truncate-pack`: the size the pack is cut to (`"2MiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// `storage-errors`: the share of requests failed, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<u8>,
    /// `stop-osd`: the OSD's process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The pack and index faults: the file damaged, by its role
    /// (`"client-2/5"`: the 5th that client-2 stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim: Option<String>,
    /// `aggressive-gc`: the step whose backup it races (`"client-3:92"`,
    /// see [`RacedStep`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub races: Option<String>,
}

impl ScenarioFault {
    /// The entry a scenario file holds for `spec`: written back with
    /// exactly the settings it has.
    pub fn from_spec(spec: &FaultSpec) -> Self {
        let network = (spec.kind == FaultKind::Network).then_some(spec.network);
        ScenarioFault {
            kind: spec.kind,
            at: compact_duration(spec.at),
            duration: spec
                .duration
                .filter(|_| spec.kind.takes_duration())
                .map(compact_duration),
            latency: network.map(|n| compact_duration(n.latency)),
            drop_percent: network.map(|n| n.drop_percent),
            error_percent: network.map(|n| n.error_percent),
            client: spec.client,
            after: spec.after,
            size: spec.size.map(compact_size),
            share: spec.share,
            pid: spec.pid,
            victim: spec.victim.map(|v| v.to_string()),
            races: spec.races.map(|r| r.to_string()),
        }
    }

    pub fn to_spec(&self) -> Result<FaultSpec, String> {
        let mut spec = FaultSpec::new(self.kind, parse_time(&self.at)?);
        if let Some(duration) = &self.duration {
            spec.duration = Some(parse_time(duration)?);
        }
        if let Some(latency) = &self.latency {
            spec.network.latency = parse_time(latency)?;
        }
        for (key, value) in [
            ("drop-percent", self.drop_percent),
            ("error-percent", self.error_percent),
            ("share", self.share),
        ] {
            if value.is_some_and(|v| v > 100) {
                return Err(format!("`{key}` is not a percentage (0..=100)"));
            }
        }
        if let Some(p) = self.drop_percent {
            spec.network.drop_percent = p;
        }
        if let Some(p) = self.error_percent {
            spec.network.error_percent = p;
        }
        spec.client = self.client;
        spec.after = self.after;
        spec.size = self.size.as_deref().map(parse_size).transpose()?;
        spec.share = self.share;
        spec.pid = self.pid;
        spec.victim = self.victim.as_deref().map(str::parse).transpose()?;
        spec.races = self.races.as_deref().map(str::parse).transpose()?;
        let network_options =
            self.latency.is_some() || self.drop_percent.is_some() || self.error_percent.is_some();
        if network_options && self.kind != FaultKind::Network {
            return Err(format!(
                "latency, drop-percent and error-percent are options of network, not of {}",
                self.kind
            ));
        }
        spec.check(self.duration.is_some())?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests;
