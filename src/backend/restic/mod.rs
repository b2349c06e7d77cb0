//! The restic backend: the `restic` program as the clients (Debian's 0.14,
//! or the restic users run today, 0.17–0.18, through `RESTIC_EXE`), one process
//! per call, against the embedded backend's server (the same REST server,
//! fault proxy, evidence and faults); and the mixed backend, rustic_core and
//! restic clients alternating on one repository.
//!
//! - Secrets never reach a command line: the repository URL (with the
//!   client's REST user and password) and the repository password go to
//!   the process through `RESTIC_REPOSITORY` and `RESTIC_PASSWORD`, and every
//!   text kept from the process is scrubbed of both.
//! - Every process runs in its own process group with a deadline; at the
//!   deadline the whole group is SIGKILLed and the call is an error.
//!   `kill-client` SIGKILLs a restic client's process when the proxy cuts it
//!   off mid-snapshot; `pause-client` stops it there (SIGSTOP) and lets it
//!   go on (SIGCONT) when the pause ends.
//! - GC stays the Server's: rustic_core's prune, or with `gc = "restic"`,
//!   `restic prune` with restic's exclusive lock.

mod client;
mod errors;
mod locks;
mod mixed;
pub mod process;
mod server;

pub use client::{
    BackupLine, DEFAULT_ACTION_TIMEOUT, ResticClient, ResticClients, SnapshotJson,
    backup_snapshot_id, parse_snapshots,
};
pub use errors::{MESSAGES, Said, said};
pub use mixed::MixedClients;
pub use process::{Processes, RESTIC_EXE, ResticBinary, ResticUnusable, ResticVersion};
pub use server::ResticServer;

/// What the report calls a restic client.
pub const KIND: &str = "restic";

/// The name the GC's `restic prune` runs under in the table of processes
/// (no client's: a client waiting for its lock raced a GC).
pub const GC_USER: &str = "snapstorm-gc";
