//! One Airflow table as it is at one schema version.

use std::collections::BTreeSet;

use crate::catalog::PgType;

/// A column of an Airflow table at one schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type on a database created by that version's `airflow db migrate`.
    pub ty: PgType,
    /// Other types the column is known to have on databases that came through migrations.
    pub drift: Vec<PgType>,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Filled from a sequence: a generated key, environment-local.
    pub serial: bool,
}

impl Column {
    /// Whether a live column of type `ty` agrees with the catalog (exactly or as known drift).
    pub fn accepts(&self, ty: &PgType) -> bool {
        self.ty == *ty || self.drift.contains(ty)
    }
}

/// A foreign key: `columns` of this table reference `ref_columns` of `ref_table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKey {
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub ref_table: String,
    /// Referenced columns.
    pub ref_columns: Vec<String>,
}

impl ForeignKey {
    /// Parses `"a, b -> table(c, d)"`.
    pub(crate) fn parse(text: &str) -> Option<ForeignKey> {
        let (columns, target) = text.split_once("->")?;
        let (ref_table, ref_columns) = target.trim().split_once('(')?;
        let ref_columns = ref_columns.trim().strip_suffix(')')?;
        let list = |s: &str| {
            s.split(',')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        };
        Some(ForeignKey {
            columns: list(columns),
            ref_table: ref_table.trim().to_owned(),
            ref_columns: list(ref_columns),
        })
    }
}

impl std::fmt::Display for ForeignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {}({})",
            self.columns.join(", "),
            self.ref_table,
            self.ref_columns.join(", ")
        )
    }
}

/// An Airflow table at one schema version.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns, in catalog order (which need not be the database's order).
    pub columns: Vec<Column>,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Unique constraints and unique indexes other than the primary key.
    pub unique: Vec<Vec<String>>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Columns whose first non-NULL value is the row's time (windows, partitions, ranges).
    pub time_columns: Vec<String>,
}

impl TableSchema {
    /// The column named `name`, if the table has it at this version.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Unique keys as sets of column names, order-insensitive, for comparing with a database.
    pub fn unique_sets(&self) -> BTreeSet<BTreeSet<String>> {
        self.unique
            .iter()
            .map(|key| key.iter().cloned().collect())
            .collect()
    }

    /// Tables this one references through foreign keys, excluding itself.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.foreign_keys
            .iter()
            .map(|fk| fk.ref_table.as_str())
            .filter(|t| *t != self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_parse() {
        let fk = ForeignKey::parse("dag_id, run_id -> dag_run(dag_id, run_id)").unwrap();
        assert_eq!(fk.columns, ["dag_id", "run_id"]);
        assert_eq!(fk.ref_table, "dag_run");
        assert_eq!(fk.ref_columns, ["dag_id", "run_id"]);
        assert_eq!(fk.to_string(), "dag_id, run_id -> dag_run(dag_id, run_id)");
        assert_eq!(ForeignKey::parse("a -> b"), None);
    }
}
