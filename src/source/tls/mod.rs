//! TLS for PostgreSQL connections with libpq's `sslmode` and `sslrootcert` semantics (and its
//! `PGSSLMODE` and `PGSSLROOTCERT` environment variables), over rustls and the aws-lc-rs
//! provider that the AWS SDK already brings.
//!
//! This module owns the TLS parameters, loading trusted roots, the choice of certificate
//! verification, and the wording of TLS failures. It does not split connection strings
//! (`connect.rs` does) and never installs a process-wide crypto provider: every configuration
//! names its provider.

mod connector;
mod explain;
mod params;
mod roots;
mod verifier;

pub(super) use connector::Tls;
pub(super) use params::TlsParams;
pub use params::{RootCert, SslMode};
