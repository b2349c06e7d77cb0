//! Where the repository under test lives, written as restic writes it:
//! `rest:http(s)://HOST:PORT/PATH` for a REST server snapstorm does not run,
//! `s3:http(s)://HOST:PORT/BUCKET[/PREFIX]` for S3-compatible object storage,
//! a directory path (local or mounted), or nothing for the embedded
//! server's own directory in the state dir.
//!
//! A REST server's password is a secret: it is held in a [`Secret`] that
//! never prints itself, and a location prints (and is recorded) without its
//! user and password, so no trace, report, log line or console shows it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::tls::CaCerts;

/// Environment variables restic reads a REST server's user and password from.
pub const REST_USERNAME_ENV: &str = "RESTIC_REST_USERNAME";
pub const REST_PASSWORD_ENV: &str = "RESTIC_REST_PASSWORD";

/// Where a new state dir takes the password of a repository another run
/// made, as restic takes a repository's password.
pub const REPOSITORY_PASSWORD_ENV: &str = "RESTIC_PASSWORD";

/// Environment variables the S3 keys and region come from, as restic,
/// kopia and the AWS tools read them.
pub const S3_ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const S3_SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
pub const S3_REGION_ENV: &str = "AWS_DEFAULT_REGION";
/// The region when `AWS_DEFAULT_REGION` names none (most S3-compatible
/// stores take any).
pub const S3_DEFAULT_REGION: &str = "us-east-1";

/// Prefixes of restic's other backends: recognised, so that they are
/// refused by name rather than taken for a directory called `sftp:…`.
const OTHER_BACKENDS: [&str; 7] = [
    "sftp:", "b2:", "azure:", "gs:", "swift:", "rclone:", "opendal:",
];

/// A value that must not be shown: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a location cannot be used; each text names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "--repository {0}…: that storage is not yet supported; give rest:http(s)://HOST:PORT/PATH, s3:http(s)://HOST:PORT/BUCKET or a directory"
    )]
    Unsupported(String),
    #[error("--repository {location}: {why}; write it as rest:http(s)://HOST:PORT/PATH")]
    BadUrl { location: String, why: String },
    #[error(
        "--repository: an empty location; give rest:http(s)://HOST:PORT/PATH, s3:http(s)://HOST:PORT/BUCKET or a directory"
    )]
    Empty,
    #[error("--repository {location}: {why}; write it as s3:http(s)://HOST:PORT/BUCKET[/PREFIX]")]
    BadS3 { location: String, why: String },
    #[error(
        "--cacert is for storage reached over https, and {0} is not; drop --cacert (and RESTIC_CACERT)"
    )]
    CaCertWithoutHttps(String),
    #[error(
        "--repository {0}: no S3 keys; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to a key pair of that storage"
    )]
    S3Keys(String),
    #[error("--repository {path}: {why}")]
    Directory { path: String, why: String },
    #[error("{path}: {why}")]
    CredentialsFile { path: String, why: String },
}

/// A REST server snapstorm does not run: its address, the path of the
/// repository on it, and the user and password it wants, if any.
#[derive(Clone, PartialEq, Eq)]
pub struct RestLocation {
    /// Scheme, host, port and path (ending in `/`); no user, no password.
    url: url::Url,
    user: Option<String>,
    password: Option<Secret>,
    /// The password came written in the location (visible in `ps` while
    /// snapstorm starts): worth a warning.
    password_in_url: bool,
    /// Over https: the certificates trusted besides the system's.
    ca: CaCerts,
}

impl fmt::Debug for RestLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestLocation")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .field("password", &self.password)
            .field("ca", &self.ca)
            .finish()
    }
}

