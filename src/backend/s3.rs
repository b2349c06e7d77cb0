//! rustic_core's storage on S3-compatible object storage: the repository's
//! files are objects, laid out as restic lays them out on S3
//! (`PREFIX/config`, `PREFIX/data/ab/ab…`, `PREFIX/snapshots/…`), so restic
//! clients on the same bucket and prefix read what rustic_core clients
//! wrote, and the other way round.
//!
//! Each request is presigned (`rusty-s3`: only the host is signed) and sent
//! with reqwest's blocking client, as rustic's REST backend sends its own,
//! with the same retries; an error is a `reqwest::Error` under rustic's, so
//! the backend's classification reads its HTTP status as for REST. The
//! signature is in the query, which no error keeps: errors carry the
//! object's URL without it.

use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use bytes::Bytes;
use reqwest::blocking::{Body, Client};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};
use rusty_s3::actions::{DeleteObject, GetObject, HeadObject, ListObjectsV2, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials};

use super::location::S3Location;

/// A file's path in a restic repository: `data/ab/<id>` for a pack (a
/// subdirectory per id's first byte), `<kind>/<id>` for the others. The same
/// in a directory and, under the prefix, in a bucket.
pub fn repository_path(tpe: FileType, name: &str) -> String {
    match tpe {
        FileType::Config => "config".to_owned(),
        FileType::Pack => format!("{}/{}/{name}", tpe.dirname(), name.get(..2).unwrap_or(name)),
        _ => format!("{}/{name}", tpe.dirname()),
    }
}

/// How long a presigned request stays valid: a pack's upload on a slow
/// network included.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// How patient the backend is: as rustic's REST backend's options.
#[derive(Debug, Clone, Copy)]
pub struct S3Patience {
    /// Attempts after the first, for answers other than 4xx.
    pub retries: usize,
    /// One request, from sending to the last byte of the answer.
    pub timeout: Duration,
}

/// A repository in a bucket, under a prefix.
pub struct S3Backend {
    bucket: Bucket,
    credentials: Credentials,
    location: S3Location,
    client: Client,
    backoff: ExponentialBuilder,
}

impl S3Backend {
    /// The repository at `location` (its endpoint is where requests go:
    /// the storage itself, or a proxy in front of it).
    pub fn new(location: &S3Location, patience: S3Patience) -> RusticResult<S3Backend> {
        let backend_error =
            |what: &'static str, error: Box<dyn std::error::Error + Send + Sync>| {
                RusticError::with_source(ErrorKind::Backend, what, error)
            };
        let (bucket, credentials) = super::bucket::signing(location)
            .map_err(|e| backend_error("Cannot name the bucket", e.into()))?;
        let client = Client::builder()
            .timeout(patience.timeout)
            .tls_certs_merge(location.ca().for_reqwest())
            .build()
            .map_err(|e| backend_error("Failed to build HTTP client", e.into()))?;
        Ok(S3Backend {
            bucket,
            credentials,
            location: location.clone(),
            client,
            backoff: ExponentialBuilder::default()
                .with_max_delay(Duration::from_secs(30))
                .with_max_times(patience.retries),
        })
    }

    /// The object a file of the repository is: packs under `data/` in
    /// subdirectories named by their id's first byte, as restic keeps them.
    fn key(&self, tpe: FileType, id: &Id) -> String {
        self.location
            .key(&repository_path(tpe, id.to_hex().as_str()))
    }

    /// Runs `attempt` until it succeeds, fails with a 4xx answer (asking
    /// again changes nothing), or the retries are spent.
    fn retrying<T>(&self, attempt: impl FnMut() -> Result<T, reqwest::Error>) -> RusticResult<T> {
        attempt
            .retry(self.backoff)
            .when(|error| {
                error
                    .status()
                    .is_none_or(|status| !status.is_client_error())
            })
            .notify(|error, after| log::warn!("S3: {error}; retrying in {after:?}"))
            .call()
            .map_err(|error| {
                RusticError::with_source(
                    ErrorKind::Backend,
                    "The S3 storage did not answer as asked.",
                    error,
                )
            })
    }

    /// Sends a presigned request, answered with success or an error with
    /// the URL's signature taken out.
    fn send(
        &self,
        url: url::Url,
        request: impl FnOnce(&Client, &str) -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, reqwest::Error> {
        request(&self.client, url.as_str())
            .send()
            .and_then(|answer| answer.error_for_status())
            .map_err(unsigned)
    }

    fn get(&self, key: &str, range: Option<String>) -> RusticResult<Bytes> {
        self.retrying(|| {
            let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
            self.send(url, |client, url| {
                let get = client.get(url);
                match &range {
                    Some(range) => get.header(reqwest::header::RANGE, range),
                    None => get,
                }
            })?
            .bytes()
            .map_err(unsigned)
        })
    }
}

impl S3Backend {
    fn put(&self, key: &str, content: BytesList) -> RusticResult<()> {
        let size = content.size() as u64;
        self.retrying(|| {
            let url = PutObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
            let body = Body::sized(content.clone().reader(), size);
            self.send(url, |c, u| c.put(u).body(body)).map(drop)
        })
    }

