//! Database URLs in the forms users have at hand, and connections that report failures clearly.
//!
//! libpq's TLS parameters (`sslmode`, `sslrootcert`) are taken out of the URL here, since
//! tokio-postgres knows only some `sslmode` values and no `sslrootcert`; `tls/` acts on them.

use std::ffi::OsString;
use std::ops::Range;
use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

use super::tls::{RootCert, SslMode, Tls, TlsParams};
use crate::error::{Error, Result};

/// Environment variables that may hold the database URL, in the order they are consulted.
///
/// `DATABASE_URL` is the common convention; the other two are where Airflow itself reads its
/// connection (2.3+ and older), so contrail running as a task inside Airflow finds it unasked.
pub const DATABASE_URL_VARIABLES: [&str; 3] = [
    "DATABASE_URL",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
];

/// A PostgreSQL connection target. Its `Display` never shows the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: Config,
    tls: Tls,
}

impl DatabaseUrl {
    /// Parses `postgresql://…`, `postgres://…`, SQLAlchemy's `postgresql+psycopg2://…` (any
    /// `+driver`), or a libpq `key=value` string.
    ///
    /// TLS follows libpq: `sslmode` is `disable`, `allow` (taken as `prefer`), `prefer` (the
    /// default), `require`, `verify-ca` or `verify-full`, and `sslrootcert` names a PEM file of
    /// trusted roots or is `system` for the operating system's trust store (which makes
    /// `verify-full` the default and refuses weaker modes). Where the string does not set them,
    /// the environment variables `PGSSLMODE` and `PGSSLROOTCERT` do, as in libpq; `HOME` locates
    /// the default roots, `~/.postgresql/root.crt`. Over Unix sockets, TLS is not used.
    ///
    /// # Errors
    /// [`Error::DatabaseUrl`] when it is none of those or a TLS parameter is invalid; the
    /// message never repeats the password.
    pub fn parse(text: &str) -> Result<DatabaseUrl> {
        DatabaseUrl::parse_with_env(text, |name| std::env::var_os(name))
    }

    /// [`DatabaseUrl::parse`] with the environment variables it reads (`PGSSLMODE`,
    /// `PGSSLROOTCERT`, `HOME`) looked up through `env` instead of the process environment.
    ///
    /// # Errors
    /// As [`DatabaseUrl::parse`].
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<DatabaseUrl> {
        let text = text.trim();
        let normalized = match text.split_once("://") {
            Some((scheme, rest)) => {
                let base = scheme.split('+').next().unwrap_or(scheme);
                if base != "postgresql" && base != "postgres" {
                    return Err(Error::DatabaseUrl {
                        message: format!(
                            "scheme {scheme:?} is not PostgreSQL; contrail reads Airflow metadata \
                             from PostgreSQL only (postgresql://user@host:port/dbname)"
                        ),
                    });
                }
                format!("postgresql://{rest}")
            }
            None => text.to_owned(),
        };
        let (rest, params) = if normalized.contains("://") {
            take_url_params(&normalized)?
        } else {
            take_key_value_params(&normalized)?
        };
        let mut config = Config::from_str(&rest).map_err(|e| Error::DatabaseUrl {
            message: format!("{e}; expected postgresql://user:password@host:port/dbname"),
        })?;
        let mut tls = params
            .resolve(env)
            .map_err(|message| Error::DatabaseUrl { message })?;
        name_hostaddrs(&mut config, tls.mode)?;
        let unix_only = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        if unix_only {
            tls = tls.over_unix_sockets_only();
        }
        config.ssl_mode(tls.driver_mode());
        Ok(DatabaseUrl { config, tls })
    }

    /// The driver configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database name, if the URL gives one.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The `sslmode`: the URL's, else `PGSSLMODE`'s, else libpq's default ([`SslMode::Prefer`],
    /// or [`SslMode::VerifyFull`] with `sslrootcert=system`).
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// The `sslrootcert`, if the URL or `PGSSLROOTCERT` gives one.
    pub fn ssl_root_cert(&self) -> Option<&RootCert> {
        self.tls.root_cert.as_ref()
    }

    /// The host names, comma separated, as certificates must name them.
    fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(host) => host.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        hosts.join(",")
    }
}

