//! contrail moves the history of Apache Airflow environments: it reads the metadata database,
//! maps it between Airflow schema versions, and writes it where the next environment or an
//! analyst can use it.
//!
//! The pipeline stages are modules: [`catalog`] (what each Airflow version's schema is),
//! [`source`] (reading PostgreSQL), [`remap`] (pure value and column transforms), [`dataset`]
//! (the files' contract), [`store`] (local directories and S3), [`export`], [`load`] (import into another database), [`generate`]
//! (synthetic history for tests and benchmarks), [`logs`] (CloudWatch task logs), and [`cli`] (the command line).

pub mod catalog;
pub mod cli;
pub mod dataset;
pub mod error;
pub mod export;
pub mod generate;
pub mod load;
pub mod logs;
pub mod remap;
pub mod source;
pub mod store;

pub use error::{Error, Result};
