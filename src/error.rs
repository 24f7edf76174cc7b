//! The crate's error type.
//!
//! Every variant names the thing that failed (a schema file, a table, a revision, a database, an
//! object) and its message ends with what the user can do about it. `anyhow` is used only in
//! `main.rs` and `cli`, which print the chain.

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

    /// TLS with PostgreSQL could not be set up, or the server or its certificate was refused
    /// (`sslmode`, `sslrootcert`).
    #[error("TLS connection to {database} failed: {message}")]
    Tls {
        /// The database, with any password removed.
        database: String,
        /// What was refused and what the user can do about it.
        message: String,
        /// The driver's error, when the handshake itself failed.
        #[source]
        source: Option<tokio_postgres::Error>,
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

    /// The connection to PostgreSQL was lost while a table was being read.
    #[error(
        "lost the connection to the database while reading {table}: the server \
         restarted, the session was terminated, or the network failed. Nothing was published; \
         re-run the export"
    )]
    ConnectionLost {
        /// The table being read.
        table: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A table cannot be read as its canonical form.
    #[error("cannot plan the export of {table}: {message}")]
    Plan {
        /// The table.
        table: String,
        /// Why.
        message: String,
    },

    /// A value read from the database could not be decoded.
    #[error("decoding {table}: {source}")]
    Decode {
        /// The table.
        table: String,
        /// What was wrong (never the value itself).
        #[source]
        source: crate::source::decode::DecodeError,
    },

    /// An object store location or option is unusable: an unknown URL scheme, an invalid key,
    /// an option out of range, no AWS region.
    #[error("{location}: {message}")]
    StoreConfig {
        /// The store URL or object key concerned.
        location: String,
        /// What is wrong and what to do about it.
        message: String,
    },

    /// The synthetic history generator cannot fill a table as asked.
    #[error("generate {table}: {message}")]
    Generate {
        /// The table concerned.
        table: String,
        /// What is wrong and what to do about it.
        message: String,
    },

    /// An object store operation failed.
    #[error("{operation} {object}: {message}")]
    Store {
        /// What kind of failure, for callers that branch on it.
        kind: StoreErrorKind,
        /// The operation, e.g. `put`, `get`, `list`.
        operation: &'static str,
        /// The object (or prefix, or store root) as a full location: `s3://bucket/key` or a path.
        object: String,
        /// The cause, rendered in full, and what the user can do about it.
        message: String,
        /// The underlying I/O or SDK error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// An export could not be completed.
    #[error("export failed: {message}")]
    Export {
        /// What failed and what to do.
        message: String,
    },

    /// A dataset file or manifest is missing, corrupt, or not what its manifest says.
    #[error("dataset object {object}: {message}")]
    Dataset {
        /// The object (key relative to the dataset, or the dataset's URL).
        object: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// An import cannot start or could not be completed; nothing was committed.
    #[error("import into {table}: {message}")]
    Import {
        /// The target table concerned, or `the target database`.
        table: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// A CloudWatch Logs copy or archive cannot start or failed: a missing group, no region or
    /// credentials, a call that kept failing.
    #[error("{target}: {message}")]
    Logs {
        /// The log group or stream (or the service) concerned.
        target: String,
        /// What failed and what the user can do.
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

/// The kinds of object store failure that callers branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The object does not exist.
    NotFound,
    /// A create-only write found the object already there.
    AlreadyExists,
    /// Anything else: permissions, network, a missing bucket, a full disk.
    Other,
}

impl Error {
    /// The store failure kind, if this is an [`Error::Store`].
    pub fn store_kind(&self) -> Option<StoreErrorKind> {
        match self {
            Error::Store { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether this is a store error of kind [`StoreErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.store_kind() == Some(StoreErrorKind::NotFound)
    }

    /// Whether this is a store error of kind [`StoreErrorKind::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        self.store_kind() == Some(StoreErrorKind::AlreadyExists)
    }

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
