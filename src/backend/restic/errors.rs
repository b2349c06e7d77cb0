//! What a failed restic process means for the verdict, decided in this order:
//!
//! 1. Evidence, shared with the embedded backend (the proxy and the server
//!    record every request they dropped, failed, cut or refused, the
//!    server's outages and the GCs): a disturbed request of this client
//!    while the process ran → the request did not get through.
//! 2. How the process ended: killed by a signal, or SIGKILLed at its
//!    deadline (a hang); its exit code where restic gives one — 3 of
//!    `backup` (source files unreadable: snapstorm's own side) in every
//!    version; from 0.17 on 10 (the repository does not exist) and 11 (it
//!    is locked), which restic 0.14 still reports as exit code 1.
//! 3. Text: restic's fixed messages are the only type left for the rest.
//!    They are listed once, in [`MESSAGES`], each with a test, and read in
//!    restic's final words ([`final_words`]): not in its notices of
//!    requests it retried, which it got past or gave up on later.
//!
//! A call that gave up waiting for another process's lock is judged by
//! that process ([`CallContext::gave_up_waiting`]): a client's process
//! whose requests a fault disturbed while it held the lock held the call
//! up ([`BackendError::HeldUp`]); otherwise the call raced it.

use std::time::Instant;

use super::process::{Exit, Output};
use crate::backend::embedded::evidence::Evidence;
use crate::backend::process::ProcessRecord;
use crate::engine::traits::{BackendError, ClientId};

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
    /// Nothing to do as restic sees it: restic refuses to snapshot an
    /// empty directory (0.14.0 and 0.18.1 alike: `archiver.go`, a tree
    /// with no node), where rustic_core saves an empty snapshot.
    NothingToDo,
}

