//! The seed's `RunN`: run a closure for N clients at once and wait for all.

use std::thread;

use crate::engine::traits::ClientId;

/// Runs `f` once per client `1..=n`, each on its own thread, and returns
/// their results in client order. A panic in one client is returned as
/// that client's `Err`, not propagated.
pub fn run_n<T, F>(n: u32, f: F) -> Vec<thread::Result<T>>
where
    T: Send,
    F: Fn(ClientId) -> T + Sync,
{
    thread::scope(|scope| {
        let handles: Vec<_> = (1..=n)
            .map(|i| {
                let f = &f;
                thread::Builder::new()
                    .name(format!("client-{i}"))
                    .spawn_scoped(scope, move || f(ClientId(i)))
                    .expect("spawn client thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn runs_every_client_concurrently() {
        let running = AtomicU32::new(0);
        let peak = AtomicU32::new(0);
        let results = run_n(4, |client| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(50));
            running.fetch_sub(1, Ordering::SeqCst);
            client.0 * 10
        });
        let values: Vec<u32> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(values, vec![10, 20, 30, 40]);
        assert!(peak.load(Ordering::SeqCst) > 1, "clients overlapped");
    }
}
