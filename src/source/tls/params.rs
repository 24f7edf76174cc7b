//! libpq's TLS parameters: `sslmode` and `sslrootcert` as a connection string gives them, the
//! `PGSSLMODE` and `PGSSLROOTCERT` environment variables that stand in when it does not, and
//! the rules that tie them together.
//!
//! This file reads no files and no process state: the environment comes in as a lookup
//! function, so callers (and tests) decide what it holds.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::connector::Tls;

/// The environment variable libpq reads `sslmode` from when the connection string has none.
const SSLMODE_VARIABLE: &str = "PGSSLMODE";

/// The environment variable libpq reads `sslrootcert` from when the connection string has none.
const SSLROOTCERT_VARIABLE: &str = "PGSSLROOTCERT";

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
    pub(in crate::source) fn driver_mode(self) -> tokio_postgres::config::SslMode {
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

impl RootCert {
    /// libpq's reading of an `sslrootcert` value: `system`, a file, or (empty) the default
    /// file, `None`.
    fn from_value(value: &OsStr) -> Option<RootCert> {
        if value.is_empty() {
            None
        } else if value == "system" {
            Some(RootCert::System)
        } else {
            Some(RootCert::File(PathBuf::from(value)))
        }
    }
}

/// Where a setting came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The connection string.
    Param,
    /// An environment variable.
    Env(&'static str),
}

impl Origin {
    /// `" (from PGSSLMODE)"` for a setting from the environment, nothing otherwise.
    fn note(self) -> String {
        match self {
            Origin::Param => String::new(),
            Origin::Env(variable) => format!(" (from {variable})"),
        }
    }
}

/// The TLS parameters taken out of a connection string, before the environment fills gaps.
#[derive(Debug, Default)]
pub(in crate::source) struct TlsParams {
    mode: Option<SslMode>,
    /// As written, since an empty value still counts as given (libpq then uses its default
    /// file and ignores `PGSSLROOTCERT`).
    root_cert: Option<OsString>,
}

impl TlsParams {
    /// Takes `key` if it is a TLS parameter contrail handles (true), else leaves it (false).
    ///
    /// # Errors
    /// A message for [`crate::Error::DatabaseUrl`] when the value is invalid or the parameter
    /// is one contrail does not support (client certificates).
    pub(in crate::source) fn take(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "sslmode" => self.mode = Some(parse_mode(value, Origin::Param)?),
            "sslrootcert" => self.root_cert = Some(OsString::from(value)),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{key}: client certificates are not supported; authenticate with a \
                     password, and use sslrootcert to verify the server"
                ));
            }
            "ssl" => {
                return Err(
                    "the parameter is spelled sslmode (libpq's): use sslmode=require \
                            or sslmode=verify-full instead of ssl=…"
                        .to_owned(),
                );
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The TLS settings: the connection string's parameters, else `PGSSLMODE` and
    /// `PGSSLROOTCERT` from `env`, else libpq's defaults (`prefer`; `verify-full` with
    /// `sslrootcert=system`). `env` also gives `HOME`, for `~/.postgresql/root.crt`. An
    /// environment variable set to the empty string counts as unset.
    ///
    /// # Errors
    /// A message for [`crate::Error::DatabaseUrl`] when `PGSSLMODE` is invalid, or when
    /// `sslrootcert=system` comes with a mode weaker than `verify-full`, which libpq refuses
    /// too: any public CA's certificate would pass.
    pub(in crate::source) fn resolve(
        self,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Tls, String> {
        let from_env = |variable: &str| env(variable).filter(|value| !value.is_empty());
        let mode = match self.mode {
            Some(mode) => Some((mode, Origin::Param)),
            None => match from_env(SSLMODE_VARIABLE) {
                Some(value) => {
                    let origin = Origin::Env(SSLMODE_VARIABLE);
                    let value = value.to_str().ok_or_else(|| {
                        format!("{SSLMODE_VARIABLE} is not valid UTF-8; unset it or use sslmode")
                    })?;
                    Some((parse_mode(value, origin)?, origin))
                }
                None => None,
            },
        };
        let (root_cert, root_origin) = match self.root_cert {
            Some(value) => (RootCert::from_value(&value), Origin::Param),
            None => (
                from_env(SSLROOTCERT_VARIABLE).and_then(|value| RootCert::from_value(&value)),
                Origin::Env(SSLROOTCERT_VARIABLE),
            ),
        };
        let mode = match (mode, &root_cert) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::DEFAULT,
            (Some((SslMode::VerifyFull, _)), _) => SslMode::VerifyFull,
            (Some((mode, mode_origin)), Some(RootCert::System)) => {
                return Err(format!(
                    "sslrootcert=system{} needs sslmode=verify-full (its default), not \
                     sslmode={}{}: with the system's public CAs, anyone can get a certificate \
                     that passes a weaker check",
                    root_origin.note(),
                    mode.as_str(),
                    mode_origin.note(),
                ));
            }
            (Some((mode, _)), _) => mode,
        };
        let default_root = from_env("HOME").map(|home| default_root_file(&home));
        Ok(Tls::new(mode, root_cert, default_root))
    }
}

