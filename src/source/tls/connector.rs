//! The TLS settings of one database URL and the rustls connector built from them: which roots
//! are loaded and how far the server's certificate is checked, for each `sslmode`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::params::{RootCert, SslMode};
use super::roots::{ROOTS_ADVICE, load_roots};
use super::verifier::ChainVerifier;
use crate::error::Error;

/// How far the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// Encrypt, trust whatever certificate the server shows.
    Nothing,
    /// The chain must end at a trusted root.
    Chain,
    /// The chain, and the certificate must name the host.
    ChainAndName,
}

/// The TLS settings of one database URL, and the connector built from them on first use.
#[derive(Clone, Debug)]
pub(in crate::source) struct Tls {
    pub(in crate::source) mode: SslMode,
    pub(in crate::source) root_cert: Option<RootCert>,
    /// libpq's `~/.postgresql/root.crt`, when a home directory is known.
    pub(super) default_root: Option<PathBuf>,
    /// Every host is a Unix socket, where libpq ignores `sslmode` and PostgreSQL offers no TLS.
    unix_sockets_only: bool,
    connector: Arc<OnceLock<Connector>>,
}

/// A rustls connector and what the user should know about its roots when it fails.
#[derive(Clone)]
pub(in crate::source) struct Connector {
    pub(in crate::source) make: MakeRustlsConnect,
    /// Where the trusted roots came from, for messages; `None` when nothing is verified.
    pub(super) roots: Option<String>,
    pub(super) check: Check,
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
    /// Settings for `mode` and `root_cert`, already checked against each other (see
    /// `TlsParams::resolve`); `default_root` is libpq's `~/.postgresql/root.crt`.
    pub(super) fn new(
        mode: SslMode,
        root_cert: Option<RootCert>,
        default_root: Option<PathBuf>,
    ) -> Tls {
        Tls {
            mode,
            root_cert,
            default_root,
            unix_sockets_only: false,
            connector: Arc::new(OnceLock::new()),
        }
    }

    /// The same settings for a URL whose hosts are all Unix sockets: no TLS is negotiated and
    /// no roots are loaded, whatever the mode says (libpq ignores `sslmode` there too).
    pub(in crate::source) fn over_unix_sockets_only(mut self) -> Tls {
        self.unix_sockets_only = true;
        self.connector = Arc::new(OnceLock::new());
        self
    }

    /// The mode tokio-postgres negotiates with.
    pub(in crate::source) fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        if self.unix_sockets_only {
            tokio_postgres::config::SslMode::Disable
        } else {
            self.mode.driver_mode()
        }
    }

    /// The connector, built on first use: loading roots reads files, so it is not done while
    /// parsing the URL.
    ///
    /// # Errors
    /// [`Error::Tls`] naming `database` when the roots cannot be read or none are available for
    /// a mode that verifies.
    pub(in crate::source) fn connector(&self, database: &str) -> Result<Connector, Error> {
        if let Some(connector) = self.connector.get() {
            return Ok(connector.clone());
        }
        let connector = self.build().map_err(|message| Error::Tls {
            database: database.to_owned(),
            message,
            source: None,
        })?;
        // Two connections racing here build equal connectors; either may be kept.
        let _ = self.connector.set(connector.clone());
        Ok(connector)
    }

    /// The roots to verify with, if any: the given ones, else libpq's default file when it
    /// exists. `prefer` and weaker modes check nothing (libpq's documented table).
    fn roots(&self) -> Result<Option<RootCert>, String> {
        if self.unix_sockets_only {
            return Ok(None);
        }
        let default = || {
            self.default_root
                .clone()
                .filter(|file| file.is_file())
                .map(RootCert::File)
        };
        Ok(match (&self.root_cert, self.mode) {
            (_, SslMode::Disable | SslMode::Allow | SslMode::Prefer) => None,
            (Some(root), _) => Some(root.clone()),
            // libpq: `require` verifies the chain when the default root file exists.
            (None, SslMode::Require) => default(),
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => match default() {
                Some(root) => Some(root),
                None => {
                    return Err(format!(
                        "sslmode={} verifies the server's certificate but no trusted roots were \
                         given and ~/.postgresql/root.crt does not exist: {ROOTS_ADVICE}",
                        self.mode.as_str()
                    ));
                }
            },
        })
    }

    /// Builds the connector.
    fn build(&self) -> Result<Connector, String> {
        let roots = self.roots()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root_cert: Option<RootCert>, default_root: Option<PathBuf>) -> Tls {
        Tls::new(mode, root_cert, default_root)
    }

    #[test]
    fn modes_without_roots_verify_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("root.crt");
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Allow] {
            let connector = tls(mode, None, None).connector("db").unwrap();
            assert_eq!(connector.check, Check::Nothing);
            // Given roots do not make them verify, even unreadable ones.
            let given = Some(RootCert::File(absent.clone()));
            let connector = tls(mode, given, None).connector("db").unwrap();
            assert_eq!(connector.check, Check::Nothing);
        }
        let require = tls(SslMode::Require, None, Some(absent.clone()));
        assert_eq!(require.build().unwrap().check, Check::Nothing);
        // Roots given, or libpq's default root file present, make `require` verify the chain.
        let given = Some(RootCert::File(absent.clone()));
        let err = tls(SslMode::Require, given, None).build().unwrap_err();
        assert!(err.contains("cannot read sslrootcert"), "{err}");
        std::fs::write(&absent, "").unwrap();
        let err = require.build().unwrap_err();
        assert!(err.contains("no usable CA certificate"), "{err}");
    }

    #[test]
    fn verifying_modes_without_roots_say_how_to_give_them() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = tls(mode, None, Some(dir.path().join("root.crt")))
                .connector("postgresql://u@h:5432/d")
                .unwrap_err();
            assert!(matches!(err, Error::Tls { .. }), "{err:?}");
            let err = err.to_string();
            assert!(err.contains("postgresql://u@h:5432/d"), "{err}");
            assert!(err.contains(mode.as_str()), "{err}");
            assert!(err.contains("sslrootcert=<file>"), "{err}");
            assert!(err.contains("sslrootcert=system"), "{err}");
            assert!(err.contains("global-bundle.pem"), "{err}");
        }
    }

    #[test]
    fn unix_sockets_load_no_roots_whatever_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Some(RootCert::File(dir.path().join("missing.pem")));
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let local = tls(mode, missing.clone(), None).over_unix_sockets_only();
            assert_eq!(
                local.driver_mode(),
                tokio_postgres::config::SslMode::Disable
            );
            assert_eq!(local.connector("db").unwrap().check, Check::Nothing);
            let local = tls(mode, None, None).over_unix_sockets_only();
            assert_eq!(local.connector("db").unwrap().check, Check::Nothing);
        }
    }
}
