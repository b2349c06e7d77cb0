//! The kopia backend: the `kopia` program (on `PATH` or at `KOPIA_EXE`) as
//! the server and every client, after kopia's own multi-client robustness
//! test. Tested against kopia 0.23.1 (the contract suite); its flags and
//! JSON shapes follow kopia's `cli/`, `snapshot/manifest.go` and
//! `tests/tools/kopiarunner/`. The repository keeps every snapshot (no
//! retention policy of kopia's expires one behind snapstorm's back).
//!
//! - The Server creates (or connects to) a filesystem repository in the
//!   state directory, or one in an S3 bucket (`storage.rs`), and runs `kopia server start` on 127.0.0.1 with a TLS
//!   certificate it generates; a client is a repository user, added and
//!   deleted at run time and made known with `server refresh`. GC is
//!   kopia's maintenance directly on the repository (`gc.rs`: a normal GC
//!   at kopia's default safety, an aggressive one frees at once).
//! - A client connects with `repository connect server`, the certificate
//!   fingerprint and its own user and host name, with its own config file
//!   and cache; every call is one process (`snapshot create/list/restore/
//!   delete`, `--json` where kopia has it), in its own process group with a
//!   deadline.
//! - No password reaches a command line: the repository password, a
//!   client's password and the server-control password go through the
//!   environment; a user is added with its password's hash.
//! - Clients reach the server through a fault proxy that passes TLS
//!   through untouched, a port per client (`proxy.rs`); faults act there,
//!   on the server and on the repository's files (`faults.rs`), and the
//!   proxy's evidence comes first when a client's error is classified.

mod client;
mod errors;
mod faults;
mod gc;
mod json;
mod password;
pub mod process;
mod proxy;
mod server;
mod starting;
mod storage;

pub use client::{DEFAULT_ACTION_TIMEOUT, KopiaClient, KopiaClients, args};
pub use errors::{MESSAGES, Said, classify, said};
pub use faults::{KopiaFaults, refusal};
pub use json::{ManifestJson, SourceJson, parse_created, parse_listed};
pub use password::user_password_hash;
pub use process::{KOPIA_EXE, KopiaBinary, Processes};
pub use server::{CLIENT_HOST, KopiaServer, certificate_fingerprint, kopia_user, server_address};
pub use storage::KopiaStorage;

/// What the report calls a kopia client.
pub const KIND: &str = "kopia";

/// The kopia release whose CLI this backend follows.
pub const KOPIA_CLI_VERSION: &str = "v0.23.1-83-g4ebb2be6c";
