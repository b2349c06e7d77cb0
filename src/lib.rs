//! snapstorm: multi-client robustness testing of snapshot/backup repositories.
//!
//! The library is the engine the console, the headless runner and the tests
//! all drive; backends plug in through its traits.

pub mod backend;
pub mod cli;
pub mod console;
pub mod engine;
pub mod faults;
pub mod headless;
pub mod multiclient;
pub mod page;
pub mod reproduce;
pub mod run;
pub mod server;
