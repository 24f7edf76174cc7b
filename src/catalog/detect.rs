//! Recognises a live database: which schema version its `alembic_version` says it is, what its
//! tables really look like, and where that differs from the catalog.
//!
//! An upgraded database is not always identical to a fresh one (naive timestamps, json vs jsonb,
//! leftover tables), so callers read real column types from here rather than trusting the
//! catalog alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog::{Catalog, ForeignKey, PgType, SchemaVersion, TableSchema};
use crate::error::{Error, Result};

/// SQLSTATE for "relation does not exist".
const UNDEFINED_TABLE: &str = "42P01";

/// Reads the revisions in `alembic_version`.
///
/// # Errors
/// [`Error::NotAirflow`] when the table is missing or empty; [`Error::Query`] otherwise.
pub async fn read_revisions(client: &Client, schema: &str, database: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT version_num FROM {}.alembic_version ORDER BY 1",
        quote_ident(schema)
    );
    let rows = match client.query(&sql, &[]).await {
        Ok(rows) => rows,
        Err(e) if e.code().is_some_and(|c| c.code() == UNDEFINED_TABLE) => {
            return Err(Error::NotAirflow {
                database: database.to_owned(),
                reason: format!("schema {schema:?} has no alembic_version table"),
            });
        }
        Err(e) => return Err(Error::query("alembic_version")(e)),
    };
    let revisions: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    if revisions.is_empty() {
        return Err(Error::NotAirflow {
            database: database.to_owned(),
            reason: "alembic_version is empty".to_owned(),
        });
    }
    Ok(revisions)
}

/// Maps the revisions of `alembic_version` to a catalog version.
///
/// # Errors
/// [`Error::UnknownRevision`] naming the revisions and the versions the catalog knows.
pub fn version_for_revisions<'c>(
    catalog: &'c Catalog,
    revisions: &[String],
) -> Result<&'c SchemaVersion> {
    let mut found = revisions
        .iter()
        .filter_map(|r| catalog.version_for_revision(r));
    match (found.next(), revisions.len()) {
        (Some(version), 1) => Ok(version),
        _ => Err(Error::UnknownRevision {
            revisions: revisions.join(", "),
            known: catalog.known_versions(),
        }),
    }
}

/// The version to treat a database as: `assumed` when the user gave one, else the one its
/// `alembic_version` revisions identify.
///
/// # Errors
/// [`Error::UnknownVersion`] for an assumed version the catalog does not know;
/// [`Error::UnknownRevision`] as [`version_for_revisions`].
pub fn resolve_version<'c>(
    catalog: &'c Catalog,
    revisions: &[String],
    assumed: Option<&str>,
) -> Result<&'c SchemaVersion> {
    match assumed {
        Some(name) => catalog.version(name).ok_or_else(|| Error::UnknownVersion {
            given: name.to_owned(),
            known: catalog.known_versions(),
        }),
        None => version_for_revisions(catalog, revisions),
    }
}

/// A column as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveColumn {
    /// Column name.
    pub name: String,
    /// Type, as `format_type()` gives it, normalised.
    #[serde(serialize_with = "display")]
    pub ty: PgType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the default draws from a sequence.
    pub serial: bool,
}

/// A table as the database has it.
#[derive(Debug, Clone, Default)]
pub struct LiveTable {
    /// Columns in the database's order.
    pub columns: Vec<LiveColumn>,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Unique constraints and unique indexes (not partial, not on expressions).
    pub unique: Vec<Vec<String>>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
}

impl LiveTable {
    /// The column named `name`, if present.
    pub fn column(&self, name: &str) -> Option<&LiveColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Every table of one schema of a live database.
#[derive(Debug, Clone, Default)]
pub struct LiveSchema {
    /// Tables by name.
    pub tables: BTreeMap<String, LiveTable>,
}

/// Reads tables, columns, keys and foreign keys of `schema` from `pg_catalog`.
///
/// # Errors
/// [`Error::Query`] when the catalog queries fail.
pub async fn introspect(client: &Client, schema: &str) -> Result<LiveSchema> {
    let mut live = LiveSchema::default();
    let columns = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    NOT a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .await
        .map_err(Error::query("pg_attribute"))?;
    for row in columns {
        let table: String = row.get(0);
        let ty: String = row.get(2);
        live.tables
            .entry(table)
            .or_default()
            .columns
            .push(LiveColumn {
                name: row.get(1),
                ty: PgType::parse(&ty),
                nullable: row.get(3),
                serial: row.get(4),
            });
    }
    let constraints = client
        .query(
            "SELECT c.relname::text, con.contype::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                          ORDER BY k.ord),
                    r.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
                          ORDER BY k.ord)
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class r ON r.oid = con.confrelid
             WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f')
             ORDER BY 1, 2, 3",
            &[&schema],
        )
        .await
        .map_err(Error::query("pg_constraint"))?;
    for row in constraints {
        let table: String = row.get(0);
        let kind: String = row.get(1);
        let columns: Vec<String> = row.get(2);
        let entry = live.tables.entry(table).or_default();
        match kind.as_str() {
            "p" => entry.primary_key = columns,
            "u" => entry.unique.push(columns),
            _ => entry.foreign_keys.push(ForeignKey {
                columns,
                ref_table: row.get::<_, Option<String>>(3).unwrap_or_default(),
                ref_columns: row.get(4),
            }),
        }
    }
    let indexes = client
        .query(
            "SELECT t.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
                          ORDER BY k.ord)
             FROM pg_index i
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = $1 AND i.indisunique AND NOT i.indisprimary
               AND i.indexprs IS NULL AND i.indpred IS NULL
               AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
             ORDER BY 1, 2",
            &[&schema],
        )
        .await
        .map_err(Error::query("pg_index"))?;
    for row in indexes {
        let table: String = row.get(0);
        live.tables
            .entry(table)
            .or_default()
            .unique
            .push(row.get(1));
    }
    Ok(live)
}

