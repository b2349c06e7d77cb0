//! Storage reached over https: whom snapstorm trusts there. The system's
//! roots, as restic and kopia trust them, and the certificates of the files
//! `--cacert` names (restic's option), for a NAS or an object store whose
//! certificate a private CA signed. Every connection snapstorm makes to the
//! storage (the fault proxy's, the bucket's, the data faults' and the
//! inspector's) trusts the same [`CaCerts`]; the clients themselves speak
//! plain HTTP to the proxy on 127.0.0.1, so no client is given them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates `--cacert` added to the system's roots; shared, as
/// every copy of a location holds them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CaCerts(Option<Arc<Loaded>>);

#[derive(PartialEq, Eq)]
struct Loaded {
    /// Where they came from (absolute), for kopia's `--root-ca-pem-path`.
    files: Vec<PathBuf>,
    certs: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.files()).finish()
    }
}

/// Why a `--cacert` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--cacert {path}: {why}")]
pub struct CaCertError {
    path: String,
    why: String,
}

impl CaCerts {
    /// Reads every PEM certificate in `files`; a file that cannot be read
    /// or holds no certificate is refused, naming it.
    pub fn load(files: &[PathBuf]) -> Result<CaCerts, CaCertError> {
        let mut loaded = Loaded {
            files: Vec::new(),
            certs: Vec::new(),
        };
        for file in files {
            let error = |why: String| CaCertError {
                path: file.display().to_string(),
                why,
            };
            let text = std::fs::read(file).map_err(|e| error(format!("cannot be read: {e}")))?;
            let certs = CertificateDer::pem_slice_iter(&text)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(format!("not a PEM certificate file: {e}")))?;
            if certs.is_empty() {
                return Err(error("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
            }
            loaded
                .files
                .push(std::path::absolute(file).unwrap_or(file.clone()));
            loaded.certs.extend(certs);
        }
        Ok(CaCerts(
            (!loaded.files.is_empty()).then(|| Arc::new(loaded)),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The files, absolute.
    pub fn files(&self) -> &[PathBuf] {
        self.0.as_ref().map_or(&[], |loaded| &loaded.files)
    }

    /// Every certificate, PEM-encoded one after the other: kopia's S3
    /// storage takes one PEM text (`--root-ca-pem-base64`).
    pub fn pem(&self) -> String {
        use base64::Engine as _;
        let mut text = String::new();
        for cert in self.certs() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(cert);
            text.push_str("-----BEGIN CERTIFICATE-----\n");
            for line in encoded.as_bytes().chunks(64) {
                text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                text.push('\n');
            }
            text.push_str("-----END CERTIFICATE-----\n");
        }
        text
    }

    fn certs(&self) -> &[CertificateDer<'static>] {
        self.0.as_ref().map_or(&[], |loaded| &loaded.certs)
    }

    /// A TLS configuration that verifies the storage's certificate and
    /// name against the system's roots and these.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            self.certs().iter().cloned(),
            provider.clone(),
        )?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The same certificates for reqwest (which trusts the system's roots
    /// itself).
    pub fn for_reqwest(&self) -> Vec<reqwest::Certificate> {
        self.certs()
            .iter()
            .filter_map(|cert| reqwest::Certificate::from_der(cert).ok())
            .collect()
    }
}

/// Connects to `authority` (`HOST:PORT`) and completes a TLS handshake as
/// `host`: a certificate that is not trusted, or names another host, is
/// told apart from a storage that does not answer.
pub async fn handshake(
    addr: std::net::SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<(), HandshakeError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| HandshakeError::Failed(format!("{host} is not a TLS server name: {e}")))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| HandshakeError::Failed(format!("{addr}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match connector.connect(name, tcp).await {
        Ok(_) => Ok(()),
        Err(error) => Err(
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::InvalidCertificate(why)) => {
                    HandshakeError::Untrusted(format!("{why:?}"))
                }
                _ => HandshakeError::Failed(format!("TLS handshake: {error}")),
            },
        ),
    }
}

/// How a handshake with the storage failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Its certificate is not one snapstorm trusts (unknown issuer,
    /// another host's name, expired).
    Untrusted(String),
    /// No TLS server answered there.
    Failed(String),
}

/// A file of the test certificates (`tests/tls`): `ca.pem`, the CA that
/// signed `server.pem` (for `localhost` and 127.0.0.1).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_loads_and_other_files_are_refused_naming_them() {
        let certs = CaCerts::load(&[fixture("ca.pem")]).unwrap();
        assert_eq!(certs.for_reqwest().len(), 1);
        assert!(certs.files()[0].is_absolute());
        certs.client_config().unwrap();
        // Written out again, the same certificate.
        let again = CertificateDer::pem_slice_iter(certs.pem().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(again, certs.certs());

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = CaCerts::load(&[empty]).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
        let error = CaCerts::load(&[dir.path().join("missing.pem")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("missing.pem") && error.contains("cannot be read"),
            "{error}"
        );
    }

    /// A TLS server on 127.0.0.1 with the fixture's certificate (signed by
    /// the fixture's CA, for `localhost` and 127.0.0.1), answering
    /// handshakes until the test ends.
    async fn tls_server() -> std::net::SocketAddr {
        use rustls::pki_types::PrivateKeyDer;
        let chain = CertificateDer::pem_file_iter(fixture("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(fixture("server-key.pem")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_handshake_tells_an_untrusted_certificate_from_no_tls_server() {
        let addr = tls_server().await;
        let trusted = CaCerts::load(&[fixture("ca.pem")]).unwrap();
        let config = trusted.client_config().unwrap();
        handshake(addr, "localhost", config.clone()).await.unwrap();
        handshake(addr, "127.0.0.1", config.clone()).await.unwrap();
        // Another host's name, or no --cacert: not trusted.
        assert!(matches!(
            handshake(addr, "backup.example", config).await,
            Err(HandshakeError::Untrusted(_))
        ));
        let system_only = CaCerts::default().client_config().unwrap();
        assert!(matches!(
            handshake(addr, "localhost", system_only.clone()).await,
            Err(HandshakeError::Untrusted(_))
        ));
        // A plain TCP listener that closes at once is no TLS server.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = plain.accept().await {
                drop(tcp);
            }
        });
        assert!(matches!(
            handshake(plain_addr, "localhost", system_only).await,
            Err(HandshakeError::Failed(_))
        ));
    }
}
