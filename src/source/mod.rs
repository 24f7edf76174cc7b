//! Reading an Airflow metadata database in PostgreSQL: connecting, and looking at what is there.
//!
//! This module owns every query against the source database; it does not know about files,
//! object stores or the command line.

mod connect;
pub mod decode;
pub mod inspect;
pub mod query;
pub mod ranges;
pub mod read;
pub mod runs;
pub mod snapshot;
mod tls;

pub use connect::{DATABASE_URL_VARIABLES, DatabaseUrl, connect};
pub use tls::{RootCert, SslMode};
