//! Pure Arrow→Arrow and value→value remapping between Airflow's stored forms and the canonical
//! model. No I/O, no async, no clock: everything here is a function of its arguments.
//!
//! So far this holds the payload codecs: pickled and XCom payloads to JSON ([`pickle_to_json`],
//! [`xcom_bytes_to_json`], column-wise [`split_payload_column`]) and back ([`json_to_pickle`],
//! [`json_to_xcom_bytes`]). Which column gets which rule is data in `schemas/`, not code here.

mod encode;
mod error;
mod json;
mod payload;
mod pickle;

pub use encode::{json_to_pickle, json_to_xcom_bytes};
pub use error::DecodeError;
pub use payload::{PayloadKind, split_payload, split_payload_column, xcom_bytes_to_json};
pub use pickle::pickle_to_json;

#[cfg(test)]
mod tests;
