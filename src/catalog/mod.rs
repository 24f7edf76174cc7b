//! The schema catalog: what every Airflow schema version looks like and how it maps to the
//! canonical interchange model.
//!
//! The facts live in `schemas/` as data (embedded at build time); this module loads and checks
//! them, and [`detect`] compares them with a live database. Everything but `detect` is pure.

mod canonical;
pub mod detect;
mod files;
mod load;
mod pgtype;
mod table;
mod timeline;

use std::sync::OnceLock;

pub use canonical::{
    CanonicalColumn, CanonicalTable, CanonicalType, LOGICAL_TYPE_KEY, RULES, Rule, RuleArgs,
    Source, rule,
};
pub(crate) use pgtype::{COPY_HEADER, COPY_TRAILER, PG_EPOCH_MICROS};
pub use pgtype::{PgType, WireType};
pub use table::{Column, ForeignKey, TableSchema};
pub use timeline::Timeline;

use crate::error::{Error, Result};

/// One Airflow schema version the catalog describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// Position in the catalog, oldest first; later versions have larger indexes.
    pub index: usize,
    /// The name used in `schemas/` and on the command line, e.g. `2.10`.
    pub id: String,
    /// Other names for the same schema, e.g. `2.11`.
    pub aliases: Vec<String>,
    /// The Airflow releases that have this schema, as prose.
    pub releases: String,
    /// Alembic revisions a database of this schema can be at.
    pub heads: Vec<String>,
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// The tables the catalog knows at one schema version.
#[derive(Debug, Clone)]
pub struct VersionSchema {
    tables: Vec<TableSchema>,
}

impl VersionSchema {
    /// Every table that exists at this version, by name.
    pub fn tables(&self) -> &[TableSchema] {
        &self.tables
    }

    /// The table named `name`, if it exists at this version.
    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Table names in foreign-key order: every table after the tables it references.
    ///
    /// Ties are broken by name so the order is stable. References to tables outside the
    /// catalog (dag, trigger, dag_version...) do not constrain it.
    pub fn load_order(&self) -> Vec<&str> {
        let mut done: Vec<&str> = Vec::new();
        while done.len() < self.tables.len() {
            let ready = self.tables.iter().find(|t| {
                !done.contains(&t.name.as_str())
                    && t.references()
                        .all(|r| done.contains(&r) || self.table(r).is_none())
            });
            match ready {
                Some(table) => done.push(&table.name),
                // A cycle: emit the rest by name rather than loop forever. The catalog test
                // asserts there is none.
                None => {
                    let mut rest: Vec<&str> = self
                        .tables
                        .iter()
                        .map(|t| t.name.as_str())
                        .filter(|n| !done.contains(n))
                        .collect();
                    rest.sort_unstable();
                    done.extend(rest);
                }
            }
        }
        done
    }
}

/// The loaded `schemas/`: every schema version, each version's tables, and the canonical model.
#[derive(Debug)]
pub struct Catalog {
    canonical_version: u32,
    versions: Vec<SchemaVersion>,
    schemas: Vec<VersionSchema>,
    canonical: Vec<CanonicalTable>,
}

impl Catalog {
    /// The catalog embedded in this binary.
    ///
    /// # Errors
    /// Fails when the embedded `schemas/` files are inconsistent; the test suite makes sure a
    /// released binary never does.
    pub fn builtin() -> Result<&'static Catalog> {
        static BUILTIN: OnceLock<std::result::Result<Catalog, (String, String)>> = OnceLock::new();
        let loaded = BUILTIN.get_or_init(|| {
            load::load(files::SCHEMA_FILES).map_err(|e| match e {
                Error::Catalog { file, message } => (file, message),
                other => ("schemas".to_owned(), other.to_string()),
            })
        });
        loaded
            .as_ref()
            .map_err(|(file, message)| Error::catalog(file.clone(), message.clone()))
    }

    /// Loads a catalog from `(path relative to schemas/, contents)` pairs.
    ///
    /// # Errors
    /// [`Error::Catalog`] naming the file and entry that is malformed or inconsistent.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Catalog> {
        load::load(files)
    }

    /// Version of the canonical interchange model.
    pub fn canonical_version(&self) -> u32 {
        self.canonical_version
    }

    /// Every schema version, oldest first.
    pub fn versions(&self) -> &[SchemaVersion] {
        &self.versions
    }

    /// Finds a version by id or alias (`2.10`, `2.11`), or by an Airflow release of the same
    /// minor series (`2.10.5`, `3.0.6`).
    pub fn version(&self, name: &str) -> Option<&SchemaVersion> {
        let name = name.trim().trim_start_matches('v');
        fn names(v: &SchemaVersion) -> impl Iterator<Item = &String> {
            std::iter::once(&v.id).chain(&v.aliases)
        }
        if let Some(v) = self.versions.iter().find(|v| names(v).any(|n| n == name)) {
            return Some(v);
        }
        let minor = |s: &str| s.split('.').take(2).collect::<Vec<_>>().join(".");
        let wanted = minor(name);
        self.versions
            .iter()
            .find(|v| names(v).any(|n| minor(n) == wanted))
    }

    /// Finds the version whose heads include the alembic `revision`.
    pub fn version_for_revision(&self, revision: &str) -> Option<&SchemaVersion> {
        self.versions
            .iter()
            .find(|v| v.heads.iter().any(|h| h == revision))
    }

    /// The tables at `version`.
    pub fn schema(&self, version: &SchemaVersion) -> &VersionSchema {
        &self.schemas[version.index]
    }

    /// The canonical interchange model, one table per Airflow table the catalog describes.
    pub fn canonical(&self) -> &[CanonicalTable] {
        &self.canonical
    }

    /// Version ids joined for error messages: `1.10.12, 2.0.2, ...`.
    pub fn known_versions(&self) -> String {
        self.versions
            .iter()
            .map(|v| v.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_and_names_versions() {
        let catalog = Catalog::builtin().unwrap();
        assert_eq!(
            catalog.versions().first().map(|v| v.id.as_str()),
            Some("1.10.12")
        );
        let find = |name: &str| catalog.version(name).map(|v| v.id.as_str());
        assert_eq!(find("2.11"), Some("2.10"));
        assert_eq!(find("2.11.0"), Some("2.10"));
        assert_eq!(find("2.10.5"), Some("2.10"));
        assert_eq!(find("v3.0.6"), Some("3.0"));
        assert_eq!(find("2.7.3"), Some("2.7.2"));
        assert_eq!(find("2.3.4"), None);
        assert_eq!(
            catalog
                .version_for_revision("5f2621c13b39")
                .map(|v| v.id.as_str()),
            Some("2.10")
        );
        assert_eq!(catalog.version_for_revision("ffffffffffff"), None);
    }

    #[test]
    fn every_version_has_dag_run_and_an_acyclic_load_order() {
        let catalog = Catalog::builtin().unwrap();
        for version in catalog.versions() {
            let schema = catalog.schema(version);
            assert!(schema.table("dag_run").is_some(), "{version}");
            let order = schema.load_order();
            assert_eq!(order.len(), schema.tables().len());
            for (position, name) in order.iter().enumerate() {
                let table = schema.table(name).unwrap();
                for referenced in table.references().filter(|r| schema.table(r).is_some()) {
                    let before = order.iter().position(|n| n == &referenced).unwrap();
                    assert!(
                        before < position,
                        "{version}: {name} loads before {referenced}"
                    );
                }
            }
        }
    }
}
