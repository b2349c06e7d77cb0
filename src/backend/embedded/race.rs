//! A backup's race with an aggressive prune, kept for a replay. In the
//! recording the prune read the index, then a backup's packs landed, then
//! the prune listed the packs and took them for unused, and only then did
//! the backup write the index naming them (or: the backup had read the
//! index before the prune, reused data no snapshot the prune read used,
//! and wrote its snapshot after): a loss that comes back now and then when
//! the same actions run again. Here it comes back every time: the
//! backup's first upload of what a backup writes last (its index, or its
//! snapshot where it stored no pack) waits at the proxy until the prune
//! has listed the packs, and the prune lists them only once that upload
//! waits. Each wait is capped, so a race that cannot happen (the prune
//! failed, the backup never got that far) costs time, never the run.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::faults::RacedStep;

/// Whether an upload to `path` is of what a backup writes once its packs
/// are stored: an index file, or a snapshot file (`…/index/<id>`,
/// `…/snapshots/<id>`).
pub fn written_last(path: &str) -> bool {
    let mut parts = path.rsplit('/');
    matches!(
        (parts.next(), parts.next()),
        (Some(name), Some("index" | "snapshots")) if !name.is_empty()
    )
}

/// How long a backup's index upload waits for its prune at most.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// How long a prune waits at most for the backup it races to reach its index.
pub const RACE_WAIT: Duration = Duration::from_secs(30);

/// The index uploads waiting for a prune, by the user that uploads.
#[derive(Default)]
pub struct IndexHolds {
    state: Mutex<Holds>,
    /// Wakes a prune waiting for a backup's upload to wait.
    reached: Condvar,
}

#[derive(Default)]
struct Holds {
    by_user: HashMap<String, Hold>,
    /// Races run (or given up): a step asking again is not held.
    settled: HashSet<RacedStep>,
}

struct Hold {
    race: RacedStep,
    /// The user's index upload waits now.
    waiting: bool,
    released: watch::Sender<bool>,
    expires: Instant,
}

/// What an index upload of a held user waits for.
pub struct Held {
    released: watch::Receiver<bool>,
    expires: Instant,
}

impl Held {
    /// Until the prune has listed the packs, or the cap.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.released.wait_for(|released| *released) => {}
            () = tokio::time::sleep_until(self.expires.into()) => {}
        }
    }
}

impl IndexHolds {
    /// `user`'s backup of `race` starts: its first index upload is to wait
    /// for the prune that races it (unless that race is over).
    pub fn arm(&self, user: &str, race: RacedStep) {
        let mut state = self.state.lock().expect("holds lock");
        if state.settled.contains(&race) {
            return;
        }
        let (released, _) = watch::channel(false);
        state.by_user.insert(
            user.to_owned(),
            Hold {
                race,
                waiting: false,
                released,
                expires: Instant::now() + HOLD_AT_MOST,
            },
        );
    }

    /// An index (or snapshot) upload of `user` comes: what it waits for,
    /// if it is held.
    pub fn index_upload(&self, user: &str) -> Option<Held> {
        let mut state = self.state.lock().expect("holds lock");
        let hold = state.by_user.get_mut(user)?;
        if Instant::now() >= hold.expires {
            return None;
        }
        hold.waiting = true;
        let held = Held {
            released: hold.released.subscribe(),
            expires: hold.expires,
        };
        self.reached.notify_all();
        Some(held)
    }

    /// The prune's listing of the packs, run once the index upload of
    /// `race` (by `user`) waits, or after [`RACE_WAIT`]; the race is over
    /// then, and the upload goes on. Blocks the thread: the prune's.
    pub fn race<T>(&self, user: &str, race: RacedStep, list: impl FnOnce() -> T) -> T {
        let state = self.state.lock().expect("holds lock");
        let (state, waited) = self
            .reached
            .wait_timeout_while(state, RACE_WAIT, |state| {
                // A race already run (another prune's) has nothing to wait for.
                !state.settled.contains(&race)
                    && !state
                        .by_user
                        .get(user)
                        .is_some_and(|hold| hold.race == race && hold.waiting)
            })
            .expect("holds lock");
        drop(state);
        if waited.timed_out() {
            tracing::warn!(target: "snapstorm::faults", %race, "the backup an aggressive prune races stored no index in time; the prune goes on without it");
        }
        let listed = list();
        self.settle(race);
        listed
    }

    /// The race of `race` is over: its upload goes on, and the step is not
    /// held again.
    pub fn settle(&self, race: RacedStep) {
        let mut state = self.state.lock().expect("holds lock");
        state.settled.insert(race);
        state.by_user.retain(|_, hold| {
            let ours = hold.race == race;
            if ours {
                hold.released.send_replace(true);
            }
            !ours
        });
    }

    /// Every held upload goes on (the run ends).
    pub fn release_all(&self) {
        let mut state = self.state.lock().expect("holds lock");
        for (_, hold) in state.by_user.drain() {
            hold.released.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn race() -> RacedStep {
        RacedStep { client: 2, seq: 7 }
    }

    /// The prune lists only once the upload waits, and the upload goes on
    /// only once the prune has listed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_prune_lists_between_the_backup_s_packs_and_its_index() {
        let holds = Arc::new(IndexHolds::default());
        holds.arm("client-2", race());
        let order = Arc::new(Mutex::new(Vec::new()));
        let prune = {
            let (holds, order) = (holds.clone(), order.clone());
            tokio::task::spawn_blocking(move || {
                holds.race("client-2", race(), || {
                    order.lock().unwrap().push("listed");
                })
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            order.lock().unwrap().is_empty(),
            "listed before the upload waited"
        );
        let held = holds.index_upload("client-2").expect("held");
        let upload = {
            let order = order.clone();
            tokio::spawn(async move {
                held.wait().await;
                order.lock().unwrap().push("index stored");
            })
        };
        tokio::time::timeout(Duration::from_secs(10), prune)
            .await
            .expect("the prune goes on once the upload waits")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("the upload goes on once the prune has listed")
            .unwrap();
        assert_eq!(*order.lock().unwrap(), ["listed", "index stored"]);
        assert!(
            holds.index_upload("client-2").is_none(),
            "one upload is held, not the ones after"
        );
        holds.arm("client-2", race());
        assert!(
            holds.index_upload("client-2").is_none(),
            "a race that is over is not held again"
        );
        let since = Instant::now();
        holds.race("client-2", race(), || ());
        assert!(
            since.elapsed() < RACE_WAIT / 2,
            "a second prune of the same race does not wait for it"
        );
    }

    /// What a backup writes last is held, on a REST server's paths and
    /// S3's: its index, or its snapshot where it stored no pack.
    #[test]
    fn an_index_or_a_snapshot_is_what_a_backup_writes_last() {
        assert!(written_last("/repo/index/3f2a"));
        assert!(written_last("/repo/snapshots/18ac"));
        assert!(written_last("/bucket/prefix/snapshots/18ac"));
        assert!(!written_last("/repo/data/3f2a"));
        assert!(!written_last("/bucket/prefix/data/3f/3f2a"));
        assert!(!written_last("/repo/keys/3f2a"));
        assert!(!written_last("/repo/index/"), "a listing is no upload");
    }

    #[test]
    fn another_client_s_index_is_not_held() {
        let holds = IndexHolds::default();
        holds.arm("client-2", race());
        assert!(holds.index_upload("client-1").is_none());
    }
}
