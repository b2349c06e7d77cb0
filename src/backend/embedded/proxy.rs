//! A loopback HTTP proxy between the clients and the server, where network
//! faults happen: added latency, dropped connections (closed without an
//! answer) and HTTP 500s, each for a share of requests; the cut that
//! kills one client in the middle of its upload, and the hold that freezes
//! one there for a while.
//!
//! In front of a storage without a user per client (an external REST
//! server's one user), the proxy gives each client a user of its own: it
//! checks the client's credentials itself, refuses a revoked client there,
//! and sends the storage's own credentials upstream in their place. So the
//! storage's password reaches no client (no process's environment or
//! command line), and faults and evidence still know each client.
//!
//! In front of S3 storage, each client signs its requests for the storage
//! itself, and a signature cannot be swapped: the proxy passes requests
//! untouched (the `Host` header too, which the signature covers) and knows
//! a client by its own listener, a port of the proxy's that only that client
//! is given. A revoked client's listener answers 403.
//!
//! Bodies stream through in both directions. A dropped request is answered
//! with nothing at all — the connection closes — so a client can never
//! mistake it for a success. Every request the proxy disturbs is recorded
//! in the backend's evidence, under the user it carried.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::{RngExt, SeedableRng};

use super::evidence::{Disturbance, Evidence};
use super::race::{self, IndexHolds};
use super::stored::{StoredFiles, StoredKind};
use crate::backend::fault_kit::NetworkSlot;
use crate::faults::{KILL_ARMED_FOR, NetworkFault};
use crate::server::Serving;
use crate::server::listener::BoxError;
use crate::server::listener::ConnectionLimits;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a stopping proxy lets in-flight requests finish.
const GRACE: Duration = Duration::from_secs(2);

/// Why the proxy closed a connection instead of answering.
#[derive(Debug, thiserror::Error)]
enum Dropped {
    #[error("network fault: connection dropped")]
    Network,
    #[error("kill-client: client cut off")]
    Killed,
    #[error("upstream: {0}")]
    Upstream(String),
}

/// What happens to a client caught in the middle of its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Catch {
    /// Every request dropped (`kill-client`).
    Cut,
    /// Every request held, then let through (`pause-client`).
    Hold,
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// The user's uploads go through until a data pack has landed (the
    /// partial work left in the repository); its next upload starts the
    /// cut or the hold. rustic and restic write the index only after the
    /// packs, so the pack that landed is named by no index. A pack has
    /// landed when the storage said it stored it, not when its upload
    /// began: uploads go in parallel, and a hold that froze the client
    /// while its first pack was still on the way would leave nothing in
    /// the repository for a prune to take.
    Armed {
        catch: Catch,
        expires: Instant,
        window: Duration,
        data_landed: bool,
    },
    /// Every request of the user is dropped until then.
    Cutting { until: Instant },
    /// Every request of the user waits until then.
    Holding { until: Instant },
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pass,
    Cut,
    /// Held until then; `first` for the request that started the hold.
    Hold {
        until: Instant,
        first: bool,
    },
}

/// Where the proxy forwards, and with whose credentials.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub auth: UpstreamAuth,
    /// Over https; plain HTTP without.
    pub tls: Option<UpstreamTls>,
}

impl Upstream {
    /// A server that knows every client's user itself.
    pub fn passing(addr: SocketAddr) -> Self {
        Upstream {
            addr,
            auth: UpstreamAuth::Client,
            tls: None,
        }
    }

