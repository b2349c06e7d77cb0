//! The storage failing a share of requests for a while, as a storage
//! upgrade did under restic's users (restic #3646, #3265): the server
//! answers HTTP 500 or 503 in place of the storage, without touching a
//! file. A program embedding the server turns it on (snapstorm's
//! `storage-errors` fault); a client that retries well loses nothing.

use std::sync::Mutex;
use std::time::Instant;

use http::StatusCode;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// While it lasts, which requests fail. Shared by every start of one
/// server (a restart keeps it).
#[derive(Debug)]
pub struct StorageOutage {
    state: Mutex<OutageState>,
}

#[derive(Debug)]
struct OutageState {
    /// Share of requests failed, in percent, until this time.
    failing: Option<(u8, Instant)>,
    /// Seeded: the same run fails the same requests' rolls.
    rng: ChaCha8Rng,
}

impl StorageOutage {
    pub fn new(seed: u64) -> Self {
        StorageOutage {
            state: Mutex::new(OutageState {
                failing: None,
                rng: ChaCha8Rng::seed_from_u64(seed),
            }),
        }
    }

    /// From now until `until`, `percent` of the requests fail.
    pub fn fail(&self, percent: u8, until: Instant) {
        self.state.lock().expect("outage lock").failing = Some((percent.min(100), until));
    }

    /// The storage answers every request again.
    pub fn end(&self) {
        self.state.lock().expect("outage lock").failing = None;
    }

    /// The status this request gets from the failing storage, if it fails:
    /// 500 and 503 by turns of the dice, as storage under upgrade answered.
    pub(crate) fn roll(&self) -> Option<StatusCode> {
        let mut state = self.state.lock().expect("outage lock");
        let (percent, until) = state.failing?;
        if Instant::now() >= until {
            state.failing = None;
            return None;
        }
        let roll: u8 = state.rng.random_range(0..100);
        let status = if roll.is_multiple_of(2) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (roll < percent).then_some(status)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fails_about_its_share_while_it_lasts_and_nothing_after() {
        let outage = StorageOutage::new(7);
        assert_eq!(outage.roll(), None, "off until turned on");
        outage.fail(30, Instant::now() + Duration::from_secs(60));
        let failed: Vec<StatusCode> = (0..1000).filter_map(|_| outage.roll()).collect();
        assert!((200..400).contains(&failed.len()), "{}", failed.len());
        assert!(failed.contains(&StatusCode::INTERNAL_SERVER_ERROR));
        assert!(failed.contains(&StatusCode::SERVICE_UNAVAILABLE));
        outage.end();
        assert!((0..100).all(|_| outage.roll().is_none()));
        outage.fail(100, Instant::now());
        assert_eq!(outage.roll(), None, "its time is over");
    }
}
