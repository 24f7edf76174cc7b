//! TLS for PostgreSQL connections with libpq's `sslmode` and `sslrootcert` semantics, over rustls
//! and the aws-lc-rs provider that the AWS SDK already brings.
//!
//! This module owns the choice of certificate verification, loading trusted roots, and the
//! wording of TLS failures. It does not parse connection strings (`connect.rs` does) and never
//! installs a process-wide crypto provider: every configuration names its provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

/// What to give `sslrootcert` when no roots are found, for the common case of Amazon RDS.
const ROOTS_ADVICE: &str = "pass sslrootcert=<file> with the CA certificates (PEM) that signed \
    the server's certificate, or sslrootcert=system for the operating system's trust store \
    (for Amazon RDS: the RDS CA bundle, global-bundle.pem)";

/// How TLS is used, as libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// libpq's `allow`, treated as `prefer`: TLS when the server offers it.
    Allow,
    /// TLS when the server offers it, else plaintext; the certificate is not checked. The
    /// default, as in libpq.
    Prefer,
    /// TLS or nothing; the certificate is checked only when trusted roots are given (as libpq).
    Require,
    /// TLS, and the certificate must chain to a trusted root; the host name is not checked.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The default mode, libpq's.
    pub const DEFAULT: SslMode = SslMode::Prefer;

    /// Parses libpq's spelling (`disable`, `allow`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`); `None` for anything else.
    pub fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres negotiates with: it knows no verification levels, which live in
    /// the rustls configuration instead.
    pub(super) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Allow | SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

/// Where the trusted root certificates come from: libpq's `sslrootcert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

/// How far the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Encrypt, trust whatever certificate the server shows.
    Nothing,
    /// The chain must end at a trusted root.
    Chain,
    /// The chain, and the certificate must name the host.
    ChainAndName,
}

/// The TLS settings of one database URL, and the connector built from them on first use.
#[derive(Clone, Debug)]
pub(super) struct Tls {
    pub(super) mode: SslMode,
    pub(super) root_cert: Option<RootCert>,
    connector: Arc<OnceLock<Connector>>,
}

/// A rustls connector and what the user should know about its roots when it fails.
#[derive(Clone)]
pub(super) struct Connector {
    pub(super) make: MakeRustlsConnect,
    /// Where the trusted roots came from, for messages; `None` when nothing is verified.
    roots: Option<String>,
    check: Check,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("roots", &self.roots)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Settings for `mode` (libpq's default when `None`) and `root_cert`.
    ///
    /// # Errors
    /// A message for [`Error::DatabaseUrl`] when `sslrootcert=system` comes with a mode weaker
    /// than `verify-full`, which libpq refuses too: any public CA's certificate would pass.
    pub(super) fn try_new(
        mode: Option<SslMode>,
        root_cert: Option<RootCert>,
    ) -> Result<Tls, String> {
        let mode = match (mode, &root_cert) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::DEFAULT,
            (Some(SslMode::VerifyFull), _) => SslMode::VerifyFull,
            (Some(mode), Some(RootCert::System)) => {
                return Err(format!(
                    "sslrootcert=system needs sslmode=verify-full (its default), not sslmode={}: \
                     with the system's public CAs, anyone can get a certificate that passes a \
                     weaker check",
                    mode.as_str()
                ));
            }
            (Some(mode), _) => mode,
        };
        Ok(Tls {
            mode,
            root_cert,
            connector: Arc::new(OnceLock::new()),
        })
    }

    /// The connector, built on first use: loading roots reads files, so it is not done while
    /// parsing the URL.
    ///
    /// # Errors
    /// [`Error::Tls`] naming `database` when the roots cannot be read or none are available for
    /// a mode that verifies.
    pub(super) fn connector(&self, database: &str) -> Result<Connector, Error> {
        if let Some(connector) = self.connector.get() {
            return Ok(connector.clone());
        }
        let connector = self
            .build(default_root_file())
            .map_err(|message| Error::Tls {
                database: database.to_owned(),
                message,
                source: None,
            })?;
        // Two connections racing here build equal connectors; either may be kept.
        let _ = self.connector.set(connector.clone());
        Ok(connector)
    }

