//! `contrail inspect` against databases with real Airflow schemas.
