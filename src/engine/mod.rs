//! The robustness engine: actions, the checker, fingerprints, statistics,
//! attribution (the verdict on each incident) and the metadata that lets a
//! later run resume. It imports no backend and no fault injector: backends
//! implement its traits.

pub mod actions;
pub mod attribution;
pub mod brief;
pub mod checker;
mod checks;
pub mod damage;
pub mod exec;
mod fault_host;
pub mod file_writer;
pub mod fingerprint;
pub mod guard;
pub mod input;
pub mod options;
pub mod progress;
pub mod record;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod store;
mod together;
pub mod trace;
pub mod traits;
mod verdict;

pub use actions::{Action, Origin};

/// The most clients a run takes at once: `--clients`, a scenario's
/// `[[clients]]` and the console's `a` stop here.
pub const MAX_CLIENTS: u32 = 64;
pub use exec::{Engine, EngineConfig};
pub use record::{ActionParams, ActionRecord, Drawn};
pub use report::Report;
pub use stats::Outcome;
pub use traits::ClientId;
