//! Clients' forgets started together (`parallel-forget`). Two forgets race
//! only when one reads the snapshots while another deletes, and a client
//! starts a queued action only when the one in hand ends. So the clients
//! arranged to meet wait, at the start of their forgets, until all have
//! come; then they go in turn, each as soon as the one before it has chosen
//! what to delete and begins deleting — so every forget after the first
//! reads the repository's snapshots while another deletes some of them, as
//! the parallel forgets of rustic #1421 did. No one waits longer than would
//! say more about the run than about the repository.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::traits::ClientId;

/// How long a client waits, for the others to come and for its turn: long
/// enough for a restore of seconds in hand to end, short enough that a
/// client removed meanwhile does not stall the others for long.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often a waiting client looks whether the run is ending.
const LOOK: Duration = Duration::from_millis(100);

/// The meetings arranged and not yet attended, by client.
#[derive(Debug, Default)]
pub(super) struct Meetings {
    waiting: Mutex<BTreeMap<ClientId, Arc<Meeting>>>,
}

#[derive(Debug)]
struct Meeting {
    /// The fault that arranged it: it ends when the last one leaves.
    label: String,
    expected: usize,
    state: Mutex<Attendance>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Attendance {
    arrived: usize,
    /// How many may have gone: the first once all came, one more each
    /// time one of them begins deleting (or leaves).
    let_go: usize,
    left: usize,
}

/// A client at a meeting, its turn the `turn`-th (from 0, in the order they
/// came). [`Present::deleting`] lets the next one go; [`Present::leave`]
/// once its forget is done.
#[must_use]
pub(super) struct Present {
    meeting: Arc<Meeting>,
    turn: usize,
    passed_on: AtomicBool,
}

impl Meetings {
    /// Arranges for `clients` (at most `room` of them, the actions that may
    /// run at once: a client waiting holds its slot) to meet at their next
    /// forget. A meeting of one is none: false then.
    pub(super) fn arrange(&self, label: &str, clients: &[ClientId], room: usize) -> bool {
        let clients = &clients[..clients.len().min(room)];
        if clients.len() < 2 {
            return false;
        }
        let meeting = Arc::new(Meeting {
            label: label.to_owned(),
            expected: clients.len(),
            state: Mutex::new(Attendance::default()),
            changed: Condvar::new(),
        });
        let mut waiting = self.waiting.lock().expect("meetings lock");
        for client in clients {
            waiting.insert(*client, meeting.clone());
        }
        true
    }

    /// Attends `client`'s meeting, if one is arranged: returns once it is
    /// its turn, the patience has run out or `stopping` says the run ends.
    pub(super) fn attend(&self, client: ClientId, stopping: impl Fn() -> bool) -> Option<Present> {
        let meeting = self
            .waiting
            .lock()
            .expect("meetings lock")
            .remove(&client)?;
        let until = Instant::now() + PATIENCE;
        let mut state = meeting.state.lock().expect("meeting lock");
        let turn = state.arrived;
        state.arrived += 1;
        if state.arrived == meeting.expected {
            state.let_go = state.let_go.max(1);
        }
        meeting.changed.notify_all();
        while state.let_go <= turn && Instant::now() < until && !stopping() {
            state = meeting
                .changed
                .wait_timeout(state, LOOK)
                .expect("meeting lock")
                .0;
        }
        drop(state);
        Some(Present {
            meeting,
            turn,
            passed_on: AtomicBool::new(false),
        })
    }
}

impl Present {
    /// This client has chosen what to delete and begins deleting: the next
    /// one's turn (once).
    pub(super) fn deleting(&self) {
        if self.passed_on.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut state = self.meeting.state.lock().expect("meeting lock");
        state.let_go = state.let_go.max(self.turn + 2);
        self.meeting.changed.notify_all();
    }

    /// Leaves the meeting (the next one's turn, if this one's forget never
    /// began deleting); the last one to leave gets the label of the fault
    /// that arranged it, which ends then.
    pub(super) fn leave(self) -> Option<String> {
        self.deleting();
        let mut state = self.meeting.state.lock().expect("meeting lock");
        state.left += 1;
        (state.left == self.meeting.expected).then(|| self.meeting.label.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_go_in_turn_once_all_came_each_as_the_one_before_deletes() {
        let meetings = Arc::new(Meetings::default());
        assert!(meetings.arrange("parallel-forget@1.0s", &[ClientId(1), ClientId(2)], 4));
        let (second_came, first_deleting) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let late = {
            let (meetings, second_came, first_deleting) = (
                meetings.clone(),
                second_came.clone(),
                first_deleting.clone(),
            );
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                second_came.store(true, Ordering::SeqCst);
                let second = meetings.attend(ClientId(2), || false).expect("arranged");
                assert!(first_deleting.load(Ordering::SeqCst), "its turn came after");
                second
            })
        };
        let first = meetings.attend(ClientId(1), || false).expect("arranged");
        assert!(
            second_came.load(Ordering::SeqCst),
            "the first waited for the second"
        );
        std::thread::sleep(Duration::from_millis(100));
        first_deleting.store(true, Ordering::SeqCst);
        first.deleting();
        let second = late.join().expect("thread");
        assert_eq!(second.leave(), None, "the first has not left yet");
        assert_eq!(first.leave().as_deref(), Some("parallel-forget@1.0s"));
        assert!(meetings.attend(ClientId(1), || false).is_none(), "met once");
    }

    #[test]
    fn one_that_leaves_without_deleting_lets_the_next_go() {
        let meetings = Arc::new(Meetings::default());
        meetings.arrange("f", &[ClientId(1), ClientId(2)], 4);
        let second = {
            let meetings = meetings.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                meetings.attend(ClientId(2), || false).expect("arranged")
            })
        };
        let first = meetings.attend(ClientId(1), || false).expect("arranged");
        // Its forget failed before it deleted anything.
        assert_eq!(first.leave(), None);
        assert_eq!(second.join().expect("thread").leave().as_deref(), Some("f"));
    }

    #[test]
    fn a_meeting_waits_no_longer_than_the_run() {
        let meetings = Meetings::default();
        meetings.arrange("parallel-forget@1.0s", &[ClientId(1), ClientId(2)], 4);
        let present = meetings.attend(ClientId(1), || true).expect("arranged");
        assert_eq!(present.leave(), None, "client-2 never came");
    }

    #[test]
    fn no_more_meet_than_may_act_at_once() {
        let meetings = Meetings::default();
        meetings.arrange("f", &[ClientId(1), ClientId(2), ClientId(3)], 2);
        assert!(meetings.attend(ClientId(3), || true).is_none());
        assert!(meetings.attend(ClientId(2), || true).is_some());
        let meetings = Meetings::default();
        assert!(!meetings.arrange("g", &[ClientId(1), ClientId(2)], 1));
        assert!(
            meetings.attend(ClientId(1), || true).is_none(),
            "one alone meets no one"
        );
    }
}
