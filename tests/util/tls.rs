//! Certificates for the TLS-only test cluster, made with rcgen: a CA, a server certificate it
//! signs for `localhost` only (so `127.0.0.1` is a host name mismatch), and a second, unrelated
//! CA that signed nothing the server shows.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files written by [`TestCerts::write`].
pub struct TestCerts {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA unrelated to the server.
    pub other_ca: PathBuf,
    /// The server's certificate, for `localhost`.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

impl TestCerts {
    /// Generates the certificates and writes them as PEM files into `dir`.
    pub fn write(dir: &Path) -> Result<TestCerts, String> {
        let ca = certificate_authority("contrail test CA")?;
        let other_ca = certificate_authority("contrail unrelated CA")?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let server = params.signed_by(&key, &ca).map_err(|e| e.to_string())?;

        let certs = TestCerts {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        };
        for (path, pem) in [
            (&certs.ca, ca.pem()),
            (&certs.other_ca, other_ca.pem()),
            (&certs.server_cert, server.pem()),
            (&certs.server_key, key.serialize_pem()),
        ] {
            std::fs::write(path, pem).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(certs)
    }
}

fn certificate_authority(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    CertifiedIssuer::self_signed(params, key).map_err(|e| e.to_string())
}
