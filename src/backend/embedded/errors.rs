//! What a rustic_core error means for the verdict, decided in this order:
//!
//! 1. Evidence: the server was down, or the proxy dropped, failed or cut a
//!    request of this client, or the server refused it, while the call ran
//!    → the request did not get through.
//! 2. Types: the error's `source()` chain holds the HTTP client's error
//!    (connection, timeout, status and URL) or an I/O error of the local
//!    file system.
//! 3. Text, for errors rustic hands over as text only: the fixed messages
//!    in [`text`], each with a test.
//!
//! A 404 on an index file while a GC ran is a race with that GC (it
//! replaced the file); without a GC it is lost data. A 404 on a snapshot
//! file another client deleted while the call ran is a race with that
//! delete (a forget reading every snapshot: rustic #1421). A 500 the proxy did not
//! inject is the server's own failure, not a transport problem.

use std::error::Error as StdError;
use std::time::Instant;

use rustic_core::RusticError;

use super::evidence::Evidence;
use crate::engine::brief::brief;
use crate::engine::traits::BackendError;

/// What the call was, for the evidence: whose requests, since when.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub evidence: &'a Evidence,
    /// The user the client's requests carry.
    pub user: &'a str,
    pub started: Instant,
}

impl CallContext<'_> {
    /// Classifies a rustic error of this call.
    pub fn classify(&self, error: &RusticError) -> BackendError {
        let text = error.display_log();
        if let Some(why) = self.evidence.disturbed(self.user, self.started) {
            return BackendError::NotThrough(format!("{why}: {text}"));
        }
        if let Some(raced) = self.evidence.raced_a_delete(self.user, self.started, &text) {
            return raced;
        }
        if let Some(found) = typed(error) {
            return match found {
                Typed::NotThrough => BackendError::NotThrough(text),
                Typed::IndexNotFound if self.evidence.gc_since(self.started) => {
                    BackendError::Raced(format!("a GC replaced an index file: {text}"))
                }
                Typed::IndexNotFound | Typed::NotFound => BackendError::Data(text),
                Typed::ServerError | Typed::Unknown => BackendError::Failed(text),
                Typed::Local => BackendError::Local(text),
                Typed::Damaged => BackendError::Data(text),
            };
        }
        from_text(text)
    }

    /// Classifies a panic inside rustic during this call (it panics instead
    /// of returning an error on, e.g., a pack that fails its MAC check, or a
    /// restore target it cannot write).
    pub fn classify_panic(&self, message: String) -> BackendError {
        if let Some(why) = self.evidence.disturbed(self.user, self.started) {
            return BackendError::NotThrough(format!(
                "{why}; rustic panicked: {}",
                brief(&message)
            ));
        }
        if let Some(path) = self.evidence.not_found_since(self.user, self.started) {
            let text = format!(
                "the server has no {path}; rustic panicked: {}",
                brief(&message)
            );
            return if path.contains("/index/") && self.evidence.gc_since(self.started) {
                BackendError::Raced(format!("a GC replaced an index file: {text}"))
            } else {
                BackendError::Data(text)
            };
        }
        match from_text(message) {
            BackendError::Failed(message) => BackendError::Panicked(message),
            classified => classified,
        }
    }
}

/// An error that carries its text only.
fn from_text(text: String) -> BackendError {
    match text::class(&text) {
        Some(TextClass::NotThrough) => BackendError::NotThrough(text),
        Some(TextClass::Data) => BackendError::Data(text),
        Some(TextClass::Local) => BackendError::Local(text),
        None => BackendError::Failed(text),
    }
}

/// Errors of operations run directly on the repository directory (the
/// server's GC, listing, check): no request, so no evidence and no transport.
impl From<Box<RusticError>> for BackendError {
    fn from(error: Box<RusticError>) -> Self {
        match typed(&*error) {
            Some(Typed::Local) | None => from_text(error.display_log()),
            Some(_) => BackendError::Failed(error.display_log()),
        }
    }
}