    /// `http://ADDR` or `https://ADDR`: what a forwarded request's path
    /// follows.
    pub fn base(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// An upstream reached over https: the name its certificate must hold
/// (the host as `--repository` wrote it, without an address's brackets;
/// the connection itself goes to the address resolved at the start), and
/// whom to trust.
#[derive(Clone)]
pub struct UpstreamTls {
    pub host: String,
    pub config: Arc<rustls::ClientConfig>,
}

/// Whose credentials reach the upstream server.
#[derive(Clone)]
pub enum UpstreamAuth {
    /// The client's own (the server checks them).
    Client,
    /// The proxy checks each client's against its own table and sends the
    /// storage's: this `Authorization` value, or none.
    Storage(Option<http::HeaderValue>),
    /// Each client's signature for the storage (S3), passed untouched: a
    /// client is known by its own listener ([`FaultProxy::listener_for`]).
    Signed,
}

impl UpstreamAuth {
    /// The storage's user and password, as a Basic `Authorization` value.
    pub fn basic(user: Option<&str>, password: Option<&str>) -> Self {
        use base64::Engine;
        UpstreamAuth::Storage(user.map(|user| {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.unwrap_or_default()));
            let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}"))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        }))
    }
}

struct ProxyState {
    /// `http(s)://ADDR`: [`Upstream::base`].
    upstream: String,
    auth: UpstreamAuth,
    /// With [`UpstreamAuth::Storage`]: each admitted client's user and password.
    admitted: Mutex<HashMap<String, String>>,
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    network: NetworkSlot,
    kills: Mutex<HashMap<String, Kill>>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    evidence: Arc<Evidence>,
    /// Called with the user each time a request of a killed client is cut:
    /// a backend whose clients are processes kills the process there.
    on_cut: Mutex<Option<CutHook>>,
    /// Called when a paused client's hold starts (`true`) and ends
    /// (`false`): a backend whose clients are processes stops them there
    /// and lets them go on.
    on_hold: Mutex<Option<HoldHook>>,
    /// Users whose hold is on (their processes stopped).
    held: Mutex<HashSet<String>>,
    /// Wakes every held request when the holds end early (the run ends).
    released: tokio::sync::Notify,
    /// The packs and index files each user stored: a data fault's victim
    /// by role.
    stored: Mutex<StoredFiles>,
    /// Wakes whoever waits for an upload's answer (with `stored`).
    answered: std::sync::Condvar,
    /// Index uploads that wait for the aggressive prune they race (a replay).
    index_holds: Arc<IndexHolds>,
}

/// An upload going through the proxy, from its request to its answer.
struct Upload {
    state: Arc<ProxyState>,
    path: String,
}

impl Upload {
    fn begins(state: Arc<ProxyState>, path: &str) -> Upload {
        state
            .stored
            .lock()
            .expect("stored lock")
            .upload_begins(path);
        Upload {
            state,
            path: path.to_owned(),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.state
            .stored
            .lock()
            .expect("stored lock")
            .upload_ends(&self.path);
        self.state.answered.notify_all();
    }
}

/// What the proxy calls when it cuts a killed client's request.
pub type CutHook = Arc<dyn Fn(&str) + Send + Sync>;

/// What the proxy calls when a paused client's hold starts or ends.
pub type HoldHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// The proxy; cheap to share.
pub struct FaultProxy {
    state: Arc<ProxyState>,
    addr: SocketAddr,
    serving: tokio::sync::Mutex<Option<Serving>>,
    /// Each client's own port, where clients are known by the port they
    /// came in at ([`UpstreamAuth::Signed`]); kept across a stop, to serve
    /// again on.
    listeners: Mutex<HashMap<String, ClientListener>>,
    /// Where listeners are served: a client is given one from a thread of its own.
    runtime: tokio::runtime::Handle,
}

/// A client's own port of the proxy.
struct ClientListener {
    addr: SocketAddr,
    serving: Option<Serving>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (OS-chosen port) in front of `upstream`.
    pub async fn start(
        upstream: Upstream,
        seed: u64,
        evidence: Arc<Evidence>,
    ) -> std::io::Result<FaultProxy> {
        let connector = upstream_connector(upstream.tls.as_ref())?;
        let state = Arc::new(ProxyState {
            upstream: upstream.base(),
            auth: upstream.auth,
            admitted: Mutex::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build(connector),
            network: NetworkSlot::default(),
            kills: Mutex::new(HashMap::new()),
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(seed)),
            evidence,
            on_cut: Mutex::new(None),
            on_hold: Mutex::new(None),
            held: Mutex::new(HashSet::new()),
            released: tokio::sync::Notify::new(),
            stored: Mutex::new(StoredFiles::default()),
            answered: std::sync::Condvar::new(),
            index_holds: Arc::new(IndexHolds::default()),
        });
        let serving = serve(state.clone(), SocketAddr::from(([127, 0, 0, 1], 0)), None).await?;
        Ok(FaultProxy {
            state,
            addr: serving.addr(),
            serving: tokio::sync::Mutex::new(Some(serving)),
            listeners: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// `user`'s own port, opened on first asking: every request that comes
    /// in there is `user`'s.
    pub fn listener_for(&self, user: &str) -> std::io::Result<SocketAddr> {
        let mut listeners = self.listeners.lock().expect("listeners lock");
        if let Some(listener) = listeners.get(user) {
            return Ok(listener.addr);
        }
        // Bound here and served on the proxy's runtime: the caller may be a
        // client's thread or a task of that runtime.
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let _runtime = self.runtime.enter();
        let serving = Serving::serve(
            tokio::net::TcpListener::from_std(listener)?,
            service(self.state.clone(), Some(user.to_owned())),
            GRACE,
            ConnectionLimits::UNLIMITED,
        )?;
        let addr = serving.addr();
        listeners.insert(
            user.to_owned(),
            ClientListener {
                addr,
                serving: Some(serving),
            },
        );
        Ok(addr)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the proxy checks clients itself (the storage has one user).
    pub fn checks_clients(&self) -> bool {
        !matches!(self.state.auth, UpstreamAuth::Client)
    }

    /// Lets `user` through with `password` (when the proxy checks clients).
    pub fn admit(&self, user: &str, password: &str) {
        self.state
            .admitted
            .lock()
            .expect("admitted lock")
            .insert(user.to_owned(), password.to_owned());
    }

    /// Refuses `user` from now on (when the proxy checks clients).
    pub fn refuse(&self, user: &str) {
        self.state
            .admitted
            .lock()
            .expect("admitted lock")
            .remove(user);
    }

    /// Applies `fault` to every request until `until`.
    pub fn set_network(&self, fault: NetworkFault, until: Instant) {
        self.state.network.set(fault, until);
    }

    /// Ends the network fault now.
    pub fn clear_network(&self) {
        self.state.network.clear();
    }

    /// The files of `kind` that `user` stored through the proxy, first
    /// stored first.
    pub fn stored_by(&self, user: &str, kind: StoredKind) -> Vec<String> {
        self.state
            .stored
            .lock()
            .expect("stored lock")
            .by(user, kind)
            .to_vec()
    }

    /// Waits, at most `within`, until no upload of the file `name` is going
    /// through the proxy (its answer, and with it its role, has come back;
    /// the storage may list the file before); whether none is. Blocks the
    /// thread: a fault's, never the proxy's (`within` zero only looks).
    pub fn wait_for_answer(&self, name: &str, within: Duration) -> bool {
        let stored = self.state.stored.lock().expect("stored lock");
        let (_stored, waited) = self
            .state
            .answered
            .wait_timeout_while(stored, within, |stored| stored.is_uploading(name))
            .expect("stored lock");
        !waited.timed_out()
    }

    /// Who stored the file `name` through the proxy, and when the storage
    /// took it.
    pub fn stored_when(&self, name: &str) -> Option<(String, Instant)> {
        self.state
            .stored
            .lock()
            .expect("stored lock")
            .stored_when(name)
            .map(|(user, at)| (user.to_owned(), at))
    }

    /// The index uploads held for the prunes they race.
    pub fn index_holds(&self) -> Arc<IndexHolds> {
        self.state.index_holds.clone()
    }

    /// Who stored the file `name` through the proxy, and its place (from
    /// 1) among that user's files of its kind.
    pub fn role_of(&self, name: &str) -> Option<(String, u32)> {
        self.state
            .stored
            .lock()
            .expect("stored lock")
            .role_of(name)
            .map(|(user, nth)| (user.to_owned(), nth))
    }

    /// Ends every kill and every pause now, armed or acting; a paused
    /// client goes on.
    pub fn clear_kills(&self) {
        self.state.kills.lock().expect("kills lock").clear();
        let held: Vec<String> = self.state.held.lock().expect("held lock").drain().collect();
        for user in held {
            self.state.resumed(&user);
        }
        self.state.released.notify_waiters();
        self.state.index_holds.release_all();
    }

    /// Once a data pack of `user` has landed, its next upload starts a cut
    /// of `window`: all its requests dropped.
    pub fn arm_kill(&self, user: &str, window: Duration) {
        self.state.arm(user, Catch::Cut, window);
    }

    /// Once a data pack of `user` has landed, its next upload starts a hold
    /// of `window`: all its requests wait, the user's processes are stopped
    /// (the hold hook), then everything goes on.
    pub fn arm_pause(&self, user: &str, window: Duration) {
        self.state.arm(user, Catch::Hold, window);
    }

    /// Calls `hook` when a paused client's hold starts and when it ends.
    pub fn on_hold(&self, hook: HoldHook) {
        *self.state.on_hold.lock().expect("hook lock") = Some(hook);
    }

    /// Calls `hook` with the user whenever a killed client's request is cut
    /// (after the cut is recorded in the evidence).
    pub fn on_cut(&self, hook: CutHook) {
        *self.state.on_cut.lock().expect("hook lock") = Some(hook);
    }

    /// Stops accepting (connections refused) and cuts open connections.
    pub async fn stop(&self) {
        if let Some(serving) = self.serving.lock().await.take() {
            serving.stop().await;
        }
        let listeners: Vec<Serving> = self
            .listeners
            .lock()
            .expect("listeners lock")
            .values_mut()
            .filter_map(|listener| listener.serving.take())
            .collect();
        for serving in listeners {
            serving.stop().await;
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&self) -> std::io::Result<()> {
        let mut serving = self.serving.lock().await;
        if serving.is_none() {
            *serving = Some(serve(self.state.clone(), self.addr, None).await?);
        }
        let closed: Vec<(String, SocketAddr)> = self
            .listeners
            .lock()
            .expect("listeners lock")
            .iter()
            .filter(|(_, listener)| listener.serving.is_none())
            .map(|(user, listener)| (user.clone(), listener.addr))
            .collect();
        for (user, addr) in closed {
            let serving = serve(self.state.clone(), addr, Some(user.clone())).await?;
            if let Some(listener) = self
                .listeners
                .lock()
                .expect("listeners lock")
                .get_mut(&user)
            {
                listener.serving = Some(serving);
            }
        }
        Ok(())
    }
}

/// The proxy's connections to its upstream, with TCP_NODELAY as on the
/// connections it accepts: a request forwarded in two writes (head, then
/// body) must not wait for the upstream's delayed ACK.
/// Over https, its certificate is checked for `tls.host`, whatever address
/// the connection went to.
pub(crate) fn upstream_connector(
    tls: Option<&UpstreamTls>,
) -> std::io::Result<HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let Some(tls) = tls else {
        // Plain HTTP only: a TLS configuration that trusts no one.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        return Ok(HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http));
    };
    let name = rustls::pki_types::ServerName::try_from(tls.host.clone())
        .map_err(|e| std::io::Error::other(format!("{}: {e}", tls.host)))?;
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config((*tls.config).clone())
        .https_only()
        .with_server_name_resolver(FixedServerNameResolver::new(name))
        .enable_http1()
        .wrap_connector(http))
}

/// Serves the proxy on `addr`; at a client's own listener, every request is that
/// client's.
async fn serve(
    state: Arc<ProxyState>,
    addr: SocketAddr,
    client_of_port: Option<String>,
) -> std::io::Result<Serving> {
    Serving::bind(addr, service(state, client_of_port), GRACE).await
}

/// The proxy as a service; at a client's own listener, every request is that
/// client's.
fn service(
    state: Arc<ProxyState>,
    client_of_port: Option<String>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<ProxyBody>, BoxError>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |request: Request<Incoming>| {
        let (state, client) = (state.clone(), client_of_port.clone());
        async move { forward(&state, client, request).await }
    })
}

impl ProxyState {
    fn arm(&self, user: &str, catch: Catch, window: Duration) {
        self.kills.lock().expect("kills lock").insert(
            user.to_owned(),
            Kill::Armed {
                catch,
                expires: Instant::now() + KILL_ARMED_FOR,
                window,
                data_landed: false,
            },
        );
    }

    /// What becomes of this request of `user`.
    fn fate(&self, user: &str, request: &Request<Incoming>) -> Fate {
        let mut kills = self.kills.lock().expect("kills lock");
        let now = Instant::now();
        let Some(kill) = kills.get(user).copied() else {
            return Fate::Pass;
        };
        match kill {
            Kill::Armed { expires, .. } if now > expires => {
                kills.remove(user);
                Fate::Pass
            }
            Kill::Armed {
                catch,
                window,
                data_landed,
                ..
            } => {
                let path = request.uri().path();
                // POST to a REST server, PUT to S3.
                let upload = matches!(*request.method(), Method::POST | Method::PUT)
                    && ["/data/", "/index/", "/snapshots/"]
                        .iter()
                        .any(|t| path.contains(t));
                if !upload {
                    return Fate::Pass;
                }
                if !data_landed {
                    // Let uploads through until a data pack has landed
                    // (`stored`): that pack is the partial work the kill or
                    // pause leaves behind.
                    return Fate::Pass;
                }
                let until = now + window;
                match catch {
                    Catch::Cut => {
                        tracing::warn!(target: "snapstorm::faults", user, "kill-client: cutting the client off mid-snapshot");
                        kills.insert(user.to_owned(), Kill::Cutting { until });
                        Fate::Cut
                    }
                    Catch::Hold => {
                        tracing::warn!(target: "snapstorm::faults", user, "pause-client: holding the client mid-snapshot");
                        kills.insert(user.to_owned(), Kill::Holding { until });
                        Fate::Hold { until, first: true }
                    }
                }
            }
            Kill::Cutting { until } if now < until => Fate::Cut,
            Kill::Holding { until } if now < until => Fate::Hold {
                until,
                first: false,
            },
            Kill::Cutting { .. } | Kill::Holding { .. } => {
                kills.remove(user);
                Fate::Pass
            }
        }
    }

    /// The storage stored an upload of `user` to `path`: it is counted
    /// among the user's files, and a data pack lands, for a kill or pause
    /// armed for the user.
    fn stored(&self, user: &str, path: &str) {
        let kind = self.stored.lock().expect("stored lock").took(user, path);
        if kind != Some(StoredKind::Pack) {
            return;
        }
        let mut kills = self.kills.lock().expect("kills lock");
        if let Some(Kill::Armed { data_landed, .. }) = kills.get_mut(user) {
            *data_landed = true;
        }
    }

    /// The hold of `user` starts: its processes stop (the hold hook) until
    /// `until`, when they go on, whether or not a request is waiting.
    fn hold_starts(self: &Arc<Self>, user: &str, until: Instant) {
        self.held.lock().expect("held lock").insert(user.to_owned());
        let hook = self.on_hold.lock().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook(user, true);
        }
        let (state, user) = (self.clone(), user.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            if state.held.lock().expect("held lock").remove(&user) {
                state.resumed(&user);
            }
        });
    }

    /// `user`'s hold is over: its processes go on.
    fn resumed(&self, user: &str) {
        tracing::warn!(target: "snapstorm::faults", user, "pause-client: the client goes on");
        let hook = self.on_hold.lock().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook(user, false);
        }
    }
}

/// The answer to a revoked client at its own listener, as S3 storage's.
fn access_denied() -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>revoked by snapstorm</Message></Error>\n",
    ))
    .map_err(|never| match never {})
    .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

