//! Pure Arrow→Arrow and value→value remapping between Airflow's stored forms and the canonical
//! model. No I/O, no async, no clock: everything here is a function of its arguments.
//!
//! So far this holds the restricted pickle decoder [`pickle_to_json`].

mod error;
mod json;
mod pickle;

pub use error::DecodeError;
pub use pickle::pickle_to_json;
