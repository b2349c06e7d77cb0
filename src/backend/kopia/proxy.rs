//! The fault proxy in front of kopia's server: a loopback TCP proxy with a
//! listener of its own for each client.
//!
//! kopia's clients speak gRPC over TLS and trust the server by its
//! certificate's fingerprint. The proxy passes their bytes through
//! untouched, so TLS stays end to end and the server runs as users run it
//! (an `--insecure` server would be one nobody deploys). The price: the
//! proxy sees connections and bytes, not requests. It tells clients apart
//! by the listener they connect to, which is what lets the evidence name
//! the client a disturbance befell, and it takes a burst of bytes a client
//! sends after a pause for a request:
//!
//! - `network`: each burst waits the latency; with the drop share the
//!   connection is closed there, with the error share it is reset (the
//!   proxy cannot answer an HTTP 500 inside TLS, a reset is the nearest
//!   error a transport gives).
//! - `kill-client`: once the client has sent enough on one connection to
//!   be uploading snapshot data, every connection of it is cut for a
//!   window, and the hook kills its kopia process.
//! - a server that does not take the connection (stopped by
//!   `server-restart`): the client's connection is closed at once.
//!
//! Every disturbance is recorded in the evidence under the client's kopia
//! user, where the client's error classification looks first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::backend::embedded::evidence::{Disturbance, Evidence};
use crate::backend::embedded::proxy::CutHook;
use crate::backend::fault_kit::NetworkSlot;
use crate::faults::{KILL_ARMED_FOR, NetworkFault};

/// A client's bytes that follow this long a silence start a new burst (a
/// new request, as far as bytes tell).
const BURST_GAP: Duration = Duration::from_millis(20);
/// Bytes a client sends on one connection before an armed kill cuts it:
/// more than a TLS handshake and a session's opening calls, so the cut
/// falls in the middle of uploading snapshot data.
const KILL_AFTER_BYTES: u64 = 256 * 1024;
/// How often an open connection looks whether its client was cut off.
const CUT_POLL: Duration = Duration::from_millis(100);
const BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
enum Kill {
    Armed { expires: Instant, window: Duration },
    Cutting { until: Instant },
}

/// How a connection ends when the proxy ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Both sides closed in their own time.
    Closed,
    /// Closed without an answer (drop, cut, no server).
    Dropped,
    /// Reset (an RST instead of a close).
    Reset,
}

struct State {
    /// The server's address; `None` while it is down.
    upstream: Mutex<Option<SocketAddr>>,
    network: NetworkSlot,
    kills: Mutex<HashMap<String, Kill>>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    evidence: Arc<Evidence>,
    on_cut: Mutex<Option<CutHook>>,
}

/// The proxy; its listeners end when it is dropped.
pub struct ConnectionProxy {
    state: Arc<State>,
    runtime: tokio::runtime::Handle,
    /// Each user's listener: its address and the task accepting on it.
    listeners: Mutex<HashMap<String, (SocketAddr, tokio::task::JoinHandle<()>)>>,
}

impl ConnectionProxy {
    /// A proxy in front of `upstream`, its connections carried on `runtime`.
    pub fn new(
        upstream: SocketAddr,
        runtime: tokio::runtime::Handle,
        seed: u64,
        evidence: Arc<Evidence>,
    ) -> Self {
        ConnectionProxy {
            state: Arc::new(State {
                upstream: Mutex::new(Some(upstream)),
                network: NetworkSlot::default(),
                kills: Mutex::new(HashMap::new()),
                rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
                evidence,
                on_cut: Mutex::new(None),
            }),
            runtime,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// The address `user` connects to: a listener of its own on 127.0.0.1,
    /// the same one every time the user asks.
    pub fn listener_for(&self, user: &str) -> std::io::Result<SocketAddr> {
        let mut listeners = self.listeners.lock().expect("listeners lock");
        if let Some((addr, _)) = listeners.get(user) {
            return Ok(*addr);
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (state, owner) = (self.state.clone(), user.to_owned());
        let task = self.runtime.spawn(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(target: "snapstorm::faults", user = owner, %error, "the proxy cannot listen");
                    return;
                }
            };
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    // Out of descriptors or the like: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (state, user) = (state.clone(), owner.clone());
                tokio::spawn(async move { state.carry(inbound, &user).await });
            }
        });
        listeners.insert(user.to_owned(), (addr, task));
        Ok(addr)
    }

    /// The server now listens at `upstream`; `None`: it is down, and
    /// connections are closed as they come.
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self.state.upstream.lock().expect("upstream lock") = upstream;
    }

    /// Applies `fault` to every burst until `until`.
    pub fn set_network(&self, fault: NetworkFault, until: Instant) {
        self.state.network.set(fault, until);
    }

    /// Ends the network fault now.
    pub fn clear_network(&self) {
        self.state.network.clear();
    }

    /// Once `user` uploads on a connection, every connection of it is cut
    /// for `window`.
    pub fn arm_kill(&self, user: &str, window: Duration) {
        self.state.kills.lock().expect("kills lock").insert(
            user.to_owned(),
            Kill::Armed {
                expires: Instant::now() + KILL_ARMED_FOR,
                window,
            },
        );
    }

    /// Ends every kill now, armed or cutting.
    pub fn clear_kills(&self) {
        self.state.kills.lock().expect("kills lock").clear();
    }

    /// Calls `hook` with the user when a kill cuts it off (after the cut is
    /// recorded in the evidence).
    pub fn on_cut(&self, hook: CutHook) {
        *self.state.on_cut.lock().expect("hook lock") = Some(hook);
    }
}

