//! Database URLs in the forms users have at hand, and connections that report failures clearly.

use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

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
}

impl DatabaseUrl {
    /// Parses `postgresql://…`, `postgres://…`, SQLAlchemy's `postgresql+psycopg2://…` (any
    /// `+driver`), or a libpq `key=value` string.
    ///
    /// # Errors
    /// [`Error::DatabaseUrl`] when it is none of those; the message never repeats the password.
    pub fn parse(text: &str) -> Result<DatabaseUrl> {
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
        let config = Config::from_str(&normalized).map_err(|e| Error::DatabaseUrl {
            message: format!("{e}; expected postgresql://user:password@host:port/dbname"),
        })?;
        Ok(DatabaseUrl { config })
    }

    /// The driver configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database name, if the URL gives one.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
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
/// # Errors
/// [`Error::Connect`] naming the database (without password) when the server cannot be reached
/// or refuses the credentials.
pub async fn connect(url: &DatabaseUrl) -> Result<Client> {
    let mut config = url.config.clone();
    config.application_name("contrail");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| Error::Connect {
            database: url.to_string(),
            source,
        })?;
    let database = url.to_string();
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
    use super::*;

    #[test]
    fn accepts_sqlalchemy_urls_and_hides_passwords() {
        let url =
            DatabaseUrl::parse("postgresql+psycopg2://airflow:s3cret@db.example:6543/airflow")
                .unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://airflow@db.example:6543/airflow"
        );
        assert_eq!(url.dbname(), Some("airflow"));
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = DatabaseUrl::parse("postgres://u@h/d").unwrap();
        assert_eq!(plain.to_string(), "postgresql://u@h:5432/d");
        assert!(DatabaseUrl::parse("host=/tmp port=5433 user=postgres dbname=x").is_ok());
    }

    #[test]
    fn rejects_other_databases_without_echoing_secrets() {
        let err = DatabaseUrl::parse("mysql://root:hunter2@h/airflow")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not PostgreSQL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
