//! What a front end sees of a run: the commands it takes, the events it
//! reports, the counts it publishes, and how it is started.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::supervisor::supervise;
use crate::engine::actions::Action;
use crate::engine::exec::Engine;
use crate::engine::record::ActionRecord;
use crate::engine::report::Report;
use crate::engine::stats::Counts;
use crate::engine::store::Failure;
use crate::engine::traits::{
    BackendError, ClientId, FaultInjector, GcOptions, Injected, ServerInfo,
};
use crate::faults::{FaultKind, FaultSpec};
use crate::multiclient::MultiClientSnapshotter;

/// When a run ends on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimit {
    /// Stop starting actions after this long.
    pub duration: Option<Duration>,
    /// Each client stops after this many scenario actions.
    pub actions_per_client: Option<u64>,
}

/// What a person (or a test) can ask of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    AddClient,
    RemoveClient(ClientId),
    Gc(GcOptions),
    /// Pause or resume every client.
    TogglePauseAll,
    TogglePauseClient(ClientId),
    /// Run this action next for this client (snapshot now, verify now…).
    Enqueue(ClientId, Action),
    /// Inject a fault now (its `at` is ignored).
    InjectFault(FaultSpec),
    Shutdown,
}

/// What a run reports while it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A client is being connected (`attempt` 1 first, more after a failure).
    ClientConnecting {
        client: ClientId,
        attempt: u32,
    },
    ClientAdded(ClientId),
    /// The client could not be connected, or its worker stopped on an error.
    ClientError(ClientId, String),
    ClientRemoved(ClientId),
    ActionStarted {
        client: ClientId,
        action: Action,
        at: Instant,
    },
    ActionFinished(Box<ActionRecord>),
    GcStarted,
    GcFinished(Result<(), BackendError>),
    PausedAll(bool),
    ClientPaused(ClientId, bool),
    FaultInjected(Injected),
    /// A fault could not be injected (no pack yet, no such client…).
    FaultFailed {
        kind: FaultKind,
        error: String,
    },
    /// Failures found outside any action: the listing checks.
    Failures(Vec<Failure>),
    /// Shutdown began: in-flight actions are finishing.
    Stopping {
        in_flight: usize,
        grace: Duration,
    },
    Finished(Box<Report>),
}

/// Facts about a run, known once it started.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub seed: u64,
    pub scenario: String,
    pub state_dir: PathBuf,
    pub server: ServerInfo,
    pub run_counter: u32,
    pub inherited_snapshots: u64,
    /// Snapshots the repository lost since the metadata recorded them.
    pub startup_failures: Vec<Failure>,
}

/// How long a client that could not connect waits before its next try:
/// doubling from 1 s, at most 30 s.
pub fn connect_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

pub use crate::engine::MAX_CLIENTS;

/// How long shutdown waits for in-flight actions before it stops waiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// The engine's counts as a front end reads them: the console, the progress
/// line and the summary display these and count nothing themselves.
#[derive(Clone)]
pub struct CountsFeed {
    engine: Arc<Engine>,
    running: Arc<AtomicUsize>,
}

impl CountsFeed {
    pub fn now(&self) -> Counts {
        self.engine.counts()
    }

    /// Inherited snapshots the clients verify at their start (reads the metadata).
    pub fn inherited_to_verify(&self) -> u64 {
        self.engine.inherited_to_verify()
    }

    /// Inherited snapshots verified so far.
    pub fn inherited_verified(&self) -> u64 {
        self.engine.inherited_verified()
    }

    /// Clients taking actions now (added, not yet removed).
    pub fn running_clients(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// A handle on a running run, to take apart: commands go in, events and
/// counts come out, the task ends with the report. Dropping every sender of
/// `commands` ends the run, as a `Shutdown` would.
pub struct RunHandle {
    pub info: RunInfo,
    pub commands: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub counts: CountsFeed,
    pub task: tokio::task::JoinHandle<Report>,
}

/// Everything a run needs, already set up.
pub struct RunParts {
    pub engine: Arc<Engine>,
    pub snapshotter: Arc<MultiClientSnapshotter>,
    pub initial_clients: u32,
    pub limit: RunLimit,
    pub state_dir: PathBuf,
    /// Injects faults, if the backend can.
    pub faults: Option<Arc<dyn FaultInjector>>,
    /// Faults to inject at their times.
    pub fault_plan: Vec<FaultSpec>,
    /// Awaited once at the very end, after the last client is gone (stops the server).
    pub on_finish: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the start-up check crashed: {0}")]
    Crashed(#[from] tokio::task::JoinError),
    #[error("cannot list the repository's snapshots: {0}")]
    Listing(#[source] crate::engine::checker::CheckerError),
}

/// Starts a run: checks the metadata against the repository, connects the
/// initial clients and starts their workers.
pub async fn start(parts: RunParts) -> Result<RunHandle, StartError> {
    let engine = parts.engine.clone();
    let check_engine = engine.clone();
    let startup_failures = tokio::task::spawn_blocking(move || check_engine.startup_check())
        .await?
        .map_err(StartError::Listing)?;
    let report = engine.report();
    let info = RunInfo {
        seed: engine.config().seed,
        scenario: engine.config().scenario.name.clone(),
        state_dir: parts.state_dir.clone(),
        server: engine.server().info(),
        run_counter: report.run_counter,
        inherited_snapshots: report.inherited_snapshots,
        startup_failures,
    };
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let running = Arc::new(AtomicUsize::new(0));
    let counts = CountsFeed {
        engine: engine.clone(),
        running: running.clone(),
    };
    let task = tokio::spawn(supervise(parts, commands_rx, events_tx, running));
    Ok(RunHandle {
        info,
        commands: commands_tx,
        events: events_rx,
        counts,
        task,
    })
}