    /// Builds the connector; `default_file` is libpq's `~/.postgresql/root.crt`.
    fn build(&self, default_file: Option<PathBuf>) -> Result<Connector, String> {
        let roots = match (&self.root_cert, self.mode) {
            (_, SslMode::Disable | SslMode::Allow | SslMode::Prefer) => None,
            (Some(root), _) => Some(root.clone()),
            // libpq: `require` verifies the chain when the default root file exists.
            (None, SslMode::Require) => default_file.filter(|f| f.is_file()).map(RootCert::File),
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => match default_file {
                Some(file) if file.is_file() => Some(RootCert::File(file)),
                _ => {
                    return Err(format!(
                        "sslmode={} verifies the server's certificate but no trusted roots were \
                         given and ~/.postgresql/root.crt does not exist: {ROOTS_ADVICE}",
                        self.mode.as_str()
                    ));
                }
            },
        };
        let check = match (&roots, self.mode) {
            (None, _) => Check::Nothing,
            (Some(_), SslMode::VerifyFull) => Check::ChainAndName,
            (Some(_), _) => Check::Chain,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("setting up TLS: {e}"))?;
        let (config, described) = match &roots {
            None => {
                let verifier = ChainVerifier {
                    roots: None,
                    provider,
                };
                let config = builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth();
                (config, None)
            }
            Some(root) => {
                let (store, described) = load_roots(root)?;
                let store = Arc::new(store);
                let config = if check == Check::ChainAndName {
                    let verifier =
                        WebPkiServerVerifier::builder_with_provider(store, Arc::clone(&provider))
                            .build()
                            .map_err(|e| format!("setting up TLS with {described}: {e}"))?;
                    builder.with_webpki_verifier(verifier).with_no_client_auth()
                } else {
                    let verifier = ChainVerifier {
                        roots: Some(store),
                        provider,
                    };
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verifier))
                        .with_no_client_auth()
                };
                (config, Some(described))
            }
        };
        Ok(Connector {
            make: MakeRustlsConnect::new(config),
            roots: described,
            check,
        })
    }
}

impl Connector {
    /// Turns a failed connection into an error saying what TLS refused and what to do, or into
    /// [`Error::Connect`] when TLS had nothing to do with it.
    pub(super) fn explain(
        &self,
        mode: SslMode,
        database: String,
        hosts: &str,
        source: tokio_postgres::Error,
    ) -> Error {
        let message = match rustls_error(&source) {
            Some(error) => Some(self.explain_rustls(error, mode, hosts)),
            None if mode == SslMode::Disable && refused_plaintext(&source) => Some(
                "the server accepts only TLS connections and sslmode=disable forbids TLS: \
                 remove sslmode=disable, or use sslmode=require or verify-full"
                    .to_owned(),
            ),
            None if tls_refused(&source) => Some(format!(
                "the server does not accept TLS connections, which sslmode={} requires: \
                 enable ssl on the server, or use sslmode=prefer",
                mode.as_str()
            )),
            None => None,
        };
        match message {
            Some(message) => Error::Tls {
                database,
                message,
                source: Some(source),
            },
            None => Error::Connect { database, source },
        }
    }

    fn explain_rustls(&self, error: &rustls::Error, mode: SslMode, hosts: &str) -> String {
        let roots = self.roots.as_deref().unwrap_or("the trusted roots");
        // `require` verifies only because roots were given (libpq's rule).
        let unverified = if mode == SslMode::Require {
            "or remove sslrootcert (and ~/.postgresql/root.crt) to encrypt without verifying"
        } else {
            "or use sslmode=require to encrypt without verifying the server"
        };
        match error {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "the server's certificate is not signed by the roots in {roots}: {ROOTS_ADVICE}; \
                 {unverified}"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the server's certificate is not valid for host {hosts}: connect with a host \
                 name the certificate names, or use sslmode=verify-ca to check only that a \
                 trusted CA signed it"
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => "the server's certificate has expired or is not valid yet: renew it on the \
                  server, and check this machine's clock"
                .to_owned(),
            rustls::Error::InvalidCertificate(_) => match self.check {
                Check::Nothing => "the server's certificate is unusable for TLS".to_owned(),
                _ => format!(
                    "the server's certificate was refused when checked against {roots}: check \
                     sslrootcert, {unverified}"
                ),
            },
            _ => "the TLS handshake failed: the server may offer no TLS version or cipher in \
                  common with contrail (TLS 1.2 and 1.3)"
                .to_owned(),
        }
    }
}