/// One way a live table differs from the catalog's description of its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// The catalog says the table exists at this version; the database lacks it.
    MissingTable,
    /// The database has a catalog table that this version does not have (e.g. `sla_miss` left
    /// behind on a database upgraded to Airflow 3).
    ExtraTable,
    /// A column the catalog expects is absent.
    MissingColumn {
        /// Column name.
        column: String,
    },
    /// The database has a column the catalog does not describe.
    ExtraColumn {
        /// Column name.
        column: String,
        /// Its type.
        found: String,
    },
    /// The type differs in a way the catalog lists as known for migrated databases.
    KnownDrift {
        /// Column name.
        column: String,
        /// Type on a fresh database.
        expected: String,
        /// Type found.
        found: String,
    },
    /// The type differs in a way the catalog does not know.
    Type {
        /// Column name.
        column: String,
        /// Type the catalog expects.
        expected: String,
        /// Type found.
        found: String,
    },
    /// NULL is allowed where the catalog says it is not, or the reverse.
    Nullability {
        /// Column name.
        column: String,
        /// Whether the catalog expects NULL to be allowed.
        expected_nullable: bool,
    },
    /// A column is (or is not) filled from a sequence, unlike the catalog.
    Serial {
        /// Column name.
        column: String,
        /// Whether the catalog expects a sequence default.
        expected: bool,
    },
    /// The primary key differs.
    PrimaryKey {
        /// Columns the catalog expects.
        expected: Vec<String>,
        /// Columns found.
        found: Vec<String>,
    },
    /// A unique key the catalog expects is absent.
    MissingUnique {
        /// Its columns.
        columns: Vec<String>,
    },
    /// The database has a unique key the catalog does not describe.
    ExtraUnique {
        /// Its columns.
        columns: Vec<String>,
    },
    /// A foreign key the catalog expects is absent.
    MissingForeignKey {
        /// The key, `a, b -> table(c, d)`.
        key: String,
    },
    /// The database has a foreign key the catalog does not describe.
    ExtraForeignKey {
        /// The key, `a, b -> table(c, d)`.
        key: String,
    },
}

impl Difference {
    /// Whether this is only a difference the catalog already knows upgraded databases have.
    pub fn is_known_drift(&self) -> bool {
        matches!(self, Difference::KnownDrift { .. } | Difference::ExtraTable)
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::MissingTable => f.write_str("table is missing"),
            Difference::ExtraTable => f.write_str(
                "table exists although this version has none (left over from an older version)",
            ),
            Difference::MissingColumn { column } => write!(f, "column {column} is missing"),
            Difference::ExtraColumn { column, found } => {
                write!(f, "unexpected column {column} {found}")
            }
            Difference::KnownDrift {
                column,
                expected,
                found,
            } => {
                write!(
                    f,
                    "column {column} is {found} (fresh databases have {expected}; usual after upgrades)"
                )
            }
            Difference::Type {
                column,
                expected,
                found,
            } => {
                write!(f, "column {column} is {found}, expected {expected}")
            }
            Difference::Nullability {
                column,
                expected_nullable,
            } => {
                let (want, got) = if *expected_nullable {
                    ("nullable", "NOT NULL")
                } else {
                    ("NOT NULL", "nullable")
                };
                write!(f, "column {column} is {got}, expected {want}")
            }
            Difference::Serial { column, expected } => {
                let what = if *expected {
                    "has no sequence default"
                } else {
                    "has an unexpected sequence default"
                };
                write!(f, "column {column} {what}")
            }
            Difference::PrimaryKey { expected, found } => {
                write!(
                    f,
                    "primary key is ({}), expected ({})",
                    found.join(", "),
                    expected.join(", ")
                )
            }
            Difference::MissingUnique { columns } => {
                write!(f, "unique key ({}) is missing", columns.join(", "))
            }
            Difference::ExtraUnique { columns } => {
                write!(f, "unexpected unique key ({})", columns.join(", "))
            }
            Difference::MissingForeignKey { key } => write!(f, "foreign key {key} is missing"),
            Difference::ExtraForeignKey { key } => write!(f, "unexpected foreign key {key}"),
        }
    }
}

