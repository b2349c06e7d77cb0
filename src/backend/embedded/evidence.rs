//! What the embedded backend saw happen to requests: the proxy's drops,
//! injected errors and cuts, the server's refusals, the times the server
//! was down and the times a GC ran. A client that fails looks here first:
//! if its requests were disturbed while it worked, the failure says nothing
//! about the data, whatever the error's text.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::damage::short_id;
use crate::engine::traits::BackendError;

/// The name of the snapshot file at `path` (the id), if it is one.
fn snapshot_file(path: &str) -> Option<&str> {
    path.contains("/snapshots/")
        .then(|| path.rsplit('/').next().unwrap_or_default())
}

/// Requests remembered; older ones are forgotten (an action lasts far less
/// than the time a busy run needs to disturb this many requests).
const REQUESTS_KEPT: usize = 16_384;
/// Server outages and GC runs remembered.
const SPANS_KEPT: usize = 4_096;
/// A GC that ended this shortly before an action started can still have
/// replaced a file the action had listed (clocks are read on both sides).
const GC_SLACK: Duration = Duration::from_secs(1);

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disturbance {
    /// The proxy closed the connection without an answer (network fault).
    Dropped,
    /// The proxy answered HTTP 500 in the server's stead (network fault).
    InjectedError,
    /// The proxy reset the connection (network fault, where the proxy
    /// sees bytes and cannot answer an HTTP 500).
    Reset,
    /// The proxy cut a killed client off.
    CutOff,
    /// The proxy held a paused client's request (pause-client).
    Held,
    /// The proxy could not reach the server.
    UpstreamFailed,
    /// The server refused the user (HTTP status).
    Refused(u16),
    /// The storage failed the request (HTTP 500 or 503: storage-errors).
    StorageFailed(u16),
}

impl fmt::Display for Disturbance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disturbance::Dropped => f.write_str("the proxy dropped a request (network fault)"),
            Disturbance::InjectedError => {
                f.write_str("the proxy answered a request with HTTP 500 (network fault)")
            }
            Disturbance::Reset => f.write_str("the proxy reset a connection (network fault)"),
            Disturbance::CutOff => f.write_str("the proxy cut the client off (kill-client)"),
            Disturbance::Held => f.write_str("the proxy held the client's request (pause-client)"),
            Disturbance::UpstreamFailed => f.write_str("the proxy could not reach the server"),
            Disturbance::Refused(status) => write!(f, "the server refused the user ({status})"),
            Disturbance::StorageFailed(status) => {
                write!(f, "the storage failed a request ({status}: storage-errors)")
            }
        }
    }
}

/// A span of time something lasted; `end` is `None` while it goes on.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: Instant,
    end: Option<Instant>,
}

impl Span {
    fn overlaps(&self, since: Instant, slack: Duration) -> bool {
        self.end.is_none_or(|end| end + slack >= since)
    }
}

#[derive(Debug, Default)]
struct Log {
    requests: VecDeque<(Instant, String, Disturbance)>,
    /// Files the server did not find, by user and path.
    not_found: VecDeque<(Instant, String, String)>,
    /// Files deleted through the proxy, by user and path.
    deleted: VecDeque<(Instant, String, String)>,
    outages: VecDeque<Span>,
    gcs: VecDeque<Span>,
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, kept: usize) {
    if queue.len() == kept {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The evidence of one embedded server and its proxy; shared by its clients.
#[derive(Debug, Default)]
pub struct Evidence {
    log: Mutex<Log>,
}

/// A GC in progress; dropping it records the GC's end.
pub struct GcRunning<'a> {
    evidence: &'a Evidence,
    start: Instant,
}

impl Drop for GcRunning<'_> {
    fn drop(&mut self) {
        let mut log = self.evidence.log.lock().expect("evidence lock");
        if let Some(span) = log.gcs.iter_mut().rev().find(|s| s.start == self.start) {
            span.end = Some(Instant::now());
        }
    }
}

impl Evidence {
    pub fn new() -> Self {
        Evidence::default()
    }

    /// Records what happened to a request of `user` now.
    pub fn request(&self, user: &str, what: Disturbance) {
        let mut log = self.log.lock().expect("evidence lock");
        push_bounded(
            &mut log.requests,
            (Instant::now(), user.to_owned(), what),
            REQUESTS_KEPT,
        );
    }

    /// The server stops answering (connections refused) from now on; an
    /// outage already going on goes on.
    pub fn server_stopped(&self) {
        let mut log = self.log.lock().expect("evidence lock");
        if log.outages.iter().any(|s| s.end.is_none()) {
            return;
        }
        let span = Span {
            start: Instant::now(),
            end: None,
        };
        push_bounded(&mut log.outages, span, SPANS_KEPT);
    }

