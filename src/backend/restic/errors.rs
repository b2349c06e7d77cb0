//! What a failed restic process means for the verdict, decided in this order:
//!
//! 1. Evidence, shared with the embedded backend (the proxy and the server
//!    record every request they dropped, failed, cut or refused, the
//!    server's outages and the GCs): a disturbed request of this client
//!    while the process ran → the request did not get through.
//! 2. How the process ended: killed by a signal, or SIGKILLed at its
//!    deadline (a hang); exit code 3 of `backup` (source files unreadable:
//!    snapstorm's own side).
//! 3. Text: restic 0.14 ends every other failure with exit code 1, so its
//!    fixed messages are the only type left. They are listed once, in
//!    [`MESSAGES`], each with a test.

use std::time::Instant;

use super::process::{Exit, Output};
use crate::backend::embedded::evidence::Evidence;
use crate::engine::traits::BackendError;

/// What a restic message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// Another process holds a lock that excludes this one (a prune's
    /// exclusive lock, or a forget's): raced a concurrent change.
    Locked,
    /// The snapshot asked for does not exist.
    SnapshotNotFound,
    /// The request did not get through: a refused user, a refused or broken
    /// connection, a timeout.
    NotThrough,
    /// HTTP 404 for a repository file: a race with a GC that replaced an
    /// index file, or lost data.
    FileNotFound,
    /// Data missing or unreadable.
    Data,
    /// The server answered with an error of its own.
    ServerError,
    /// snapstorm's own file system (restore target, cache).
    Local,
    /// Nothing to do as restic sees it: restic before 0.15 refuses to
    /// snapshot an empty directory (0.18 saves an empty snapshot).
    NothingToDo,
}

/// restic 0.14's fixed messages; the first that the error text contains
/// decides. Every entry has a test below.
pub const MESSAGES: [(&str, Said); 22] = [
    ("repository is already locked", Said::Locked),
    // restic 0.14 refuses to snapshot an empty directory: nothing to do,
    // not a repository event.
    ("snapshot is empty", Said::NothingToDo),
    ("no matching ID found", Said::SnapshotNotFound),
    ("unexpected HTTP response (401)", Said::NotThrough),
    ("unexpected HTTP response (403)", Said::NotThrough),
    ("connection refused", Said::NotThrough),
    ("connection reset by peer", Said::NotThrough),
    ("unexpected EOF", Said::NotThrough),
    ("context deadline exceeded", Said::NotThrough),
    ("unexpected HTTP response (404)", Said::FileNotFound),
    ("unexpected HTTP response (5", Said::ServerError),
    ("ciphertext verification failed", Said::Data),
    ("not found in index", Said::Data),
    ("not found in repository", Said::Data),
    ("does not match", Said::Data),
    ("invalid data returned", Said::Data),
    ("which are missing from the repository", Said::Data),
    ("no space left on device", Said::Local),
    ("read-only file system", Said::Local),
    ("disk quota exceeded", Said::Local),
    ("file name too long", Said::Local),
    ("permission denied", Said::Local),
];

/// What restic said, by the first known message the text contains.
pub fn said(text: &str) -> Option<Said> {
    crate::backend::process::first_message(&MESSAGES, text)
}

/// Whose process, since when: what the evidence is asked about.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub evidence: &'a Evidence,
    /// The REST user the process ran as (`client-N`).
    pub user: &'a str,
    pub started: Instant,
    /// `backup`, `restore`…: named in the error.
    pub command: &'a str,
}

