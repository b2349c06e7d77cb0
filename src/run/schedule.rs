//! The recorded schedule: actions and faults of fixed per-client sequences
//! start in their recorded order. Each holds a place (`order`); it starts
//! once every place before it has started, which replays most races.
//! Nothing waits for an action to *end*: what overlapped in the recording
//! overlaps again as long as the actions take about as long.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::watch;

/// Hands out turns by place; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Gate {
    /// The first place that has not started yet.
    next: watch::Sender<u64>,
    /// Places that will never start (their client stopped or never
    /// connected): skipped, so nobody waits for them.
    given_up: Mutex<BTreeSet<u64>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            next: watch::Sender::new(0),
            given_up: Mutex::new(BTreeSet::new()),
        }
    }
}

impl Gate {
    /// Waits until every place before `order` has started.
    pub async fn wait_turn(&self, order: u64) {
        let mut next = self.next.subscribe();
        // The sender lives in `self`, so the channel stays open while we wait.
        let _ = next.wait_for(|next| *next >= order).await;
    }

    /// `order` starts now: the places after it may go.
    pub fn started(&self, order: u64) {
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
    use std::time::Duration;

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
}