/// Gives each `hostaddr` without a `host` its address as host name. tokio-postgres refuses TLS
/// without a host name, even where no certificate check looks at it, while libpq connects;
/// `verify-full` needs a real name, as in libpq, and a Unix socket as host leaves TLS nothing
/// to name either.
///
/// # Errors
/// [`Error::DatabaseUrl`] for `verify-full` with `hostaddr` alone, or a Unix-socket `host`
/// paired with a `hostaddr` when TLS may be used.
fn name_hostaddrs(config: &mut Config, mode: SslMode) -> Result<()> {
    let addrs = config.get_hostaddrs().to_vec();
    if addrs.is_empty() {
        return Ok(());
    }
    if config.get_hosts().is_empty() {
        if mode == SslMode::VerifyFull {
            return Err(Error::DatabaseUrl {
                message: "sslmode=verify-full checks the host name the server's certificate \
                          names, but only hostaddr is given: add host=<that name> (hostaddr \
                          still says where to connect), or use sslmode=verify-ca"
                    .to_owned(),
            });
        }
        for addr in addrs {
            config.host(addr.to_string());
        }
    } else if mode != SslMode::Disable
        && config
            .get_hosts()
            .iter()
            .any(|h| !matches!(h, Host::Tcp(_)))
    {
        return Err(Error::DatabaseUrl {
            message: format!(
                "host is a Unix socket directory but hostaddr connects over TCP, where \
                 sslmode={} needs a host name for TLS: give the server's host name as host, or \
                 leave out hostaddr",
                mode.as_str()
            ),
        });
    }
    Ok(())
}

/// Splits the TLS parameters off the query string of `postgresql://…` (and keeps the others).
/// The query starts at the first `?` after the credentials, which end at the first `@`, as in
/// tokio-postgres's parser.
fn take_url_params(url: &str) -> Result<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let after_credentials = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    let Some(query_at) = url[after_credentials..]
        .find('?')
        .map(|i| after_credentials + i)
    else {
        return Ok((url.to_owned(), params));
    };
    let mut kept = Vec::new();
    for pair in url[query_at + 1..].split('&') {
        let taken = match pair.split_once('=') {
            Some((key, value)) => params
                .take(&decode(key)?, &decode(value)?)
                .map_err(|message| Error::DatabaseUrl { message })?,
            None => false,
        };
        if !taken && !pair.is_empty() {
            kept.push(pair);
        }
    }
    let mut rest = url[..query_at].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, params))
}

/// Percent-decodes a URL query key or value.
fn decode(text: &str) -> Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| Error::DatabaseUrl {
            message: "a query parameter is not valid percent-encoded UTF-8".to_owned(),
        })
}

/// Splits the TLS parameters off a libpq `key=value` string (and keeps the others as written).
fn take_key_value_params(text: &str) -> Result<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let Some(pairs) = key_values(text) else {
        // Malformed: tokio-postgres's parser says where.
        return Ok((text.to_owned(), params));
    };
    let mut kept = Vec::new();
    for (key, value, span) in pairs {
        let taken = params
            .take(key, &value)
            .map_err(|message| Error::DatabaseUrl { message })?;
        if !taken {
            kept.push(&text[span]);
        }
    }
    Ok((kept.join(" "), params))
}

