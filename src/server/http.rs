// Over 500 lines: the protocol's handlers and the checks they share (paths, append-only, ranges) read best together.
//! The restic REST protocol over HTTP: authentication, dispatch to the
//! storage, streaming in both directions, Range reads and listings.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::locks::LockOwner;
use super::resource::{FileId, FileType, Resource, Target};
use super::storage::{SaveError, Storage};
use super::users::{Access, Users};

const V2_MEDIA_TYPE: &str = "application/vnd.x.restic.rest.v2";
const V1_MEDIA_TYPE: &str = "application/vnd.x.restic.rest.v1";

/// Who may use the server.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every request needs a user of this table (HTTP Basic).
    Users(Arc<Users>),
    /// Anyone may use it (`--no-auth`).
    Open,
}

/// Told of every request the server refuses, and of every file it did not
/// find, so that a program embedding the server can tell a refused request
/// from data the repository lost, whatever the client makes of it.
pub trait RequestObserver: Send + Sync + std::fmt::Debug {
    /// `claimed_user`: the name the request gave, authenticated or not.
    fn refused(&self, claimed_user: Option<&str>, status: StatusCode);
    /// An authenticated `user` asked for `path`, and there was no such file.
    fn not_found(&self, _user: &str, _path: &str) {}
    /// An authenticated `user`'s request was failed with `status` by the
    /// storage outage ([`super::StorageOutage`]), not served.
    fn storage_failed(&self, _user: &str, _status: StatusCode) {}
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    pub storage: Storage,
    pub auth: Auth,
    /// Applies to every user, on top of each user's own flag.
    pub append_only: bool,
    /// Check that uploaded content hashes to its id, as restic's rest-server does.
    pub verify_uploads: bool,
    pub observer: Option<Arc<dyn RequestObserver>>,
    pub outage: Option<Arc<super::StorageOutage>>,
    /// bcrypt checks running at once, at most one per core: a flood of
    /// wrong passwords queues here instead of taking every core.
    pub password_checks: tokio::sync::Semaphore,
}

impl AppState {
    /// The slots for password checks: one per core.
    pub fn password_check_slots() -> tokio::sync::Semaphore {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// A request that passed authentication, with what its user may do.
struct Caller {
    name: Option<String>,
    access: Access,
}

impl Caller {
    /// The owner recorded on the locks this caller creates.
    fn as_lock_owner(&self) -> LockOwner {
        match &self.name {
            Some(name) => LockOwner::User(name.clone()),
            None => LockOwner::Anonymous,
        }
    }
}

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let claimed_user = state
        .observer
        .as_ref()
        .and_then(|_| basic_credentials(request.headers()))
        .map(|(name, _)| name);
    let (response, user) = match authenticate(&state, request.headers()).await {
        Ok(caller) => {
            let user = caller.name.clone();
            match state.outage.as_ref().and_then(|outage| outage.roll()) {
                Some(status) => {
                    if let (Some(observer), Some(user)) = (&state.observer, &user) {
                        observer.storage_failed(user, status);
                    }
                    (storage_failed(status), user)
                }
                None => (serve(&state, caller, request).await, user),
            }
        }
        Err(refusal) => (refusal, None),
    };
    let status = response.status();
    if let Some(observer) = &state.observer {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            observer.refused(claimed_user.as_deref(), status);
        }
        if status == StatusCode::NOT_FOUND
            && let Some(user) = &user
        {
            observer.not_found(user, &path);
        }
    }
    // Never log credentials: only the user name the request authenticated as.
    tracing::debug!(
        target: "snapstorm::server",
        %method,
        path,
        status = response.status().as_u16(),
        user = user.as_deref().unwrap_or("-"),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let users = match &state.auth {
        Auth::Open => {
            return Ok(Caller {
                name: None,
                access: Access {
                    append_only: state.append_only,
                },
            });
        }
        Auth::Users(users) => users.clone(),
    };
    let Some((name, password)) = basic_credentials(headers) else {
        return Err(unauthorized());
    };
    let access = match users.verify_remembered(&name, &password) {
        Some(access) => Some(access),
        None => {
            let Ok(_slot) = state.password_checks.acquire().await else {
                return Err(unauthorized());
            };
            let checked_name = name.clone();
            tokio::task::spawn_blocking(move || users.verify(&checked_name, &password))
                .await
                .ok()
                .flatten()
        }
    };
    match access {
        Some(access) => Ok(Caller {
            name: Some(name),
            access: Access {
                append_only: access.append_only || state.append_only,
            },
        }),
        None => Err(unauthorized()),
    }
}

pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"snapstorm\"")],
        "401 unauthorized\n",
    )
        .into_response()
}