/// What the types in an error's chain say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typed {
    NotThrough,
    /// HTTP 404 for an index file.
    IndexNotFound,
    /// HTTP 404 for any other repository file.
    NotFound,
    /// The server answered with an error of its own (5xx, other 4xx), or an
    /// answer the client could not decode.
    ServerError,
    /// The local file system failed (restore target, cache): full, read-only,
    /// a name too long, no permission.
    Local,
    /// Data read did not decode (a compressed blob cut short or garbled).
    Damaged,
    /// An I/O error of another kind.
    Unknown,
}

/// The HTTP client's error in the chain, if any: `Some(Some(status))` an
/// answer with that status, `Some(None)` no answer at all (connection,
/// timeout).
pub(super) fn http_answer(error: &(dyn StdError + 'static)) -> Option<Option<u16>> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<reqwest::Error>() {
            return Some(http.status().map(|s| s.as_u16()));
        }
        current = error.source();
    }
    None
}

/// The first HTTP or I/O error in the chain, and what it says.
fn typed(error: &(dyn StdError + 'static)) -> Option<Typed> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<reqwest::Error>() {
            return Some(from_http(http));
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            // The HTTP client's own I/O errors come wrapped in its error
            // type (found above); a bare one is the local file system's, or
            // a decoder's that read damaged data.
            return Some(from_io(io.kind()));
        }
        current = error.source();
    }
    None
}

fn from_io(kind: std::io::ErrorKind) -> Typed {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::StorageFull
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::InvalidFilename
        | ErrorKind::PermissionDenied
        | ErrorKind::QuotaExceeded
        | ErrorKind::FileTooLarge
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::AlreadyExists => Typed::Local,
        ErrorKind::InvalidData | ErrorKind::UnexpectedEof => Typed::Damaged,
        _ => Typed::Unknown,
    }
}

fn from_http(error: &reqwest::Error) -> Typed {
    if let Some(status) = error.status() {
        return match status.as_u16() {
            401 | 403 => Typed::NotThrough,
            404 if error.url().is_some_and(|u| u.path().contains("/index/")) => {
                Typed::IndexNotFound
            }
            404 => Typed::NotFound,
            _ => Typed::ServerError,
        };
    }
    if error.is_decode() {
        return Typed::ServerError;
    }
    // No answer at all: connection, timeout, a body cut short.
    Typed::NotThrough
}

/// What a message says when only text is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextClass {
    NotThrough,
    Data,
    Local,
}

/// rustic's fixed messages, for errors and panics that carry no type. Every
/// entry has a test below; nothing else in snapstorm reads error text.
pub mod text {
    use super::TextClass;

    const MESSAGES: [(&str, TextClass); 14] = [
        // Data missing or unreadable.
        ("not found in index", TextClass::Data),
        ("is missing in index", TextClass::Data),
        ("MAC check failed", TextClass::Data),
        ("Data decryption failed", TextClass::Data),
        ("does not match its id", TextClass::Data),
        ("Pack ID does not match", TextClass::Data),
        // Requests that did not get through, when only their text survived.
        ("error sending request", TextClass::NotThrough),
        (
            "connection closed before message completed",
            TextClass::NotThrough,
        ),
        ("Connection refused", TextClass::NotThrough),
        ("operation timed out", TextClass::NotThrough),
        // The local file system (os error texts).
        ("File name too long", TextClass::Local),
        ("No space left on device", TextClass::Local),
        ("Read-only file system", TextClass::Local),
        ("Disk quota exceeded", TextClass::Local),
    ];

