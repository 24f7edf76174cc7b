//! contrail's integration tests: one binary, run against a real PostgreSQL cluster that the
//! harness in `util/` starts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod catalog;
mod generate;
mod inspect;
mod util;
