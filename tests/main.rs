//! contrail's integration tests: one binary, run against a real PostgreSQL cluster and a moto
//! server (the S3 and CloudWatch Logs emulator) that the harness in `util/` starts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod catalog;
mod export;
mod export_csv;
mod export_faults;
mod export_files;
mod export_incremental;
mod export_s3;
mod export_versions;
mod generate;
mod import;
mod import_cli;
mod import_faults;
mod inspect;
mod logs;
mod source;
mod store;
mod tls;
mod util;