    /// Every object of `tpe`: its id, size and ETag (which changes when
    /// the object is written again, even at the same size).
    pub fn list_objects(&self, tpe: FileType) -> RusticResult<Vec<Listed>> {
        let prefix = format!("{}/", self.location.key(tpe.dirname()));
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.retrying(|| {
                let mut list = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
                list.with_prefix(prefix.as_str());
                if let Some(token) = &token {
                    list.with_continuation_token(token.as_str());
                }
                let text = self
                    .send(list.sign(SIGNED_FOR), |c, u| c.get(u))?
                    .text()
                    .map_err(unsigned)?;
                Ok(text)
            })?;
            let page = ListObjectsV2::parse_response(&page).map_err(|e| {
                RusticError::with_source(
                    ErrorKind::Backend,
                    "The S3 storage's listing of `{prefix}` is not one.",
                    e,
                )
                .attach_context("prefix", prefix.clone())
            })?;
            for object in page.contents {
                // Keys come percent-encoded (rusty-s3 asks for
                // `encoding-type=url`).
                let key = super::location::decode(&object.key);
                let name = key.rsplit('/').next().unwrap_or_default();
                if let Some(id) = Id::parse_some(name, tpe) {
                    found.push(Listed {
                        id,
                        size: object.size,
                        etag: object.etag,
                    });
                }
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(found),
            }
        }
    }

    /// Writes a file rustic_core has no type for (restic's `locks/…`),
    /// named by its path in the repository.
    pub fn write_other(&self, name: &str, content: Vec<u8>) -> RusticResult<()> {
        self.put(&self.location.key(name), content.into())
    }
}

/// One object a listing found.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: Id,
    pub size: u64,
    pub etag: String,
}

/// The error without the query of its URL: the signature, and the access
/// key's id, are there.
fn unsigned(mut error: reqwest::Error) -> reqwest::Error {
    if let Some(url) = error.url_mut() {
        url.set_query(None);
    }
    error
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let key = self.location.key("config");
            let url = HeadObject::new(&self.bucket, Some(&self.credentials), &key).sign(SIGNED_FOR);
            // Absent only when the storage says so: a config that cannot be
            // read is not one that is not there (an init over it would
            // make a second repository).
            return self.retrying(|| match self.send(url.clone(), |c, u| c.head(u)) {
                Ok(_) => Ok(vec![(Id::default(), 0)]),
                Err(error) if error.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                    Ok(Vec::new())
                }
                Err(error) => Err(error),
            });
        }
        Ok(self
            .list_objects(tpe)?
            .into_iter()
            .map(|object| (object.id, u32::try_from(object.size).unwrap_or(u32::MAX)))
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.get(&self.key(tpe, id), None)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let last = offset + length.max(1) - 1;
        self.get(&self.key(tpe, id), Some(format!("bytes={offset}-{last}")))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    /// The bucket is made (or found) before the repository is opened.
    fn create(&self) -> RusticResult<()> {
        Ok(())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        self.put(&self.key(tpe, id), content)
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(tpe, id);
        self.retrying(|| {
            let url =
                DeleteObject::new(&self.bucket, Some(&self.credentials), &key).sign(SIGNED_FOR);
            self.send(url, |c, u| c.delete(u)).map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::location::RepositoryLocation;

    fn backend(text: &str) -> S3Backend {
        let RepositoryLocation::S3(s3) = RepositoryLocation::parse(text).unwrap() else {
            panic!("{text} is no s3: location");
        };
        let env = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            _ => None,
        };
        let patience = S3Patience {
            retries: 0,
            timeout: Duration::from_secs(1),
        };
        S3Backend::new(&s3.with_credentials(env).unwrap(), patience).unwrap()
    }

    #[test]
    fn files_are_laid_out_as_restic_lays_them_out_on_s3() {
        let id: Id = "ab12000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        let prefixed = backend("s3:http://127.0.0.1:7480/bucket/team/a");
        assert_eq!(prefixed.key(FileType::Config, &id), "team/a/config");
        assert_eq!(
            prefixed.key(FileType::Pack, &id),
            format!("team/a/data/ab/{}", id.to_hex().as_str())
        );
        assert_eq!(
            prefixed.key(FileType::Snapshot, &id),
            format!("team/a/snapshots/{}", id.to_hex().as_str())
        );
        let root = backend("s3:http://127.0.0.1:7480/bucket");
        assert_eq!(
            root.key(FileType::Index, &id),
            format!("index/{}", id.to_hex().as_str())
        );
        assert_eq!(root.location(), "s3:http://127.0.0.1:7480/bucket");
    }

    #[test]
    fn names_follow_restics_layout() {
        let id = "ab12".repeat(16);
        assert_eq!(
            repository_path(FileType::Pack, &id),
            format!("data/ab/{id}")
        );
        assert_eq!(repository_path(FileType::Index, &id), format!("index/{id}"));
        assert_eq!(
            repository_path(FileType::Snapshot, &id),
            format!("snapshots/{id}")
        );
    }

    #[test]
    fn an_error_keeps_no_signature() {
        // Nothing listens on port 9 here: the request fails at once.
        let error = backend("s3:http://127.0.0.1:9/bucket")
            .read_full(FileType::Config, &Id::default())
            .unwrap_err();
        let text = error.display_log();
        assert!(text.contains("/bucket/config"), "{text}");
        assert!(!text.contains("X-Amz"), "{text}");
        assert!(!text.contains("AKID"), "{text}");
    }
}