impl CallContext<'_> {
    /// Classifies a process that did not succeed.
    pub fn classify(&self, output: &Output) -> BackendError {
        let text = format!("restic {}: {}", self.command, explanation(output));
        if let Some(why) = self.evidence.disturbed(self.user, self.started) {
            return BackendError::NotThrough(format!("{why}: {text}"));
        }
        self.by_output(output, text)
    }

    /// Classifies a process that sent no request (a prune run on the
    /// repository directory): what happened to requests says nothing of it.
    pub fn classify_local(&self, output: &Output) -> BackendError {
        let text = format!("restic {}: {}", self.command, explanation(output));
        self.by_output(output, text)
    }

    fn by_output(&self, output: &Output, text: String) -> BackendError {
        match output.exit {
            Exit::Signal(_) | Exit::TimedOut(_) => return BackendError::Failed(text),
            Exit::Code(3) if self.command == "backup" => return BackendError::Local(text),
            Exit::Code(_) => {}
        }
        match said(&output.stderr) {
            Some(Said::Locked) => BackendError::Raced(text),
            Some(Said::SnapshotNotFound | Said::Data) => BackendError::Data(text),
            Some(Said::NotThrough) => BackendError::NotThrough(text),
            Some(Said::FileNotFound)
                if output.stderr.contains("<index/") && self.evidence.gc_since(self.started) =>
            {
                BackendError::Raced(format!("a GC replaced an index file: {text}"))
            }
            Some(Said::FileNotFound) => BackendError::Data(text),
            Some(Said::Local) => BackendError::Local(text),
            Some(Said::NothingToDo) => BackendError::NothingToDo(
                "nothing to snapshot: the data dir is empty (restic refuses an empty snapshot)"
                    .to_owned(),
            ),
            Some(Said::ServerError) | None => BackendError::Failed(text),
        }
    }
}