    /// The server answers again: every outage going on ends.
    pub fn server_serving(&self) {
        let mut log = self.log.lock().expect("evidence lock");
        let now = Instant::now();
        for span in log.outages.iter_mut().filter(|s| s.end.is_none()) {
            span.end = Some(now);
        }
    }

    /// A GC starts now; it ends when the returned value is dropped.
    pub fn gc_running(&self) -> GcRunning<'_> {
        let start = Instant::now();
        let mut log = self.log.lock().expect("evidence lock");
        push_bounded(&mut log.gcs, Span { start, end: None }, SPANS_KEPT);
        GcRunning {
            evidence: self,
            start,
        }
    }

    /// Why `user`'s requests since `since` may not have got through: the
    /// server was down, or one of them was dropped, failed or refused.
    pub fn disturbed(&self, user: &str, since: Instant) -> Option<String> {
        let log = self.log.lock().expect("evidence lock");
        if log
            .outages
            .iter()
            .any(|s| s.overlaps(since, Duration::ZERO))
        {
            return Some("the server was down".to_owned());
        }
        log.requests
            .iter()
            .rev()
            .take_while(|(at, _, _)| *at >= since)
            .find(|(_, who, _)| who == user)
            .map(|(_, _, what)| what.to_string())
    }

    /// Why `user`'s requests between `since` and `until` may not have got
    /// through, as [`Evidence::disturbed`] says for a time that has ended:
    /// what befell another process of the user (one that held a lock
    /// another waited for) while it ran.
    pub fn disturbed_between(&self, user: &str, since: Instant, until: Instant) -> Option<String> {
        let log = self.log.lock().expect("evidence lock");
        if log
            .outages
            .iter()
            .any(|s| s.start <= until && s.overlaps(since, Duration::ZERO))
        {
            return Some("the server was down".to_owned());
        }
        log.requests
            .iter()
            .rev()
            .skip_while(|(at, _, _)| *at > until)
            .take_while(|(at, _, _)| *at >= since)
            .find(|(_, who, _)| who == user)
            .map(|(_, _, what)| what.to_string())
    }

    /// A repository file `user` asked for since `since` that the server did
    /// not have (its path), when one was: a client that panicked on it
    /// keeps only the words of its error, the server keeps the fact.
    pub fn not_found_since(&self, user: &str, since: Instant) -> Option<String> {
        let log = self.log.lock().expect("evidence lock");
        log.not_found
            .iter()
            .rev()
            .take_while(|(at, _, _)| *at >= since)
            .find(|(_, who, path)| {
                who == user
                    && ["/data/", "/index/", "/snapshots/"]
                        .iter()
                        .any(|kind| path.contains(kind))
            })
            .map(|(_, _, path)| path.clone())
    }

    /// Records that `user` deleted the file at `path` (the storage said so).
    pub fn deleted(&self, user: &str, path: &str) {
        let mut log = self.log.lock().expect("evidence lock");
        push_bounded(
            &mut log.deleted,
            (Instant::now(), user.to_owned(), path.to_owned()),
            REQUESTS_KEPT,
        );
    }

    /// Whether `user` has deleted a snapshot file since `since` (a forget
    /// of its process has begun deleting).
    pub fn deleted_snapshot_since(&self, user: &str, since: Instant) -> bool {
        let log = self.log.lock().expect("evidence lock");
        log.deleted
            .iter()
            .rev()
            .take_while(|(at, _, _)| *at >= since)
            .any(|(_, who, path)| who == user && snapshot_file(path).is_some())
    }

    /// A snapshot file `user` asked for since `since` and the server did not
    /// have, because another user deleted it since then (the snapshot's id,
    /// and who): a forget or a backup that reads every snapshot raced that
    /// delete. The server's and the proxy's paths may differ in their
    /// prefix, so the file is compared by its name.
    pub fn snapshot_deleted_under(&self, user: &str, since: Instant) -> Option<(String, String)> {
        let log = self.log.lock().expect("evidence lock");
        log.not_found
            .iter()
            .rev()
            .take_while(|(at, _, _)| *at >= since)
            .filter(|(_, who, _)| who == user)
            .filter_map(|(_, _, path)| snapshot_file(path))
            .find_map(|missing| {
                log.deleted
                    .iter()
                    .rev()
                    .take_while(|(at, _, _)| *at >= since)
                    .find(|(_, who, path)| who != user && snapshot_file(path) == Some(missing))
                    .map(|(_, who, _)| (missing.to_owned(), who.clone()))
            })
    }

    /// The error of a call of `user` since `since` that failed because
    /// another client deleted a snapshot file it was reading (see
    /// [`Evidence::snapshot_deleted_under`]), with the call's own `text`:
    /// a race, not missing data.
    pub fn raced_a_delete(&self, user: &str, since: Instant, text: &str) -> Option<BackendError> {
        let (snapshot, by) = self.snapshot_deleted_under(user, since)?;
        Some(BackendError::Raced(format!(
            "{by} deleted snapshot {} while this call read it: {text}",
            short_id(&snapshot)
        )))
    }

    /// Whether a GC ran at some time since `since`.
    pub fn gc_since(&self, since: Instant) -> bool {
        let log = self.log.lock().expect("evidence lock");
        log.gcs.iter().any(|s| s.overlaps(since, GC_SLACK))
    }
}