/// The answer to a client the proxy does not let in, as a REST server's.
fn refused() -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(b"401 unauthorized\n"))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"snapstorm\""),
    );
    response
}

async fn forward(
    state: &Arc<ProxyState>,
    client_of_port: Option<String>,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let credentials = crate::server::http::basic_credentials(request.headers());
    let user = client_of_port.unwrap_or_else(|| {
        credentials
            .as_ref()
            .map(|(user, _)| user.clone())
            .unwrap_or_default()
    });
    let disturbed = |what: Disturbance| state.evidence.request(&user, what);
    if matches!(state.auth, UpstreamAuth::Signed)
        && !state
            .admitted
            .lock()
            .expect("admitted lock")
            .contains_key(&user)
    {
        disturbed(Disturbance::Refused(StatusCode::FORBIDDEN.as_u16()));
        return Ok(access_denied());
    }
    if let UpstreamAuth::Storage(storage) = &state.auth {
        let admitted = credentials.as_ref().is_some_and(|(user, password)| {
            state
                .admitted
                .lock()
                .expect("admitted lock")
                .get(user)
                .is_some_and(|known| known == password)
        });
        if !admitted {
            disturbed(Disturbance::Refused(StatusCode::UNAUTHORIZED.as_u16()));
            return Ok(refused());
        }
        match storage {
            Some(value) => {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, value.clone());
            }
            None => {
                request.headers_mut().remove(http::header::AUTHORIZATION);
            }
        }
    }
    match state.fate(&user, &request) {
        Fate::Pass => {}
        Fate::Cut => {
            disturbed(Disturbance::CutOff);
            let hook = state.on_cut.lock().expect("hook lock").clone();
            if let Some(hook) = hook {
                hook(&user);
            }
            return Err(Dropped::Killed.into());
        }
        Fate::Hold { until, first } => {
            disturbed(Disturbance::Held);
            if first {
                state.hold_starts(&user, until);
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = state.released.notified() => {}
            }
        }
    }
    let written_last = matches!(*request.method(), Method::POST | Method::PUT)
        && race::written_last(request.uri().path());
    if written_last && let Some(held) = state.index_holds.index_upload(&user) {
        tracing::info!(target: "snapstorm::faults", user, "a backup's index waits for the aggressive prune it raced");
        held.wait().await;
    }
    if let Some(fault) = state.network.now() {
        tokio::time::sleep(fault.latency).await;
        let roll: u8 = state.rng.lock().expect("rng lock").random_range(0..100);
        tracing::debug!(target: "snapstorm::faults", roll, path = %request.uri().path(), "network fault roll");
        if roll < fault.drop_percent {
            disturbed(Disturbance::Dropped);
            return Err(Dropped::Network.into());
        }
        if roll < fault.drop_percent.saturating_add(fault.error_percent) {
            disturbed(Disturbance::InjectedError);
            let body = Full::new(Bytes::from_static(b"injected network fault\n"))
                .map_err(|never| match never {})
                .boxed();
            let mut response = Response::new(body);
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(response);
        }
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    *request.uri_mut() = format!("{}{path}", state.upstream)
        .parse()
        .map_err(|e: http::uri::InvalidUri| Dropped::Upstream(e.to_string()))?;
    let checked_here = !matches!(state.auth, UpstreamAuth::Client);
    let asked = request.uri().path().to_owned();
    let deleting = request.method() == http::Method::DELETE;
    // POST to a REST server, PUT to S3; of an S3 multipart upload, only
    // the POST that completes it (`?uploadId=`) stores the file.
    let part_of_upload = request
        .uri()
        .query()
        .is_some_and(|query| query.contains("uploads") || query.contains("partNumber="));
    let uploading =
        matches!(*request.method(), http::Method::POST | http::Method::PUT) && !part_of_upload;
    // Ends the upload however this request ends (a client that hangs up
    // drops it midway), after a success has counted the file.
    let _upload = uploading.then(|| Upload::begins(state.clone(), &asked));
    match state.client.request(request).await {
        Ok(response) => {
            if deleting && response.status().is_success() {
                state.evidence.deleted(&user, &asked);
            }
            if uploading && response.status().is_success() {
                state.stored(&user, &asked);
            }
            if checked_here {
                // What the embedded server's observer records, seen here.
                use crate::server::RequestObserver;
                match response.status() {
                    StatusCode::NOT_FOUND => state.evidence.not_found(&user, &asked),
                    status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                        state.evidence.refused(Some(&user), status)
                    }
                    _ => {}
                }
            }
            Ok(response.map(|body| body.boxed()))
        }
        Err(error) => {
            disturbed(Disturbance::UpstreamFailed);
            Err(Dropped::Upstream(error.to_string()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upload is under way from its request until its answer has come
    /// back, and only then has its role: a data fault that draws the file
    /// meanwhile (the storage lists it already) waits for the answer.
    #[tokio::test]
    async fn an_upload_is_under_way_until_its_answer_comes_back() {
        // A storage that takes the upload and answers only when told.
        let storage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let storage_addr = storage.local_addr().unwrap();
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut socket, _) = storage.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await.unwrap();
            answered.await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let proxy = FaultProxy::start(
            Upstream::passing(storage_addr),
            1,
            Arc::new(Evidence::new()),
        )
        .await
        .unwrap();
        let upload = reqwest::Client::new()
            .post(format!("http://{}/repo/data/aa11", proxy.addr()))
            .basic_auth("client-1", Some("secret"))
            .body("a pack")
            .send();
        let upload = tokio::spawn(upload);
        let since = Instant::now();
        while proxy.wait_for_answer("aa11", Duration::ZERO) {
            assert!(since.elapsed() < Duration::from_secs(10), "never under way");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(proxy.role_of("aa11"), None, "no answer yet, no role");
        let proxy = Arc::new(proxy);
        let waiting = |within| {
            let proxy = proxy.clone();
            tokio::task::spawn_blocking(move || proxy.wait_for_answer("aa11", within))
        };
        assert!(
            !waiting(Duration::from_millis(50)).await.unwrap(),
            "no answer to wait for yet"
        );
        let waiter = waiting(Duration::from_secs(30));
        answer.send(()).unwrap();
        assert!(waiter.await.unwrap(), "woken by the answer");
        let response = upload.await.unwrap().unwrap();
        assert!(response.status().is_success(), "{response:?}");
        assert!(proxy.wait_for_answer("aa11", Duration::ZERO), "answered");
        assert_eq!(proxy.role_of("aa11"), Some(("client-1".to_owned(), 1)));
    }
}
