//! The on-disk form of `schemas/`: serde structures that mirror the TOML files one to one.
//!
//! Nothing here interprets versions; [`super::load`] resolves these into the catalog.

use indexmap::IndexMap;
use serde::Deserialize;

include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

/// `schemas/versions.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionsFile {
    pub(crate) canonical_version: u32,
    pub(crate) version: Vec<VersionEntry>,
}

/// One `[[version]]` of `versions.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionEntry {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
    pub(crate) releases: String,
    pub(crate) heads: Vec<String>,
}

/// A timeline as written: schema version id → value from that version on.
pub(crate) type RawTimeline<T> = IndexMap<String, T>;

/// `schemas/tables/<table>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableFile {
    pub(crate) name: String,
    pub(crate) description: String,
    /// Whether the table exists, per version.
    pub(crate) exists: RawTimeline<bool>,
    /// Columns whose first non-NULL value is the row's time, per version. Tables that have no
    /// time (variable, slot_pool, connection) leave it out.
    #[serde(default)]
    pub(crate) time: RawTimeline<Vec<String>>,
    /// Column name → (version → spec such as `"varchar(250) not null"`, or `"-"` for dropped).
    pub(crate) columns: IndexMap<String, RawTimeline<String>>,
    /// Column name → other types the column is known to have on databases that came through
    /// Airflow's migrations rather than a fresh `airflow db migrate`.
    #[serde(default)]
    pub(crate) drift: IndexMap<String, Vec<String>>,
    pub(crate) keys: KeysSection,
    pub(crate) canonical: CanonicalSection,
}

/// `[keys]` of a table file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysSection {
    pub(crate) primary: RawTimeline<Vec<String>>,
    #[serde(default)]
    pub(crate) unique: RawTimeline<Vec<Vec<String>>>,
    /// Foreign keys written `"a, b -> table(c, d)"`.
    #[serde(default)]
    pub(crate) foreign: RawTimeline<Vec<String>>,
}

/// `[canonical]` of a table file: the table's shape in the interchange model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanonicalSection {
    /// Canonical columns that identify a row across environments.
    pub(crate) natural_key: Vec<String>,
    /// Canonical columns that files are sorted by within a partition.
    pub(crate) sort: Vec<String>,
    /// Canonical timestamp columns; the first non-NULL one gives the row's day partition.
    /// Empty for tables that are not partitioned by time.
    #[serde(default)]
    pub(crate) partition: Vec<String>,
    /// Airflow columns deliberately not carried, with the reason.
    #[serde(default)]
    pub(crate) skip: IndexMap<String, String>,
    pub(crate) columns: IndexMap<String, CanonicalColumnEntry>,
}

/// One canonical column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanonicalColumnEntry {
    #[serde(rename = "type")]
    pub(crate) ty: String,
    #[serde(default = "default_true")]
    pub(crate) nullable: bool,
    /// Where the value comes from, per version; by default the same-named Airflow column.
    #[serde(default)]
    pub(crate) from: RawTimeline<String>,
    /// What the column means, when its name does not say it.
    #[serde(default)]
    pub(crate) doc: Option<String>,
}

fn default_true() -> bool {
    true
}