impl crate::server::RequestObserver for Evidence {
    fn refused(&self, claimed_user: Option<&str>, status: http::StatusCode) {
        if let Some(user) = claimed_user {
            self.request(user, Disturbance::Refused(status.as_u16()));
        }
    }

    fn storage_failed(&self, user: &str, status: http::StatusCode) {
        self.request(user, Disturbance::StorageFailed(status.as_u16()));
    }

    fn not_found(&self, user: &str, path: &str) {
        let mut log = self.log.lock().expect("evidence lock");
        push_bounded(
            &mut log.not_found,
            (Instant::now(), user.to_owned(), path.to_owned()),
            REQUESTS_KEPT,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_another_user_deleted_meanwhile_is_a_race() {
        let evidence = Evidence::new();
        let id = "8c4f124122a7b8dffc5b57690336e5c7b3caea44bf4957592a259257eda457eb";
        let before = Instant::now();
        evidence.deleted("client-2", &format!("/bucket/repo/snapshots/{id}"));
        crate::server::RequestObserver::not_found(
            &evidence,
            "client-1",
            &format!("/snapshots/{id}"),
        );
        assert_eq!(
            evidence.snapshot_deleted_under("client-1", before),
            Some((id.to_owned(), "client-2".to_owned()))
        );
        assert_eq!(
            evidence.snapshot_deleted_under("client-2", before),
            None,
            "client-2 missed nothing"
        );
        assert!(evidence.deleted_snapshot_since("client-2", before));
        assert!(!evidence.deleted_snapshot_since("client-1", before));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            evidence.snapshot_deleted_under("client-1", Instant::now()),
            None,
            "a call that started after both"
        );
        // A pack another user deleted is no race of a forget.
        let later = Instant::now();
        evidence.deleted("client-2", "/data/ab/abcd");
        crate::server::RequestObserver::not_found(&evidence, "client-1", "/data/ab/abcd");
        assert_eq!(evidence.snapshot_deleted_under("client-1", later), None);
        // Nor one it deleted itself.
        evidence.deleted("client-1", &format!("/snapshots/{id}"));
        crate::server::RequestObserver::not_found(
            &evidence,
            "client-1",
            &format!("/snapshots/{id}"),
        );
        assert_eq!(evidence.snapshot_deleted_under("client-1", later), None);
    }

    #[test]
    fn disturbances_count_for_their_user_and_their_time_only() {
        let evidence = Evidence::new();
        let before = Instant::now();
        evidence.request("client-1", Disturbance::Dropped);
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(evidence.disturbed("client-1", before).is_some());
        assert_eq!(evidence.disturbed("client-2", before), None);
        assert_eq!(evidence.disturbed("client-1", after), None);
    }

    #[test]
    fn a_span_that_ended_sees_only_what_happened_in_it() {
        let evidence = Evidence::new();
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        evidence.request("client-2", Disturbance::Dropped);
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        evidence.request("client-2", Disturbance::InjectedError);
        let later = Instant::now();
        assert_eq!(
            evidence
                .disturbed_between("client-2", before, after)
                .as_deref(),
            Some("the proxy dropped a request (network fault)")
        );
        assert_eq!(evidence.disturbed_between("client-1", before, later), None);
        assert_eq!(
            evidence.disturbed_between("client-2", before, before),
            None,
            "nothing had happened yet"
        );
        evidence.server_stopped();
        evidence.server_serving();
        assert_eq!(
            evidence.disturbed_between("client-1", before, after),
            None,
            "the outage came after"
        );
        assert!(
            evidence
                .disturbed_between("client-1", before, Instant::now())
                .is_some()
        );
    }

    #[test]
    fn an_outage_disturbs_everyone_while_it_lasts() {
        let evidence = Evidence::new();
        let before = Instant::now();
        evidence.server_stopped();
        assert!(evidence.disturbed("anyone", Instant::now()).is_some());
        evidence.server_stopped();
        evidence.server_serving();
        assert!(evidence.disturbed("anyone", before).is_some());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            evidence.disturbed("anyone", Instant::now()),
            None,
            "a second stop while down leaves no outage open"
        );
    }

    #[test]
    fn a_gc_is_seen_while_it_runs_and_shortly_after() {
        let evidence = Evidence::new();
        let before = Instant::now();
        assert!(!evidence.gc_since(before));
        {
            let _gc = evidence.gc_running();
            assert!(evidence.gc_since(Instant::now()));
        }
        assert!(evidence.gc_since(before));
        assert!(!evidence.gc_since(Instant::now() + GC_SLACK + Duration::from_secs(1)));
    }
}
