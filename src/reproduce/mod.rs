//! A recorded run again: `replay` runs the recorded streams on a fresh
//! repository, `shrink` searches for the smallest scenario that still fails.

mod races;
pub mod replay;
pub mod shrink;
