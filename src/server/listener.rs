// Over 500 lines: the accept loop, the connection limits and the deadlines are one state machine.
//! Serving an axum router on a TCP port with a stop that is real: the
//! listener closes (new connections are refused), in-flight requests get a
//! grace period, then the remaining connections are cut. The REST server and
//! the fault proxy both serve this way, which is what lets a fault stop and
//! restart them on the same port.
//!
//! The accept loop is snapstorm's own rather than a framework's because a
//! server on a shared network must not be starved by clients that connect
//! and then say nothing: [`ConnectionLimits`] closes connections that stall
//! before or between requests, caps how many one peer address may hold, and
//! caps the total so that accepting never runs the process out of file
//! descriptors (which used to lock every client out with `accept failed: Too
//! many open files`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// The error type services may return: returning an error closes the
/// connection without a response (the fault proxy's "dropped connection").
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long connections may stall and how many may be open.
///
/// Neither timeout applies while a request is being handled (an upload
/// that takes an hour is fine): they bound the time a connection may hold a
/// slot without asking for anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Once the first byte of a request has arrived, its request line and
    /// headers must be complete within this long.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress (a fresh one, or a
    /// keep-alive one between requests) on which no byte moves for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once. At the cap the server stops accepting
    /// until one closes; new connections wait in the kernel's queue.
    pub max_connections: usize,
    /// Connections open at once from one IP address; more are closed as
    /// soon as they are accepted, so one peer cannot fill the total.
    pub max_connections_per_peer: usize,
}

impl ConnectionLimits {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 128;

    /// No timeouts and no caps: for a loopback service whose only clients
    /// are the process's own (the fault proxy).
    pub const UNLIMITED: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::MAX,
        idle_timeout: Duration::MAX,
        max_connections: usize::MAX,
        max_connections_per_peer: usize::MAX,
    };

    /// File descriptors needed to hold the connection cap: each connection
    /// may hold its socket and one file it streams, plus a reserve for the
    /// listener, the runtime, directories being listed and logs.
    pub fn open_files_needed(&self) -> u64 {
        (self.max_connections as u64)
            .saturating_mul(FDS_PER_CONNECTION)
            .saturating_add(RESERVED_FDS)
    }

    /// These limits lowered, if need be, so that `open_files_limit`
    /// descriptors hold the cap. The per-peer cap shrinks in proportion,
    /// so one peer still cannot take every slot.
    pub fn fitted_to_open_files(self, open_files_limit: u64) -> ConnectionLimits {
        let room = open_files_limit.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        if self.max_connections <= room {
            return self;
        }
        let scaled = (self.max_connections_per_peer as u128 * room as u128
            / self.max_connections as u128) as usize;
        ConnectionLimits {
            max_connections: room,
            max_connections_per_peer: scaled.clamp(1, room),
            ..self
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: Self::DEFAULT_MAX_CONNECTIONS_PER_PEER,
        }
    }
}

const FDS_PER_CONNECTION: u64 = 2;
const RESERVED_FDS: u64 = 64;

