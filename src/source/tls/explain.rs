//! The wording of failed connections where TLS had a part: what was refused and what the user
//! can do about it.

use rustls::CertificateError;
use tokio_postgres::error::SqlState;

use super::connector::{Check, Connector};
use super::params::SslMode;
use super::roots::ROOTS_ADVICE;
use crate::error::Error;

impl Connector {
    /// Turns a failed connection into an error saying what TLS refused and what to do, or into
    /// [`Error::Connect`] when TLS had nothing to do with it.
    pub(in crate::source) fn explain(
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
        let Some(error) = certificate_error(error) else {
            return "the TLS handshake failed: the server may offer no TLS version or cipher in \
                    common with contrail (TLS 1.2 and 1.3)"
                .to_owned();
        };
        match error {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed by the roots in {roots}: {ROOTS_ADVICE}; \
                 {unverified}"
            ),
            // libpq falls back to the subject's common name when a certificate has no
            // subjectAltName; rustls never does, so say so rather than leave it a mystery.
            CertificateError::NotValidForNameContext { presented, .. } if presented.is_empty() => {
                format!(
                    "the server's certificate names no host in its subjectAltName extension, so \
                     it cannot be valid for host {hosts} (contrail, unlike libpq, does not fall \
                     back to the subject's common name): reissue it with the host name as a \
                     subjectAltName, or use sslmode=verify-ca to check only that a trusted CA \
                     signed it"
                )
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for host {hosts}: connect with a host \
                     name the certificate names, or use sslmode=verify-ca to check only that a \
                     trusted CA signed it"
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate has expired or is not valid yet: renew it on the \
                 server, and check this machine's clock"
                    .to_owned()
            }
            _ => match self.check {
                Check::Nothing => "the server's certificate is unusable for TLS".to_owned(),
                Check::Chain | Check::ChainAndName => format!(
                    "the server's certificate was refused when checked against {roots}: check \
                     sslrootcert, {unverified}"
                ),
            },
        }
    }
}

/// The certificate problem inside a rustls error, if that is what it is.
fn certificate_error(error: &rustls::Error) -> Option<&CertificateError> {
    match error {
        rustls::Error::InvalidCertificate(error) => Some(error),
        _ => None,
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

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;

    use super::*;
    use crate::source::tls::connector::Tls;

    /// The message for `error` from a connector that checks `mode`'s way with no roots.
    fn explain(error: CertificateError, mode: SslMode) -> String {
        let connector = Tls::new(SslMode::Prefer, None, None)
            .connector("db")
            .unwrap();
        connector.explain_rustls(
            &rustls::Error::InvalidCertificate(error),
            mode,
            "db.example",
        )
    }

    #[test]
    fn name_mismatches_say_whether_the_certificate_names_any_host() {
        let expected = ServerName::try_from("db.example").unwrap();
        let message = explain(
            CertificateError::NotValidForNameContext {
                expected: expected.clone(),
                presented: vec!["DnsName(\"other.example\")".to_owned()],
            },
            SslMode::VerifyFull,
        );
        assert!(
            message.contains("not valid for host db.example"),
            "{message}"
        );
        assert!(message.contains("sslmode=verify-ca"), "{message}");

        // A certificate with a common name only, as `openssl req -subj /CN=…` makes them.
        let message = explain(
            CertificateError::NotValidForNameContext {
                expected,
                presented: Vec::new(),
            },
            SslMode::VerifyFull,
        );
        assert!(
            message.contains("names no host in its subjectAltName"),
            "{message}"
        );
        assert!(message.contains("common name"), "{message}");
        assert!(message.contains("sslmode=verify-ca"), "{message}");
    }

    #[test]
    fn other_refusals_say_what_to_do() {
        let message = explain(CertificateError::UnknownIssuer, SslMode::Require);
        assert!(message.contains("remove sslrootcert"), "{message}");
        let message = explain(CertificateError::UnknownIssuer, SslMode::VerifyCa);
        assert!(message.contains("use sslmode=require"), "{message}");
        let message = explain(CertificateError::Expired, SslMode::VerifyFull);
        assert!(message.contains("expired"), "{message}");
    }
}
