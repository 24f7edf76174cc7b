//! Shared test harness: a real PostgreSQL cluster and a moto server per test binary, Airflow DDL
//! fixtures, and a way to run the `contrail` binary.

#![allow(dead_code, unreachable_pub)]

pub mod faulty;
pub mod fixtures;
pub mod moto;
pub mod pg;
pub mod pyarrow;
pub mod tls;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the built `contrail` binary with `args` and extra environment.
pub fn contrail(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_contrail"));
    cmd.args(args);
    for var in [
        "DATABASE_URL",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the contrail binary")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