/// libpq's default root file, `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| Path::new(&home).join(".postgresql/root.crt"))
}

/// The trusted roots and a description of where they came from.
fn load_roots(root: &RootCert) -> Result<(RootCertStore, String), String> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            let described = path.display().to_string();
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read sslrootcert {described}: {e}"))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {described} is not a PEM file: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {described} holds no usable CA certificate: {ROOTS_ADVICE}"
                ));
            }
            Ok((store, described))
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "sslrootcert=system found no certificates in the system trust store{}: \
                     install the ca-certificates package, or pass sslrootcert=<file>",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            Ok((store, "the system trust store".to_owned()))
        }
    }
}

/// The rustls error inside a failed connection, if the handshake failed. tokio-rustls wraps it
/// in an `io::Error`, whose `source()` skips it, so each `io::Error` is opened by hand.
fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

/// Whether the server answered the TLS request with "no". tokio-postgres has no error kind to
/// test, so this is its wording, found in the error's causes.
fn tls_refused(error: &tokio_postgres::Error) -> bool {
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        if cause.to_string().contains("server does not support TLS") {
            return true;
        }
        next = cause.source();
    }
    false
}

/// Whether the server refused a plaintext connection through pg_hba.conf (`hostssl` rules only):
/// "no encryption" since PostgreSQL 14, "SSL off" before.
fn refused_plaintext(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && (db.message().contains("no encryption") || db.message().contains("SSL off"))
    })
}

/// Checks the chain against `roots`, never the host name (`verify-ca`, and `require` with
/// roots), or nothing at all without roots (`prefer`, `require`). The handshake's signatures
/// are always checked, so the session key belongs to whoever holds the certificate's key.
#[derive(Debug)]
struct ChainVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_system_roots_force_verify_full() {
        for name in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(SslMode::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        let tls = Tls::try_new(None, Some(RootCert::System)).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        let err = Tls::try_new(Some(SslMode::VerifyCa), Some(RootCert::System)).unwrap_err();
        assert!(err.contains("needs sslmode=verify-full"), "{err}");
        assert_eq!(Tls::try_new(None, None).unwrap().mode, SslMode::Prefer);
    }

    #[test]
    fn unreadable_or_empty_root_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let tls = Tls::try_new(
            Some(SslMode::VerifyFull),
            Some(RootCert::File(missing.clone())),
        )
        .unwrap();
        let err = tls
            .connector("postgresql://u@h:5432/d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read sslrootcert"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let tls = Tls::try_new(Some(SslMode::VerifyCa), Some(RootCert::File(empty))).unwrap();
        let err = tls
            .connector("postgresql://u@h:5432/d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no usable CA certificate"), "{err}");
        assert!(err.contains("sslrootcert=system"), "{err}");
    }

    #[test]
    fn modes_without_roots_verify_nothing() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Allow] {
            let tls = Tls::try_new(Some(mode), None).unwrap();
            let connector = tls.connector("db").unwrap();
            assert_eq!(connector.check, Check::Nothing);
        }
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("root.crt");
        let require = Tls::try_new(Some(SslMode::Require), None).unwrap();
        let connector = require.build(Some(absent.clone())).unwrap();
        assert_eq!(connector.check, Check::Nothing);
        // Roots given, or libpq's default root file present, make `require` verify the chain.
        let err = Tls::try_new(Some(SslMode::Require), Some(RootCert::File(absent.clone())))
            .unwrap()
            .build(None)
            .unwrap_err();
        assert!(err.contains("cannot read sslrootcert"), "{err}");
        std::fs::write(&absent, "").unwrap();
        let err = require.build(Some(absent)).unwrap_err();
        assert!(err.contains("no usable CA certificate"), "{err}");
    }

    #[test]
    fn verifying_modes_without_roots_say_how_to_give_them() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let tls = Tls::try_new(Some(mode), None).unwrap();
            let err = tls.build(Some(dir.path().join("root.crt"))).unwrap_err();
            assert!(err.contains(mode.as_str()), "{err}");
            assert!(err.contains("sslrootcert=<file>"), "{err}");
            assert!(err.contains("sslrootcert=system"), "{err}");
            assert!(err.contains("global-bundle.pem"), "{err}");
        }
    }
}