impl RestLocation {
    /// `host:port`, as the proxy connects to it.
    pub fn authority(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or_default(),
            self.url.port_or_known_default().unwrap_or(80)
        )
    }

    /// The repository's path on the server, starting and ending with `/`.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The host name (or address) the server's certificate must name.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// Reached over https, trusting [`RestLocation::ca`] besides the
    /// system's roots.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    pub fn ca(&self) -> &CaCerts {
        &self.ca
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Whether the password was written in the location itself.
    pub fn password_in_url(&self) -> bool {
        self.password_in_url
    }

    /// Takes the user and password from where restic takes them, unless
    /// the location named a user itself: `RESTIC_REST_USERNAME` and
    /// `RESTIC_REST_PASSWORD`, else a file holding `USER:PASSWORD` that
    /// only its owner can read.
    pub fn with_credentials(
        mut self,
        env: impl Fn(&str) -> Option<String>,
        file: Option<&Path>,
    ) -> Result<RestLocation, LocationError> {
        if self.user.is_some() {
            return Ok(self);
        }
        if let Some(path) = file {
            let (user, password) = read_credentials_file(path)?;
            self.user = Some(user);
            self.password = Some(password);
            return Ok(self);
        }
        if let Some(user) = env(REST_USERNAME_ENV).filter(|u| !u.is_empty()) {
            self.user = Some(user);
            self.password = env(REST_PASSWORD_ENV).map(Secret);
        }
        Ok(self)
    }
}

impl fmt::Display for RestLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rest:{}", self.url)
    }
}

/// An S3 bucket (and a prefix in it) on an S3-compatible store, reached
/// path-style over http or https, with the key pair and region from the
/// environment.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http(s)://HOST:PORT/`: the endpoint alone.
    endpoint: url::Url,
    /// Over https: the certificates trusted besides the system's.
    ca: CaCerts,
    bucket: String,
    /// The repository's place in the bucket: no leading or trailing `/`,
    /// empty for the bucket's root.
    prefix: String,
    region: String,
    access_key: Option<String>,
    secret_key: Option<Secret>,
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Location")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key)
            .field("ca", &self.ca)
            .finish()
    }
}

impl S3Location {
    /// `http(s)://HOST:PORT/`.
    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    /// The host name (or address) the storage's certificate must name.
    pub fn host(&self) -> &str {
        self.endpoint.host_str().unwrap_or_default()
    }

    /// Reached over https, trusting [`S3Location::ca`] besides the
    /// system's roots.
    pub fn is_https(&self) -> bool {
        self.endpoint.scheme() == "https"
    }

    pub fn ca(&self) -> &CaCerts {
        &self.ca
    }

    /// The same bucket, prefix and keys, reached at `addr` (a client's own
    /// port of the fault proxy) instead of the storage's own address.
    pub fn through(&self, addr: std::net::SocketAddr) -> S3Location {
        let mut through = self.clone();
        through.ca = CaCerts::default();
        through.endpoint =
            url::Url::parse(&format!("http://{addr}/")).expect("a socket address is a URL host");
        through
    }