    /// The class of the first known message `text` contains (the one
    /// lookup every tool's table goes through).
    pub fn class(text: &str) -> Option<TextClass> {
        crate::backend::process::first_message(&MESSAGES, text)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn is(text: &str, class: TextClass) {
            assert_eq!(super::class(text), Some(class), "{text}");
        }

        #[test]
        fn a_blob_missing_from_the_index_is_data() {
            is(
                "Error: Tree ID `18ac1e4c` not found in index",
                TextClass::Data,
            );
        }
        #[test]
        fn a_check_finding_a_missing_blob_is_data() {
            is("subtree blob 6a2b0c is missing in index", TextClass::Data);
        }
        #[test]
        fn a_failed_mac_is_data() {
            is(
                "called `Result::unwrap()` on an `Err` value: RusticError { kind: Cryptography, guidance: \"Data decryption failed, MAC check failed.\" }",
                TextClass::Data,
            );
        }
        #[test]
        fn a_decryption_failure_is_data() {
            is("Data decryption failed", TextClass::Data);
        }
        #[test]
        fn a_file_not_matching_its_id_is_data() {
            is(
                "data/ab/abcd: content does not match its id",
                TextClass::Data,
            );
        }
        #[test]
        fn a_pack_id_mismatch_is_data() {
            is(
                "Pack ID does not match, want 1a2b, got 3c4d",
                TextClass::Data,
            );
        }
        #[test]
        fn a_request_not_sent_did_not_get_through() {
            is(
                "error sending request for url (http://127.0.0.1:1/repo/config)",
                TextClass::NotThrough,
            );
        }
        #[test]
        fn a_closed_connection_did_not_get_through() {
            is(
                "connection closed before message completed",
                TextClass::NotThrough,
            );
        }
        #[test]
        fn a_refused_connection_did_not_get_through() {
            is(
                "tcp connect error: Connection refused (os error 111)",
                TextClass::NotThrough,
            );
        }
        #[test]
        fn a_timeout_did_not_get_through() {
            is("operation timed out", TextClass::NotThrough);
        }
        #[test]
        fn a_long_local_name_is_local() {
            is("File name too long (os error 36)", TextClass::Local);
        }
        #[test]
        fn a_full_local_disk_is_local() {
            is("No space left on device (os error 28)", TextClass::Local);
        }
        #[test]
        fn a_read_only_local_disk_is_local() {
            is("Read-only file system (os error 30)", TextClass::Local);
        }
        #[test]
        fn a_local_quota_is_local() {
            is("Disk quota exceeded (os error 122)", TextClass::Local);
        }
        #[test]
        fn anything_else_is_unknown() {
            assert_eq!(
                super::class("HTTP status server error (500 Internal Server Error)"),
                None
            );
            assert_eq!(
                super::class("401 Unauthorized"),
                None,
                "refusals are known by evidence and type"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::embedded::evidence::Disturbance;
    use crate::engine::traits::ErrorClass;
    use rustic_core::ErrorKind;

    fn rustic(text: &str) -> Box<RusticError> {
        RusticError::new(ErrorKind::Other, text.to_owned())
    }

    fn context(evidence: &Evidence) -> CallContext<'_> {
        CallContext {
            evidence,
            user: "client-1",
            started: Instant::now(),
        }
    }

    #[test]
    fn evidence_comes_before_the_text() {
        let evidence = Evidence::new();
        let call = context(&evidence);
        let mac = rustic("Data decryption failed, MAC check failed.");
        assert_eq!(call.classify(&mac).class(), ErrorClass::Data);
        evidence.request("client-2", Disturbance::Dropped);
        assert_eq!(
            call.classify(&mac).class(),
            ErrorClass::Data,
            "another client's dropped request is no evidence"
        );
        evidence.request("client-1", Disturbance::InjectedError);
        assert_eq!(call.classify(&mac).class(), ErrorClass::NotThrough);
    }

    #[test]
    fn a_500_nobody_injected_is_not_a_transport_error() {
        let evidence = Evidence::new();
        let call = context(&evidence);
        let server_error = call.classify(&rustic(
            "HTTP status server error (500 Internal Server Error) for url (http://127.0.0.1:1/repo/data/ab/abcd)",
        ));
        assert_eq!(server_error.class(), ErrorClass::Other);
    }

    /// An HTTP error as rustic_backend hands it over: the HTTP client's error
    /// as the source of a rustic error.
    fn http_error(status: u16, path: &str) -> Box<RusticError> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let head =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).unwrap();
        });
        let error = reqwest::blocking::get(format!("http://{addr}{path}"))
            .unwrap()
            .error_for_status()
            .unwrap_err();
        answer.join().unwrap();
        RusticError::with_source(ErrorKind::Backend, "backoff failed", error)
    }

    #[test]
    fn a_404_on_an_index_file_is_a_race_with_a_gc_and_lost_data_without() {
        let evidence = Evidence::new();
        let missing_index = http_error(404, "/repo/index/35c4");
        assert_eq!(
            context(&evidence).classify(&missing_index).class(),
            ErrorClass::Data
        );
        let call = context(&evidence);
        drop(evidence.gc_running());
        assert_eq!(call.classify(&missing_index).class(), ErrorClass::Raced);
        let missing_pack = http_error(404, "/repo/data/ab/abcd");
        assert_eq!(
            call.classify(&missing_pack).class(),
            ErrorClass::Data,
            "a GC never removes a pack in use"
        );
    }

    #[test]
    fn http_statuses_by_type() {
        let evidence = Evidence::new();
        let call = context(&evidence);
        assert_eq!(
            call.classify(&http_error(401, "/repo/config")).class(),
            ErrorClass::NotThrough
        );
        assert_eq!(
            call.classify(&http_error(500, "/repo/data/ab/abcd"))
                .class(),
            ErrorClass::Other
        );
        let refused = reqwest::blocking::get("http://127.0.0.1:1/repo/config").unwrap_err();
        let refused = RusticError::with_source(ErrorKind::Backend, "backoff failed", refused);
        assert_eq!(call.classify(&refused).class(), ErrorClass::NotThrough);
        let io = |kind: std::io::ErrorKind| {
            let error =
                RusticError::with_source(ErrorKind::InputOutput, "io", std::io::Error::from(kind));
            call.classify(&error).class()
        };
        assert_eq!(io(std::io::ErrorKind::StorageFull), ErrorClass::Local);
        assert_eq!(io(std::io::ErrorKind::InvalidFilename), ErrorClass::Local);
        assert_eq!(
            io(std::io::ErrorKind::InvalidData),
            ErrorClass::Data,
            "a compressed blob that does not decode is damaged data"
        );
        assert_eq!(io(std::io::ErrorKind::Interrupted), ErrorClass::Other);
    }

    #[test]
    fn a_panic_after_the_server_found_no_pack_is_missing_data() {
        use crate::server::RequestObserver;
        let evidence = Evidence::new();
        let call = context(&evidence);
        let backoff = "called `Result::unwrap()` on an `Err` value: Backoff failed";
        assert_eq!(
            call.classify_panic(backoff.into()).class(),
            ErrorClass::Other
        );
        evidence.not_found("client-2", "/repo/data/ab/abcd");
        assert_eq!(
            call.classify_panic(backoff.into()).class(),
            ErrorClass::Other,
            "another client's 404 says nothing of this call"
        );
        evidence.not_found("client-1", "/repo/locks/ab");
        assert_eq!(
            call.classify_panic(backoff.into()).class(),
            ErrorClass::Other
        );
        evidence.not_found("client-1", "/repo/data/ab/abcd");
        let error = call.classify_panic(backoff.into());
        assert_eq!(error.class(), ErrorClass::Data);
        assert!(error.to_string().contains("/repo/data/ab/abcd"), "{error}");
    }

    #[test]
    fn panics_are_data_when_they_say_so() {
        let evidence = Evidence::new();
        let call = context(&evidence);
        assert_eq!(
            call.classify_panic("MAC check failed".into()).class(),
            ErrorClass::Data
        );
        assert_eq!(
            call.classify_panic("index out of bounds".into()).class(),
            ErrorClass::Other
        );
        assert_eq!(
            call.classify_panic(
                "called `Result::unwrap()` on an `Err` value: No space left on device (os error 28)"
                    .into()
            )
            .class(),
            ErrorClass::Local,
            "a restore target that cannot be written is snapstorm's side"
        );
        evidence.server_stopped();
        assert_eq!(
            call.classify_panic("MAC check failed".into()).class(),
            ErrorClass::NotThrough
        );
    }
}
