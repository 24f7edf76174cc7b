//! Trusted root certificates: a PEM file (`sslrootcert=<file>`, or libpq's default
//! `~/.postgresql/root.crt`) or the operating system's trust store (`sslrootcert=system`).
//!
//! This file reads certificates; it decides neither whether they are needed nor how they are
//! used (`connector.rs` does).

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::params::RootCert;

/// What to give `sslrootcert` when no roots are found, for the common case of Amazon RDS.
pub(super) const ROOTS_ADVICE: &str = "pass sslrootcert=<file> with the CA certificates (PEM) \
    that signed the server's certificate, or sslrootcert=system for the operating system's \
    trust store (for Amazon RDS: the RDS CA bundle, global-bundle.pem)";

/// The trusted roots and a description of where they came from.
///
/// # Errors
/// A message saying which file cannot be read or holds no usable CA certificate, or that the
/// system trust store is empty, and what to do about it.
pub(super) fn load_roots(root: &RootCert) -> Result<(RootCertStore, String), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_root_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_roots(&RootCert::File(missing.clone())).unwrap_err();
        assert!(err.contains("cannot read sslrootcert"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = load_roots(&RootCert::File(empty)).unwrap_err();
        assert!(err.contains("no usable CA certificate"), "{err}");
        assert!(err.contains("sslrootcert=system"), "{err}");
    }
}