/// The answer of failing storage: nothing was read or written.
fn storage_failed(status: StatusCode) -> Response {
    plain(status, format!("storage error ({status}, injected)"))
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

async fn serve(state: &AppState, caller: Caller, request: Request) -> Response {
    let resource = match Resource::parse(request.uri().path()) {
        Ok(resource) => resource,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let storage = &state.storage;
    match (&resource.target, request.method().clone()) {
        (Target::Repository, Method::POST) => {
            let wants_create = request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "create=true"));
            if !wants_create {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "POST on a repository needs ?create=true",
                );
            }
            if caller.access.append_only && storage.repo_exists(&resource.repo) {
                return plain(
                    StatusCode::FORBIDDEN,
                    "repository exists; append-only users may not re-create it",
                );
            }
            match storage.create_repo(&resource.repo) {
                Ok(()) => plain(StatusCode::OK, "created"),
                Err(e) => internal(e),
            }
        }
        (Target::Listing(kind), Method::GET) => {
            list(storage, &resource, *kind, request.headers()).await
        }
        (Target::Config, _) => {
            let target = FileTarget {
                path: storage.config_path(&resource.repo),
                expected_id: None,
                is_lock: false,
            };
            file_request(state, &caller, &resource, target, request).await
        }
        (Target::File(kind, id), _) => {
            let target = FileTarget {
                path: storage.file_path(&resource.repo, *kind, id),
                expected_id: state.verify_uploads.then(|| id.clone()),
                is_lock: *kind == FileType::Locks,
            };
            file_request(state, &caller, &resource, target, request).await
        }
        (_, _) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    }
}

/// One file a request is about.
struct FileTarget {
    path: std::path::PathBuf,
    /// Set when uploads must hash to this id.
    expected_id: Option<FileId>,
    /// Locks are the one thing an append-only user may delete (its own).
    is_lock: bool,
}

async fn file_request(
    state: &AppState,
    caller: &Caller,
    resource: &Resource,
    target: FileTarget,
    request: Request,
) -> Response {
    let path = target.path.as_path();
    match request.method().clone() {
        Method::HEAD => match tokio::fs::metadata(path).await {
            Ok(meta) if meta.is_file() => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, meta.len())
                .header(header::ACCEPT_RANGES, "bytes")
                .body(Body::empty())
                .expect("valid response"),
            _ => StatusCode::NOT_FOUND.into_response(),
        },
        Method::GET => read_file(path, request.headers()).await,
        Method::POST => {
            let body = request.into_body().into_data_stream();
            let owner = target.is_lock.then(|| caller.as_lock_owner());
            match state
                .storage
                .save(
                    &resource.repo,
                    path,
                    target.expected_id.as_ref(),
                    owner.as_ref(),
                    body,
                )
                .await
            {
                Ok(_) => StatusCode::OK.into_response(),
                Err(SaveError::AlreadyExists) => plain(
                    StatusCode::FORBIDDEN,
                    "file exists; overwriting is not allowed",
                ),
                Err(SaveError::NoRepository) => plain(
                    StatusCode::NOT_FOUND,
                    "repository does not exist; create it first",
                ),
                Err(e @ (SaveError::Body(_) | SaveError::HashMismatch { .. })) => {
                    plain(StatusCode::BAD_REQUEST, e.to_string())
                }
                Err(SaveError::Io(e)) => internal(e),
            }
        }
        Method::DELETE => {
            if caller.access.append_only {
                if !target.is_lock {
                    return plain(
                        StatusCode::FORBIDDEN,
                        "append-only: only locks may be deleted",
                    );
                }
                match state.storage.lock_owner(path) {
                    Ok(Some(owner)) if owner == caller.as_lock_owner() => {}
                    Ok(_) => {
                        return plain(
                            StatusCode::FORBIDDEN,
                            "append-only: only your own locks may be deleted",
                        );
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    Err(e) => return internal(e),
                }
            }
            match state.storage.delete(path) {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    StatusCode::NOT_FOUND.into_response()
                }
                Err(e) => internal(e),
            }
        }
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
    }
}