/// restic's fixed messages, as restic 0.14.0 and 0.18.1 print them; the
/// first entry (in this order) that restic's final words contain decides.
/// Every entry has a test below with the words as captured from each
/// version.
pub const MESSAGES: [(&str, Said); 24] = [
    // Both versions (`Lock.String`); 0.18 also exits 11.
    ("repository is already locked", Said::Locked),
    // An empty directory: nothing to do, not a repository event.
    ("snapshot is empty", Said::NothingToDo),
    // `forget`'s warning for an id it did not find, and goes on (exit 0):
    // 0.14 `Ignoring "ID": no matching ID found…`, 0.18 `Ignoring "ID":
    // failed to load snapshot [null]: <snapshot/…> does not exist`.
    ("Ignoring \"", Said::SnapshotNotFound),
    // 0.14 for any id, 0.18 for a short one.
    ("no matching ID found", Said::SnapshotNotFound),
    ("unexpected HTTP response (401)", Said::NotThrough),
    ("unexpected HTTP response (403)", Said::NotThrough),
    ("connection refused", Said::NotThrough),
    ("connection reset by peer", Said::NotThrough),
    ("unexpected EOF", Said::NotThrough),
    ("context deadline exceeded", Said::NotThrough),
    ("unexpected HTTP response (5", Said::ServerError),
    // 0.18's restore of a whole id it did not find (`failed to load
    // snapshot [null]: <snapshot/…> does not exist`).
    ("failed to find snapshot", Said::SnapshotNotFound),
    // Both versions' words for a 404 on a file (`notExistError`, 0.18
    // `restError`): `<index/4122a5381e> does not exist`; and 0.18's
    // `repository does not exist`, which it exits 10 for.
    ("does not exist", Said::FileNotFound),
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

/// What a finished restic process said: its exit code where restic gives
/// one for it (0.17 on: 11 locked, 10 no repository), else its final words
/// by the table.
pub fn said_by(output: &Output) -> Option<Said> {
    match output.exit {
        Exit::Code(11) => Some(Said::Locked),
        Exit::Code(10) => Some(Said::FileNotFound),
        _ => said(&final_words(&output.stderr)),
    }
}

/// restic's own account of what went wrong: its standard error without
/// the notices of requests it retried (`… returned error, retrying after
/// …`, and 0.18's `… operation successful after N retries`), which it got
/// past or gave up on in a later line, nor 0.18's notices of a lock file
/// that went between its listing and its reading (`Load(<lock/…>, 0, 0)
/// failed: <lock/…> does not exist`: another process unlocked; restic
/// passes over it); with `--json` (0.17 on), its JSON lines as the words
/// they carry: `exit_error` (`cmd/restic/main.go`) as its message, `error`
/// (`ui/…/json.go`) as `ITEM: MESSAGE`.
pub fn final_words(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| {
            !line.contains("returned error, retrying after")
                && !line.contains("operation successful after")
                && !line.trim_start().starts_with("Load(<lock/")
        })
        .map(|line| json_words(line).unwrap_or_else(|| line.to_owned()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The words of one JSON line restic printed for an error.
fn json_words(line: &str) -> Option<String> {
    let line: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    match line.get("message_type")?.as_str()? {
        "exit_error" => Some(line.get("message")?.as_str()?.to_owned()),
        "error" => {
            let message = line.get("error")?.get("message")?.as_str()?;
            Some(match line.get("item").and_then(|item| item.as_str()) {
                Some(item) if !item.is_empty() => format!("{item}: {message}"),
                _ => message.to_owned(),
            })
        }
        _ => None,
    }
}

/// The process whose lock another could not take, as restic names it in
/// both versions (`Lock.String`): `repository is already locked
/// [exclusively ]by PID 4711 on HOST by USER (UID 0, GID 0)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    /// The host the lock was made on (Go's `os.Hostname`).
    pub host: String,
    pub exclusive: bool,
}

/// The holder of the lock restic could not take, when it says so.
pub fn lock_holder(text: &str) -> Option<LockHolder> {
    let (_, rest) = text.split_once("repository is already locked ")?;
    let exclusive = rest.starts_with("exclusively ");
    let (_, rest) = rest.split_once("by PID ")?;
    let (pid, rest) = rest.split_once(" on ")?;
    let (host, _) = rest.split_once(" by ")?;
    Some(LockHolder {
        pid: pid.trim().parse().ok()?,
        host: host.to_owned(),
        exclusive,
    })
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
    /// Classifies a process that did not succeed. Nothing to do (an empty
    /// source) is a fact of snapstorm's side, whatever befell the requests
    /// on the way.
    pub fn classify(&self, output: &Output) -> BackendError {
        let text = self.text(output);
        if said_by(output) == Some(Said::NothingToDo) {
            return self.by_output(output, text);
        }
        if let Some(why) = self.evidence.disturbed(self.user, self.started) {
            return BackendError::NotThrough(format!("{why}: {text}"));
        }
        // A backup or forget loads every snapshot listed; one another
        // client deleted meanwhile is gone (rustic #1421, restic alike).
        if let Some(raced) = self.evidence.raced_a_delete(self.user, self.started, &text) {
            return raced;
        }
        self.by_output(output, text)
    }

    /// Classifies a process that sent no request (a prune run on the
    /// repository directory): what happened to requests says nothing of it.
    pub fn classify_local(&self, output: &Output) -> BackendError {
        let text = self.text(output);
        self.by_output(output, text)
    }

    /// Classifies a call that gave up waiting for the lock of `holder` (a
    /// process snapstorm ran; `None`: one it does not know). The holder
    /// first — the lock held is what stopped the call: a client's process
    /// whose requests did not get through while it ran held the call up,
    /// and the error is judged as that client's, from when that process
    /// started. Then the call's own requests, as for any call (its `restic
    /// unlock` cut off, say). Otherwise the call raced the holder (a GC's
    /// prune, a long backup).
    pub fn gave_up_waiting(&self, output: &Output, holder: Option<&ProcessRecord>) -> BackendError {
        let text = self.text(output);
        let now = Instant::now();
        let waited = now.duration_since(self.started).as_secs_f64();
        let who = holder.map(|holder| {
            let state = match holder.ended {
                None => format!(
                    "running for {:.1} s",
                    now.duration_since(holder.started).as_secs_f64()
                ),
                Some(ended) => format!(
                    "ended {:.1} s ago, its lock left behind",
                    now.duration_since(ended).as_secs_f64()
                ),
            };
            format!(
                "{}'s restic process (PID {}, {state})",
                holder.user, holder.pid
            )
        });
        let disturbed = holder.and_then(|holder| {
            let client = holder.user.parse::<ClientId>().ok()?;
            let why = self.evidence.disturbed_between(
                &holder.user,
                holder.started,
                holder.ended.unwrap_or(now),
            )?;
            Some((client, holder.started, why))
        });
        if let (Some((by, since, why)), Some(who)) = (disturbed, &who) {
            return BackendError::HeldUp {
                by,
                since,
                why: format!(
                    "held up {waited:.1} s by the lock of {who}, whose requests did not get through ({why}): {text}"
                ),
            };
        }
        if let Some(why) = self.evidence.disturbed(self.user, self.started) {
            return BackendError::NotThrough(format!("{why}: {text}"));
        }
        match who {
            Some(who) => BackendError::Raced(format!(
                "waited {waited:.1} s for the lock of {who}: {text}"
            )),
            // No process of this run holds it: another host's lock, live
            // or left behind (`stale-lock`), that restic's unlock keeps.
            None => BackendError::LockedOut(text),
        }
    }

    fn text(&self, output: &Output) -> String {
        format!("restic {}: {}", self.command, explanation(output))
    }

    fn by_output(&self, output: &Output, text: String) -> BackendError {
        match output.exit {
            Exit::Signal(_) | Exit::TimedOut(_) => return BackendError::Failed(text),
            Exit::Code(3) if self.command == "backup" => return BackendError::Local(text),
            Exit::Code(_) => {}
        }
        match said_by(output) {
            Some(Said::Locked) => BackendError::Raced(text),
            Some(Said::SnapshotNotFound | Said::Data) => BackendError::Data(text),
            Some(Said::NotThrough) => BackendError::NotThrough(text),
            Some(Said::FileNotFound)
                if final_words(&output.stderr).contains("<index/")
                    && self.evidence.gc_since(self.started) =>
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

/// The process's own words: how it ended and the last lines of its final
/// words (see [`final_words`]).
fn explanation(output: &Output) -> String {
    let words = Output {
        stderr: final_words(&output.stderr),
        ..output.clone()
    };
    // restic repeats the repository URL after a failure, and names the
    // command that removes stale locks: noise, not news.
    words.explanation(&[
        "Is there a repository at",
        "rest:",
        "the `unlock` command can be used",
    ])
}

#[cfg(test)]
mod tests;
