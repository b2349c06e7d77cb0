//! The robustness engine: actions, the checker, fingerprints, statistics
//! and the metadata that lets a later run resume.

pub mod actions;
pub mod brief;
pub mod checker;
pub mod exec;
pub mod file_writer;
pub mod fingerprint;
pub mod options;
pub mod scenario;
pub mod stats;
pub mod store;
pub mod trace;
pub mod traits;

pub use actions::Action;
pub use exec::{ActionParams, ActionRecord, Engine, EngineConfig};
pub use stats::{Outcome, Report};
pub use traits::ClientId;
