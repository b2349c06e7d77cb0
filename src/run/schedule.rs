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
//! recording, the gap stretched by how much slower the run is going than
//! the recording did (never shrunk: a faster machine keeps the recorded
//! gaps). A place whose turn comes late goes at once.

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
    /// What the places with a recorded start that started here tell of the pace.
    starts: Mutex<Option<Starts>>,
}

/// A place's start: as recorded (ms on the recorded run's clock) and here.
#[derive(Debug, Clone, Copy)]
struct Start {
    recorded_ms: u64,
    here: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Starts {
    /// When the first place with a recorded start started, as recorded.
    first_ms: u64,
    last: Start,
    /// How much later than due the places since the first started, in all:
    /// their turns came late because the actions before them took longer
    /// than recorded. The gate's own waits are not in it, so a slow
    /// stretch long past stretches the gaps less and less.
    late: Duration,
}

/// How much of the recording must have been replayed before its pace is
/// trusted: over a shorter stretch one slow start would stretch every gap.
const PACE_AFTER: Duration = Duration::from_secs(1);

impl Starts {
    /// How many times slower than recorded the run has gone so far (at
    /// least 1).
    fn pace(&self) -> f64 {
        let recorded = Duration::from_millis(self.last.recorded_ms - self.first_ms);
        if recorded < PACE_AFTER {
            return 1.0;
        }
        (recorded + self.late).as_secs_f64() / recorded.as_secs_f64()
    }
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
            starts: Mutex::new(None),
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
    /// start as in the recording, at the pace of the run so far.
    fn due(&self, order: u64) -> Option<Instant> {
        let at = *self.recorded_at.get(&order)?;
        let starts = (*self.starts.lock().expect("gate lock"))?;
        let gap = Duration::from_millis(at.saturating_sub(starts.last.recorded_ms));
        let stretched = Duration::try_from_secs_f64(gap.as_secs_f64() * starts.pace()).ok()?;
        starts.last.here.checked_add(stretched)
    }

    /// `order` starts now: the places after it may go.
    pub fn started(&self, order: u64) {
        if let Some(&recorded_ms) = self.recorded_at.get(&order) {
            let due = self.due(order);
            let now = Start {
                recorded_ms,
                here: Instant::now(),
            };
            let late = due.map_or(Duration::ZERO, |due| {
                now.here.saturating_duration_since(due)
            });
            let mut starts = self.starts.lock().expect("gate lock");
            *starts = Some(match *starts {
                // Places start in order, so recorded starts only grow.
                Some(Starts {
                    first_ms,
                    last,
                    late: so_far,
                }) if now.recorded_ms >= last.recorded_ms => Starts {
                    first_ms,
                    last: now,
                    late: so_far + late,
                },
                Some(starts) => starts,
                None => Starts {
                    first_ms: now.recorded_ms,
                    last: now,
                    late: Duration::ZERO,
                },
            });
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
        let last = || gate.starts.lock().unwrap().unwrap().last.here;
        let zero = last();
        assert!(zero >= first);
        assert_eq!(gate.due(1), Some(zero + Duration::from_millis(300)));
        gate.wait_turn(1).await;
        assert!(Instant::now() >= zero + Duration::from_millis(300));
        gate.started(1);
        let one = last();
        assert_eq!(gate.due(2), Some(one), "started together: no gap");
        gate.started(2);
        let two = last();
        assert_eq!(gate.due(3), None, "no recorded start: order only");
        gate.started(3);
        // Measured from the last recorded start (2), not from 3.
        // The 300 ms recorded so far are too few to judge the pace by.
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
        assert!(gate.starts.lock().unwrap().is_none());
    }

    #[test]
    fn a_run_slower_than_the_recording_stretches_the_gaps_and_a_faster_one_keeps_them() {
        let gate = Gate::with_gaps(BTreeMap::from([(5, 4000)]));
        let t = Instant::now();
        let start = |recorded_ms, after_ms| Start {
            recorded_ms,
            here: t + Duration::from_millis(after_ms),
        };
        // 2 s recorded, its starts 2 s late in all: twice as slow, so the
        // next 1 s is 2 s.
        *gate.starts.lock().unwrap() = Some(Starts {
            first_ms: 1000,
            last: start(3000, 4000),
            late: Duration::from_secs(2),
        });
        assert_eq!(gate.due(5), Some(t + Duration::from_millis(6000)));
        // Never late (a faster machine waits the gaps out): as recorded.
        *gate.starts.lock().unwrap() = Some(Starts {
            first_ms: 1000,
            last: start(3000, 2000),
            late: Duration::ZERO,
        });
        assert_eq!(gate.due(5), Some(t + Duration::from_millis(3000)));
        // Lateness long past counts for less as the recording goes on.
        *gate.starts.lock().unwrap() = Some(Starts {
            first_ms: 0,
            last: start(3000, 5000),
            late: Duration::from_secs(2),
        });
        let due = gate.due(5).unwrap() - t;
        assert!(due < Duration::from_millis(5000 + 2000), "{due:?}");
    }

    #[test]
    fn a_late_turn_makes_the_next_gaps_longer() {
        let gate = Gate::with_gaps(BTreeMap::from([(0, 0), (1, 1000), (2, 2000)]));
        gate.started(0);
        // Place 1 was due 1 s after place 0; pretend it started 1 s late.
        {
            let mut starts = gate.starts.lock().unwrap();
            let s = starts.as_mut().unwrap();
            s.last.here -= Duration::from_secs(2);
        }
        gate.started(1);
        let starts = gate.starts.lock().unwrap().unwrap();
        assert!(starts.late >= Duration::from_millis(999), "{starts:?}");
        assert!(starts.pace() >= 1.99, "{}", starts.pace());
    }
}
