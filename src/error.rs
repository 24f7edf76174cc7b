//! The crate's error type.
//!
//! Every variant names the thing that failed (a schema file, a table, a revision, a database) and
//! its message ends with what the user can do about it. `anyhow` is used only in `main.rs` and
//! `cli`, which print the chain.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in contrail's library code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file under `schemas/` is malformed or contradicts another one.
    #[error("schema catalog file {file}: {message}")]
    Catalog {
        /// The file, relative to `schemas/`.
        file: String,
        /// What is wrong with it.
        message: String,
    },

    /// The database's `alembic_version` names a revision the catalog does not know.
    #[error(
        "the database is at alembic revision {revisions} which contrail does not know; \
         known Airflow schema versions: {known}. Upgrade Airflow to one of them with \
         `airflow db migrate`, or upgrade contrail"
    )]
    UnknownRevision {
        /// The revision(s) found in `alembic_version`, comma separated.
        revisions: String,
        /// The versions contrail knows, comma separated.
        known: String,
    },

    /// The database has no `alembic_version` table or it is empty.
    #[error(
        "{database} does not look like an Airflow metadata database: {reason}. \
         Check the URL, or run `airflow db migrate` on it first"
    )]
    NotAirflow {
        /// The database, with any password removed.
        database: String,
        /// Why it was not recognised.
        reason: String,
    },

    /// The user named an Airflow version the catalog does not describe.
    #[error("unknown Airflow schema version {given:?}; known versions: {known}")]
    UnknownVersion {
        /// What the user gave.
        given: String,
        /// The versions contrail knows, comma separated.
        known: String,
    },

    /// A database URL could not be understood.
    #[error("invalid database URL: {message}")]
    DatabaseUrl {
        /// What is wrong with it (never contains the password).
        message: String,
    },

    /// Connecting to PostgreSQL failed.
    #[error(
        "could not connect to {database}: {source}. Check host, port, credentials and that the server accepts connections"
    )]
    Connect {
        /// The database, with any password removed.
        database: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A query failed.
    #[error("query on {object} failed: {source}")]
    Query {
        /// The table or catalog object queried.
        object: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The synthetic history generator cannot fill a table as asked.
    #[error("generate {table}: {message}")]
    Generate {
        /// The table concerned.
        table: String,
        /// What is wrong and what to do about it.
        message: String,
    },

    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Builds an [`Error::Catalog`].
    pub(crate) fn catalog(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Catalog {
            file: file.into(),
            message: message.into(),
        }
    }

    /// Returns a closure that wraps a driver error as an [`Error::Query`] on `object`.
    pub(crate) fn query(object: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let object = object.into();
        move |source| Error::Query { object, source }
    }
}
