//! The robustness engine: actions, the checker, fingerprints, statistics,
//! attribution (the verdict on each incident) and the metadata that lets a
//! later run resume. It imports no backend and no fault injector: backends
//! implement its traits.

pub mod actions;
pub mod attribution;
pub mod brief;
pub mod checker;
pub mod damage;
pub mod exec;
pub mod file_writer;
pub mod fingerprint;
pub mod guard;
pub mod options;
pub mod progress;
pub mod scenario;
pub mod stats;
pub mod store;
pub mod trace;
pub mod traits;

pub use actions::{Action, Origin};
pub use exec::{ActionParams, ActionRecord, Engine, EngineConfig};
pub use stats::{Outcome, Report};
pub use traits::ClientId;