/// The `key = value` pairs of a libpq connection string: each key, its unquoted and unescaped
/// value, and the span of the whole pair. `None` when it is malformed. Follows tokio-postgres's
/// parser: values are bare up to white space, or in single quotes, with `\` escaping.
fn key_values(text: &str) -> Option<Vec<(&str, String, Range<usize>)>> {
    let mut pairs = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Some(pairs);
        };
        let mut key_end = start;
        while let Some((i, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key_end = i + c.len_utf8();
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=')?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let mut end = key_end;
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        loop {
            let Some(&(i, c)) = chars.peek() else {
                if quoted {
                    return None;
                }
                break;
            };
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                if quoted {
                    chars.next();
                    end = i + 1;
                }
                break;
            }
            chars.next();
            end = i + c.len_utf8();
            if c == '\\' {
                if let Some((j, escaped)) = chars.next() {
                    value.push(escaped);
                    end = j + escaped.len_utf8();
                }
            } else {
                value.push(c);
            }
        }
        if key_end == start || (!quoted && value.is_empty()) {
            return None;
        }
        pairs.push((&text[start..key_end], value, start..end));
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self
            .config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let db = self.config.get_dbname().unwrap_or("");
        write!(f, "postgresql://{user}{host}:{port}/{db}")
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Connects, sets the session to UTC and read-friendly defaults, and drives the connection on
/// the tokio runtime.
///
/// TLS is negotiated as the URL's `sslmode` and `sslrootcert` say (see [`DatabaseUrl::parse`]).
///
/// # Errors
/// [`Error::Connect`] naming the database (without password) when the server cannot be reached
/// or refuses the credentials; [`Error::Tls`] when trusted roots cannot be loaded, the server
/// does not offer TLS that the mode requires, requires TLS that `sslmode=disable` forbids, or
/// its certificate is refused.
pub async fn connect(url: &DatabaseUrl) -> Result<Client> {
    let database = url.to_string();
    let tls = url.tls.connector(&database)?;
    let mut config = url.config.clone();
    config.application_name("contrail");
    let (client, connection) = config
        .connect(tls.make.clone())
        .await
        .map_err(|source| tls.explain(url.tls.mode, database.clone(), &url.hosts(), source))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(database = %database, error = %error, "Database connection closed with an error.");
        }
    });
    client
        .batch_execute("SET TimeZone = 'UTC'; SET statement_timeout = 0;")
        .await
        .map_err(Error::query("session settings"))?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::SslMode as DriverMode;

    use super::*;

    /// Parses `text` as if the environment were empty, so the developer's `PGSSLMODE` or
    /// `~/.postgresql/root.crt` cannot change what the tests see.
    fn parse(text: &str) -> Result<DatabaseUrl> {
        DatabaseUrl::parse_with_env(text, |_| None)
    }

    #[test]
    fn accepts_sqlalchemy_urls_and_hides_passwords() {
        let url = parse("postgresql+psycopg2://airflow:s3cret@db.example:6543/airflow").unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://airflow@db.example:6543/airflow"
        );
        assert_eq!(url.dbname(), Some("airflow"));
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = parse("postgres://u@h/d").unwrap();
        assert_eq!(plain.to_string(), "postgresql://u@h:5432/d");
        assert!(parse("host=/tmp port=5433 user=postgres dbname=x").is_ok());
    }

    #[test]
    fn tls_parameters_in_urls_are_taken_before_tokio_postgres_sees_them() {
        let url = parse(
            "postgresql://u:pa?ss@db.example:5432/airflow?connect_timeout=7&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Frds%2Fglobal-bundle.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            url.ssl_root_cert(),
            Some(&RootCert::File("/etc/rds/global-bundle.pem".into()))
        );
        let config = url.config();
        assert_eq!(config.get_ssl_mode(), DriverMode::Require);
        assert_eq!(config.get_password(), Some(&b"pa?ss"[..]));
        assert_eq!(
            config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        assert_eq!(config.get_application_name(), Some("x"));

        // Only TLS parameters: nothing is left of the query.
        let url = parse("postgres://u@h/d?sslmode=verify-ca&sslrootcert=ca.pem").unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(url.ssl_root_cert(), Some(&RootCert::File("ca.pem".into())));

        // The default is libpq's, prefer; `system` roots make verify-full the default.
        let url = parse("postgresql://u@h/d").unwrap();
        assert_eq!(url.ssl_mode(), SslMode::Prefer);
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Prefer);
        let url = parse("postgresql://u@h/d?sslrootcert=system").unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(url.ssl_root_cert(), Some(&RootCert::System));
        let url = parse("postgresql://u@h/d?sslmode=disable").unwrap();
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Disable);
    }

    #[test]
    fn sqlalchemy_urls_carry_sslmode_too() {
        let url =
            parse("postgresql+psycopg2://airflow:s3cret@db.example:6543/airflow?sslmode=require")
                .unwrap();
        assert_eq!(url.ssl_mode(), SslMode::Require);
        assert_eq!(url.ssl_root_cert(), None);
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Require);
        assert_eq!(
            url.to_string(),
            "postgresql://airflow@db.example:6543/airflow"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn tls_parameters_in_key_value_strings_are_taken_too() {
        let url = parse(
            "host=db.example port = 5433 user=u password='p w\\'x' sslmode=verify-ca \
             sslrootcert='/a b/ca.pem' dbname=airflow",
        )
        .unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(
            url.ssl_root_cert(),
            Some(&RootCert::File("/a b/ca.pem".into()))
        );
        assert_eq!(url.config().get_password(), Some(&b"p w'x"[..]));
        assert_eq!(url.config().get_ports(), &[5433]);
        assert_eq!(url.dbname(), Some("airflow"));
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Require);

        let url = parse("sslrootcert=system host=h dbname=d").unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);

        // libpq ignores sslmode over Unix sockets, and so does contrail.
        let url = parse("host=/tmp dbname=d sslmode=require").unwrap();
        assert_eq!(url.ssl_mode(), SslMode::Require);
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Disable);

        // Malformed strings are left to tokio-postgres's parser, which says what is wrong.
        let err = parse("host=h password='unterminated")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid database URL"), "{err}");
        assert!(!err.contains("unterminated"), "{err}");
    }

    #[test]
    fn bad_tls_parameters_are_clear_errors_without_the_password() {
        for text in [
            "postgresql://u:hunter2@h/d?sslmode=verify_full",
            "postgresql+psycopg2://u:hunter2@h/d?sslmode=VERIFY-FULL",
            "host=h user=u password=hunter2 sslmode=verify_full",
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, Error::DatabaseUrl { .. }), "{err:?}");
            let err = err.to_string();
            assert!(err.contains("unknown sslmode"), "{err}");
            assert!(err.contains("verify-ca or verify-full"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        for (text, needle) in [
            (
                "postgresql://u:hunter2@h/d?sslrootcert=system&sslmode=require",
                "sslrootcert=system needs sslmode=verify-full",
            ),
            (
                "postgresql://u:hunter2@h/d?sslcert=client.crt",
                "client certificates are not supported",
            ),
            ("postgresql://u:hunter2@h/d?ssl=true", "spelled sslmode"),
            (
                "host=h password=hunter2 sslmode=verify-ca sslrootcert=system",
                "not sslmode=verify-ca",
            ),
            ("postgresql://u:hunter2@h/d?sslmode=%FF", "percent-encoded"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn rejects_other_databases_without_echoing_secrets() {
        let err = parse("mysql://root:hunter2@h/airflow")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not PostgreSQL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn pgsslmode_and_pgsslrootcert_apply_where_the_url_is_silent() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some(OsString::from("verify-ca")),
            "PGSSLROOTCERT" => Some(OsString::from("/etc/ca.pem")),
            _ => None,
        };
        let url = DatabaseUrl::parse_with_env("postgresql://u:hunter2@h/d", env).unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(
            url.ssl_root_cert(),
            Some(&RootCert::File("/etc/ca.pem".into()))
        );
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Require);
        let url = DatabaseUrl::parse_with_env("host=h sslmode=require", env).unwrap();
        assert_eq!(url.ssl_mode(), SslMode::Require);
        assert_eq!(
            url.ssl_root_cert(),
            Some(&RootCert::File("/etc/ca.pem".into()))
        );
        let url =
            DatabaseUrl::parse_with_env("postgresql://h/d?sslrootcert=%2Furl.pem", env).unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(
            url.ssl_root_cert(),
            Some(&RootCert::File("/url.pem".into()))
        );

        let err = DatabaseUrl::parse_with_env("postgresql://u:hunter2@h/d", |name: &str| {
            (name == "PGSSLMODE").then(|| OsString::from("on"))
        })
        .unwrap_err();
        assert!(matches!(err, Error::DatabaseUrl { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("unknown sslmode \"on\" in PGSSLMODE"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn hostaddr_alone_gets_its_address_as_host_name_except_for_verify_full() {
        // tokio-postgres refuses TLS without a host name; libpq connects.
        for text in [
            "hostaddr=10.0.0.5 port=5433 user=u dbname=d",
            "hostaddr=10.0.0.5 user=u dbname=d sslmode=require",
            "postgresql://u@/d?hostaddr=10.0.0.5&sslmode=verify-ca&sslrootcert=ca.pem",
        ] {
            let url = parse(text).unwrap();
            assert_eq!(
                url.config().get_hosts(),
                &[Host::Tcp("10.0.0.5".to_owned())],
                "{text}"
            );
            assert!(
                url.to_string().starts_with("postgresql://u@10.0.0.5:"),
                "{url}"
            );
        }
        let url = parse("hostaddr=::1 dbname=d").unwrap();
        assert_eq!(url.config().get_hosts(), &[Host::Tcp("::1".to_owned())]);

        // With a host, it is the host that names the server, as in libpq.
        let url =
            parse("host=db.example hostaddr=10.0.0.5 sslmode=verify-full sslrootcert=c").unwrap();
        assert_eq!(
            url.config().get_hosts(),
            &[Host::Tcp("db.example".to_owned())]
        );

        // verify-full needs a name to check: libpq fails too.
        for text in [
            "hostaddr=10.0.0.5 password=hunter2 sslmode=verify-full",
            "hostaddr=10.0.0.5 password=hunter2 sslrootcert=system",
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains("only hostaddr is given"), "{err}");
            assert!(err.contains("add host="), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_unix_socket_with_hostaddr_is_not_quietly_plaintext() {
        // hostaddr connects over TCP, so sslmode applies; it used to be dropped as for a socket.
        let err = parse("host=/tmp hostaddr=10.0.0.5 sslmode=verify-full")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Unix socket directory"), "{err}");
        let url = parse("host=/tmp hostaddr=10.0.0.5 sslmode=disable").unwrap();
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Disable);
    }

    #[test]
    fn unix_sockets_ignore_a_verifying_mode_from_the_environment() {
        let env = |name: &str| (name == "PGSSLMODE").then(|| OsString::from("verify-full"));
        let url = DatabaseUrl::parse_with_env("host=/var/run/postgresql dbname=d", env).unwrap();
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(url.config().get_ssl_mode(), DriverMode::Disable);
        // No roots are needed, so none are looked for.
        assert!(url.tls.connector(&url.to_string()).is_ok());
    }
}
