//! The on-disk contract that analysts and `contrail import` read: where files go, how rows are
//! partitioned and sorted, how Parquet and CSV are encoded, and the manifest that makes an export real.
//!
//! Nothing here talks to PostgreSQL or knows which object store holds the files.

pub mod csv;
pub mod dictionary;
pub mod gather;
pub mod layout;
pub mod manifest;
pub mod parquet;
pub mod partition;
pub mod read;
pub mod sorted;
pub mod spill;
