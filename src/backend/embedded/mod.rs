//! The embedded backend: snapstorm's own REST server serving a restic-format
//! repository, and `rustic_core` clients that reach it over HTTP.
//!
//! - The Server initializes (or reopens) the repository directly on disk,
//!   serves it on 127.0.0.1, adds one user per client with a random password
//!   and revokes it when the client goes. GC is a rustic prune run directly
//!   on the repository directory while the server keeps serving.
//! - A client opens the repository through rustic's REST backend with its
//!   own cache directory. rustic's REST client is blocking: every call here
//!   must run on a blocking thread, never inside async code.
//! - rustic_core takes no repository locks. The default GC is rustic's
//!   two-phase prune, which keeps unused data for a grace period; the
//!   aggressive GC deletes at once and can remove data an in-flight backup
//!   relies on.
//! - Evidence: the proxy and the server record what they did to requests
//!   (dropped, failed, refused, the server down, a GC running); a client's
//!   error is classified with that evidence first (`errors.rs`).

mod client;
mod errors;
pub mod evidence;
mod faults;
pub mod files;
pub mod inspect;
pub mod proxy;
mod race;
mod server;
pub mod stored;

use std::time::Duration;

pub use client::{RusticClient, RusticClients};
pub use faults::{EmbeddedFaults, RemoveAllLocks, STALE_LOCK_HOST};
pub use server::{EmbeddedServer, StorageError, reach_storage, refuses_deletes};

/// What the report calls a rustic_core client.
pub const KIND: &str = "rustic";

/// The repository's name on the server: clients use `http://…/repo/`.
pub const REPO_NAME: &str = "repo";

/// How patient rustic's REST client is. The defaults (5 retries, 10 minutes)
/// would hide a dead server for minutes; these make it an error in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub request_timeout: Duration,
    pub retries: u32,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            request_timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}
