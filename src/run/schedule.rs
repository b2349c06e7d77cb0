//! The recorded schedule: actions and faults of fixed per-client sequences
//! start in their recorded order. Each holds a place (`order`); it starts
//! once every place before it has started, which replays most races.
//! Nothing waits for an action to *end*: what overlapped in the recording
//! overlaps again as long as the actions take about as long.
//!
//! Order alone loses the time between two starts: a fault recorded 3 s
//! after a snapshot began would start the moment it began, before the
//! snapshot had written anything. So a place with a recorded start
//! (`at_ms`) also waits until as long after the start before it as in the
//! recording. It never waits less; where this machine is slower and a
//! place's turn comes late, it goes at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Hands out turns by place; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Gate {
    /// The first place that has not started yet.
    next: watch::Sender<u64>,
    /// Places that will never start (their client stopped or never
    /// connected): skipped, so nobody waits for them.
    given_up: Mutex<BTreeSet<u64>>,
    /// Each place's recorded start, in ms on the recorded run's clock; empty
    /// when only the order is kept.
    recorded_at: BTreeMap<u64, u64>,
    /// The last place with a recorded start to start here: that start as
    /// recorded, and when it was here.
    last_start: Mutex<Option<(u64, Instant)>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::with_gaps(BTreeMap::new())
    }
}

impl Gate {
    /// A gate that keeps the gaps between these recorded starts (place →
    /// ms on the recorded run's clock) as well as the order.
    pub fn with_gaps(recorded_at: BTreeMap<u64, u64>) -> Self {
        Gate {
            next: watch::Sender::new(0),
            given_up: Mutex::new(BTreeSet::new()),
            recorded_at,
            last_start: Mutex::new(None),
        }
    }

    /// Waits until every place before `order` has started, then out the
    /// recorded gap to the last of them.
    pub async fn wait_turn(&self, order: u64) {
        let mut next = self.next.subscribe();
        // The sender lives in `self`, so the channel stays open while we wait.
        let _ = next.wait_for(|next| *next >= order).await;
        if let Some(due) = self.due(order) {
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// When `order` may start, once it is its turn: as long after the last
    /// start as in the recording.
    fn due(&self, order: u64) -> Option<Instant> {
        let at = *self.recorded_at.get(&order)?;
        let (before_at, before_here) = (*self.last_start.lock().expect("gate lock"))?;
        Some(before_here + Duration::from_millis(at.saturating_sub(before_at)))
    }

    /// `order` starts now: the places after it may go.
    pub fn started(&self, order: u64) {
        if let Some(&at) = self.recorded_at.get(&order) {
            *self.last_start.lock().expect("gate lock") = Some((at, Instant::now()));
        }
        let given_up = self.given_up.lock().expect("gate lock");
        self.next.send_modify(|next| {
            *next = (*next).max(order + 1);
            while given_up.contains(next) {
                *next += 1;
            }
        });
    }

    /// These places will never start.
    pub fn give_up(&self, orders: impl IntoIterator<Item = u64>) {
        let mut given_up = self.given_up.lock().expect("gate lock");
        given_up.extend(orders);
        self.next.send_modify(|next| {
            while given_up.contains(next) {
                *next += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn turns_come_in_order_and_given_up_places_are_skipped() {
        let gate = Arc::new(Gate::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Spawned in reverse, so only the gate can put them in order.
        for order in [4u64, 3, 1, 0] {
            let (gate, log) = (gate.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                gate.wait_turn(order).await;
                log.lock().unwrap().push(order);
                gate.started(order);
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*log.lock().unwrap(), vec![0, 1], "2 has not started yet");
        gate.give_up([2]);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 3, 4]);
    }

    #[tokio::test]
    async fn a_place_waits_out_its_recorded_gap_to_the_start_before_it() {
        // Recorded: 0 at 100 ms, 1 at 400 ms, 2 at 400 ms, 3 unrecorded, 4 at 1000 ms.
        let gate = Gate::with_gaps(BTreeMap::from([(0, 100), (1, 400), (2, 400), (4, 1000)]));
        assert_eq!(gate.due(0), None, "the first start waits for nothing");
        let first = Instant::now();
        gate.wait_turn(0).await;
        gate.started(0);
        let zero = gate.last_start.lock().unwrap().unwrap().1;
        assert!(zero >= first);
        assert_eq!(gate.due(1), Some(zero + Duration::from_millis(300)));
        gate.wait_turn(1).await;
        assert!(Instant::now() >= zero + Duration::from_millis(300));
        gate.started(1);
        let one = gate.last_start.lock().unwrap().unwrap().1;
        assert_eq!(gate.due(2), Some(one), "started together: no gap");
        gate.started(2);
        let two = gate.last_start.lock().unwrap().unwrap().1;
        assert_eq!(gate.due(3), None, "no recorded start: order only");
        gate.started(3);
        // Measured from the last recorded start (2), not from 3.
        assert_eq!(gate.due(4), Some(two + Duration::from_millis(600)));
        // A turn that comes after its due time goes at once.
        tokio::time::sleep_until((two + Duration::from_millis(600)).into()).await;
        assert!(gate.due(4).unwrap() <= Instant::now());
    }

    #[tokio::test]
    async fn without_recorded_starts_only_the_order_is_kept() {
        let gate = Gate::default();
        gate.started(0);
        assert_eq!(gate.due(1), None);
        assert!(gate.last_start.lock().unwrap().is_none());
    }
}