/// Compares one catalog table with the live table of the same name.
///
/// Key and foreign-key columns are compared as sets: migrated and fresh databases list them in
/// different orders. Foreign keys to tables outside the catalog are compared too.
pub fn compare_table(expected: &TableSchema, live: Option<&LiveTable>) -> Vec<Difference> {
    let Some(live) = live else {
        return vec![Difference::MissingTable];
    };
    let mut out = Vec::new();
    for column in &expected.columns {
        let Some(found) = live.column(&column.name) else {
            out.push(Difference::MissingColumn {
                column: column.name.clone(),
            });
            continue;
        };
        if found.ty != column.ty {
            let (expected_ty, found_ty) = (column.ty.to_string(), found.ty.to_string());
            out.push(if column.accepts(&found.ty) {
                Difference::KnownDrift {
                    column: column.name.clone(),
                    expected: expected_ty,
                    found: found_ty,
                }
            } else {
                Difference::Type {
                    column: column.name.clone(),
                    expected: expected_ty,
                    found: found_ty,
                }
            });
        }
        if found.nullable != column.nullable {
            out.push(Difference::Nullability {
                column: column.name.clone(),
                expected_nullable: column.nullable,
            });
        }
        if found.serial != column.serial {
            out.push(Difference::Serial {
                column: column.name.clone(),
                expected: column.serial,
            });
        }
    }
    for column in &live.columns {
        if expected.column(&column.name).is_none() {
            out.push(Difference::ExtraColumn {
                column: column.name.clone(),
                found: column.ty.to_string(),
            });
        }
    }
    let set = |cols: &[String]| cols.iter().cloned().collect::<BTreeSet<_>>();
    if set(&expected.primary_key) != set(&live.primary_key) {
        out.push(Difference::PrimaryKey {
            expected: expected.primary_key.clone(),
            found: live.primary_key.clone(),
        });
    }
    let expected_unique = expected.unique_sets();
    let live_unique: BTreeSet<BTreeSet<String>> = live.unique.iter().map(|k| set(k)).collect();
    for key in expected_unique.difference(&live_unique) {
        out.push(Difference::MissingUnique {
            columns: key.iter().cloned().collect(),
        });
    }
    for key in live_unique.difference(&expected_unique) {
        out.push(Difference::ExtraUnique {
            columns: key.iter().cloned().collect(),
        });
    }
    let fk_set = |fks: &[ForeignKey]| fks.iter().map(normalized_fk).collect::<BTreeSet<_>>();
    let (expected_fks, live_fks) = (fk_set(&expected.foreign_keys), fk_set(&live.foreign_keys));
    for key in expected_fks.difference(&live_fks) {
        out.push(Difference::MissingForeignKey {
            key: key.to_string(),
        });
    }
    for key in live_fks.difference(&expected_fks) {
        out.push(Difference::ExtraForeignKey {
            key: key.to_string(),
        });
    }
    out
}

/// Compares every catalog table of `version` with the live schema; returns `(table, difference)`.
pub fn compare_schema(
    catalog: &Catalog,
    version: &SchemaVersion,
    live: &LiveSchema,
) -> Vec<(String, Difference)> {
    let schema = catalog.schema(version);
    let mut out = Vec::new();
    for table in schema.tables() {
        for difference in compare_table(table, live.tables.get(&table.name)) {
            out.push((table.name.clone(), difference));
        }
    }
    for canonical in catalog.canonical() {
        if schema.table(&canonical.name).is_none() && live.tables.contains_key(&canonical.name) {
            out.push((canonical.name.clone(), Difference::ExtraTable));
        }
    }
    out
}

/// A foreign key with column pairs sorted, so that order does not matter when comparing.
fn normalized_fk(fk: &ForeignKey) -> ForeignKey {
    let mut pairs: Vec<(String, String)> = fk
        .columns
        .iter()
        .cloned()
        .zip(fk.ref_columns.iter().cloned())
        .collect();
    pairs.sort();
    let (columns, ref_columns) = pairs.into_iter().unzip();
    ForeignKey {
        columns,
        ref_table: fk.ref_table.clone(),
        ref_columns,
    }
}

/// Quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}