impl Drop for ConnectionProxy {
    fn drop(&mut self) {
        for (_, (_, task)) in self.listeners.lock().expect("listeners lock").drain() {
            task.abort();
        }
    }
}

/// What the network fault does to one burst.
enum Burst {
    Pass,
    Delay(Duration),
    Drop(Duration),
    Reset(Duration),
}

impl State {
    fn burst(&self) -> Burst {
        let Some(fault) = self.network.now() else {
            return Burst::Pass;
        };
        let roll: u8 = self.rng.lock().expect("rng lock").random_range(0..100);
        if roll < fault.drop_percent {
            Burst::Drop(fault.latency)
        } else if roll < fault.drop_percent.saturating_add(fault.error_percent) {
            Burst::Reset(fault.latency)
        } else {
            Burst::Delay(fault.latency)
        }
    }

    /// Whether `user` is cut off now (a cut that ended is forgotten).
    fn cutting(&self, user: &str) -> bool {
        let mut kills = self.kills.lock().expect("kills lock");
        match kills.get(user).copied() {
            Some(Kill::Cutting { until }) if Instant::now() < until => true,
            Some(Kill::Cutting { .. }) => {
                kills.remove(user);
                false
            }
            Some(Kill::Armed { expires, .. }) if Instant::now() > expires => {
                kills.remove(user);
                false
            }
            _ => false,
        }
    }

    /// Whether an armed kill of `user` starts its cut now, `sent` bytes
    /// into a connection.
    fn kill_starts(&self, user: &str, sent: u64) -> bool {
        if sent < KILL_AFTER_BYTES {
            return false;
        }
        let mut kills = self.kills.lock().expect("kills lock");
        let Some(Kill::Armed { expires, window }) = kills.get(user).copied() else {
            return false;
        };
        let now = Instant::now();
        if now > expires {
            kills.remove(user);
            return false;
        }
        tracing::warn!(target: "snapstorm::faults", user, "kill-client: cutting the client off mid-upload");
        kills.insert(
            user.to_owned(),
            Kill::Cutting {
                until: now + window,
            },
        );
        true
    }

    fn cut_off(&self, user: &str) {
        self.evidence.request(user, Disturbance::CutOff);
        let hook = self.on_cut.lock().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook(user);
        }
    }

    /// Carries one connection of `user` to the server and back.
    async fn carry(&self, mut inbound: TcpStream, user: &str) {
        if self.cutting(user) {
            self.evidence.request(user, Disturbance::CutOff);
            return;
        }
        let upstream = *self.upstream.lock().expect("upstream lock");
        let outbound = match upstream {
            Some(addr) => TcpStream::connect(addr).await.ok(),
            None => None,
        };
        let Some(mut outbound) = outbound else {
            self.evidence.request(user, Disturbance::UpstreamFailed);
            return;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let ending = self.pump(&mut inbound, &mut outbound, user).await;
        if ending == Ending::Reset {
            // SO_LINGER 0: the close sends an RST, not a FIN.
            #[allow(deprecated)]
            let _ = inbound.set_linger(Some(Duration::ZERO));
        }
    }

    async fn pump(&self, inbound: &mut TcpStream, outbound: &mut TcpStream, user: &str) -> Ending {
        let (mut from_client, mut to_client) = inbound.split();
        let (mut from_server, mut to_server) = outbound.split();
        let mut up = vec![0u8; BUFFER];
        let mut down = vec![0u8; BUFFER];
        let (mut client_open, mut server_open) = (true, true);
        let mut last_sent: Option<Instant> = None;
        let mut sent: u64 = 0;
        let mut poll = tokio::time::interval(CUT_POLL);
        while client_open || server_open {
            tokio::select! {
                read = from_client.read(&mut up), if client_open => match read {
                    Ok(0) | Err(_) => {
                        client_open = false;
                        let _ = to_server.shutdown().await;
                    }
                    Ok(n) => {
                        if last_sent.is_none_or(|at| at.elapsed() >= BURST_GAP) {
                            match self.burst() {
                                Burst::Pass => {}
                                Burst::Delay(latency) => tokio::time::sleep(latency).await,
                                Burst::Drop(latency) => {
                                    tokio::time::sleep(latency).await;
                                    self.evidence.request(user, Disturbance::Dropped);
                                    return Ending::Dropped;
                                }
                                Burst::Reset(latency) => {
                                    tokio::time::sleep(latency).await;
                                    self.evidence.request(user, Disturbance::Reset);
                                    return Ending::Reset;
                                }
                            }
                        }
                        last_sent = Some(Instant::now());
                        sent += n as u64;
                        if self.kill_starts(user, sent) {
                            self.cut_off(user);
                            return Ending::Dropped;
                        }
                        if to_server.write_all(&up[..n]).await.is_err() {
                            return Ending::Closed;
                        }
                    }
                },
                read = from_server.read(&mut down), if server_open => match read {
                    Ok(0) | Err(_) => {
                        server_open = false;
                        let _ = to_client.shutdown().await;
                    }
                    Ok(n) => {
                        if to_client.write_all(&down[..n]).await.is_err() {
                            return Ending::Closed;
                        }
                    }
                },
                _ = poll.tick() => {
                    if self.cutting(user) {
                        self.evidence.request(user, Disturbance::CutOff);
                        return Ending::Dropped;
                    }
                }
            }
        }
        Ending::Closed
    }
}

#[cfg(test)]
mod tests;