/// libpq's default root file, `~/.postgresql/root.crt`, under `home`.
fn default_root_file(home: &OsStr) -> PathBuf {
    Path::new(home).join(".postgresql").join("root.crt")
}

/// Parses an `sslmode` value, saying where it came from when it is wrong.
fn parse_mode(value: &str, origin: Origin) -> Result<SslMode, String> {
    SslMode::parse(value).ok_or_else(|| {
        let at = match origin {
            Origin::Param => String::new(),
            Origin::Env(variable) => format!(" in {variable}"),
        };
        format!(
            "unknown sslmode {value:?}{at}; use disable, allow, prefer, require, verify-ca or \
             verify-full"
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// An environment holding just `vars`.
    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| vars.get(name).cloned()
    }

    /// Settings from `params` (key, value) and the environment `vars`.
    fn resolve(params: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Tls, String> {
        let mut taken = TlsParams::default();
        for (key, value) in params {
            assert!(taken.take(key, value).unwrap(), "{key}");
        }
        taken.resolve(env(vars))
    }

    #[test]
    fn modes_round_trip() {
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
        assert_eq!(SslMode::parse(""), None);
    }

    #[test]
    fn system_roots_force_verify_full() {
        let tls = resolve(&[("sslrootcert", "system")], &[]).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::System));
        let err = resolve(&[("sslmode", "verify-ca"), ("sslrootcert", "system")], &[]).unwrap_err();
        assert!(err.contains("needs sslmode=verify-full"), "{err}");
        assert!(!err.contains("(from"), "{err}");
        assert_eq!(resolve(&[], &[]).unwrap().mode, SslMode::Prefer);
        // An empty sslrootcert means the default file, as in libpq.
        assert_eq!(
            resolve(&[("sslrootcert", "")], &[]).unwrap().root_cert,
            None
        );
    }

    #[test]
    fn the_environment_fills_in_what_the_url_leaves_out() {
        let vars = [("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", "/etc/ca.pem")];
        let tls = resolve(&[], &vars).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));

        // The URL wins, parameter by parameter.
        let tls = resolve(&[("sslmode", "require")], &vars).unwrap();
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        let tls = resolve(&[("sslrootcert", "/url/ca.pem")], &vars).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, Some(RootCert::File("/url/ca.pem".into())));
        // An empty sslrootcert in the URL is still given: the default file, not PGSSLROOTCERT.
        let tls = resolve(&[("sslrootcert", "")], &vars).unwrap();
        assert_eq!(tls.root_cert, None);

        // Empty variables count as unset.
        let tls = resolve(&[], &[("PGSSLMODE", ""), ("PGSSLROOTCERT", "")]).unwrap();
        assert_eq!(tls.mode, SslMode::Prefer);
        assert_eq!(tls.root_cert, None);
    }

    #[test]
    fn system_roots_from_the_environment_follow_libpq_too() {
        let tls = resolve(&[], &[("PGSSLROOTCERT", "system")]).unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::System));
        // A mode from the environment is as explicit as one in the URL (libpq's rule).
        let err = resolve(&[("sslrootcert", "system")], &[("PGSSLMODE", "require")]).unwrap_err();
        assert!(
            err.contains("not sslmode=require (from PGSSLMODE)"),
            "{err}"
        );
        let err = resolve(&[("sslmode", "prefer")], &[("PGSSLROOTCERT", "system")]).unwrap_err();
        assert!(
            err.contains("sslrootcert=system (from PGSSLROOTCERT) needs"),
            "{err}"
        );
        // The URL's own mode and roots override the environment's conflicting ones.
        let tls = resolve(
            &[("sslmode", "require"), ("sslrootcert", "/ca.pem")],
            &[("PGSSLROOTCERT", "system"), ("PGSSLMODE", "disable")],
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::Require);
    }

    #[test]
    fn a_bad_pgsslmode_names_the_variable() {
        let err = resolve(&[], &[("PGSSLMODE", "verify_full")]).unwrap_err();
        assert!(
            err.contains("unknown sslmode \"verify_full\" in PGSSLMODE"),
            "{err}"
        );
        assert!(err.contains("verify-ca or verify-full"), "{err}");
        // Not read at all when the URL sets sslmode.
        let tls = resolve(&[("sslmode", "disable")], &[("PGSSLMODE", "bogus")]).unwrap();
        assert_eq!(tls.mode, SslMode::Disable);
    }

    #[test]
    fn home_gives_the_default_root_file() {
        let tls = resolve(&[], &[("HOME", "/home/airflow")]).unwrap();
        assert_eq!(
            tls.default_root.as_deref(),
            Some(Path::new("/home/airflow/.postgresql/root.crt"))
        );
        assert_eq!(resolve(&[], &[("HOME", "")]).unwrap().default_root, None);
        assert_eq!(resolve(&[], &[]).unwrap().default_root, None);
    }

    #[test]
    fn unsupported_parameters_are_refused_and_others_left_alone() {
        let mut params = TlsParams::default();
        let err = params.take("sslcert", "client.crt").unwrap_err();
        assert!(
            err.contains("client certificates are not supported"),
            "{err}"
        );
        let err = params.take("ssl", "true").unwrap_err();
        assert!(err.contains("spelled sslmode"), "{err}");
        assert!(!params.take("application_name", "x").unwrap());
    }
}
