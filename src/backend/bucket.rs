//! The S3 bucket a repository lives in, asked before anything is written:
//! that the storage answers, takes the keys, and has the bucket, which is
//! created when it does not (kopia refuses a bucket that does not exist;
//! restic creates one itself, the others do not). Requests are presigned
//! (`rusty-s3`) and sent with reqwest, so no key is in a URL anyone sees:
//! errors name the location, never the request.

use std::time::Duration;

use rusty_s3::actions::{CreateBucket, HeadBucket, HeadObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::location::S3Location;

/// How long one request to the storage may take before it counts as
/// unreachable.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long a presigned request stays valid: only as long as it is sent.
const SIGNED_FOR: Duration = Duration::from_secs(60);

/// Why the bucket cannot be used; each text names the fix.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("cannot reach {location} ({why}); start the storage there, or correct --repository")]
    Unreachable { location: String, why: String },
    #[error(
        "{location} refused the S3 keys (HTTP {status}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key pair of that storage"
    )]
    Refused { location: String, status: u16 },
    #[error("{location}: {what} answered HTTP {status}; check the storage's log")]
    Answered {
        location: String,
        what: &'static str,
        status: u16,
    },
}

/// Whether the bucket was there or was made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketState {
    Existed,
    Created,
}

/// A bucket and the keys to it.
struct Signed {
    bucket: Bucket,
    credentials: Credentials,
    client: reqwest::Client,
    location: String,
}

/// The bucket (path-style) and the keys every request to `s3` is signed
/// with.
pub fn signing(s3: &S3Location) -> Result<(Bucket, Credentials), rusty_s3::BucketError> {
    let bucket = Bucket::new(
        s3.endpoint().clone(),
        UrlStyle::Path,
        s3.bucket().to_owned(),
        s3.region().to_owned(),
    )?;
    let credentials = Credentials::new(
        s3.access_key().unwrap_or_default(),
        s3.secret_key().map(|k| k.expose()).unwrap_or_default(),
    );
    Ok((bucket, credentials))
}

impl Signed {
    fn new(s3: &S3Location) -> Result<Signed, BucketError> {
        let location = s3.to_string();
        let (bucket, credentials) = signing(s3).map_err(|e| BucketError::Unreachable {
            location: location.clone(),
            why: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .timeout(ANSWER_WITHIN)
            .tls_certs_merge(s3.ca().for_reqwest())
            .build()
            .map_err(|e| BucketError::Unreachable {
                location: location.clone(),
                why: e.to_string(),
            })?;
        Ok(Signed {
            bucket,
            credentials,
            client,
            location,
        })
    }

    /// Sends a presigned request; its HTTP status, or why none came.
    async fn send(&self, method: reqwest::Method, url: url::Url) -> Result<u16, BucketError> {
        let answer = self
            .client
            .request(method, url.as_str())
            .send()
            .await
            .map_err(|e| BucketError::Unreachable {
                location: self.location.clone(),
                // Without the URL: it carries the signature.
                why: e.without_url().to_string(),
            })?;
        Ok(answer.status().as_u16())
    }

    fn refused(&self, status: u16) -> BucketError {
        BucketError::Refused {
            location: self.location.clone(),
            status,
        }
    }

    fn answered(&self, what: &'static str, status: u16) -> BucketError {
        BucketError::Answered {
            location: self.location.clone(),
            what,
            status,
        }
    }
}

/// Makes sure the bucket exists: asks for it, and creates it when the
/// storage says there is none.
pub async fn ensure_bucket(s3: &S3Location) -> Result<BucketState, BucketError> {
    let signed = Signed::new(s3)?;
    let head = HeadBucket::new(&signed.bucket, Some(&signed.credentials)).sign(SIGNED_FOR);
    match signed.send(reqwest::Method::HEAD, head).await? {
        200..=299 => return Ok(BucketState::Existed),
        status @ (401 | 403) => return Err(signed.refused(status)),
        404 => {}
        status => return Err(signed.answered("HEAD bucket", status)),
    }
    let create = CreateBucket::new(&signed.bucket, &signed.credentials).sign(SIGNED_FOR);
    match signed.send(reqwest::Method::PUT, create).await? {
        200..=299 => Ok(BucketState::Created),
        // Made by someone else in between: as good.
        409 => Ok(BucketState::Existed),
        status @ (401 | 403) => Err(signed.refused(status)),
        status => Err(signed.answered("PUT bucket", status)),
    }
}

/// Whether the object `name` of the repository (under the location's
/// prefix) exists.
pub async fn object_exists(s3: &S3Location, name: &str) -> Result<bool, BucketError> {
    let signed = Signed::new(s3)?;
    let key = s3.key(name);
    let head = HeadObject::new(&signed.bucket, Some(&signed.credentials), &key).sign(SIGNED_FOR);
    match signed.send(reqwest::Method::HEAD, head).await? {
        200..=299 => Ok(true),
        404 => Ok(false),
        status @ (401 | 403) => Err(signed.refused(status)),
        status => Err(signed.answered("HEAD object", status)),
    }
}
