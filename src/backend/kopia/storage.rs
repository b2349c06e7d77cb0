//! Where kopia keeps the repository: a directory in the state dir (kopia's
//! filesystem storage), or an S3 bucket through kopia's own S3 storage
//! (`repository create s3`), as users of kopia keep theirs. The S3 keys go
//! through the environment kopia reads them from, never a command line.

use std::path::{Path, PathBuf};

use crate::backend::location::{S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV, S3Location};
use crate::engine::traits::{BackendError, BackendResult};

/// The blob kopia writes first in a new repository (`repo/format`): an
/// S3 prefix without it holds no repository yet.
pub const FORMAT_BLOB: &str = "kopia.repository";

/// The most certificates, base64-encoded, that go on kopia's command line
/// (one argument holds 128 KiB on Linux).
const MAX_INLINE_CA: usize = 96 * 1024;

/// The storage of the kopia repository under test.
#[derive(Debug, Clone)]
pub enum KopiaStorage {
    /// kopia's filesystem storage, in this directory.
    Filesystem(PathBuf),
    /// kopia's S3 storage, in this bucket and prefix.
    S3(S3Location),
}

impl KopiaStorage {
    /// kopia's name of the storage (`repository create <this>`).
    pub fn kind(&self) -> &'static str {
        match self {
            KopiaStorage::Filesystem(_) => "filesystem",
            KopiaStorage::S3(_) => "s3",
        }
    }

    /// What follows `repository create|connect`: the storage and where.
    pub fn args(&self) -> BackendResult<Vec<String>> {
        Ok(match self {
            KopiaStorage::Filesystem(dir) => vec![
                "filesystem".into(),
                "--path".into(),
                dir.to_str()
                    .ok_or_else(|| BackendError::Local(format!("not UTF-8: {}", dir.display())))?
                    .into(),
            ],
            KopiaStorage::S3(s3) => {
                let mut args = vec![
                    "s3".into(),
                    "--bucket".into(),
                    s3.bucket().into(),
                    "--endpoint".into(),
                    s3.authority(),
                    "--region".into(),
                    s3.region().into(),
                ];
                if !s3.is_https() {
                    args.push("--disable-tls".into());
                }
                // kopia takes one CA file, or one PEM text: every
                // --cacert's certificates. (It then trusts them instead of
                // the system's roots, as its S3 storage does with any CA.)
                match s3.ca().files() {
                    [] => {}
                    [file] => {
                        let file = file.to_str().ok_or_else(|| {
                            BackendError::Local(format!("not UTF-8: {}", file.display()))
                        })?;
                        args.extend(["--root-ca-pem-path".into(), file.into()]);
                    }
                    several => {
                        use base64::Engine as _;
                        let pem = base64::engine::general_purpose::STANDARD.encode(s3.ca().pem());
                        // One argument of a command line holds 128 KiB.
                        if pem.len() > MAX_INLINE_CA {
                            return Err(BackendError::Local(format!(
                                "the {} --cacert files hold {} KiB of certificates, more than kopia can be given on its command line; put them in one --cacert file, which kopia reads however large",
                                several.len(),
                                pem.len() / 1024
                            )));
                        }
                        args.extend(["--root-ca-pem-base64".into(), pem]);
                    }
                }
                if !s3.prefix().is_empty() {
                    // The trailing `/` makes the prefix a directory.
                    args.extend(["--prefix".into(), format!("{}/", s3.prefix())]);
                }
                args
            }
        })
    }

    /// The keys, for the kopia process's environment only.
    pub fn secret_env(&self) -> Vec<(&'static str, String)> {
        match self {
            KopiaStorage::Filesystem(_) => Vec::new(),
            KopiaStorage::S3(s3) => vec![
                (
                    S3_ACCESS_KEY_ENV,
                    s3.access_key().unwrap_or_default().to_owned(),
                ),
                (
                    S3_SECRET_KEY_ENV,
                    s3.secret_key()
                        .map(|k| k.expose().to_owned())
                        .unwrap_or_default(),
                ),
            ],
        }
    }

    /// The repository's directory, where the storage is one: what data
    /// faults damage and the size is measured in.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            KopiaStorage::Filesystem(dir) => Some(dir),
            KopiaStorage::S3(_) => None,
        }
    }

    /// How the run records where the repository is: the directory, or
    /// the location as `--repository` names it (without keys).
    pub fn shown(&self) -> PathBuf {
        match self {
            KopiaStorage::Filesystem(dir) => dir.clone(),
            KopiaStorage::S3(s3) => PathBuf::from(s3.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::location::RepositoryLocation;

    fn s3(text: &str) -> S3Location {
        let RepositoryLocation::S3(s3) = RepositoryLocation::parse(text).unwrap() else {
            panic!("{text} is not s3");
        };
        s3.with_credentials(|name| match name {
            S3_ACCESS_KEY_ENV => Some("AKID".into()),
            S3_SECRET_KEY_ENV => Some("SECRET".into()),
            _ => None,
        })
        .unwrap()
    }

    /// Every `--cacert` reaches kopia, each certificate of each file: one
    /// file by its path, several as one PEM text, too many refused.
    #[test]
    fn every_ca_certificate_is_given_to_kopia() {
        use crate::backend::tls::{CaCerts, fixture};
        use base64::Engine as _;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let given_files = |files: &[std::path::PathBuf]| {
            let RepositoryLocation::S3(trusting) =
                RepositoryLocation::S3(s3("s3:https://h:8443/bucket"))
                    .with_ca_certs(CaCerts::load(files).unwrap())
                    .unwrap()
            else {
                unreachable!()
            };
            KopiaStorage::S3(trusting).args()
        };
        let files = [fixture("ca.pem"), fixture("server.pem")];
        let args = given_files(&files).unwrap();
        let at = args
            .iter()
            .position(|a| a == "--root-ca-pem-base64")
            .unwrap_or_else(|| panic!("{args:?}"));
        let pem = base64::engine::general_purpose::STANDARD
            .decode(&args[at + 1])
            .unwrap();
        let given = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let expected: Vec<CertificateDer> = files
            .iter()
            .flat_map(|file| CertificateDer::pem_file_iter(file).unwrap())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(given.len(), 2);
        assert_eq!(given, expected);
        assert!(!args.contains(&"--disable-tls".to_owned()), "{args:?}");

        // One file is given as it is, however large.
        let args = given_files(&files[..1]).unwrap();
        let at = args.iter().position(|a| a == "--root-ca-pem-path").unwrap();
        assert_eq!(args[at + 1], files[0].to_str().unwrap());
        // Several too large for a command line are refused, saying why.
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        let ca = std::fs::read_to_string(&files[0]).unwrap();
        std::fs::write(&bundle, ca.repeat(200)).unwrap();
        let error = given_files(&[bundle.clone(), files[1].clone()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("in one --cacert file"), "{error}");
        assert!(
            given_files(&[bundle]).is_ok(),
            "alone, the same file is given by its path"
        );
    }

    #[test]
    fn s3_is_named_by_flags_and_its_keys_by_the_environment() {
        let storage = KopiaStorage::S3(s3("s3:http://127.0.0.1:7480/bucket/team/kopia"));
        let args = storage.args().unwrap();
        assert_eq!(
            args.join(" "),
            "s3 --bucket bucket --endpoint 127.0.0.1:7480 --region us-east-1 --disable-tls --prefix team/kopia/"
        );
        assert!(!args.join(" ").contains("SECRET"));
        assert_eq!(
            storage.secret_env(),
            vec![
                (S3_ACCESS_KEY_ENV, "AKID".to_owned()),
                (S3_SECRET_KEY_ENV, "SECRET".to_owned())
            ]
        );
        assert_eq!(storage.dir(), None);
        assert_eq!(
            storage.shown(),
            PathBuf::from("s3:http://127.0.0.1:7480/bucket/team/kopia")
        );
        let root = KopiaStorage::S3(s3("s3:http://h:9000/bucket"));
        assert!(!root.args().unwrap().contains(&"--prefix".to_owned()));
    }

    #[test]
    fn a_directory_is_kopias_filesystem_storage() {
        let storage = KopiaStorage::Filesystem("/state/repo".into());
        assert_eq!(
            storage.args().unwrap().join(" "),
            "filesystem --path /state/repo"
        );
        assert!(storage.secret_env().is_empty());
        assert_eq!(storage.dir(), Some(Path::new("/state/repo")));
    }
}