    /// `HOST:PORT`, as kopia's `--endpoint` takes it.
    pub fn authority(&self) -> String {
        format!(
            "{}:{}",
            self.endpoint.host_str().unwrap_or_default(),
            self.endpoint.port_or_known_default().unwrap_or(80)
        )
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix in the bucket, without slashes at its ends; empty for
    /// the bucket's root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of an object of the repository: `PREFIX/NAME`.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The access key id, once [`S3Location::with_credentials`] found it.
    pub fn access_key(&self) -> Option<&str> {
        self.access_key.as_deref()
    }

    pub fn secret_key(&self) -> Option<&Secret> {
        self.secret_key.as_ref()
    }

    /// Takes the key pair and region from where restic and kopia take
    /// them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (both needed) and
    /// `AWS_DEFAULT_REGION` (else `us-east-1`).
    pub fn with_credentials(
        mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Location, LocationError> {
        let present = |name: &str| env(name).filter(|v| !v.is_empty());
        match (present(S3_ACCESS_KEY_ENV), present(S3_SECRET_KEY_ENV)) {
            (Some(access), Some(secret)) => {
                self.access_key = Some(access);
                self.secret_key = Some(Secret(secret));
            }
            _ => return Err(LocationError::S3Keys(self.to_string())),
        }
        if let Some(region) = present(S3_REGION_ENV) {
            self.region = region;
        }
        Ok(self)
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3:{}{}", self.endpoint, self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Reads `USER:PASSWORD` (one line) from a file no one but its owner may
/// read: a password file others can read is refused, as ssh refuses a key.
fn read_credentials_file(path: &Path) -> Result<(String, Secret), LocationError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let error = |why: String| LocationError::CredentialsFile {
        path: shown.clone(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(error(format!(
            "others may read it (mode {mode:o}); run `chmod 600 {shown}`"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let line = text.lines().next().unwrap_or_default();
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Ok((user.to_owned(), Secret(password.to_owned())))
        }
        _ => Err(error("its first line is not USER:PASSWORD".into())),
    }
}

/// Where the repository under test lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RepositoryLocation {
    /// The embedded server's own directory in the state dir.
    #[default]
    Embedded,
    /// A directory (local, NFS, FUSE, …) the embedded REST server serves.
    Directory(PathBuf),
    /// A REST server snapstorm does not run.
    Rest(RestLocation),
    /// A bucket of S3-compatible object storage.
    S3(S3Location),
}

impl RepositoryLocation {
    /// Parses restic's syntax: `rest:URL`, `local:PATH` or a path.
    /// Credentials in the URL are kept (and warned about by the caller);
    /// others come from [`RestLocation::with_credentials`].
    pub fn parse(text: &str) -> Result<RepositoryLocation, LocationError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LocationError::Empty);
        }
        if let Some(url) = text.strip_prefix("rest:") {
            return parse_rest(url).map(RepositoryLocation::Rest);
        }
        if let Some(url) = text.strip_prefix("s3:") {
            return parse_s3(url).map(RepositoryLocation::S3);
        }
        if let Some(prefix) = OTHER_BACKENDS.iter().find(|p| text.starts_with(*p)) {
            return Err(LocationError::Unsupported(prefix.to_string()));
        }
        let path = text.strip_prefix("local:").unwrap_or(text);
        if path.is_empty() {
            return Err(LocationError::Empty);
        }
        Ok(RepositoryLocation::Directory(PathBuf::from(path)))
    }

    /// Trusts `ca` (`--cacert`'s certificates) besides the system's roots:
    /// only a location reached over https takes them.
    pub fn with_ca_certs(self, ca: CaCerts) -> Result<RepositoryLocation, LocationError> {
        if ca.is_empty() {
            return Ok(self);
        }
        match self {
            RepositoryLocation::Rest(rest) if rest.is_https() => {
                Ok(RepositoryLocation::Rest(RestLocation { ca, ..rest }))
            }
            RepositoryLocation::S3(s3) if s3.is_https() => {
                Ok(RepositoryLocation::S3(S3Location { ca, ..s3 }))
            }
            other => Err(LocationError::CaCertWithoutHttps(other.to_string())),
        }
    }

    /// How the state dir records it: the same text for the same storage,
    /// without any user or password. `None` for the embedded directory.
    pub fn recorded(&self) -> Option<String> {
        match self {
            RepositoryLocation::Embedded => None,
            other => Some(other.to_string()),
        }
    }

    /// A repository of its own under this location, named `name`: the
    /// directory `DIR/NAME`, the path `PATH/NAME/` on the REST server, the
    /// prefix `PREFIX/NAME` in the bucket (credentials kept). For runs that
    /// each want a fresh repository on one storage (replay's tries, shrink's
    /// candidates). The embedded one stays itself: each state dir has its own.
    pub fn within(&self, name: &str) -> RepositoryLocation {
        match self {
            RepositoryLocation::Embedded => RepositoryLocation::Embedded,
            RepositoryLocation::Directory(dir) => RepositoryLocation::Directory(dir.join(name)),
            RepositoryLocation::Rest(rest) => {
                let mut rest = rest.clone();
                let path = format!("{}{name}/", rest.url.path());
                rest.url.set_path(&path);
                RepositoryLocation::Rest(rest)
            }
            RepositoryLocation::S3(s3) => {
                let mut s3 = s3.clone();
                s3.prefix = s3.key(name);
                RepositoryLocation::S3(s3)
            }
        }
    }

    /// The short form the console's header shows (`rest 127.0.0.1:8000/repo`).
    pub fn short(&self) -> String {
        match self {
            RepositoryLocation::Embedded => "embedded".into(),
            RepositoryLocation::Directory(path) => format!("dir {}", path.display()),
            RepositoryLocation::Rest(rest) => format!(
                "rest {}{}",
                rest.authority(),
                rest.path().trim_end_matches('/')
            ),
            RepositoryLocation::S3(s3) => {
                let place = format!("{}/{}", s3.bucket(), s3.prefix());
                format!("s3 {}/{}", s3.authority(), place.trim_end_matches('/'))
            }
        }
    }
}

impl fmt::Display for RepositoryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryLocation::Embedded => f.write_str("embedded"),
            RepositoryLocation::Directory(path) => write!(f, "{}", path.display()),
            RepositoryLocation::Rest(rest) => rest.fmt(f),
            RepositoryLocation::S3(s3) => s3.fmt(f),
        }
    }
}

