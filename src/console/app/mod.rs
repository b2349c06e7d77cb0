//! The console's state and how it changes: engine events and key presses
//! come in, commands for the engine go out. Nothing here draws or blocks;
//! drawing is a pure function of [`App`] (see `layout.rs`).

mod events;
mod navigation;
mod state;
mod update;

pub use state::*;