/// The process's own words: how it ended and the last lines it wrote.
fn explanation(output: &Output) -> String {
    // restic repeats the repository URL after a failure: noise, not news.
    output.explanation(&["Is there a repository at", "rest:"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::embedded::evidence::Disturbance;
    use crate::engine::traits::ErrorClass;
    use std::time::Duration;

    fn failed(stderr: &str) -> Output {
        Output {
            exit: Exit::Code(1),
            stdout: String::new(),
            stderr: stderr.to_owned(),
        }
    }

    /// A call of `user` (empty: a process that sends no request), starting now.
    fn call<'a>(evidence: &'a Evidence, user: &'a str, command: &'a str) -> CallContext<'a> {
        CallContext {
            evidence,
            user,
            started: Instant::now(),
            command,
        }
    }

    fn class(evidence: &Evidence, command: &str, output: &Output) -> ErrorClass {
        call(evidence, "client-2", command).classify(output).class()
    }

    fn is(stderr: &str, expected: ErrorClass) {
        assert_eq!(
            class(&Evidence::new(), "backup", &failed(stderr)),
            expected,
            "{stderr}"
        );
    }

    // Each message as restic 0.14 prints it.
    #[test]
    fn a_lock_held_by_another_process_is_a_race() {
        is(
            "unable to create lock in backend: repository is already locked exclusively by PID 4711 on host by root (UID 0, GID 0)\nlock was created at 2026-11-26 00:10:39 (1.2s ago)",
            ErrorClass::Raced,
        );
    }
    #[test]
    fn a_missing_snapshot_is_data() {
        is(
            "invalid id \"abcdef12\": no matching ID found for prefix \"abcdef12\"",
            ErrorClass::Data,
        );
    }
    #[test]
    fn a_refused_user_did_not_get_through() {
        is(
            "Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\nIs there a repository at the following location?\nrest:http://client-2:***@127.0.0.1:1/repo/",
            ErrorClass::NotThrough,
        );
        is(
            "Save(<lock/12>) returned error: unexpected HTTP response (403): 403 Forbidden",
            ErrorClass::NotThrough,
        );
    }
    #[test]
    fn a_refused_connection_did_not_get_through() {
        is(
            "Fatal: unable to open config file: client.Head: Head \"http://client-2:***@127.0.0.1:1/repo/config\": dial tcp 127.0.0.1:1: connect: connection refused",
            ErrorClass::NotThrough,
        );
        is(
            "read tcp 127.0.0.1:4->127.0.0.1:5: read: connection reset by peer",
            ErrorClass::NotThrough,
        );
        is(
            "Post \"http://x/repo/data/ab\": unexpected EOF",
            ErrorClass::NotThrough,
        );
        is(
            "Fatal: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            ErrorClass::NotThrough,
        );
    }
    #[test]
    fn a_404_on_an_index_file_is_a_race_with_a_gc_and_lost_data_without() {
        let stderr = "Load(<index/35c4a1b2c3>, 0, 0) returned error, giving up: unexpected HTTP response (404): 404 Not Found";
        let evidence = Evidence::new();
        assert_eq!(
            class(&evidence, "restore", &failed(stderr)),
            ErrorClass::Data
        );
        let call = call(&evidence, "client-2", "restore");
        drop(evidence.gc_running());
        assert_eq!(call.classify(&failed(stderr)).class(), ErrorClass::Raced);
        assert_eq!(
            call.classify(&failed(
                "Load(<data/ab12>, 0, 0) returned error: unexpected HTTP response (404): 404 Not Found"
            ))
            .class(),
            ErrorClass::Data,
            "a GC never removes a pack in use"
        );
    }
    #[test]
    fn a_500_nobody_injected_is_the_servers_failure() {
        is(
            "Save(<data/ab>) returned error: unexpected HTTP response (500): 500 Internal Server Error",
            ErrorClass::Other,
        );
    }
    #[test]
    fn damaged_data_is_data() {
        is(
            "ignoring error for /f: decrypting blob 12ab failed: ciphertext verification failed",
            ErrorClass::Data,
        );
        is("id 5f3e2a not found in index", ErrorClass::Data);
        is("tree 5f3e2a not found in repository", ErrorClass::Data);
        is(
            "Pack ID does not match, want 1a2b, got 3c4d",
            ErrorClass::Data,
        );
        is("invalid data returned", ErrorClass::Data);
        is(
            "The index references 1 needed pack files which are missing from the repository:\nd3e28921\nFatal: packs from index missing in repo",
            ErrorClass::Data,
        );
    }
    #[test]
    fn the_local_file_system_is_local() {
        is("open /t/f: no space left on device", ErrorClass::Local);
        is("mkdir /t: read-only file system", ErrorClass::Local);
        is("write /t/f: disk quota exceeded", ErrorClass::Local);
        is("open /t/xxxx: file name too long", ErrorClass::Local);
        is("open /t/f: permission denied", ErrorClass::Local);
    }
    #[test]
    fn an_empty_source_is_nothing_to_do() {
        let evidence = Evidence::new();
        let empty = failed("Fatal: unable to save snapshot: snapshot is empty");
        let error = call(&evidence, "client-1", "backup").classify(&empty);
        assert!(
            matches!(&error, BackendError::NothingToDo(why) if why.starts_with("nothing to snapshot")),
            "{error:?}"
        );
    }
    #[test]
    fn anything_else_is_the_backends_own_failure() {
        is("Fatal: something new", ErrorClass::Other);
    }

    #[test]
    fn how_the_process_ended_decides_before_the_text() {
        let evidence = Evidence::new();
        let killed = Output {
            exit: Exit::Signal(9),
            stdout: String::new(),
            stderr: "no matching ID found".into(),
        };
        assert_eq!(class(&evidence, "backup", &killed), ErrorClass::Other);
        let hung = Output {
            exit: Exit::TimedOut(Duration::from_secs(1)),
            ..killed.clone()
        };
        assert_eq!(class(&evidence, "backup", &hung), ErrorClass::Other);
        let unreadable = Output {
            exit: Exit::Code(3),
            ..killed.clone()
        };
        assert_eq!(class(&evidence, "backup", &unreadable), ErrorClass::Local);
        assert_eq!(class(&evidence, "restore", &unreadable), ErrorClass::Data);
    }

    #[test]
    fn a_process_that_sent_no_request_is_judged_by_its_words() {
        let evidence = Evidence::new();
        let call = call(&evidence, "", "prune");
        evidence.server_stopped();
        let missing = failed(
            "The index references 1 needed pack files which are missing from the repository",
        );
        assert_eq!(call.classify(&missing).class(), ErrorClass::NotThrough);
        assert_eq!(call.classify_local(&missing).class(), ErrorClass::Data);
    }

    #[test]
    fn evidence_comes_first() {
        let evidence = Evidence::new();
        let call = call(&evidence, "client-2", "backup");
        let killed = Output {
            exit: Exit::Signal(9),
            stdout: String::new(),
            stderr: String::new(),
        };
        evidence.request("client-1", Disturbance::CutOff);
        assert_eq!(call.classify(&killed).class(), ErrorClass::Other);
        evidence.request("client-2", Disturbance::CutOff);
        let error = call.classify(&killed);
        assert_eq!(error.class(), ErrorClass::NotThrough);
        assert!(error.to_string().contains("kill-client"), "{error}");
    }
}
