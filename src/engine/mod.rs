//! The robustness engine: actions, the checker, fingerprints, statistics
//! and the metadata that lets a later run resume.

pub mod file_writer;
pub mod fingerprint;
pub mod options;
pub mod traits;