async fn list(
    storage: &Storage,
    resource: &Resource,
    kind: FileType,
    headers: &HeaderMap,
) -> Response {
    let wants_v2 = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(V2_MEDIA_TYPE));
    let storage = storage.clone();
    let repo = resource.repo.clone();
    let listed = tokio::task::spawn_blocking(move || storage.list(&repo, kind)).await;
    let files = match listed {
        Ok(Ok(Some(files))) => files,
        Ok(Ok(None)) => return plain(StatusCode::NOT_FOUND, "repository does not exist"),
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let (media_type, json) = if wants_v2 {
        (V2_MEDIA_TYPE, serde_json::to_vec(&files))
    } else {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        (V1_MEDIA_TYPE, serde_json::to_vec(&names))
    };
    match json {
        Ok(json) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(media_type))],
            json,
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

/// The part of a file a GET asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    Whole,
    /// Inclusive bounds, already clamped to the file.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Interprets a `Range` header (RFC 9110 §14) for a file of `len` bytes.
/// Multiple ranges and unparsable headers are answered with the whole file,
/// which the RFC allows; a range starting at or beyond the end is 416.
fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => {
            if start >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        (Ok(start), Err(_)) if last.is_empty() => {
            if start >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start,
                    end: len - 1,
                }
            }
        }
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start: len.saturating_sub(suffix),
                    end: len - 1,
                }
            }
        }
        _ => ByteRange::Whole,
    }
}

/// Bytes read from disk at a time for a download: few enough read and
/// write calls per pack file, little enough memory per download.
const DOWNLOAD_CHUNK: usize = 1 << 20;

/// Chunks read ahead of the socket per download: the next chunk is read
/// while the previous one is being sent, and a client that stops reading
/// holds at most this many (plus the one being sent) in memory.
const DOWNLOAD_READ_AHEAD: usize = 1;

/// A file opened for a download, with its length.
enum Opened {
    File(std::fs::File, u64),
    NotFound,
}

fn open_for_download(path: &std::path::Path) -> std::io::Result<Opened> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::NotFound),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Opened::NotFound);
    }
    Ok(Opened::File(file, meta.len()))
}

/// Streams `count` bytes of `file` from `start`: a task reads chunks on a
/// blocking thread, one ahead of the socket, and ends when the body is
/// dropped (the client went away). No thread waits for a slow client.
fn download_body(file: std::fs::File, start: u64, count: u64) -> Body {
    use std::os::unix::fs::FileExt;
    let (chunks, mut received) =
        tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(DOWNLOAD_READ_AHEAD);
    let file = Arc::new(file);
    tokio::spawn(async move {
        let (mut offset, end) = (start, start + count);
        while offset < end {
            let len = usize::try_from(end - offset)
                .map_or(DOWNLOAD_CHUNK, |left| left.min(DOWNLOAD_CHUNK));
            let file = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, offset)
                    .map(|()| bytes::Bytes::from(buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let failed = read.is_err();
            if chunks.send(read).await.is_err() || failed {
                return;
            }
            offset += len as u64;
        }
    });
    Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        received.poll_recv(cx)
    }))
}

async fn read_file(path: &std::path::Path, headers: &HeaderMap) -> Response {
    // Opening and measuring in one hop to a blocking thread.
    let owned = path.to_path_buf();
    let (file, len) = match tokio::task::spawn_blocking(move || open_for_download(&owned)).await {
        Ok(Ok(Opened::File(file, len))) => (file, len),
        Ok(Ok(Opened::NotFound)) => return StatusCode::NOT_FOUND.into_response(),
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let range = byte_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, start, count) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .expect("valid response");
        }
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    response
        .body(download_body(file, start, count))
        .expect("valid response")
}

fn internal(error: impl std::fmt::Display) -> Response {
    tracing::warn!(target: "snapstorm::server", %error, "request failed");
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {error}"),
    )
}

#[cfg(test)]
mod tests;