fn parse_rest(text: &str) -> Result<RestLocation, LocationError> {
    // The URL as given may hold a password: errors name it without one.
    let bad = |why: &str| LocationError::BadUrl {
        location: format!("rest:{}", without_userinfo(text)),
        why: why.to_owned(),
    };
    let mut url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(bad(&format!("the scheme `{other}` is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    let user = (!url.username().is_empty()).then(|| decode(url.username()));
    let password = url.password().map(|p| Secret(decode(p)));
    let password_in_url = password.is_some();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(RestLocation {
        url,
        user,
        password,
        password_in_url,
        ca: CaCerts::default(),
    })
}

/// `http(s)://HOST:PORT/BUCKET[/PREFIX]`; restic's form without a scheme
/// (`s3.amazonaws.com/bucket`) means https.
fn parse_s3(text: &str) -> Result<S3Location, LocationError> {
    let shown = format!("s3:{}", without_userinfo(text));
    let bad = |why: &str| LocationError::BadS3 {
        location: shown.clone(),
        why: why.to_owned(),
    };
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("https://{text}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(&format!(
            "the scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "keys are not written in the location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    let path = url.path().trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(bad("it names no bucket"));
    }
    // S3's rule for bucket names (path-style): 3 to 63 of a-z, 0-9, `.`, `-`.
    let fits = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !fits {
        return Err(bad(&format!(
            "`{bucket}` is not a bucket name (3 to 63 of a-z, 0-9, `.` and `-`)"
        )));
    }
    let mut endpoint = url.clone();
    endpoint.set_path("/");
    Ok(S3Location {
        endpoint,
        ca: CaCerts::default(),
        bucket: bucket.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
        region: S3_DEFAULT_REGION.to_owned(),
        access_key: None,
        secret_key: None,
    })
}

/// A URL's user and password are percent-encoded in it (and S3 listings'
/// keys, asked for with `encoding-type=url`).
pub(crate) fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL text with anything before an `@` in its authority left out.
fn without_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(text: &str) -> RestLocation {
        match RepositoryLocation::parse(text).unwrap() {
            RepositoryLocation::Rest(rest) => rest,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn a_rest_url_parses_as_restic_writes_it() {
        let location = rest("rest:http://127.0.0.1:8000/repo");
        assert_eq!(location.authority(), "127.0.0.1:8000");
        assert_eq!(location.path(), "/repo/");
        assert_eq!(location.user(), None);
        assert_eq!(location.to_string(), "rest:http://127.0.0.1:8000/repo/");
        assert_eq!(
            RepositoryLocation::Rest(location.clone()).short(),
            "rest 127.0.0.1:8000/repo"
        );
        let root = rest("rest:http://backup.example:80/");
        assert_eq!(root.authority(), "backup.example:80");
        assert_eq!(root.path(), "/");
    }

    #[test]
    fn a_password_in_the_url_is_kept_but_never_shown() {
        let location = rest("rest:http://alice:s%40cret@127.0.0.1:8000/repo/");
        assert_eq!(location.user(), Some("alice"));
        assert_eq!(location.password().map(Secret::expose), Some("s@cret"));
        assert!(location.password_in_url());
        let whole = RepositoryLocation::Rest(location.clone());
        for shown in [whole.to_string(), whole.short(), whole.recorded().unwrap()] {
            assert!(!shown.contains("cret"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
        }
        let debug = format!("{whole:?}");
        assert!(!debug.contains("cret"), "{debug}");
        let secret = location.password().unwrap();
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        let error = RepositoryLocation::parse("rest:ftp://bob:hunter2@host/x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("ftp"), "{error}");
        let error = RepositoryLocation::parse("rest:https://bob:hunter2@/x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(RepositoryLocation::parse("rest:not a url").is_err());
        assert!(RepositoryLocation::parse("rest:http://h:1/p?x=1").is_err());
        assert_eq!(RepositoryLocation::parse(" "), Err(LocationError::Empty));
    }

    #[test]
    fn other_restic_backends_are_refused_by_name() {
        for text in ["sftp:host:/srv", "b2:bucket", "rclone:remote:x"] {
            let error = RepositoryLocation::parse(text).unwrap_err();
            assert!(matches!(error, LocationError::Unsupported(_)), "{text}");
            assert!(error.to_string().contains("not yet supported"), "{error}");
        }
    }

    fn s3(text: &str) -> S3Location {
        match RepositoryLocation::parse(text).unwrap() {
            RepositoryLocation::S3(s3) => s3,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn an_s3_url_parses_as_restic_writes_it() {
        let location = s3("s3:http://127.0.0.1:7480/backups/team/a/");
        assert_eq!(location.endpoint().as_str(), "http://127.0.0.1:7480/");
        assert_eq!(location.authority(), "127.0.0.1:7480");
        assert_eq!(location.bucket(), "backups");
        assert_eq!(location.prefix(), "team/a");
        assert_eq!(location.key("config"), "team/a/config");
        assert_eq!(location.region(), S3_DEFAULT_REGION);
        assert_eq!(
            location.to_string(),
            "s3:http://127.0.0.1:7480/backups/team/a"
        );
        let whole = RepositoryLocation::S3(location);
        assert_eq!(whole.short(), "s3 127.0.0.1:7480/backups/team/a");
        let root = s3("s3:http://minio:9000/bucket");
        assert_eq!((root.prefix(), root.key("config").as_str()), ("", "config"));
        assert_eq!(RepositoryLocation::S3(root).short(), "s3 minio:9000/bucket");
    }

    #[test]
    fn s3_keys_come_from_the_environment_and_are_never_shown() {
        let env = |name: &str| match name {
            S3_ACCESS_KEY_ENV => Some("AKID".to_owned()),
            S3_SECRET_KEY_ENV => Some("wJalrXUtnFEMI".to_owned()),
            S3_REGION_ENV => Some("eu-west-3".to_owned()),
            _ => None,
        };
        let location = s3("s3:http://h:9000/b12").with_credentials(env).unwrap();
        assert_eq!(location.access_key(), Some("AKID"));
        assert_eq!(location.secret_key().unwrap().expose(), "wJalrXUtnFEMI");
        assert_eq!(location.region(), "eu-west-3");
        let whole = RepositoryLocation::S3(location);
        for shown in [
            whole.to_string(),
            whole.short(),
            whole.recorded().unwrap(),
            format!("{whole:?}"),
        ] {
            assert!(!shown.contains("wJalr"), "{shown}");
        }
        let missing = s3("s3:http://h:9000/b12")
            .with_credentials(|name| (name == S3_ACCESS_KEY_ENV).then(|| "AKID".to_owned()))
            .unwrap_err();
        assert!(matches!(missing, LocationError::S3Keys(_)), "{missing}");
        assert!(
            missing.to_string().contains("AWS_SECRET_ACCESS_KEY"),
            "{missing}"
        );
    }

    #[test]
    fn bad_s3_locations_are_refused_naming_the_fix() {
        for (text, says) in [
            ("s3:http://h:9000/", "no bucket"),
            ("s3:http://h:9000/Bad_Name", "not a bucket name"),
            ("s3:http://h:9000/ab", "not a bucket name"),
            ("s3:http://key:secret@h:9000/bucket", "AWS_ACCESS_KEY_ID"),
            ("s3:ftp://h/bucket", "not http or https"),
        ] {
            let error = RepositoryLocation::parse(text).unwrap_err();
            assert!(error.to_string().contains(says), "{text}: {error}");
            assert!(!error.to_string().contains("secret@"), "{text}: {error}");
        }
    }

    #[test]
    fn https_locations_parse_and_take_cacert_files_which_others_refuse() {
        let location = rest("rest:https://nas.example/backups");
        assert!(location.is_https());
        assert_eq!(location.authority(), "nas.example:443");
        assert_eq!(location.host(), "nas.example");
        let bucket = s3("s3:https://s3.example:8443/bucket/team");
        assert!(bucket.is_https());
        assert_eq!(bucket.authority(), "s3.example:8443");
        // restic's form without a scheme means https.
        let aws = s3("s3:s3.amazonaws.com/bucket");
        assert!(aws.is_https());
        assert_eq!(aws.to_string(), "s3:https://s3.amazonaws.com/bucket");
        assert!(!s3("s3:http://h:9000/bucket").is_https());
        // A proxy's port speaks plain HTTP: it trusts nothing extra.
        let ca = CaCerts::load(&[crate::backend::tls::fixture("ca.pem")]).unwrap();
        let RepositoryLocation::S3(trusting) = RepositoryLocation::S3(bucket)
            .with_ca_certs(ca.clone())
            .unwrap()
        else {
            unreachable!()
        };
        assert_eq!(trusting.ca(), &ca);
        let through = trusting.through("127.0.0.1:1".parse().unwrap());
        assert!(!through.is_https() && through.ca().is_empty());
        for plain in ["rest:http://h:1/r", "s3:http://h:9000/bucket", "/srv/repo"] {
            let error = RepositoryLocation::parse(plain)
                .unwrap()
                .with_ca_certs(ca.clone())
                .unwrap_err();
            assert!(
                matches!(error, LocationError::CaCertWithoutHttps(_)),
                "{error}"
            );
        }
        // No --cacert: any location as it was.
        assert!(
            RepositoryLocation::parse("/srv/repo")
                .unwrap()
                .with_ca_certs(CaCerts::default())
                .is_ok()
        );
    }

    #[test]
    fn anything_else_is_a_directory() {
        assert_eq!(
            RepositoryLocation::parse("/mnt/nfs/repo").unwrap(),
            RepositoryLocation::Directory("/mnt/nfs/repo".into())
        );
        assert_eq!(
            RepositoryLocation::parse("local:/srv/repo").unwrap(),
            RepositoryLocation::Directory("/srv/repo".into())
        );
        assert_eq!(RepositoryLocation::Embedded.recorded(), None);
    }

    #[test]
    fn credentials_come_from_the_url_then_a_file_then_the_environment() {
        let env = |name: &str| match name {
            REST_USERNAME_ENV => Some("env-user".to_owned()),
            REST_PASSWORD_ENV => Some("env-pass".to_owned()),
            _ => None,
        };
        let from_env = rest("rest:http://h:1/r")
            .with_credentials(env, None)
            .unwrap();
        assert_eq!(from_env.user(), Some("env-user"));
        assert_eq!(from_env.password().unwrap().expose(), "env-pass");
        assert!(!from_env.password_in_url());
        let in_url = rest("rest:http://u:p@h:1/r")
            .with_credentials(env, None)
            .unwrap();
        assert_eq!(in_url.user(), Some("u"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "file-user:file:pass\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = rest("rest:http://h:1/r")
            .with_credentials(env, Some(&file))
            .unwrap_err();
        assert!(open.to_string().contains("chmod 600"), "{open}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let from_file = rest("rest:http://h:1/r")
            .with_credentials(env, Some(&file))
            .unwrap();
        assert_eq!(from_file.user(), Some("file-user"));
        assert_eq!(from_file.password().unwrap().expose(), "file:pass");
        let none = rest("rest:http://h:1/r")
            .with_credentials(|_| None, None)
            .unwrap();
        assert_eq!(none.user(), None);
        assert!(none.password().is_none());
    }

    #[test]
    fn a_repository_within_a_location_is_a_path_or_prefix_below_it() {
        let within = |text: &str| {
            RepositoryLocation::parse(text)
                .unwrap()
                .within("try-1")
                .to_string()
        };
        assert_eq!(within("/srv/repos"), "/srv/repos/try-1");
        assert_eq!(
            within("rest:http://127.0.0.1:8000/team/"),
            "rest:http://127.0.0.1:8000/team/try-1/"
        );
        assert_eq!(
            within("rest:http://127.0.0.1:8000/"),
            "rest:http://127.0.0.1:8000/try-1/"
        );
        assert_eq!(
            within("s3:http://127.0.0.1:7480/bucket/team"),
            "s3:http://127.0.0.1:7480/bucket/team/try-1"
        );
        assert_eq!(
            within("s3:http://127.0.0.1:7480/bucket"),
            "s3:http://127.0.0.1:7480/bucket/try-1"
        );
        assert_eq!(
            RepositoryLocation::Embedded.within("try-1"),
            RepositoryLocation::Embedded
        );
    }
}