/// A service being served; [`Serving::stop`] stops it.
pub struct Serving {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    /// Binds `addr` (port 0: the OS chooses) and serves `service` on the
    /// current runtime, without timeouts or caps.
    pub async fn bind<S, B>(addr: SocketAddr, service: S, grace: Duration) -> io::Result<Serving>
    where
        S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind(addr).await?;
        Serving::serve(listener, service, grace, ConnectionLimits::UNLIMITED)
    }

    /// Serves `service` on an already bound listener under `limits`.
    pub fn serve<S, B>(
        listener: TcpListener,
        service: S,
        grace: Duration,
        limits: ConnectionLimits,
    ) -> io::Result<Serving>
    where
        S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, service, stop_rx, grace, limits));
        Ok(Serving {
            addr,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops and waits until the last connection is gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop<S, B>(
    listener: TcpListener,
    app: S,
    mut stop: oneshot::Receiver<()>,
    grace: Duration,
    limits: ConnectionLimits,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let peers = Arc::new(PeerCounts::default());
    let mut told_full = false;
    loop {
        let full = connections.len() >= limits.max_connections;
        if full && !told_full {
            tracing::warn!(target: "snapstorm::server", open = connections.len(), "connection cap reached; new connections wait until one closes");
        }
        told_full = full;
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept(), if !full => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = PeerCounts::claim(&peers, peer.ip(), limits.max_connections_per_peer) else {
                        tracing::debug!(target: "snapstorm::server", %peer, "per-peer connection cap reached; connection closed");
                        continue;
                    };
                    let conn = Connection::new(stream, app.clone());
                    let activity = conn.activity.clone();
                    let conn = graceful.watch(conn.serve());
                    connections.spawn(async move {
                        let _slot = slot;
                        tokio::select! {
                            ended = conn => if let Err(error) = ended {
                                tracing::trace!(target: "snapstorm::server", %error, "connection ended");
                            },
                            expiry = activity.expired(&limits) => {
                                tracing::debug!(target: "snapstorm::server", %peer, %expiry, "connection closed");
                            }
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "snapstorm::server", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: "snapstorm::server", "in-flight requests did not finish in time; cutting them");
    }
    connections.shutdown().await;
}

/// Open connections per peer address.
#[derive(Debug, Default)]
struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

impl PeerCounts {
    /// A slot for one more connection of `ip`, unless it holds `cap` already.
    fn claim(counts: &Arc<PeerCounts>, ip: IpAddr, cap: usize) -> Option<PeerSlot> {
        // One address, however it is written (an IPv4 peer on an IPv6 socket).
        let ip = ip.to_canonical();
        let mut map = counts.0.lock().expect("peer counts lock");
        let open = map.entry(ip).or_insert(0);
        if *open >= cap {
            return None;
        }
        *open += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

/// One open connection of a peer; dropping it frees the slot.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().expect("peer counts lock");
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// One accepted connection, with the bookkeeping its timeouts need.
struct Connection<S> {
    stream: TcpStream,
    app: S,
    activity: Arc<Activity>,
}

impl<S> Connection<S> {
    fn new(stream: TcpStream, app: S) -> Self {
        // Answers go out as written: with Nagle's algorithm a response's
        // body waits for the ACK of its headers, which the client delays
        // (40 ms on Linux) — a stall on every small request, paid by every
        // client reading a repository's many small files.
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            app,
            activity: Arc::new(Activity::new()),
        }
    }

    fn serve<B>(
        self,
    ) -> hyper::server::conn::http1::Connection<TokioIo<Watched<TcpStream>>, Tracked<S>>
    where
        S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let io = TokioIo::new(Watched {
            inner: self.stream,
            activity: self.activity.clone(),
        });
        let service = Tracked {
            inner: TowerToHyperService::new(self.app),
            activity: self.activity,
        };
        hyper::server::conn::http1::Builder::new().serve_connection(io, service)
    }
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Nothing moved, and no request was in progress.
    Idle(Duration),
    /// A request's head began but did not complete.
    HeaderRead(Duration),
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expiry::Idle(after) => write!(f, "idle for {after:?}"),
            Expiry::HeaderRead(after) => write!(f, "request headers incomplete after {after:?}"),
        }
    }
}

/// What a connection is doing, as far as its timeouts care.
#[derive(Debug, Clone, Copy)]
struct ActivityState {
    /// Requests whose handler is running.
    in_flight: usize,
    /// When a byte last moved either way, or a request started or ended.
    last_moved: Instant,
    /// When the first byte of the next request's head arrived, while no
    /// request was in progress.
    head_started: Option<Instant>,
}

impl ActivityState {
    /// When the connection is due to be closed, and why; `None` while a
    /// request is in progress.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, Expiry)> {
        if self.in_flight > 0 {
            return None;
        }
        let (since, after, expiry) = match self.head_started {
            Some(started) => (
                started,
                limits.header_read_timeout,
                Expiry::HeaderRead(limits.header_read_timeout),
            ),
            None => (
                self.last_moved,
                limits.idle_timeout,
                Expiry::Idle(limits.idle_timeout),
            ),
        };
        Some((since.checked_add(after)?, expiry))
    }
}

/// Shared by a connection's socket, its service and its watchdog.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Told when a deadline may have moved earlier or appeared.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                last_moved: Instant::now(),
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().expect("activity lock")
    }

    fn bytes_read(&self) {
        let now = Instant::now();
        let mut state = self.state();
        state.last_moved = now;
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(now);
            drop(state);
            self.changed.notify_one();
        }
    }

    fn bytes_written(&self) {
        self.state().last_moved = Instant::now();
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        {
            let mut state = self.state();
            state.in_flight += 1;
            state.head_started = None;
            state.last_moved = Instant::now();
        }
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Resolves when the connection has stalled past its limits.
    async fn expired(&self, limits: &ConnectionLimits) -> Expiry {
        loop {
            let changed = self.changed.notified();
            let deadline = self.state().deadline(limits);
            match deadline {
                None => changed.await,
                Some((at, expiry)) => {
                    if at <= Instant::now() {
                        return expiry;
                    }
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
            }
        }
    }
}

/// A request being handled; dropping it (the handler finished or was
/// dropped) ends the request.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.last_moved = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// A socket that reports when bytes move.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The service, counting the requests it is handling.
struct Tracked<S> {
    inner: TowerToHyperService<S>,
    activity: Arc<Activity>,
}

type TrackedFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Tracked<S>
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = TrackedFuture<http::Response<B>, S::Error>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let handled = self.inner.call(request);
        Box::pin(async move {
            let response = handled.await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests;
